"""One cgroup per sandboxed process tree: its limits, and everything in it killed at its end.

bubblewrap's pid namespace already takes every process of a run with it when the run ends
(``setsid`` included). A cgroup adds what a namespace cannot: a process limit for this run
alone (``pids``), memory for the whole tree, tmpfs pages included (``memory``), a share of
the CPU (``cpu``), and a kill that reaches a fork in flight (v2 ``cgroup.kill``).

Both hierarchies are used where writable: a ``fixstream`` cgroup in the v2 one (where its
parent grants controllers) and in each v1 controller mounted. The worker must be root, or own
a delegated v2 subtree. Joining costs about 10 ms per run (the kernel waits for an RCU grace
period to move a process).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)
V1_CONTROLLERS = ("pids", "memory", "cpu")
CPU_PERIOD_US = 100_000


@functools.lru_cache(maxsize=1)
def bases() -> dict[Path, frozenset[str]]:
    """Each writable ``fixstream`` cgroup and the controllers it has. Runs left by a worker
    that died are killed and removed here."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return {}
    found: dict[Path, frozenset[str]] = {}
    for line in mounts:
        _source, where, kind, options, *_ = line.split()
        if kind == "cgroup2":
            base = Path(where) / "fixstream"
            if not _make(base):
                continue
            with contextlib.suppress(OSError):
                offered = set((base.parent / "cgroup.controllers").read_text().split())
                wanted = offered & {"pids", "memory", "cpu"}
                if wanted:
                    (base / "cgroup.subtree_control").write_text(
                        " ".join(f"+{c}" for c in sorted(wanted))
                    )
            with contextlib.suppress(OSError):
                found[base] = frozenset((base / "cgroup.subtree_control").read_text().split())
            found.setdefault(base, frozenset())
        elif kind == "cgroup":
            mine = set(options.split(",")) & set(V1_CONTROLLERS)
            base = Path(where) / "fixstream"
            if mine and _make(base):
                found[base] = frozenset(mine)
    for base in found:
        for run in base.iterdir():
            owner = run.name.split("-")[0]
            if run.is_dir() and owner.isdigit() and not _process_exists(int(owner)):
                with contextlib.suppress(OSError):  # two workers starting sweep the same ones
                    RunCgroup.of((run,)).close()
    return found


def controllers() -> frozenset[str]:
    """Every controller a run gets, over all hierarchies ("kill": v2's cgroup.kill)."""
    names: set[str] = set()
    for base, mine in bases().items():
        names |= mine
        if (base / "cgroup.kill").exists():
            names.add("kill")
    return frozenset(names)


def _make(base: Path) -> bool:
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(base, os.W_OK)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class RunCgroup:
    """One run's cgroup in each hierarchy (same name): its limits, then everything in it
    killed and the cgroup removed."""

    _serial = itertools.count()

    def __init__(self, *, processes: int, memory_mb: int, cpus: float) -> None:
        name = f"{os.getpid()}-{next(self._serial)}"
        self.dirs: tuple[Path, ...] = ()
        limits = {
            "pids.max": str(processes),
            "memory.max": str(memory_mb * 1024 * 1024),
            "memory.limit_in_bytes": str(memory_mb * 1024 * 1024),
            "memory.swap.max": "0",
            "cpu.max": f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}",
            "cpu.cfs_period_us": str(CPU_PERIOD_US),
            "cpu.cfs_quota_us": str(int(cpus * CPU_PERIOD_US)),
        }
        try:
            for base in bases():
                (base / name).mkdir()
                self.dirs += (base / name,)
                for file, value in limits.items():
                    target = base / name / file
                    if target.exists():
                        target.write_text(value)
        except OSError:
            self.close()
            raise

    @classmethod
    def of(cls, dirs: tuple[Path, ...]) -> RunCgroup:
        cgroup = cls.__new__(cls)
        cgroup.dirs = dirs
        return cgroup

    def join(self) -> None:
        """Move the calling process in (between fork and exec: all it starts follows)."""
        for cgroup in self.dirs:
            fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def members(self) -> set[int]:
        pids: set[int] = set()
        for cgroup in self.dirs:
            # gone, or being removed by another worker's sweep (ENODEV): no members here
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
        return pids

    def oom_killed(self) -> bool:
        """Whether the kernel killed a member for the memory limit."""
        for cgroup in self.dirs:
            for file, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                with contextlib.suppress(OSError):
                    for line in (cgroup / file).read_text().splitlines():
                        name, _, value = line.partition(" ")
                        if name == key and int(value or 0) > 0:
                            return True
        return False

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
                log.error("processes %s of a sandboxed run survive SIGKILL", sorted(members))
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
