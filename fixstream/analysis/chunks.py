"""Cut a source file into token-budgeted chunks for parallel LLM calls.

Invariants (property-tested): every line of the file is in exactly one chunk, chunks are
contiguous and in order, and a chunk exceeds ``budget`` tokens only if it is a single line.

Python is cut on ``ast`` definition boundaries: top-level functions and classes, with their
decorators and the comment block right above them; a class over budget is split into its
methods. A *single definition* over budget is split too — first on its body's statement
boundaries, then by lines — and every part keeps the definition's ``symbol``, so the budget
is a hard limit for every multi-line chunk. Other languages, and Python that does not parse,
are cut by lines, preferring blank lines. Adjacent small pieces are then merged greedily.

Lines are those of ``str.splitlines()``; token counts are exact counts of the chunk's text
with its original line endings (BPE is not additive, so spans are always counted whole;
only spans over 40k characters, which the tokenizer cannot take at once, are summed from
newline-aligned pieces).
"""

from __future__ import annotations

import ast
import hashlib
import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fixstream.tokens import count_tokens

__all__ = ["SourceChunk", "chunk_id", "chunk_source"]

_PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
_AST_NEWLINE = re.compile(r"\r\n|\r|\n")
# str.splitlines() breaks on these too; the Python tokenizer does not.
_EXTRA_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BLOCK_FIELDS = ("body", "handlers", "orelse", "finalbody", "cases")
_MAX_LISTED_SYMBOLS = 3


@dataclass(frozen=True, slots=True)
class SourceChunk:
    """A line range of one file; the caller slices the text, so none is stored."""

    path: str
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    tokens: int
    symbol: str | None  # "Class.method", "function", a merged list, or None for glue


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    symbol: str | None


def chunk_id(bug_id: str, path: str, start_line: int, end_line: int) -> str:
    """Short stable id of a chunk: the same bug, file and range always give the same id."""
    key = f"{bug_id}\0{path}\0{start_line}\0{end_line}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


class _Source:
    """The file's lines plus exact, memoised token counts of line spans."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self._memo: dict[tuple[int, int], int] = {}
        self._bytes = [0]  # cumulative UTF-8 sizes: a token is at least one byte
        for line in self.lines:
            self._bytes.append(self._bytes[-1] + len(line.encode("utf-8", "surrogatepass")))

    def tokens(self, start: int, end: int) -> int:
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = count_tokens("".join(self.lines[start - 1 : end]))
        return self._memo[key]

    def fits(self, start: int, end: int, budget: int) -> bool:
        """Exact test, skipping the count when the byte size alone proves the span fits."""
        return self.size(start, end) <= budget or self.tokens(start, end) <= budget

    def size(self, start: int, end: int) -> int:
        return self._bytes[end] - self._bytes[start - 1]

    def estimate(self, start: int, end: int, bytes_per_token: float) -> float:
        """The exact count if known, else a cheap guess from the byte size."""
        known = self._memo.get((start, end))
        return known if known is not None else self.size(start, end) / bytes_per_token

    def is_blank(self, line: int) -> bool:
        return not self.lines[line - 1].strip()


# --- line-based cutting ----------------------------------------------------------------------


def _largest(lo: int, hint: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Largest k in [lo, hi] with ``fits(k)``, taking ``lo`` as acceptable.

    Gallops from ``hint`` and then bisects, so only spans near the answer are ever counted
    (counting a whole file per cut would make chunking quadratic). Every returned k > lo was
    actually tested, so the result fits even where BPE counts are not perfectly monotone.
    """
    hint = min(max(hint, lo), hi)
    if hint > lo and not fits(hint):
        good, bad, step = lo, hint, 1
        while bad - step > lo:
            if fits(bad - step):
                good = bad - step
                break
            bad, step = bad - step, step * 2
    else:
        good, bad, step = hint, hi + 1, 1
        while good < hi:
            probe = min(hi, good + step)
            if not fits(probe):
                bad = probe
                break
            good, step = probe, step * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def _fit(src: _Source, start: int, hi: int, budget: int) -> int:
    """Last line in [start, hi] such that start..line fits ``budget`` (at least ``start``)."""
    return _largest(start, start, hi, lambda end: src.fits(start, end, budget))


def _nicer_end(src: _Source, start: int, end: int) -> int:
    """Move a cut back to just after a blank line, or before a top-level line, if close."""
    floor = start + (end - start) // 2
    for line in range(end, floor - 1, -1):
        if src.is_blank(line) and line > start:
            return line
    for line in range(end, floor - 1, -1):
        following = src.lines[line] if line < len(src.lines) else ""
        if following[:1] not in ("", " ", "\t", ")", "]", "}", "\n", "\r"):
            return line
    return end


def _split_lines(src: _Source, lo: int, hi: int, budget: int, symbol: str | None) -> list[_Piece]:
    pieces: list[_Piece] = []
    start = lo
    while start <= hi:
        end = _fit(src, start, hi, budget)
        if end < hi:
            end = _nicer_end(src, start, end)
        pieces.append(_Piece(start, end, symbol))
        start = end + 1
    return pieces


# --- Python structure ------------------------------------------------------------------------


class _LineMap:
    """Map ``ast`` line numbers onto ``str.splitlines()`` line numbers (identity normally)."""

    def __init__(self, src: _Source) -> None:
        self._n = len(src.lines)
        self._identity = _EXTRA_BREAKS.search(src.text) is None
        if not self._identity:
            self._ast_starts = [0, *(m.end() for m in _AST_NEWLINE.finditer(src.text))]
            self._starts = [0]
            for line in src.lines[:-1]:
                self._starts.append(self._starts[-1] + len(line))

    def first(self, lineno: int) -> int:
        if self._identity:
            return min(max(lineno, 1), self._n)
        offset = self._ast_starts[min(lineno, len(self._ast_starts)) - 1]
        return min(bisect_right(self._starts, offset), self._n)

    def last(self, lineno: int) -> int:
        if self._identity or lineno >= len(self._ast_starts):
            return self.first(lineno) if self._identity else self._n
        return min(bisect_right(self._starts, self._ast_starts[lineno] - 1), self._n)


def _children(node: ast.AST) -> list[ast.AST]:
    """Statement-like children of a compound node, in source order."""
    out: list[ast.AST] = []
    for name in _BLOCK_FIELDS:
        for child in getattr(node, name, None) or ():
            if isinstance(child, ast.match_case):
                out.extend(child.body)
            elif isinstance(child, ast.stmt | ast.excepthandler):
                out.append(child)
    return sorted(out, key=lambda c: c.lineno)


def _def_name(node: ast.AST) -> str | None:
    return node.name if isinstance(node, _DEFS) else None


class _PythonCutter:
    """Recursive cutting along statement boundaries, splitting only what is over budget."""

    def __init__(self, src: _Source, tree: ast.Module, budget: int) -> None:
        self.src = src
        self.tree = tree
        self.budget = budget
        self.lines = _LineMap(src)

    def pieces(self) -> list[_Piece]:
        return self._cut(self.tree.body, 1, len(self.src.lines), 0, None, scope=None)

    def _starts(self, nodes: Sequence[ast.AST], floor: int) -> list[tuple[int, ast.AST]]:
        """Where each statement's piece begins: decorators and the comment block above it
        belong to it (never reaching into the previous statement or the parent's header)."""
        out: list[tuple[int, ast.AST]] = []
        prev_end = floor
        for node in nodes:
            linenos = [node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))]
            start = self.lines.first(min(linenos))
            while start - 1 > prev_end and self.src.lines[start - 2].lstrip().startswith("#"):
                start -= 1
            out.append((start, node))
            prev_end = max(prev_end, self.lines.last(node.end_lineno or node.lineno))
        return out

    def _cut(
        self,
        nodes: Sequence[ast.AST],
        lo: int,
        hi: int,
        floor: int,
        header: str | None,
        *,
        scope: str | None,
        fixed: bool = False,
    ) -> list[_Piece]:
        """Cut [lo, hi] before each statement in ``nodes``; recurse into pieces over budget.

        ``scope`` qualifies definition names ("Cart" → "Cart.add"); ``fixed`` names every
        part after ``header`` (the parts of one oversized function keep its name).
        """
        bounds: list[tuple[int, ast.AST | None, str | None]] = [(lo, None, header)]
        for start, node in self._starts(nodes, floor):
            name = _def_name(node)
            symbol = header if fixed or name is None else (f"{scope}.{name}" if scope else name)
            if start <= bounds[-1][0]:
                if bounds[-1][1] is None and start == lo:
                    bounds[-1] = (lo, node, symbol)  # no header lines before the first child
                continue  # same line as the previous statement ("a = 1; b = 2")
            bounds.append((start, node, symbol))
        out: list[_Piece] = []
        for i, (start, node, symbol) in enumerate(bounds):
            end = bounds[i + 1][0] - 1 if i + 1 < len(bounds) else hi
            out.extend(self._piece(start, end, node, symbol, scope=scope))
        return out

    def _piece(
        self, start: int, end: int, node: ast.AST | None, symbol: str | None, *, scope: str | None
    ) -> list[_Piece]:
        if start == end or self.src.fits(start, end, self.budget):
            return [_Piece(start, end, symbol)]
        children = _children(node) if node is not None else []
        if not children:
            return _split_lines(self.src, start, end, self.budget, symbol)
        floor = self.lines.first(node.lineno)
        if isinstance(node, ast.ClassDef):
            return self._cut(children, start, end, floor, symbol, scope=symbol)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return self._cut(children, start, end, floor, symbol, scope=symbol, fixed=True)
        return self._cut(children, start, end, floor, symbol, scope=scope)


_PARSER = threading.Lock()
"""One parse at a time in this process: CPython 3.11's parser run from several threads at once
(analyses run in threads) raised "SystemError: AST constructor recursion depth mismatch",
and the 300-bug soak dead-lettered two valid bugs so."""


def parse_python(text: str) -> ast.Module | None:
    """The module's tree, or None when it is not Python this interpreter reads."""
    try:
        with _PARSER:
            return ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# --- merging ---------------------------------------------------------------------------------


def _common_scope(names: list[list[str]]) -> list[str]:
    """Longest shared leading run of dotted segments."""
    common = names[0]
    for segs in names[1:]:
        n = 0
        while n < min(len(common), len(segs)) and common[n] == segs[n]:
            n += 1
        common = common[:n]
    return common


def _merged_symbol(symbols: Sequence[str | None]) -> str | None:
    """One name, the common dotted scope ("Cart"), or a short list of what is inside."""
    named = list(dict.fromkeys(s for s in symbols if s))
    if len(named) <= 1:
        return named[0] if named else None
    common = _common_scope([s.split(".") for s in named])
    if common:
        return ".".join(common)
    listed = ", ".join(named[:_MAX_LISTED_SYMBOLS])
    extra = len(named) - _MAX_LISTED_SYMBOLS
    return f"{listed} (+{extra} more)" if extra > 0 else listed


def _merge(path: str, src: _Source, pieces: list[_Piece], budget: int) -> list[SourceChunk]:
    """Greedily join adjacent pieces while the joined span still fits the budget.

    Estimates (bytes per token, learnt from each finished chunk) guess where a chunk ends;
    exact counts of the joined span then settle it (BPE is not additive across junctions).
    """
    ratio = 4.0
    chunks: list[SourceChunk] = []
    i = 0
    while i < len(pieces):
        start = pieces[i].start
        guess, estimate = i, src.estimate(start, pieces[i].end, ratio)
        while guess + 1 < len(pieces):
            more = src.estimate(pieces[guess + 1].start, pieces[guess + 1].end, ratio)
            if estimate + more > budget:
                break
            guess, estimate = guess + 1, estimate + more
        last = _largest(
            i, guess, len(pieces) - 1, lambda k, s=start: src.fits(s, pieces[k].end, budget)
        )
        end = pieces[last].end
        tokens = src.tokens(start, end)
        ratio = src.size(start, end) / tokens if tokens else ratio
        symbol = _merged_symbol([p.symbol for p in pieces[i : last + 1]])
        chunks.append(SourceChunk(path, start, end, tokens, symbol))
        i = last + 1
    return chunks


def chunk_source(path: str, text: str, *, budget: int) -> list[SourceChunk]:
    """Cut ``text`` (the file at ``path``) into contiguous chunks of at most ``budget`` tokens
    (a single line longer than the budget is a chunk of its own)."""
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    src = _Source(text)
    if not src.lines:
        return []
    pieces: list[_Piece] | None = None
    if path.endswith(_PYTHON_SUFFIXES) and (tree := parse_python(text)) is not None:
        pieces = _PythonCutter(src, tree, budget).pieces()
    if pieces is None:
        pieces = _split_lines(src, 1, len(src.lines), budget, None)
    return _merge(path, src, pieces, budget)
