"""Workspaces: a fresh copy of the repository per bug and per candidate patch.

No ``.git`` (no history beyond the commit under test), no caches, and no symlink that points
outside the copy. Every path an LLM names is resolved through ``Workspace.resolve``, which
refuses anything that would leave it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from shutil import ignore_patterns

from fixstream.errors import EditRejectedError

IGNORED = (
    ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "venv",
    "node_modules", ".fixstream", "*.pyc",
)  # fmt: skip
MAX_PATH = 1024
MAX_NAME = 255
PRIVATE = ".fixstream"
"""A directory inside each workspace for the sandbox's own files (junit report, HOME, TMP)."""


@dataclass(frozen=True)
class Workspace:
    path: Path

    def resolve(self, rel: str) -> Path:
        """The absolute path of ``rel`` inside the workspace, or EditRejectedError."""
        if not rel or not rel.strip():
            raise EditRejectedError("an empty path")
        if len(rel) > MAX_PATH or any(ord(c) < 32 for c in rel):
            raise EditRejectedError(f"{rel[:80]!r}: not a plausible file path")
        pure = PurePosixPath(rel)
        if any(len(part.encode()) > MAX_NAME for part in pure.parts):
            raise EditRejectedError(f"{rel[:80]!r}: a path component over {MAX_NAME} bytes")
        if pure.is_absolute() or rel.startswith(("~", "\\")) or ":" in pure.parts[0]:
            raise EditRejectedError(f"{rel}: absolute paths are refused")
        if ".." in pure.parts:
            raise EditRejectedError(f"{rel}: '..' leaves the workspace")
        if pure.parts[0] == PRIVATE:
            raise EditRejectedError(f"{rel}: the sandbox's own directory")
        root = self.path.resolve()
        try:
            target = (root / pure).resolve()  # follows symlinks, also for missing leaves' parents
        except RuntimeError:  # a loop of links, which a test run may leave
            raise EditRejectedError(f"{rel}: a symlink loop") from None
        if target != root and root not in target.parents:
            raise EditRejectedError(f"{rel}: resolves outside the workspace (symlink?)")
        return root / pure

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.path, True)

    async def snapshot_digest(self) -> str:
        """sha256 over every file's path and bytes: the same content, the same digest."""
        return await asyncio.to_thread(content_digest, self.path)


def content_digest(root: Path) -> str:
    """sha256 over the path and bytes of every file a workspace copy would hold. A link that
    leaves ``root`` counts by its target's name, never followed: it runs as root, on what a
    test run may have left (a link to /proc/kmsg would block it)."""
    digest = hashlib.sha256()
    skip = ignore_patterns(*IGNORED, PRIVATE)
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        ignored = skip(dirpath, [*dirnames, *filenames])
        dirnames[:] = sorted(d for d in dirnames if d not in ignored)
        for name in sorted(f for f in filenames if f not in ignored):
            path = Path(dirpath) / name
            if path.is_symlink() and not _inside(os.path.realpath(path), real_root):
                digest.update(path.relative_to(root).as_posix().encode() + b"\0-> ")
                digest.update(os.fsencode(os.readlink(path)) + b"\0")
            elif path.is_file():
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip("/") + "/")


def _drop_escaping_links(root: Path) -> None:
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if path.is_symlink() and not _inside(os.path.realpath(path), real_root):
                path.unlink()


def _copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True, ignore=ignore_patterns(*IGNORED))
    _drop_escaping_links(target)
    (target / PRIVATE).mkdir()


def default_root() -> Path:
    """Workspaces live where the unprivileged sandbox user can reach them."""
    return Path(tempfile.gettempdir()) / "fixstream-workspaces"


def _make_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # traversable, not listable


async def make_workspace(repo_dir: Path, root: Path, name: str) -> Workspace:
    """A fresh copy of ``repo_dir`` under ``root`` (copied in a thread)."""
    # names come from bug ids: whatever they hold, the copy lands directly under ``root``
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "workspace"
    target = root / f"{safe[:100]}-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_make_root, root)
    await asyncio.to_thread(_copy, repo_dir, target)
    return Workspace(target)
