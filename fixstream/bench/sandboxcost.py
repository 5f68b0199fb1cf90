"""W7: environments and sandbox cost, in this process (no broker, no LLM).

1. **Environments, cold against warm.** Per bundled example: ``Environments.ensure`` on a
   fresh store (the build: a virtualenv made and its packages installed by uv in the build
   sandbox, from an empty uv cache), then ``ensure`` again many times (the lookup every
   reproduce and validate run makes). Packages come from the package index, or with
   ``wheelhouse`` from that directory alone (uv ``--no-index --find-links``).
2. **Sandbox overhead per test run.** The same command, in the same environment's Python and
   on the same workspace copy, run bare (``asyncio.create_subprocess_exec``) and through
   ``run_tests`` (bubblewrap, cgroup, limits), interleaved, each sandboxed run after a pause
   (``GAP_S``) as in a stage: a trivial ``python -c pass`` and one example's pytest suite.
3. **Where the overhead goes.** ``sandboxed``'s steps one by one, timestamped on one clock
   (the wall clock, which the sandbox shares): the cgroup made, bubblewrap's command line,
   the fork, the cgroup joined and the jail entered in the child (rlimits, staging, the uid
   dropped), bubblewrap until the command starts (with and without the workspace copy into
   ``/testbed``), the teardown until the exit is seen, the cgroup emptied and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from fixstream.bench import percentile
from fixstream.bench.system import example_bugs
from fixstream.config import EXAMPLES, Settings
from fixstream.errors import EnvironmentBuildError, SandboxUnavailableError
from fixstream.sandbox import bwrap, cgroups
from fixstream.sandbox.bwrap import ENV, Jail, Layout
from fixstream.sandbox.environments import Environments
from fixstream.sandbox.runner import Environment, Limits, isolation, run_tests, sandbox_env
from fixstream.sandbox.workspace import Workspace, default_root, make_workspace
from fixstream.schemas import BugReport

WARM_LOOKUP_TARGET_MS = 10.0
"""p99 of a warm ``ensure``: what every test run pays before it starts."""
OVERHEAD_TARGET_MS = 50.0
"""p50 of a sandboxed run minus the same run bare."""
WARM_UP = 1
"""Runs of each kind made first and not counted (page cache, lazy imports)."""
GAP_S = 0.1
"""Idle time before each sandboxed run, as between a stage's test runs. Joining a cgroup
waits for an RCU grace period unless one was waited for moments ago: runs back to back
would hide that cost, which every test run of a single bug pays."""
TRIVIAL = ["python", "-c", "pass"]
STAMP = ["/bin/date", "+%s.%N"]
"""What the breakdown runs in the sandbox: it prints the wall clock as it starts."""
PHASES = (
    ("cgroup_create", "start", "cgroup"),
    ("command_line", "cgroup", "argv"),
    ("fork", "argv", "preexec"),
    ("cgroup_join", "preexec", "joined"),
    ("jail", "joined", "jailed"),
    ("bwrap_to_command", "jailed", "command"),
    ("teardown", "command", "exited"),
    ("cgroup_close", "exited", "closed"),
)
"""(phase, from, to): timestamps of one traced run."""


def env_figures(cold_s: list[float], lookups_s: list[float]) -> dict[str, Any]:
    """Cold builds in seconds, warm lookups in milliseconds."""
    warm_p50 = percentile(lookups_s, 0.5) * 1000
    warm_p99 = percentile(lookups_s, 0.99) * 1000
    cold_p50 = percentile(cold_s, 0.5)
    return {
        "builds": len(cold_s),
        "cold_s_p50": cold_p50,
        "cold_s_max": max(cold_s, default=0.0),
        "lookups": len(lookups_s),
        "warm_ms_p50": warm_p50,
        "warm_ms_p99": warm_p99,
        "cold_over_warm": cold_p50 * 1000 / warm_p50 if warm_p50 else 0.0,
        "warm_target_ms": WARM_LOOKUP_TARGET_MS,
        "warm_within_target": bool(lookups_s) and warm_p99 <= WARM_LOOKUP_TARGET_MS,
    }


def overhead_figures(bare_s: list[float], sandboxed_s: list[float]) -> dict[str, Any]:
    """p50 and p99 of each, in milliseconds, and what the sandbox adds at the median."""
    bare = percentile(bare_s, 0.5) * 1000
    boxed = percentile(sandboxed_s, 0.5) * 1000
    return {
        "runs": len(sandboxed_s),
        "bare_ms_p50": bare,
        "bare_ms_p99": percentile(bare_s, 0.99) * 1000,
        "sandboxed_ms_p50": boxed,
        "sandboxed_ms_p99": percentile(sandboxed_s, 0.99) * 1000,
        "overhead_ms_p50": boxed - bare,
        "overhead_share": (boxed - bare) / bare if bare else 0.0,
        "target_ms": OVERHEAD_TARGET_MS,
        "within_target": bool(sandboxed_s) and boxed - bare <= OVERHEAD_TARGET_MS,
    }


def breakdown_figures(
    full: list[dict[str, float]], no_copy: list[dict[str, float]], bare_s: list[float]
) -> dict[str, Any]:
    """p50 of each phase in milliseconds, from timestamped runs with the workspace copy
    (``full``, what a test run does) and without it (``no_copy``); the copy is the
    difference in time from the jail to the command. ``bare_s``: the command run bare."""

    def p50(traces: list[dict[str, float]], a: str, b: str) -> float:
        return percentile([t[b] - t[a] for t in traces], 0.5) * 1000

    phases = {name: p50(full, a, b) for name, a, b in PHASES}
    setup = p50(no_copy, "jailed", "command") if no_copy else phases["bwrap_to_command"]
    del phases["bwrap_to_command"]
    phases["bwrap_setup"] = setup
    phases["workspace_copy"] = max(0.0, p50(full, "jailed", "command") - setup)
    order = [name for name, _, _ in PHASES if name in phases]
    order.insert(order.index("teardown"), "bwrap_setup")
    order.insert(order.index("teardown"), "workspace_copy")
    total = p50(full, "start", "closed")
    bare = percentile(bare_s, 0.5) * 1000
    return {
        "runs": len(full),
        "phases_ms_p50": {name: phases[name] for name in order},
        "largest": max(phases, key=lambda n: phases[n]) if full else "",
        "total_ms_p50": total,
        "bare_ms_p50": bare,
        "overhead_ms_p50": total - bare,
    }


async def w7(
    out: Path,
    *,
    wheelhouse: Path | None = None,
    lookups: int = 200,
    runs: int = 30,
    examples: int | None = None,
) -> dict[str, Any]:
    """W7's figures; an error (no sandbox, a failed build) is reported, not raised.
    ``examples``: how many of the bundled examples (None: all of them)."""
    iso = await asyncio.to_thread(isolation)  # probed once, not inside the first build
    result: dict[str, Any] = {
        "isolation": iso.level,
        "packages_from": f"{wheelhouse} (offline)" if wheelhouse else "the package index",
    }
    if not iso.works:
        return result | {"error": iso.reason}
    root = Path(tempfile.mkdtemp(prefix="fixstream-w7-envs-", dir=out))
    try:
        bugs, result["environments"] = await _environments(root, wheelhouse, lookups, examples)
        result |= await _sandbox(*bugs[0], runs)
    except (EnvironmentBuildError, SandboxUnavailableError) as exc:
        hint = "" if wheelhouse else " (no package index here? --wheelhouse DIR builds offline)"
        result["error"] = f"{type(exc).__name__}: {exc}{hint}"
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)
    return result


async def _environments(
    root: Path, wheelhouse: Path | None, lookups: int, examples: int | None
) -> tuple[list[tuple[BugReport, Environment]], dict[str, Any]]:
    """Per example, a cold build in a store of its own, then ``lookups`` warm ones."""
    find_links = (str(wheelhouse),) if wheelhouse else ()  # absolute: the CLI resolves it
    per_bug: list[dict[str, Any]] = []
    built: list[tuple[BugReport, Environment]] = []
    cold: list[float] = []
    warm: list[float] = []
    count = examples or len(list(EXAMPLES.glob("*/report.json")))
    for i, bug in enumerate(example_bugs(count, "w7")):
        repo, spec, command = Path(bug.repo.path or ""), bug.repo.environment, bug.repo.test_command
        store = Environments(root / f"store-{i}", find_links=find_links, offline=bool(wheelhouse))
        started = time.perf_counter()
        env, new = await store.ensure(repo, spec, command)
        cold.append(time.perf_counter() - started)
        assert new, "a fresh store has nothing to look up"
        mine: list[float] = []
        for _ in range(lookups):
            started = time.perf_counter()
            again, new = await store.ensure(repo, spec, command)
            mine.append(time.perf_counter() - started)
            assert not new and again.key == env.key
        warm += mine
        meta = orjson.loads((env.path.parent / "meta.json").read_bytes())
        per_bug.append({
            "bug": bug.bug_id.split("-", 2)[-1], "key": env.key, "cold_s": cold[-1],
            "build_s": meta.get("seconds", 0.0), "env_mb": meta.get("bytes", 0) / 1024 / 1024,
            "warm_ms_p50": percentile(mine, 0.5) * 1000,
        })  # fmt: skip
        built.append((bug, env))
    figures = env_figures(cold, warm)
    return built, figures | {"distinct_keys": len({b["key"] for b in per_bug}), "per_bug": per_bug}


async def _sandbox(bug: BugReport, env: Environment, runs: int) -> dict[str, Any]:
    """Bare against sandboxed on one example's workspace and environment, and the breakdown."""
    settings = Settings()
    limits = Limits(memory_mb=settings.test_memory_mb, disk_mb=settings.test_disk_mb)
    ws = await make_workspace(Path(bug.repo.path or ""), default_root(), "w7-sandbox")
    report_dir = Path(tempfile.mkdtemp(prefix="fixstream-w7-"))
    try:
        sandbox: dict[str, Any] = {}
        for name, command in (("trivial", TRIVIAL), ("pytest", bug.repo.test_command)):
            sandbox[name] = await _compare(ws, env, command, limits, runs, report_dir)
        breakdown = await _breakdown(ws, env, limits, runs)
    finally:
        await ws.remove()
        shutil.rmtree(report_dir, ignore_errors=True)
    example = bug.bug_id.split("-", 2)[-1]
    return {"sandbox_example": example, "sandbox": sandbox, "breakdown": breakdown}


def _bare_env(env: Environment) -> dict[str, str]:
    """The sandbox's variables, with the environment at its host path (its ``bin`` first
    on PATH: ``python`` is the environment's, as in the sandbox)."""
    variables = sandbox_env(env)
    variables["PATH"] = variables["PATH"].replace(ENV, str(env.path))
    variables["VIRTUAL_ENV"] = str(env.path)
    return variables


async def _bare(argv: Sequence[str], cwd: Path, variables: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=variables, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    await process.communicate()
    return time.perf_counter() - started, process.returncode or 0


async def _compare(
    ws: Workspace, env: Environment, command: list[str], limits: Limits, runs: int, tmp: Path
) -> dict[str, Any]:
    """``command`` bare and through ``run_tests``, alternately, ``runs`` times each."""
    argv = list(command)
    if any("pytest" in part for part in argv):  # what run_tests adds, with a file for the pipe
        argv += ["-p", "no:cacheprovider", f"--junitxml={tmp / 'report.xml'}"]
    variables = _bare_env(env)
    bare: list[float] = []
    boxed: list[float] = []
    codes: set[tuple[int, int | None]] = set()
    for i in range(WARM_UP + runs):
        seconds, bare_code = await _bare(argv, ws.path, variables)
        await asyncio.sleep(GAP_S)
        started = time.perf_counter()
        run = await run_tests(
            ws, command, env=env, timeout_s=120, memory_mb=limits.memory_mb,
            disk_mb=limits.disk_mb,
        )  # fmt: skip
        if i >= WARM_UP:
            bare.append(seconds)
            boxed.append(time.perf_counter() - started)
        codes.add((bare_code, run.exit_code))
    return overhead_figures(bare, boxed) | {
        "command": " ".join(command),
        "exit_codes_bare_sandboxed": sorted(codes),
        "same_outcome": all(a == b for a, b in codes),
    }


async def _breakdown(ws: Workspace, env: Environment, limits: Limits, runs: int) -> dict:
    """``sandboxed``'s steps, timestamped, for a command that only prints the clock: with
    the workspace copy, without it, and bare."""
    layout = Layout(
        command=STAMP, workspace=str(ws.path), env=str(env.path),
        interpreters=(env.interpreter,), disk_mb=limits.disk_mb,
    )  # fmt: skip
    no_copy = dataclasses.replace(layout, workspace=None)
    full: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    bare: list[float] = []
    for i in range(WARM_UP + runs):
        await asyncio.sleep(GAP_S)
        a = await _traced(layout, env, limits)
        await asyncio.sleep(GAP_S)
        b = await _traced(no_copy, env, limits)
        seconds, _ = await _bare(STAMP, ws.path, _bare_env(env))
        if i >= WARM_UP:
            full.append(a)
            without.append(b)
            bare.append(seconds)
    return breakdown_figures(full, without, bare) | {
        "command": " ".join(STAMP),
        "cgroups": [str(d) for d in cgroups.bases()] if _cgroup_on() else [],
        "how": "sandboxed()'s steps re-enacted with timestamps (fixstream.bench.sandboxcost)",
    }


def _cgroup_on() -> bool:
    """Whether ``sandboxed`` gives runs a cgroup here."""
    return bool({"pids", "memory"} & isolation().controllers)


class _Stamped(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[float] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output += data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(time.time())


def _preexec(cgroup: cgroups.RunCgroup | None, jail: Jail, fd: int) -> None:
    """In the child: the cgroup joined, then the rest of the jail (``Jail``'s order), the
    time of each step written to ``fd``."""
    preexec = time.time()
    if cgroup is not None:
        cgroup.join()
    joined = time.time()
    jail()
    os.write(fd, struct.pack("ddd", preexec, joined, time.time()))


async def _traced(layout: Layout, env: Environment, limits: Limits) -> dict[str, float]:
    """One run the way ``sandboxed`` (runner.py) makes it, timestamped between the steps."""
    t: dict[str, float] = {"start": time.time()}
    cgroup = None
    if _cgroup_on():
        memory = limits.memory_mb + 3 * limits.disk_mb
        cgroup = await asyncio.to_thread(
            cgroups.RunCgroup, processes=limits.processes, memory_mb=memory, cpus=limits.cpus
        )
    t["cgroup"] = time.time()
    read_fd, write_fd = os.pipe()
    try:
        argv, staged = bwrap.command_line(layout, bwrap.binary())  # type: ignore[arg-type]
        t["argv"] = time.time()
        jail = Jail(
            staged=staged, memory_mb=limits.memory_mb, cpu_s=limits.cpu_s,
            processes=limits.processes, file_mb=limits.file_mb,
            nproc="pids" not in isolation().controllers,
        )  # fmt: skip
        try:
            transport, run = await asyncio.get_running_loop().subprocess_exec(
                _Stamped, *argv, cwd="/", env=sandbox_env(env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=functools.partial(_preexec, cgroup, jail, write_fd),
            )  # fmt: skip
        finally:
            os.close(write_fd)
        t["exited"] = await run.exited
        with contextlib.suppress(ProcessLookupError):
            os.killpg(transport.get_pid(), signal.SIGKILL)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.close)
            cgroup = None
        t["closed"] = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.closed, 5)
        transport.close()
        stamps = os.read(read_fd, 24)
    finally:
        os.close(read_fd)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.close)
    output = bytes(run.output)
    try:
        t["preexec"], t["joined"], t["jailed"] = struct.unpack("ddd", stamps)
        t["command"] = float(output.split()[-1])
    except (struct.error, ValueError, IndexError):
        raise SandboxUnavailableError(f"a traced run printed {output[-300:]!r}") from None
    return t
