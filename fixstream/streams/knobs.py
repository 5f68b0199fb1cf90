"""The knobs of the later stages, built once from Settings in the app factory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fixstream.cache import Cache
from fixstream.sandbox.environments import Environments
from fixstream.sandbox.runner import Environment, SandboxMode, run_tests
from fixstream.sandbox.workspace import Workspace
from fixstream.schemas import RepoRef, TestRun


@dataclass(frozen=True, slots=True)
class StageKnobs:
    workspaces: Path
    envs: Environments
    test_timeout_s: float = 120.0
    test_memory_mb: int = 2048
    test_disk_mb: int = 512
    sandbox: SandboxMode = "bwrap"
    reproduce_attempts: int = 3
    fix_attempts: int = 3
    root_cause_chunks: int = 16
    fix_suspects: int = 3
    suspect_threshold: float = 0.5
    chunk_max_tokens: int = 600
    cache: Cache | None = None
    """Test runs and searches already done on the same content (None: always redo)."""

    async def environment(self, repo_dir: Path, repo: RepoRef) -> Environment:
        """The repository's environment, built when this version has none yet."""
        env, _ = await self.envs.ensure(repo_dir, repo.environment, repo.test_command)
        return env

    async def run_tests(
        self, ws: Workspace, command: list[str], env: Environment, tags: Sequence[str]
    ) -> TestRun:
        """A test run under these knobs' limits, sandbox and cache (reproduce, validate)."""
        return await run_tests(
            ws, command, env=env, timeout_s=self.test_timeout_s, memory_mb=self.test_memory_mb,
            disk_mb=self.test_disk_mb, mode=self.sandbox, cache=self.cache, tags=tags,
        )  # fmt: skip
