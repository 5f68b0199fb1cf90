"""Find the repository a report names: a local directory, or a git URL checked out at a commit."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from fixstream.errors import RepositoryNotFoundError
from fixstream.sandbox.workspace import content_digest
from fixstream.schemas import CallScope, RepoRef

_locks: dict[str, asyncio.Lock] = {}
GIT_TIMEOUT = 120.0


async def _git(*args: str, cwd: Path | None = None) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "GIT_TERMINAL_PROMPT": "0", "HOME": "/nonexistent"}
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RepositoryNotFoundError(f"git {args[0]} timed out after {GIT_TIMEOUT}s") from None
    if proc.returncode != 0:
        detail = out.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RepositoryNotFoundError(f"git {args[0]} failed: {detail[0]}")


def _local_dir(path_text: str) -> Path:
    path = Path(path_text)
    try:
        found = path.is_dir()
    except OSError as exc:  # e.g. a component over 255 bytes: not a retryable failure
        raise RepositoryNotFoundError(
            f"repository path cannot be used: {path_text[:200]}: {exc.strerror}"
        ) from None
    if not found:
        raise RepositoryNotFoundError(f"repository path does not exist: {path_text}")
    return path.resolve()


async def resolve_repo(ref: RepoRef, checkout_dir: Path) -> Path:
    """A directory holding the repository's files at the commit under test."""
    if ref.path:
        return await asyncio.to_thread(_local_dir, ref.path)
    assert ref.url is not None
    key = hashlib.sha256(f"{ref.url}@{ref.commit}".encode()).hexdigest()[:16]
    target = checkout_dir / key
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        if (target / ".fixstream-ready").exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{key}.tmp-{os.getpid()}")
        await _git("clone", "--quiet", "--no-tags", "--", ref.url, str(tmp))
        if ref.commit:
            await _git("checkout", "--quiet", "--detach", ref.commit, cwd=tmp)
        (tmp / ".fixstream-ready").touch()
        os.replace(tmp, target)
    return target


async def scope_of(ref: RepoRef, repo_dir: Path, priority: str = "interactive") -> CallScope:
    """The repository's name and version for cache keys: the commit the report names, or a
    hash of the files (a local directory, or a URL's default branch, has no fixed commit)."""
    version = ref.commit or "content:" + await asyncio.to_thread(content_digest, repo_dir)
    return CallScope(repo=ref.url or ref.path or "", version=version, priority=priority)
