"""Extract evidence from logs, stack traces and free text without spending LLM tokens.

A bug report's log is the cheapest evidence there is: the frames of a traceback point at the
files that raised, exception types and messages say what went wrong, and ``path:line``
references anywhere narrow the search. Everything is parsed from the *full* text; only the
excerpt kept for prompts is collapsed and truncated to a token budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from fixstream.tokens import count_tokens

__all__ = [
    "SOURCE_EXTENSIONS",
    "Frame",
    "ParsedLog",
    "file_references",
    "identifiers",
    "parse_log",
]

#: File extensions treated as source code, here and by :mod:`fixstream.analysis.locate`.
SOURCE_EXTENSIONS: frozenset[str] = frozenset(
    {
        "py", "pyi", "pyx", "java", "kt", "kts", "scala", "groovy", "clj", "js", "jsx", "mjs",
        "cjs", "ts", "tsx", "vue", "svelte", "go", "rs", "c", "h", "cc", "cpp", "cxx", "hpp",
        "hh", "hxx", "cs", "fs", "rb", "php", "swift", "m", "mm", "lua", "pl", "pm", "sh",
        "bash", "ex", "exs", "erl", "hs", "dart", "jl", "zig", "nim", "ml", "sql", "r",
    }
)  # fmt: skip

_EXT_ALT = "|".join(sorted(SOURCE_EXTENSIONS, key=len, reverse=True))


# --- line-level patterns -------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"^\s*+(?:"
    r"\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]?"
    r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}"  # syslog: "Jan  3 12:00:01"
    r"|\[?\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]?"
    r")(?:\s+|$)"
)
_GROUP_BAR = re.compile(r"^(?:\s*\|)+ ?")  # Python 3.11 exception-group drawing
_PY_HEADER = re.compile(r"Traceback \(most recent call last\):\s*$")
_PY_FRAME = re.compile(r'^\s*+File "(?P<path>[^"]++)", line (?P<line>\d++)(?:, in (?P<func>.+))?$')
_PY_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::[ \t]?(?P<msg>.*))?$")
_JAVA_FRAME = re.compile(
    r"^\s*+at\s++(?P<qual>[\w$.<>/@-]++)\((?P<file>[^():]*+)(?::(?P<line>\d++))?\)"
)
_JAVA_MORE = re.compile(r"^\s*\.\.\. \d+ (?:more|common frames omitted)\s*$")
_JAVA_HEADER = re.compile(
    r'^\s*(?:Exception in thread "[^"]*"\s+|Caused by:\s+|Suppressed:\s+)'
    r"(?P<type>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)(?::\s?(?P<msg>.*))?$"
)
_JAVA_PLAIN_HEADER = re.compile(
    r"^\s*(?P<type>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)(?::\s?(?P<msg>.*))?$"
)
_JS_FRAME = re.compile(r"^\s*+at\s++(?:(?P<func>[^()]*+)\((?P<loc>[^()]++)\)|(?P<bare>\S++))\s*+$")
_JS_LOCATION = re.compile(r"^(?P<path>\S*?[^\s:]):(?P<line>\d++)(?::\d++)?$")
_GO_FRAME = re.compile(r"^\s++(?P<path>\S+\.go):(?P<line>\d++)(?:\s++\+0x[0-9a-fA-F]++)?\s*+$")
_GO_FUNC = re.compile(r"^(?P<func>[\w./*$-]++(?:\.\([\w./*$-]++\)[\w.$-]*+)?)\(")
_EXC_ANYWHERE = re.compile(
    r"(?<![\w.$])(?P<type>(?:[A-Za-z_$][\w$]*\.)*[A-Z][\w$]*(?:Error|Exception))\b"
    r"(?::[ \t]+(?P<msg>\S.*))?"
)
_EXC_NAME = re.compile(r"\.|(?:Error|Exception|Throwable)$")
_PATH_REF = re.compile(
    r"(?<![\w./\\@+~-])"
    r"(?P<path>(?:[A-Za-z]:)?[\\/]{0,3}(?:[\w.@+~-]+[\\/]+)*[\w.@+~-]*\w\.(?:" + _EXT_ALT + r"))"
    r"(?![\w-])"
    r'(?:(?::line |:|", line |,? line |#L|\()(?P<line>\d+))?'
)
_SCHEME = re.compile(r"^[A-Za-z][\w+.-]+://")

_MAX_FRAME_LINE = 2000
_REPEAT_MARK = "[... previous line repeated {n} more times]"
_TRUNC_MARK = "[... truncated {lines} lines / {tokens} tokens ...]"


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame; ``path`` is as printed (Java: package dirs + source file name)."""

    path: str
    line: int | None
    function: str | None
    language: str  # "python" | "java" | "generic"


@dataclass(frozen=True, slots=True)
class ParsedLog:
    """Everything parsed from a log; ``text`` is the cleaned, budgeted excerpt."""

    frames: tuple[Frame, ...]
    exception_types: tuple[str, ...]
    messages: tuple[str, ...]
    file_refs: tuple[tuple[str, int | None], ...]
    text: str


# --- scanning ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    """Mutable accumulator while walking the lines once."""

    frames: list[Frame] = field(default_factory=list)
    types: dict[str, None] = field(default_factory=dict)
    messages: dict[str, None] = field(default_factory=dict)
    refs: dict[tuple[str, int | None], None] = field(default_factory=dict)

    def exception(self, type_: str, msg: str | None) -> None:
        self.types.setdefault(type_, None)
        if msg and msg.strip():
            self.messages.setdefault(msg.strip(), None)

    def frame(self, frame: Frame) -> None:
        self.frames.append(frame)
        if frame.line is not None and not frame.path.startswith("<"):
            self.refs.setdefault((frame.path, frame.line), None)

    def file_refs(self) -> tuple[tuple[str, int | None], ...]:
        """Refs in order; a bare path is dropped when the same path also has a line."""
        with_line = {path for path, line in self.refs if line is not None}
        return tuple(r for r in self.refs if r[1] is not None or r[0] not in with_line)


def _strip_prefix(line: str) -> str:
    """Drop a leading timestamp and exception-group bars so traces parse inside any log."""
    line = _TIMESTAMP.sub("", line, count=1)
    if line.lstrip().startswith("|"):
        line = _GROUP_BAR.sub("", line, count=1)
    return line.rstrip("\r\n")


def _java_frame(m: re.Match[str]) -> Frame:
    """``com.foo.Bar$In.baz(Bar.java:42)`` → ``Frame("com/foo/Bar.java", 42, "Bar$In.baz")``."""
    qual = m["qual"].rsplit("/", 1)[-1]  # drop "java.base/" or "app//" module prefixes
    cls, _, method = qual.rpartition(".")
    package, _, simple = cls.rpartition(".")
    filename = m["file"].strip()
    if not filename or " " in filename:  # "Native Method", "Unknown Source"
        filename = simple.split("$", 1)[0] + ".java"
    path = f"{package.replace('.', '/')}/{filename}" if package else filename
    line = int(m["line"]) if m["line"] else None
    return Frame(path, line, f"{simple}.{method}" if simple else method, "java")


def _normalize_ref(path: str) -> str:
    """Forward slashes, no URL scheme: a form every later matcher understands."""
    return _SCHEME.sub("", path).replace("\\", "/")


def _generic_refs(line: str, scan: _Scan) -> None:
    for m in _PATH_REF.finditer(line):
        ref_line = int(m["line"]) if m["line"] else None
        scan.refs.setdefault((_normalize_ref(m["path"]), ref_line), None)


def _generic_exception(line: str, scan: _Scan) -> None:
    m = _EXC_ANYWHERE.search(line)
    if m:
        scan.exception(m["type"], m["msg"])


def _scan(lines: list[str]) -> _Scan:
    """One pass over the lines; a tiny state machine tracks Python traceback context."""
    scan = _Scan()
    in_python = False
    for i, raw in enumerate(lines):
        line = _strip_prefix(raw)
        if not line.strip():
            continue
        if _PY_HEADER.search(line):
            in_python = True
            continue
        if len(line) > _MAX_FRAME_LINE:  # no real frame is this long; keeps regexes linear
            in_python = False
            _generic_exception(line, scan)
            _generic_refs(line, scan)
            continue
        if m := _PY_FRAME.match(line):
            in_python = True
            func = (m["func"] or "").strip() or None
            scan.frame(Frame(m["path"], int(m["line"]), func, "python"))
            continue
        if in_python:
            if line[0] in " \t":  # source line, caret markers
                continue
            in_python = False
            if m := _PY_EXC_LINE.match(line.strip()):
                scan.exception(m["type"], m["msg"])
                _generic_refs(m["msg"] or "", scan)
                continue
        if _handle_jvm_or_generic_frame(lines, i, line, scan):
            continue
        _generic_exception(line, scan)
        _generic_refs(line, scan)
    return scan


def _handle_jvm_or_generic_frame(lines: list[str], i: int, line: str, scan: _Scan) -> bool:
    """Java frames and headers, JS/Rust ``at path:line`` and Go frames; True when consumed."""
    if m := _JAVA_FRAME.match(line):
        scan.frame(_java_frame(m))
        return True
    if _JAVA_MORE.match(line):
        return True
    if m := _JAVA_HEADER.match(line):
        scan.exception(m["type"], m["msg"])
        _generic_refs(m["msg"] or "", scan)
        return True
    if i + 1 < len(lines) and _JAVA_FRAME.match(_strip_prefix(lines[i + 1])):
        m = _JAVA_PLAIN_HEADER.match(line)  # "com.foo.Boom: msg" right before "at ..."
        if m and _EXC_NAME.search(m["type"]):
            scan.exception(m["type"], m["msg"])
            return True
    m = _JS_FRAME.match(line)
    loc = _JS_LOCATION.match(m["loc"] or m["bare"]) if m else None
    if m and loc and ("/" in loc["path"] or "." in loc["path"]):
        func = (m["func"] or "").strip() or None
        scan.frame(Frame(_normalize_ref(loc["path"]), int(loc["line"]), func, "generic"))
        return True
    if m := _GO_FRAME.match(line):
        prev = _strip_prefix(lines[i - 1]).strip() if i else ""
        func = f.group("func") if (f := _GO_FUNC.match(prev)) else None
        scan.frame(Frame(m["path"], int(m["line"]), func, "generic"))
        return True
    return False


def file_references(text: str) -> list[tuple[str, int | None]]:
    """Every ``path[:line]`` reference in ``text`` (frames included), in order of appearance."""
    return list(_scan(text.splitlines()).file_refs())


# --- cleaning ------------------------------------------------------------------------------


def _collapse(lines: list[str]) -> list[str]:
    """Runs of identical lines (ignoring a leading timestamp) become one line plus a marker."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        key = _TIMESTAMP.sub("", lines[i], count=1).rstrip()
        j = i + 1
        while j < len(lines) and _TIMESTAMP.sub("", lines[j], count=1).rstrip() == key:
            j += 1
        out.append(lines[i])
        repeats = j - i - 1
        if repeats and key:
            out.append(_REPEAT_MARK.format(n=repeats))
        i = j
    return out


def _fit_prefix(line: str, budget: int) -> str:
    """Longest prefix of one line within ``budget`` tokens (binary search on characters)."""
    lo, hi = 0, min(len(line), (budget + 1) * 256)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(line[:mid]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return line[:lo]


def _fit_suffix(line: str, budget: int) -> str:
    """Longest suffix of one line within ``budget`` tokens."""
    lo, hi = 0, min(len(line), (budget + 1) * 256)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(line[len(line) - mid :]) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return line[len(line) - lo :]


def _take(lines: Iterable[str], budget: int, *, tail: bool) -> list[str]:
    """Whole lines from one end while they fit; a too-long boundary line is cut to fit."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = count_tokens(line + "\n")
        if used + cost <= budget:
            kept.append(line)
            used += cost
            continue
        room = budget - used - 1
        if room > 0:
            kept.append(_fit_suffix(line, room) if tail else _fit_prefix(line, room))
        break
    return kept[::-1] if tail else kept


def _truncate(lines: list[str], total_tokens: int, max_tokens: int) -> str:
    """Keep head (1/3) and tail (2/3, where tracebacks live) around a middle marker."""
    worst = _TRUNC_MARK.format(lines=len(lines), tokens=total_tokens)
    room = max(0, max_tokens - count_tokens(worst) - 2)
    for _ in range(8):  # shrink until the joined text (BPE is not additive) fits
        head = _take(lines, room // 3, tail=False)
        tail = _take(reversed(lines), room - room // 3, tail=True)
        dropped = max(0, len(lines) - len(head) - len(tail))
        kept_tokens = count_tokens("\n".join(head)) + count_tokens("\n".join(tail))
        marker = _TRUNC_MARK.format(lines=dropped, tokens=max(0, total_tokens - kept_tokens))
        text = "\n".join([*head, marker, *tail])
        excess = count_tokens(text) - max_tokens
        if excess <= 0 or room == 0:
            return text if excess <= 0 else marker
        room = max(0, room - excess - 1)
    return marker


def _clean(text: str, max_tokens: int) -> str:
    """Collapse repeats, then cut the middle out if the log is still over budget."""
    lines = _collapse(text.splitlines())
    cleaned = "\n".join(lines)
    total = count_tokens(cleaned)
    if total <= max_tokens:
        return cleaned
    return _truncate(lines, total, max_tokens)


def parse_log(text: str, *, max_tokens: int = 4000) -> ParsedLog:
    """Parse frames, exceptions and file references from the full ``text``; keep a budgeted
    excerpt. If ``max_tokens`` is smaller than the truncation marker, only the marker is kept.
    """
    scan = _scan(text.splitlines())
    return ParsedLog(
        frames=tuple(scan.frames),
        exception_types=tuple(scan.types),
        messages=tuple(scan.messages),
        file_refs=scan.file_refs(),
        text=_clean(text, max_tokens),
    )


# --- identifiers ---------------------------------------------------------------------------

_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing done down during each either
    else even ever every few for from further get gets got had has have having he her here hers
    him his how however if in into is it its itself just like may me might more most must my
    never no nor not now of off on once only or other our ours out over own same says see seems
    she should since so some still such than that the their theirs them then there these they
    this those though through thus to too under until up upon us use used using very via was we
    were what when where whether which while who whom why will with within without would yet
    you your yours
    def class return import from none true false null nil self cls this that new let var const
    function func fn void public private protected static final async await yield raise throw
    throws try except catch finally pass lambda elif while for break continue print println
    todo fixme note error errors warning warn info debug trace issue bug fix fixed
"""
_STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())
_NON_CODE_SUFFIXES = SOURCE_EXTENSIONS | {
    "txt", "md", "rst", "log", "json", "yaml", "yml", "toml", "cfg", "ini", "html", "htm", "css",
    "xml", "csv", "lock", "com", "org", "net", "io", "dev", "png", "jpg", "gif", "svg", "pdf",
    "zip", "gz", "tar", "whl", "exe", "dll", "so", "jar",
}  # fmt: skip
_BACKTICK = re.compile(r"(?<!`)`++([^`\n]{1,200}+)`")
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"(?<![\w$.])[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*(?P<call>\()?")
_CAMEL = re.compile(r"[a-z0-9][A-Z]|[A-Z]{2}[a-z]")
_RECEIVER = re.compile(r"^(?:self|this|cls)\.")


def _code_like(token: str, *, call: bool) -> bool:
    """Does a plain-text token look like code rather than English?"""
    if "." in token:
        return True
    if "_" in token:
        return True
    return bool(_CAMEL.search(token)) or call


def _accept(token: str) -> str | None:
    """Normalise a candidate identifier, or reject it (stop word, too short, file name...)."""
    token = _RECEIVER.sub("", token).strip("$")
    if len(token) < 3 or token.lower() in _STOP_WORDS:
        return None
    if "." in token:
        parts = token.split(".")
        if parts[-1].lower() in _NON_CODE_SUFFIXES or max(map(len, parts)) <= 2:
            return None
    return token


def _blank_paths(text: str) -> str:
    """Blank out URLs, paths and e-mail addresses (same length, so positions still hold)."""
    return _WORD.sub(lambda w: " " * len(w[0]) if any(c in w[0] for c in "/\\@") else w[0], text)


def _candidates(text: str) -> Iterator[tuple[int, str]]:
    """(position, token) for backticked code and code-looking words in prose."""
    masked = list(text)
    for m in _BACKTICK.finditer(text):
        content = m.group(1)
        for t in _TOKEN.finditer(_blank_paths(content)):
            yield m.start(1) + t.start(), t.group().rstrip("(")
        masked[m.start() : m.end()] = " " * (m.end() - m.start())
    prose = _blank_paths("".join(masked))
    for t in _TOKEN.finditer(prose):
        token = t.group().rstrip("(")
        call = bool(t["call"]) and not prose.startswith("(s)", t.end() - 1)
        if _code_like(token, call=call):
            yield t.start(), token


def identifiers(text: str, *, limit: int = 200) -> list[str]:
    """Candidate code identifiers in free text, in order of first appearance.

    Picks snake_case, camelCase/PascalCase, dotted.names, ``name(`` calls and anything in
    backticks; drops stop words, tokens under three characters, file names and URLs.
    """
    found: dict[str, int] = {}
    for pos, raw in _candidates(text):
        token = _accept(raw)
        if token is not None and (token not in found or pos < found[token]):
            found[token] = pos
    ordered = sorted(found, key=found.__getitem__)
    return ordered[:limit]
