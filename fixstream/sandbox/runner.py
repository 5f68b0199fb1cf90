"""Run a repository's tests on untrusted code, under limits.

What holds here (Linux; the worker runs as root on these machines):
- the run is an asyncio subprocess in its own session and process group; at the deadline
  the whole group is SIGKILLed (a child that calls setsid itself escapes the group: only a
  cgroup would catch it, which this does not set up);
- as root, the child drops to the unprivileged ``nobody`` user before exec, so RLIMIT_NPROC
  is enforced (the kernel never enforces it for root) and it cannot write outside its
  workspace (chowned to it) or read root's files;
- limits via setrlimit: address space (memory), CPU seconds, processes, file size, no core;
- no network: ``unshare -Urn`` (new user and network namespace: only a downed loopback) when
  the kernel allows it, probed once; ``network_isolation_available()`` says which;
- an environment built from nothing: PATH, HOME and TMPDIR inside the workspace, LANG, and
  nothing of the worker's (no API keys, no broker credentials);
- output is read incrementally and kept as head + tail, so the traceback at the end survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from fixstream import telemetry
from fixstream.cache import Cache, key_of
from fixstream.sandbox.workspace import PRIVATE, Workspace
from fixstream.schemas import TestRun

log = logging.getLogger(__name__)
SANDBOX_UID = 65534  # nobody
MB = 1024 * 1024


@functools.lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """Whether ``unshare -Urn`` works here (as the sandbox user when we are root)."""
    runs_unprivileged()  # decided first: the probe below must run as the test runs will
    try:
        run = subprocess.run(
            ["unshare", "-Urn", "true"], preexec_fn=_drop_privileges, capture_output=True,
            timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


@functools.lru_cache(maxsize=1)
def runs_unprivileged() -> bool:
    """Whether test runs drop to ``nobody``: only as root, and only when ``nobody`` can run
    this Python (a pyenv under a 0700 /root cannot be: .ci/run grants /root o+x)."""
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "pass"], preexec_fn=_become_nobody, capture_output=True,
            timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    if probe.returncode != 0:
        log.warning(
            "test runs stay root: user nobody cannot run %s (make its directories o+x); "
            "RLIMIT_NPROC is not enforced and tests can read root's files",
            sys.executable,
        )
    return probe.returncode == 0


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(SANDBOX_UID)
    os.setuid(SANDBOX_UID)


def _drop_privileges() -> None:
    if os.geteuid() == 0 and runs_unprivileged():
        _become_nobody()


def _limits(memory_mb: int, cpu_s: int, processes: int, file_mb: int) -> None:
    """Runs in the child between fork and exec."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MB, memory_mb * MB))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * MB, file_mb * MB))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _drop_privileges()
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def _chown_tree(root: Path) -> None:
    if not runs_unprivileged():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, SANDBOX_UID, SANDBOX_UID)
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_UID)


def sandbox_env(ws: Workspace) -> dict[str, str]:
    """Nothing of the worker's. pytest loads no plugins by entry point: those installed
    beside the worker are not the repository's, and loading them took 0.75 s of the 0.95 s
    of a small run (hypothesis alone 0.5 s); a repository that needs one names it in its
    test command (``-p pytest_asyncio``)."""
    private = ws.path / PRIVATE
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(private / "home"),
        "TMPDIR": str(private / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }


class _Output:
    """Head and tail of a stream, at most ``limit`` bytes kept."""

    def __init__(self, limit: int) -> None:
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.dropped = 0
        self.half = limit // 2

    def add(self, data: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size > self.half:
            excess = self.tail_size - self.half
            first = self.tail[0]
            if len(first) <= excess:
                self.tail.popleft()
                cut = len(first)
            else:
                self.tail[0] = first[excess:]
                cut = excess
            self.tail_size -= cut
            self.dropped += cut

    def text(self) -> str:
        middle = f"\n[... {self.dropped} bytes of output cut ...]\n" if self.dropped else ""
        return (bytes(self.head) + middle.encode() + b"".join(self.tail)).decode(errors="replace")


def _test_ids(junit: Path, ws: Path) -> tuple[list[str], list[str]]:
    """(passed, failed) pytest node ids from a JUnit XML report."""
    if not junit.is_file():
        return [], []
    try:
        root = ET.parse(junit).getroot()
    except ET.ParseError:
        return [], []
    passed, failed = [], []
    for case in root.iter("testcase"):
        parts = case.get("classname", "").split(".")
        split = next(
            (i for i in range(len(parts), 0, -1)
             if (ws / Path(*parts[:i])).with_suffix(".py").is_file()),
            len(parts),
        )  # fmt: skip
        node = "::".join(["/".join(parts[:split]) + ".py", *parts[split:], case.get("name", "")])
        outcomes = {child.tag for child in case}
        if outcomes & {"failure", "error"}:
            failed.append(node)
        elif "skipped" not in outcomes:
            passed.append(node)
    return passed, failed


async def run_tests(
    ws: Workspace,
    command: list[str],
    *,
    timeout_s: float = 60.0,
    memory_mb: int = 1024,
    cpu_s: int = 60,
    max_processes: int = 256,
    max_file_mb: int = 64,
    max_output_bytes: int = 64_000,
    network: bool = False,
    test_ids: list[str] | None = None,
    cache: Cache | None = None,
    tags: Sequence[str] = (),
) -> TestRun:
    """One run, or the earlier run of the same command on the same workspace content (a
    timed-out run is never reused: it says more about the machine than the code)."""
    key = ""
    if cache is not None:
        limits = (timeout_s, memory_mb, cpu_s, max_processes, max_file_mb, network)
        key = key_of("tests", await ws.snapshot_digest(), command, test_ids, limits)
        cached = await cache.get("tests", key)
        if cached is not None:
            run = TestRun.model_validate_json(cached).model_copy(update={"cached": True})
            await cache.saved("tests", 0, run.duration_ms / 1000)
            return run
    run = await _run(
        ws, command, timeout_s=timeout_s, memory_mb=memory_mb, cpu_s=cpu_s,
        max_processes=max_processes, max_file_mb=max_file_mb,
        max_output_bytes=max_output_bytes, network=network, test_ids=test_ids,
    )  # fmt: skip
    if cache is not None and not run.timed_out:
        await cache.put(key, run.model_dump_json().encode(), list(tags))
    return run


async def _run(
    ws: Workspace,
    command: list[str],
    *,
    timeout_s: float,
    memory_mb: int,
    cpu_s: int,
    max_processes: int,
    max_file_mb: int,
    max_output_bytes: int,
    network: bool,
    test_ids: list[str] | None,
) -> TestRun:
    private = ws.path / PRIVATE
    junit = private / "junit.xml"
    argv = list(command)
    if any("pytest" in part for part in argv):
        argv += ["-p", "no:cacheprovider", f"--junitxml={junit}", *(test_ids or [])]
    if not network and network_isolation_available():
        argv = ["unshare", "-Urn", *argv]
    for sub in ("home", "tmp"):
        (private / sub).mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    await asyncio.to_thread(_chown_tree, ws.path)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ws.path,
        env=sandbox_env(ws),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=functools.partial(_limits, memory_mb, cpu_s, max_processes, max_file_mb),
    )
    output = _Output(max_output_bytes)

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.add(chunk)

    reader = asyncio.create_task(pump())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group: children too, done or not
        await proc.wait()
    try:
        await asyncio.wait_for(reader, 5)
    except TimeoutError:
        reader.cancel()
    passed, failed = await asyncio.to_thread(_test_ids, junit, ws.path)
    seconds = time.perf_counter() - started
    telemetry.active().test_run(
        " ".join(test_ids or []) or "suite", seconds, proc.returncode == 0, timed_out
    )
    return TestRun(
        command=list(command),
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_ms=seconds * 1000,
        passed=passed,
        failed=failed,
        output=output.text().replace(str(ws.path), "<workspace>"),
    )
