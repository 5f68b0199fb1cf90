"""Map the evidence of a bug report to the repository files worth showing an LLM.

Three tiers, in this order: files named by stack-trace frames (the innermost frame first,
since that is where it raised), files referenced as ``path[:line]`` anywhere, then files
that define or mention identifiers from the report. Scores are comparable across tiers:
stack-trace in (200, 300], file-reference in (100, 200), identifier in (0, 100).

Trace paths usually come from another machine (CI, production), so they are matched to repo
files by the longest common path suffix rather than by prefix.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fixstream.analysis.logs import (
    SOURCE_EXTENSIONS,
    Frame,
    ParsedLog,
    file_references,
    identifiers,
)

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "LocatedFile", "locate_files"]

MAX_FILES = 20_000  #: stop walking after this many files: the stage must stay fast
MAX_FILE_BYTES = 1 << 20  #: larger files are generated or data, not code to fix
MAX_SCAN_BYTES = 32 << 20  #: total bytes read while searching identifiers
MAX_AMBIGUOUS = 3  #: a reference matching more files than this equally well is dropped
MAX_TERMS = 40  #: identifiers searched for; the report's first ones matter most

_SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".tox", ".nox",
        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs", "site-packages",
        "dist-packages", ".idea", ".vscode", ".gradle", "bower_components",
    }
)  # fmt: skip
# Frames and references outside the project: interpreters, installed packages, runtimes.
_FOREIGN = re.compile(
    r"^<|^node:|(?:^|/)(?:site-packages|dist-packages|node_modules|\.cargo/registry|rustc)/"
    r"|/lib/(?:python|pypy)\d+(?:\.\d+)?/|(?:^|/)(?:usr|opt)/lib/|^[A-Za-z]:/Python\d*/Lib/"
    r"|/\.pyenv/versions/|/hostedtoolcache/|/go/pkg/mod/|/usr/local/go/|importlib/_bootstrap"
)
_STOP_TERMS = frozenset({"self", "this", "cls", "com", "org", "net", "java", "main", "init"})


@dataclass(frozen=True, slots=True)
class LocatedFile:
    """A repo file worth reading, why, and the lines the evidence points at."""

    path: str  # posix, relative to the repo
    reason: str  # "stack-trace" | "file-reference" | "identifier"
    score: float
    lines: tuple[int, ...]


@dataclass(slots=True)
class _Hit:
    reason: str
    score: float
    lines: set[int] = field(default_factory=set)


# --- repository index ----------------------------------------------------------------------


@dataclass(slots=True)
class _Index:
    """Source files of the repo, keyed by base name for suffix matching."""

    root: Path
    files: list[tuple[str, int]] = field(default_factory=list)  # (posix rel path, size)
    paths: set[str] = field(default_factory=set)
    by_name: dict[str, list[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(list))

    @property
    def roots(self) -> tuple[Path, ...]:
        """The checkout as given and with symlinks resolved (traces print either)."""
        return (self.root, self.root.resolve())

    def add(self, rel: str, size: int) -> None:
        self.files.append((rel, size))
        self.paths.add(rel)
        parts = tuple(rel.split("/"))
        self.by_name[parts[-1]].append(parts)


def _is_source(name: str) -> bool:
    return name.rpartition(".")[2].lower() in SOURCE_EXTENSIONS and "." in name


def _walk(root: Path, limit: int) -> Iterator[tuple[str, int]]:
    """(posix rel path, size) of source files; pruned, deterministic, at most ``limit``
    directory entries visited."""
    seen = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        if any(e.name == "pyvenv.cfg" for e in entries):
            continue  # a virtualenv under some other name
        for entry in entries:
            seen += 1
            if seen > limit:
                return
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIP_DIRS and not entry.name.endswith(".egg-info"):
                        stack.append(Path(entry.path))
                    continue
                if entry.is_file(follow_symlinks=False) and _is_source(entry.name):
                    size = entry.stat(follow_symlinks=False).st_size
                    if size <= MAX_FILE_BYTES:
                        yield Path(entry.path).relative_to(root).as_posix(), size
            except OSError:
                continue


def _index(repo: Path) -> _Index:
    index = _Index(repo)
    for rel, size in sorted(_walk(repo, MAX_FILES)):
        index.add(rel, size)
    return index


# --- path resolution -----------------------------------------------------------------------


def _parts(raw: str) -> tuple[str, ...]:
    """Normalised path components; anything before a ``..`` is meaningless elsewhere."""
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        parts = parts[len(parts) - parts[::-1].index("..") :]
    return tuple(parts)


def _common_suffix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y:
            break
        n += 1
    return n


def _inside(index: _Index, norm: str) -> str | None:
    """The indexed file itself when a printed absolute path lies in this very checkout."""
    if not norm.startswith("/"):
        return None
    for root in index.roots:
        try:
            rel = Path(norm).relative_to(root).as_posix()
        except ValueError:
            continue
        return rel if rel in index.paths else None
    return None


def _resolve(index: _Index, raw: str, *, strict: bool = False) -> list[str]:
    """Repo files a printed path may denote, by longest common path suffix.

    A match must cover the whole repo path (the repo sits somewhere under the printed
    prefix), the whole printed path (it was relative to a repo subdirectory), or at least
    two components (a differently laid out deployment). ``strict`` demands the whole printed
    path: a Java package or a module name must match completely.
    """
    norm = raw.replace("\\", "/")
    local = _inside(index, norm)
    if local is not None:
        return [local]
    if _FOREIGN.search(norm):
        return []
    parts = _parts(norm)
    if not parts:
        return []
    scored: list[tuple[int, tuple[str, ...]]] = []
    for cand in index.by_name.get(parts[-1], ()):
        k = _common_suffix(parts, cand)
        if k == len(parts) or (not strict and (k == len(cand) or k >= 2)):
            scored.append((k, cand))
    if not scored:
        return []
    best = max(k for k, _ in scored)
    tied = sorted((c for k, c in scored if k == best), key=lambda c: (len(c), c))
    return ["/".join(c) for c in tied] if len(tied) <= MAX_AMBIGUOUS else []


# --- tiers ---------------------------------------------------------------------------------


def _frame_weights(parsed: ParsedLog) -> list[tuple[float, Frame]]:
    """(weight in (0, 1], frame) per frame; the innermost frame of each kind weighs 1.

    Python prints the innermost frame last; Java, JavaScript, Go and Rust print it first.
    """
    py = [f for f in parsed.frames if f.language == "python"]
    other = [f for f in parsed.frames if f.language != "python"]
    out = [((i + 1) / len(py), f) for i, f in enumerate(py)]
    out += [((len(other) - i) / len(other), f) for i, f in enumerate(other)]
    return out


def _stack_hits(index: _Index, parsed: ParsedLog) -> dict[str, _Hit]:
    hits: dict[str, _Hit] = {}
    for weight, frame in _frame_weights(parsed):
        for rel in _resolve(index, frame.path, strict=frame.language == "java"):
            hit = hits.setdefault(rel, _Hit("stack-trace", 0.0))
            hit.score = max(hit.score, 200.0 + 100.0 * weight)
            if frame.line is not None:
                hit.lines.add(frame.line)
    return hits


def _module_refs(names: Iterable[str]) -> Iterator[tuple[str, int | None, bool]]:
    """``shop.pricing.unit_price`` / ``com.acme.Cart`` → candidate module file paths."""
    for name in names:
        segs = name.split(".")
        for cut in (len(segs), len(segs) - 1):
            if cut >= 2:
                for ext in ("py", "java", "kt"):
                    yield "/".join(segs[:cut]) + "." + ext, None, True


def _ref_hits(
    index: _Index, refs: list[tuple[str, int | None, bool]], hits: dict[str, _Hit]
) -> dict[str, _Hit]:
    """File references not already found in a trace; earlier references score higher."""
    found: dict[str, _Hit] = {}
    for i, (raw, line, strict) in enumerate(refs):
        for rel in _resolve(index, raw, strict=strict):
            hit = hits.get(rel) or found.setdefault(
                rel, _Hit("file-reference", 100.0 + 99.0 * (len(refs) - i) / len(refs))
            )
            if line is not None:
                hit.lines.add(line)
    return found


def _terms(names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Identifier → the words to grep for: a dotted name's last two segments."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for name in names:
        segs = tuple(
            s for s in name.split(".")[-2:] if len(s) >= 3 and s.lower() not in _STOP_TERMS
        )
        if segs:
            out.append((name, segs))
    return out[:MAX_TERMS]


def _definition(term: str) -> re.Pattern[str]:
    t = re.escape(term)
    return re.compile(  # one line at most: "[ \t]" keeps the search linear in the file
        r"(?:\b(?:def|class|function|func|fn|fun|interface|struct|enum|trait|type|module|"
        r"object|record|const|let|var|val)[ \t]++(?:\([^)\n]*+\)[ \t]*+)?\*?" + t + r"(?![\w$])"
        r"|\b(?:public|private|protected|static|final|abstract|synchronized|override|void)"
        r"[ \t]++(?:[\w<>\[\],.?]++[ \t]++)*+" + t + r"[ \t]*+\()"
    )


def _read_text(root: Path, rel: str) -> str | None:
    """File text, or None for binary or unreadable files."""
    try:
        data = (root / rel).read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _identifier_hits(index: _Index, names: list[str], taken: set[str]) -> dict[str, _Hit]:
    """Files defining (2 points) or mentioning (1 point) each distinct identifier."""
    terms = _terms(names)
    if not terms:
        return {}
    patterns = {
        t: (re.compile(r"(?<![\w$])" + re.escape(t) + r"(?![\w$])"), _definition(t))
        for _, segs in terms
        for t in segs
    }
    found: dict[str, _Hit] = {}
    budget = MAX_SCAN_BYTES
    near = {rel.rpartition("/")[0] for rel in taken}  # scan the neighbourhood of hits first
    for rel, size in sorted(index.files, key=lambda f: (f[0].rpartition("/")[0] not in near, f)):
        if rel in taken:
            continue
        budget -= size
        if budget < 0:
            break
        text = _read_text(index.root, rel)
        if text is None:
            continue
        raw, lines = _match_terms(text, terms, patterns)
        if raw:
            found[rel] = _Hit("identifier", 99.0 * raw / (2 * len(terms)), lines)
    return found


def _match_terms(
    text: str,
    terms: list[tuple[str, tuple[str, ...]]],
    patterns: dict[str, tuple[re.Pattern[str], re.Pattern[str]]],
) -> tuple[int, set[int]]:
    """Points for one file and the lines where identifiers are defined."""
    raw = 0
    lines: set[int] = set()
    for _, segs in terms:
        value = 0
        for term in segs:
            if term not in text:
                continue
            mention, define = patterns[term]
            if m := define.search(text):
                value = 2
                lines.add(text.count("\n", 0, m.start()) + 1)
            elif value == 0 and mention.search(text):
                value = 1
        raw += value
    return raw, lines


def locate_files(repo: Path, parsed: ParsedLog, text: str, *, limit: int = 20) -> list[LocatedFile]:
    """Rank repo source files by how directly the report points at them (best first)."""
    if limit <= 0 or not repo.is_dir():
        return []
    index = _index(repo)
    hits = _stack_hits(index, parsed)
    names = identifiers("\n".join([text, *parsed.messages]))
    refs = [(p, n, False) for p, n in [*parsed.file_refs, *file_references(text)]]
    refs += _module_refs(n for n in names if "." in n)
    ref_hits = _ref_hits(index, refs, hits)
    id_hits = _identifier_hits(index, names, set(hits) | set(ref_hits))
    ranked: list[LocatedFile] = []
    for tier in (hits, ref_hits, id_hits):
        for rel, hit in sorted(tier.items(), key=lambda kv: (-kv[1].score, kv[0])):
            ranked.append(
                LocatedFile(rel, hit.reason, round(hit.score, 3), tuple(sorted(hit.lines)))
            )
    return ranked[:limit]
