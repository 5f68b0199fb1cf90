"""Run a repository's tests on untrusted code, under limits.

What holds, and where. ``isolation()`` says what this machine allows. It is probed once,
and each missing protection is logged as an error.

- **Limits** (everywhere): setrlimit for address space (memory), CPU seconds, file size, no
  core, and processes. RLIMIT_NPROC counts per user, so all runs as ``nobody`` share it.
- **Deadline and leftovers**: the run has its own session and process group, SIGKILLed at
  the deadline. The run ends when its process does, not when its output pipe closes. As
  root each run also gets its own cgroup: one in the v2 hierarchy, whose ``cgroup.kill``
  takes every member at once, and one in v1's ``pids`` hierarchy, whose ``pids.max`` caps
  this run's processes whatever other runs do. When the run ends or times out, everything
  in it is killed, so a process that left the group (``setsid``, a double fork) does not
  outlive it. Joining the cgroup costs about 10 ms per run: the kernel waits for an RCU
  grace period to move a process. cgroup2's ``favordynmods`` mount option is meant to make
  that cheaper (not tried here).
  Without a cgroup (not root, none mounted) such a process survives. RLIMIT_CPU still ends
  it once it has used ``cpu_s`` of CPU; a sleeping one lives on. A pid namespace would
  also kill everything, with its init. It is not used: the test command would be pid 1,
  which ignores signals it has no handler for and inherits every orphan. And /proc would
  no longer match the pids the tests see, unless it were remounted too.
- **Another user**: as root, the child drops to ``nobody`` before exec. Only then is
  RLIMIT_NPROC enforced (never for root). The workspace (chowned to it) is the only file
  of the worker's it can write. Root's files (the data dir, the checkouts,
  ``/proc/<pid>/environ`` of the worker and of init) stay closed. When ``nobody`` cannot
  run this Python (a pyenv under a 0700 /root), runs stay root. Then nothing below
  holds, and that is logged.
- **Private namespaces** (root, ``nobody`` runs): between fork and exec the child is still
  root. It enters new mount and IPC namespaces, plus a network one (see below). It mounts
  an empty tmpfs (``TMPFS_MB``) over each directory every local user may write
  (``SHARED_WRITABLE``) and over the workspaces' root. Then it binds its own workspace
  back at the same path and moves into it. The run sees no other workspace, and nothing
  it leaves in /tmp outlives it. Then, as ``nobody``, it enters a user namespace of its
  own, with no uid mapped. Every run is the same ``nobody``: without that namespace one
  run could write another's workspace through ``/proc/<pid>/cwd``. Across user namespaces
  the kernel refuses that. The mounts belong to a mount namespace owned by root. An
  unmapped uid may not create a user namespace, so a test cannot get the privilege to
  undo them, nor use user namespaces for its own purposes. Where namespaces are refused,
  none of this holds: runs share /tmp and can reach each other's workspaces.
- **No network**: a new network namespace that has only a loopback, which is down. It is
  made with the mounts above, or with ``unshare -Urn`` when the worker is not root.
  ``network_isolation_available()`` says whether either works. A unix socket in the
  filesystem is not covered, except in the directories the tmpfs hide. Abstract unix
  sockets are: they belong to the network namespace.
- **Environment**: built from nothing. PATH, HOME and TMPDIR point inside the workspace,
  plus LANG. Nothing of the worker's gets in (no API keys, no broker credentials).
- **Output** is read incrementally and kept as head + tail, so the traceback at the end
  survives.
- **After the run** the worker touches the workspace again, as root. It opens the JUnit
  report without following links. It recreates the sandbox's own directory before the
  next run, and changes ownership with ``lchown``. The content digest counts a link out
  of the workspace by its target's name. A link a test planted is never followed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import itertools
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fixstream import telemetry
from fixstream.cache import Cache, key_of
from fixstream.sandbox.workspace import PRIVATE, Workspace
from fixstream.schemas import TestRun

log = logging.getLogger(__name__)
SANDBOX_UID = 65534  # nobody
MB = 1024 * 1024
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
"""Directories every local user may write: each run gets empty private ones instead."""
TMPFS_MB = 64
MAX_REPORT = 64 * MB

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWNET = (
    0x00020000, 0x08000000, 0x10000000, 0x40000000,
)  # fmt: skip
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18,
)  # fmt: skip


@dataclass(frozen=True)
class Isolation:
    """What this machine lets the runner do (see the module docstring)."""

    unprivileged: bool
    """Runs drop to ``nobody``."""
    namespaces: bool
    """Private mount, IPC and (when cut) network namespaces, set up as root."""
    own_user_ns: bool
    """Each run in a user namespace of its own: no run can open another's /proc entries."""
    network: bool
    """A run without network gets none."""
    cgroups: tuple[Path, ...]
    """Where each run gets its own cgroup (killed whole at its end); empty: nowhere."""


@functools.lru_cache(maxsize=1)
def isolation() -> Isolation:
    """Probed once, by running this Python the way test runs will run."""
    unprivileged = runs_unprivileged()
    namespaces = own_user_ns = False
    if os.geteuid() != 0:
        log.error(
            "test runs keep the worker's user (it is not root): they can write what the "
            "worker can, and get no private mounts"
        )
    if unprivileged:
        own_user_ns = _jail_works(user_ns=True)
        namespaces = own_user_ns or _jail_works(user_ns=False)
        if not namespaces:
            log.error(
                "test runs get no private mount namespace: they share /tmp, /var/tmp and "
                "/dev/shm, and can reach each other's workspaces"
            )
        elif not own_user_ns:
            log.error(
                "test runs get no user namespace of their own: one run can write another's "
                "workspace through /proc/<pid>/cwd"
            )
    network = namespaces or _unshare_works()
    if not network:
        log.error("test runs keep the network: unshare -Urn is not permitted here")
    cgroups = _cgroup_bases() if unprivileged else ()
    if cgroups and not _jail_works(user_ns=own_user_ns, namespaces=namespaces, cgroups=cgroups):
        cgroups = ()
    if not cgroups:
        log.error(
            "test runs get no cgroup: a process that leaves the run's process group (setsid) "
            "outlives the run (RLIMIT_CPU still ends a busy one), and the process limit is "
            "shared by all runs"
        )
    return Isolation(unprivileged, namespaces, own_user_ns, network, cgroups)


def network_isolation_available() -> bool:
    """Whether a run without network gets none (a namespace of its own)."""
    return isolation().network


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
        log.error(
            "test runs stay root: user nobody cannot run %s (make its directories o+x); "
            "RLIMIT_NPROC is not enforced and tests can read and write root's files",
            sys.executable,
        )
    return probe.returncode == 0


def _unshare_works() -> bool:
    """``unshare -Urn`` (as the sandbox user when we are root): the network without root."""
    try:
        run = subprocess.run(
            ["unshare", "-Urn", "true"], preexec_fn=_drop_privileges, capture_output=True,
            timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


def _jail_works(*, user_ns: bool, namespaces: bool = True, cgroups: tuple[Path, ...] = ()) -> bool:
    """Whether this Python runs, and writes its workspace, in a jail with these parts."""
    probe_ws = Path(tempfile.mkdtemp(prefix="fixstream-probe-"))
    cgroup = None
    try:
        os.chown(probe_ws, SANDBOX_UID, SANDBOX_UID)
        cgroup = _RunCgroup(cgroups, 1024) if cgroups else None
        jail = _Jail.build(
            memory_mb=1024, cpu_s=10, processes=1024, file_mb=1, workspace=str(probe_ws),
            namespaces=namespaces, cut_network=namespaces, user_ns=user_ns,
            cgroups=cgroup.dirs if cgroup else (),
        )  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-c", "open('probe', 'w').close()"],
            preexec_fn=jail, cwd=probe_ws, env={}, capture_output=True, timeout=30,
        )  # fmt: skip
        works = run.returncode == 0 and (probe_ws / "probe").is_file()
        if not works:
            log.warning("sandbox probe %s: exit code %s, %s", jail, run.returncode, run.stderr)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("sandbox probe (namespaces=%s, user namespace=%s, cgroups=%s): %s",
                    namespaces, user_ns, bool(cgroups), exc)  # fmt: skip
        works = False
    finally:
        if cgroup is not None:
            cgroup.close()
        shutil.rmtree(probe_ws, ignore_errors=True)
    return works


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(SANDBOX_UID)
    os.setuid(SANDBOX_UID)


def _drop_privileges() -> None:
    if os.geteuid() == 0 and runs_unprivileged():
        _become_nobody()


def _check(result: int) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source and source.encode(), target.encode(), fstype and fstype.encode(),
            ctypes.c_ulong(flags), data.encode() or None,
        )
    )  # fmt: skip


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _hidden_dirs(workspace: str) -> tuple[str, ...]:
    """The shared writable directories and the workspaces' root, outermost only."""
    wanted = {os.path.realpath(d) for d in SHARED_WRITABLE if os.path.isdir(d)}
    wanted.add(os.path.dirname(workspace))
    hidden: list[str] = []
    for path in sorted(wanted - {"/"}, key=len):
        if not any(_under(path, outer) for outer in hidden):
            hidden.append(path)
    return tuple(hidden)


def _python_dirs(hidden: tuple[str, ...]) -> tuple[str, ...]:
    """This Python's directories under a hidden one (a virtualenv in /tmp): bound back."""
    mine = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.executable)}
    mine = {p if os.path.isdir(p) else os.path.dirname(p) for p in mine}
    return tuple(sorted(p for p in mine if any(_under(p, h) for h in hidden)))


@dataclass(frozen=True)
class _Jail:
    """What the child does between fork and exec: as root, join the run's cgroups, set the
    limits, and build its private namespaces; then become ``nobody``, in a user namespace of
    its own."""

    memory_mb: int
    cpu_s: int
    processes: int
    file_mb: int
    workspace: str = ""
    namespaces: bool = False
    cut_network: bool = False
    user_ns: bool = False
    cgroups: tuple[Path, ...] = ()
    hide: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()

    @classmethod
    def build(cls, **fields) -> _Jail:
        """With the directories to hide and to bind back, found here, not in the child."""
        jail = cls(**fields)
        if not jail.namespaces:
            return jail
        hide = _hidden_dirs(jail.workspace)
        return cls(**{**fields, "hide": hide, "expose": _python_dirs(hide)})

    def __call__(self) -> None:
        for cgroup in self.cgroups:
            fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")  # this process, and so all it starts
            finally:
                os.close(fd)
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_mb * MB, self.memory_mb * MB))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_mb * MB, self.file_mb * MB))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.namespaces:
            self._private_mounts()
        _drop_privileges()
        resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))
        if self.user_ns:
            _check(_libc.unshare(_CLONE_NEWUSER))

    def _private_mounts(self) -> None:
        cut = _CLONE_NEWNET if self.cut_network else 0
        _check(_libc.unshare(_CLONE_NEWNS | _CLONE_NEWIPC | cut))
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates to the host
        # opened before they are hidden, and in this namespace (a bind takes no other's mount)
        keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in self.expose]
        keep.append((self.workspace, os.open(self.workspace, os.O_PATH | os.O_DIRECTORY)))
        options = f"mode=1777,size={TMPFS_MB}m,nr_inodes=16384"
        for path in self.hide:
            _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, options)
        for path, fd in keep:
            os.makedirs(path, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
            os.close(fd)
            if path != self.workspace:
                _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        # the cwd was set before: the workspace under the tmpfs, where '..' still leads to
        # the real workspaces' root. The bind is the one to be in.
        os.chdir(self.workspace)


@functools.lru_cache(maxsize=1)
def _cgroup_bases() -> tuple[Path, ...]:
    """A ``fixstream`` cgroup in the v2 hierarchy and in v1's ``pids`` one, where mounted
    (root only). Runs left by a worker that died are killed and removed here."""
    if os.geteuid() != 0:
        return ()
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ()
    bases = []
    for line in mounts:
        _source, where, kind, options, *_ = line.split()
        if kind == "cgroup2" or (kind == "cgroup" and "pids" in options.split(",")):
            base = Path(where) / "fixstream"
            try:
                base.mkdir(exist_ok=True)
            except OSError:
                continue
            if kind == "cgroup2":  # pure v2: its pids controller, where the parent has it
                with contextlib.suppress(OSError):
                    if "pids" in (base / "cgroup.controllers").read_text().split():
                        (base / "cgroup.subtree_control").write_text("+pids")
            bases.append(base)
    for base in bases:
        for run in base.iterdir():
            owner = run.name.split("-")[0]
            if run.is_dir() and owner.isdigit() and not _process_exists(int(owner)):
                _RunCgroup.of((run,)).close()
    return tuple(bases)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class _RunCgroup:
    """One run's cgroup in each hierarchy (same name): its process limit, and at its end
    everything in it killed, then the cgroup removed."""

    _serial = itertools.count()

    def __init__(self, bases: tuple[Path, ...], max_processes: int) -> None:
        name = f"{os.getpid()}-{next(self._serial)}"
        self.dirs: tuple[Path, ...] = ()
        try:
            for base in bases:
                (base / name).mkdir()
                self.dirs += (base / name,)
                limit = base / name / "pids.max"
                if limit.exists():
                    limit.write_text(str(max_processes))
        except OSError:
            self.close()
            raise

    @classmethod
    def of(cls, dirs: tuple[Path, ...]) -> _RunCgroup:
        cgroup = cls.__new__(cls)
        cgroup.dirs = dirs
        return cgroup

    def members(self) -> set[int]:
        pids: set[int] = set()
        for cgroup in self.dirs:
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
        return pids

    def close(self, wait_s: float = 5.0) -> None:
        """Kill every member, wait until they are gone, remove the cgroups."""
        for cgroup in self.dirs:
            if (cgroup / "cgroup.kill").exists():  # v2: at once, forks in flight too
                with contextlib.suppress(OSError):
                    (cgroup / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + wait_s
        while members := self.members():
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log.error("processes %s of a test run survive SIGKILL", sorted(members))
                return
            time.sleep(0.005)
        for cgroup in self.dirs:
            while True:
                try:
                    cgroup.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY while the last ones exit
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cgroup %s not removed: %s", cgroup, exc)
                        break
                    time.sleep(0.005)


def _chown_tree(root: Path) -> None:
    """Never following a link: the tree is what an earlier run left."""
    if not runs_unprivileged():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.lchown(dirpath, SANDBOX_UID, SANDBOX_UID)
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), SANDBOX_UID, SANDBOX_UID)


def _reset_private(ws: Path) -> None:
    """The sandbox's directory, fresh: an earlier run may have left anything there (a link
    to /etc in its place), and root is about to write in it."""
    private = ws / PRIVATE
    if private.is_symlink() or (private.exists() and not private.is_dir()):
        private.unlink()
    elif private.exists():
        shutil.rmtree(private)
    for sub in ("home", "tmp"):
        (private / sub).mkdir(parents=True)


def _prepare(ws: Path, network: bool, limits: dict[str, int]) -> tuple[_RunCgroup | None, _Jail]:
    """Before a run (in a thread: the first call probes the machine)."""
    iso = isolation()
    _reset_private(ws)
    _chown_tree(ws)
    cgroup = _RunCgroup(iso.cgroups, limits["processes"]) if iso.cgroups else None
    jail = _Jail.build(
        **limits, workspace=os.path.realpath(ws), namespaces=iso.namespaces,
        cut_network=not network and iso.namespaces, user_ns=iso.own_user_ns,
        cgroups=cgroup.dirs if cgroup else (),
    )  # fmt: skip
    return cgroup, jail


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


class _RunProtocol(asyncio.SubprocessProtocol):
    """The run's output into ``output``, and its end: ``Process.wait()`` would also wait
    until the output pipe closes, which a process that left the group may hold open for as
    long as it lives."""

    def __init__(self, output: _Output) -> None:
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


def _read_report(ws: Path) -> bytes | None:
    """The JUnit report, opened without following a link: the tests may have put one in
    place of ``.fixstream`` or of the report, and this runs as root."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(ws, flags | os.O_DIRECTORY))
        fds.append(os.open(PRIVATE, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fds.append(os.open("junit.xml", flags | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            return None
        with os.fdopen(os.dup(fds[-1]), "rb") as report:
            data = report.read(MAX_REPORT + 1)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)
    return data if len(data) <= MAX_REPORT else None


def _test_ids(ws: Path) -> tuple[list[str], list[str]]:
    """(passed, failed) pytest node ids from the run's JUnit XML report."""
    data = _read_report(ws)
    if data is None:
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
    junit = ws.path / PRIVATE / "junit.xml"
    argv = list(command)
    if any("pytest" in part for part in argv):
        argv += ["-p", "no:cacheprovider", f"--junitxml={junit}", *(test_ids or [])]
    limits = {"memory_mb": memory_mb, "cpu_s": cpu_s, "processes": max_processes,
              "file_mb": max_file_mb}  # fmt: skip
    cgroup, jail = await asyncio.to_thread(_prepare, ws.path, network, limits)
    if not network and network_isolation_available() and not jail.namespaces:
        argv = ["unshare", "-Urn", *argv]  # not root: the network alone
    output = _Output(max_output_bytes)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        transport, run = await loop.subprocess_exec(
            functools.partial(_RunProtocol, output),
            *argv,
            cwd=ws.path,
            env=sandbox_env(ws),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=jail,
        )
    except BaseException:
        if cgroup is not None:
            await asyncio.to_thread(cgroup.close)
        raise
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(run.exited), timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(transport.get_pid(), signal.SIGKILL)  # the group: children, done or not
        if cgroup is not None:  # and whatever left the group
            await asyncio.to_thread(cgroup.close)
        await run.exited
    with contextlib.suppress(TimeoutError):  # the rest of the output; a process that left
        await asyncio.wait_for(asyncio.shield(run.closed), 5)  # the group may hold it open
    returncode = transport.get_returncode()
    transport.close()
    passed, failed = await asyncio.to_thread(_test_ids, ws.path)
    seconds = time.perf_counter() - started
    telemetry.active().test_run(
        " ".join(test_ids or []) or "suite", seconds, returncode == 0, timed_out
    )
    return TestRun(
        command=list(command),
        exit_code=None if timed_out else returncode,
        timed_out=timed_out,
        duration_ms=seconds * 1000,
        passed=passed,
        failed=failed,
        output=output.text().replace(str(ws.path), "<workspace>"),
    )
