"""Search/replace edits, the format the LLM answers in, applied all-or-nothing.

An edit names a file inside the workspace, a search text that occurs exactly once, and its
replacement; an empty search creates a new file. Exact matches only, with one tolerance:
when the exact text is absent but a match ignoring each line's leading and trailing
whitespace occurs exactly once, that is taken (models often get indentation slightly wrong).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from fixstream.errors import EditRejectedError
from fixstream.sandbox.workspace import Workspace
from fixstream.schemas import Edit


class EditProposal(BaseModel):
    """Search/replace edits that fix the bug."""

    edits: list[Edit] = Field(
        min_length=1,
        description="Each edit: 'path' relative to the repository root, 'search' copied exactly "
        "from the current file (it must occur exactly once; empty to create a new file), and "
        "'replace', the text that takes its place.",
    )
    rationale: str = Field(default="", description="One sentence: why these edits fix the bug.")


def _read_text(path: Path, rel: str) -> str:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise EditRejectedError(f"{rel}: binary file")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise EditRejectedError(f"{rel}: not UTF-8 text") from None


def _loose_replace(text: str, search: str, replace: str, rel: str) -> str | None:
    """Replace the one run of lines equal to ``search`` ignoring surrounding whitespace."""
    lines = text.splitlines(keepends=True)
    wanted = [line.strip() for line in search.splitlines() if line.strip()]
    if not wanted:
        return None
    hits = [
        i for i in range(len(lines) - len(wanted) + 1)
        if [line.strip() for line in lines[i : i + len(wanted)]] == wanted
    ]  # fmt: skip
    if len(hits) > 1:
        raise EditRejectedError(f"{rel}: search text is ambiguous ({len(hits)} places)")
    if not hits:
        return None
    start = hits[0]
    new = replace if replace.endswith("\n") or not replace else replace + "\n"
    return "".join([*lines[:start], new, *lines[start + len(wanted) :]])


def _apply(text: str, edit: Edit) -> str:
    count = text.count(edit.search)
    if count == 1:
        return text.replace(edit.search, edit.replace, 1)
    if count > 1:
        raise EditRejectedError(f"{edit.path}: search text is ambiguous ({count} places)")
    loose = _loose_replace(text, edit.search, edit.replace, edit.path)
    if loose is None:
        raise EditRejectedError(f"{edit.path}: search text not found")
    return loose


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".edit-")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode)
    os.replace(tmp, path)


def apply_edits(ws: Workspace, edits: list[Edit]) -> list[str]:
    """Validate every edit, then write them all; returns the changed paths (sorted)."""
    planned: dict[Path, tuple[str, str]] = {}
    for edit in edits:
        path = ws.resolve(edit.path)
        rel = path.relative_to(ws.path.resolve()).as_posix()
        if edit.search == "":
            if path.exists() or path in planned:
                raise EditRejectedError(f"{edit.path}: already exists (empty search creates)")
            planned[path] = (rel, edit.replace)
            continue
        if path in planned:
            current = planned[path][1]
        elif path.is_file():
            current = _read_text(path, edit.path)
        else:
            raise EditRejectedError(f"{edit.path}: no such file")
        planned[path] = (rel, _apply(current, edit))
    for path, (_rel, text) in planned.items():
        _write(path, text)
    return sorted(rel for rel, _ in planned.values())


def unified_diff(before: Path, after: Path, paths: list[str]) -> str:
    """A ``git diff``-style patch (``a/``, ``b/`` prefixes) of ``paths`` between two trees."""
    chunks = []
    for rel in paths:
        old_path, new_path = before / rel, after / rel
        old = old_path.read_text(errors="replace").splitlines(True) if old_path.is_file() else []
        new = new_path.read_text(errors="replace").splitlines(True) if new_path.is_file() else []
        source = f"a/{rel}" if old_path.is_file() else "/dev/null"
        chunks.extend(difflib.unified_diff(old, new, source, f"b/{rel}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)
