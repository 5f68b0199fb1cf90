"""Candidate files a stack trace or identifiers do not name directly.

A customer writes "coupon", not ``Coupon.is_active``: words of the report are matched against
file names and contents when nothing else points anywhere. And a bug often sits one import
away from the frame that raised (a wrong constant in a module the failing code uses), so the
repository-local modules that the top candidates import are candidates too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

from fixstream.analysis.chunks import parse_python
from fixstream.analysis.locate import LocatedFile

_WORD = re.compile(r"[A-Za-z][A-Za-z_]{3,}")
_STOP_WORDS = """about above after again against also although because been before being
below between both could does doing down during each from further have having here into
itself just more most must only other over same should some such than that their them then
there these they this those through under until very were what when where which while will
with would your yours please thanks said says"""
_STOP = frozenset(_STOP_WORDS.split())
MAX_FILES_SCANNED = 2000


def is_test_path(path: str) -> bool:
    parts = Path(path).parts
    name = parts[-1] if parts else ""
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - _STOP


def _stems(word: str) -> set[str]:
    return {word, word.rstrip("s"), word[:-2] if word.endswith("es") else word}


def keyword_files(repo: Path, text: str, limit: int) -> list[LocatedFile]:
    """Source files ranked by report words in their path (strong) and content (weak)."""
    words = _words(text)
    scored: list[tuple[float, str]] = []
    for path in sorted(repo.rglob("*.py"))[:MAX_FILES_SCANNED]:
        rel = path.relative_to(repo).as_posix()
        if is_test_path(rel) or any(part.startswith(".") for part in Path(rel).parts):
            continue
        stem_words = set(re.split(r"[/_.]", rel.lower()))
        in_path = sum(1 for w in words if _stems(w) & stem_words)
        content = _words(path.read_text(errors="replace"))
        in_content = len(words & content)
        score = 3.0 * in_path + 0.2 * in_content
        if score > 0:
            scored.append((score, rel))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [LocatedFile(rel, "keyword", round(score, 2), ()) for score, rel in scored[:limit]]


def _module_file(repo: Path, module: str) -> str | None:
    base = repo / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(repo).as_posix()
    return None


def imported_files(repo: Path, paths: Iterable[str]) -> list[str]:
    """Repository-local modules imported by ``paths`` (Python), in first-seen order."""
    found: dict[str, None] = {}
    for rel in paths:
        if not rel.endswith(".py"):
            continue
        tree = parse_python((repo / rel).read_text(errors="replace"))
        if tree is None:
            continue
        package = Path(rel).parent.as_posix().replace("/", ".")
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)]
                    base = ".".join([*parent, base] if base else parent)
                modules = [base, *(f"{base}.{a.name}" for a in node.names)]
            for module in modules:
                target = _module_file(repo, module) if module else None
                if target and target != rel:
                    found.setdefault(target)
    return list(found)


def refine(
    repo: Path, located: list[LocatedFile], text: str, *, limit: int, expand_from: int = 3
) -> list[LocatedFile]:
    """Tests out (unless a trace names them), keywords when nothing else, imports added."""
    kept = [f for f in located if f.reason == "stack-trace" or not is_test_path(f.path)]
    if not kept:
        kept = keyword_files(repo, text, limit)
    seen = {f.path for f in kept}
    for rel in imported_files(repo, [f.path for f in kept[:expand_from]]):
        if rel not in seen and not is_test_path(rel):
            kept.append(LocatedFile(rel, "import", 0.1, ()))
            seen.add(rel)
    return kept[:limit]
