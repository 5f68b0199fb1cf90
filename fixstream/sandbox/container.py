"""Test runs in a container, for machines where a Docker engine (or Podman's docker-compatible
socket) answers: the layout of ``bwrap.py``, run by the engine instead of bubblewrap.

The same layout, as the engine can give it:

- ``/testbed``: the workspace, bound read-only at ``/fixstream/src`` and copied into a tmpfs
  of ``disk_mb`` when the run starts (``/tmp`` and ``/dev/shm`` are sized too); the root file
  system is read-only.
- ``/fixstream/env``: the environment, read-only (read-write while it is built); the host's
  interpreter prefixes, read-only at their own paths. The host's ``/usr`` is not bound: the
  interpreter's system libraries (glibc, libz, ...) come from the image, which must match
  the host's (``debian:bookworm-slim`` by default, ``FIXSTREAM_CONTAINER_IMAGE`` or ``image``
  to change it). A prefix under the image's ``/root`` (0700: pyenv as root) gets a
  read-only skeleton (0755) bound over ``/root`` so that uid 65534 can reach it.
- uid and gid 65534, no capabilities, no new privileges, an init that reaps orphans; no
  network (``network_mode='none'``) unless ``layout.network``.
- Limits: the container's memory (``memory_mb`` and the three tmpfs, no swap), pids and CPU
  share; file size, CPU seconds and core rlimits.
- The whole container is killed at the deadline and removed after every run.
- Output is read from an attach stream, never stored by the engine (log driver ``none``), and
  kept as head and tail.
- The JUnit report: no descriptor crosses into a container, so ``/dev/fd/{report_fd}`` in the
  command becomes ``/fixstream/out/junit.xml``, a bind of one host file (owned by 65534; one
  file, not a directory, so what the tests write to the host is bounded by the file-size
  rlimit), read back afterwards without following links, size-capped.

The engine binds paths of its own host: the worker and the engine must share a file system
(a local engine, not one reached over TCP from another machine or container).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from fixstream.errors import SandboxUnavailableError
from fixstream.sandbox.bwrap import ENV, MB, SANDBOX_UID, SOURCE, TESTBED, Layout, as_root
from fixstream.sandbox.runs import MAX_REPORT, Finished, Limits, Output

DEFAULT_IMAGE = "debian:bookworm-slim"
IMAGE_VARIABLE = "FIXSTREAM_CONTAINER_IMAGE"
ISOLATION = "container"
LABEL = "fixstream.sandbox"
"""Every run's container carries this label (value ``run``), so leftovers can be found."""
OUT = "/fixstream/out"
REPORT = f"{OUT}/junit.xml"
REPORT_FD = "/dev/fd/{report_fd}"
COPY = f'cp -R {SOURCE}/. {TESTBED}/ && exec "$@"'
SHADOWED = ("/root",)
"""Directories of the image uid 65534 cannot traverse (0700): a bind under one gets, over it,
a read-only bind of a host skeleton (0755) holding the mount points of the binds under it.
Not a tmpfs: runc before 1.1.8 and Podman's copy-up give a tmpfs the mode of the directory
it covers, whatever its ``mode=`` says."""
SYSTEM = frozenset(
    {"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc",
     "/sys", "/dev"}
)  # fmt: skip
"""Never bound as an interpreter prefix: these are the image's."""
log = logging.getLogger(__name__)
PING_TIMEOUT_S = 10
DRAIN_S = 5.0
"""How long the rest of the output may take once the container has stopped."""


def default_image() -> str:
    return os.environ.get(IMAGE_VARIABLE, "").strip() or DEFAULT_IMAGE


def container_problem() -> str | None:
    """Why no container engine answers here, or None when one answers ``ping``."""
    try:
        import docker

        client = docker.from_env(timeout=PING_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def rewrite_report(command: Sequence[str]) -> tuple[list[str], bool]:
    """The command with ``/dev/fd/{report_fd}`` (``--junitxml=/dev/fd/{report_fd}``) pointed
    at ``REPORT``, and whether it writes a report at all."""
    rewritten = [part.replace(REPORT_FD, REPORT) for part in command]
    return rewritten, rewritten != list(command)


def _bind(source: str, target: str, writable: bool = False) -> dict[str, Any]:
    """A bind in the engine API's own form (``Mounts``): no ``src:dst:mode`` string for a
    ``:`` in a path to break, and no volume made for a missing source."""
    return {
        "Type": "bind",
        "Source": os.path.realpath(source),
        "Target": os.path.normpath(target),
        "ReadOnly": not writable,
    }


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def container_kwargs(
    layout: Layout,
    *,
    limits: Limits,
    env_vars: dict[str, str],
    image: str,
    report_file: str | None = None,
    scratch: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of ``client.containers.create`` (or ``run``) for ``layout``:
    nothing here talks to an engine or touches a file. ``report_file``: the host file bound
    at ``REPORT``; ``scratch``: the run's own host directory, where ``make_skeletons`` puts
    what covers ``SHADOWED`` (needed only when a bind lies under one)."""
    command = list(layout.command)
    if not command:
        raise ValueError("an empty command")
    if layout.fds:
        raise ValueError(
            "descriptors cannot cross into a container: write the report to "
            f"{REPORT_FD} and let run_in_container bind it"
        )
    mounts: list[dict[str, Any]] = []
    for prefix in dict.fromkeys(os.path.normpath(p) for p in layout.interpreters):
        if prefix in SYSTEM:
            raise ValueError(
                f"interpreter prefix {prefix}: the container's {prefix} is the image's, and "
                "the host's is not bound; use an interpreter outside the system directories "
                "(pyenv, /usr/local, /opt, a virtualenv)"
            )
        mounts.append(_bind(prefix, prefix))
    if layout.env:
        mounts.append(_bind(layout.env, ENV, layout.env_writable))
    for extra in layout.extra:
        mounts.append(_bind(extra.source, extra.target, extra.writable))
    if report_file is not None:
        mounts.append(_bind(report_file, REPORT, writable=True))
    size = f"size={layout.disk_mb}m"
    tmpfs = {"/tmp": f"{size},exec"}  # exec, as bubblewrap's /tmp
    working_dir = "/"
    if layout.workspace:
        mounts.append(_bind(layout.workspace, SOURCE))
        tmpfs[TESTBED] = f"{size},exec"
        working_dir = TESTBED
        command = ["/bin/sh", "-c", COPY, "sh", *command]
    for top in SHADOWED:
        if any(_under(m["Target"], top) and m["Target"] != top for m in mounts):
            if scratch is None:
                raise ValueError(f"a bind under {top} needs a scratch directory")
            # the engine mounts it before the binds under it (mounts are sorted by depth)
            mounts.append(_bind(_skeleton(scratch, top), top))
    memory = (limits.memory_mb + 3 * limits.disk_mb) * MB  # tmpfs pages count as memory
    kwargs: dict[str, Any] = {
        "image": image,
        "entrypoint": command[:1],  # whatever ENTRYPOINT the image has
        "command": command[1:],
        "user": f"{SANDBOX_UID}:{SANDBOX_UID}",
        "working_dir": working_dir,
        "environment": dict(env_vars),
        "hostname": "sandbox",
        "labels": {LABEL: "run"},
        "mounts": mounts,
        "tmpfs": tmpfs,
        "shm_size": layout.disk_mb * MB,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "ipc_mode": "private",
        "mem_limit": memory,
        "memswap_limit": memory,
        "pids_limit": limits.processes,
        "nano_cpus": int(min(limits.cpus, os.cpu_count() or 1) * 1e9),
        "ulimits": [
            {"name": "fsize", "soft": limits.file_mb * MB, "hard": limits.file_mb * MB},
            {"name": "cpu", "soft": limits.cpu_s, "hard": limits.cpu_s + 1},
            {"name": "core", "soft": 0, "hard": 0},
        ],
        "log_config": {"type": "none", "config": {}},
        "stdin_open": False,
        "tty": False,
    }
    if not layout.network:
        kwargs["network_mode"] = "none"
    return kwargs


def _skeleton(scratch: str, top: str) -> str:
    return os.path.join(scratch, "skeleton", top.strip("/"))


def make_skeletons(kwargs: dict[str, Any], scratch: str) -> None:
    """The host directories ``container_kwargs`` binds over ``SHADOWED``: 0755, holding a
    mount point (directory or empty file, 0755) for each bind under them."""
    mounts = kwargs["mounts"]
    for top in SHADOWED:
        root = os.path.realpath(_skeleton(scratch, top))
        if not any(m["Source"] == root and m["Target"] == top for m in mounts):
            continue
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        for m in mounts:
            if not _under(m["Target"], top) or m["Target"] == top:
                continue
            point = root
            parts = os.path.relpath(m["Target"], top).split(os.sep)
            for i, part in enumerate(parts):
                point = os.path.join(point, part)
                if os.path.lexists(point):
                    continue
                if i < len(parts) - 1 or os.path.isdir(m["Source"]):
                    os.mkdir(point)
                else:
                    os.close(os.open(point, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755))
                os.chmod(point, 0o755)


def check_sources(kwargs: dict[str, Any]) -> None:
    """Every bind's source exists: Docker refuses a missing one, Podman would make it, as
    root, on the host."""
    for mount in kwargs["mounts"]:
        if not os.path.lexists(mount["Source"]):
            raise FileNotFoundError(f"bind source {mount['Source']} (for {mount['Target']})")


def make_scratch() -> str:
    """The run's own host directory (0700: only this user reaches it; the engine binds
    what is in it)."""
    return tempfile.mkdtemp(prefix="fixstream-container-")


def make_report_file(scratch: str) -> str:
    """An empty file in ``scratch`` that the run (uid 65534) may write, and nothing else."""
    path = os.path.join(scratch, "junit.xml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if as_root():
            os.fchown(fd, SANDBOX_UID, SANDBOX_UID)
        else:  # 65534 is another uid and cannot be given the file: the 0700 folder guards it
            os.fchmod(fd, 0o666)
    finally:
        os.close(fd)
    return path


def read_report(path: str, limit: int) -> bytes | None:
    """The report's bytes: None if it is not a regular file (a link is not followed, a FIFO
    not waited on) or holds more than ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = bytearray()
        while len(data) <= limit:
            chunk = handle.read(min(1 << 20, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
    return None if len(data) > limit else bytes(data)


def _client() -> Any:
    import docker

    return docker.from_env()


def _ensure_image(client: Any, image: str) -> None:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        client.images.pull(image)


def _pump(stream: Any, output: Any, lock: threading.Lock) -> None:
    for chunk in stream:  # ends when the container's output closes (or the stream is closed)
        with lock:
            output.add(chunk)


def _kill(container: Any) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.kill()  # SIGKILL; an APIError when it has stopped already


async def run_in_container(
    layout: Layout,
    *,
    limits: Limits,
    timeout_s: float,
    env_vars: dict[str, str],
    max_output_bytes: int = 64_000,
    image: str | None = None,
) -> Finished:
    """One container under ``layout`` and ``limits``, killed at ``timeout_s`` and removed.
    The command's ``/dev/fd/{report_fd}``, if any, is a file whose bytes come back as the
    report. ``image``: None for ``default_image()``. An engine that fails (unreachable, no
    image, a refused configuration) raises ``SandboxUnavailableError``."""
    command, report = rewrite_report(layout.command)
    layout = dataclasses.replace(layout, command=command)
    image = image or default_image()
    scratch = await asyncio.to_thread(make_scratch)
    try:
        report_file = await asyncio.to_thread(make_report_file, scratch) if report else None
        kwargs = container_kwargs(
            layout, limits=limits, env_vars=env_vars, image=image, report_file=report_file,
            scratch=scratch,
        )  # fmt: skip
        await asyncio.to_thread(make_skeletons, kwargs, scratch)
        await asyncio.to_thread(check_sources, kwargs)
        return await _run(kwargs, timeout_s, max_output_bytes, report_file)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def _run(
    kwargs: dict[str, Any], timeout_s: float, max_output_bytes: int, report_file: str | None
) -> Finished:
    import docker
    import requests

    failures = (docker.errors.DockerException, requests.exceptions.RequestException)
    output, lock = Output(max_output_bytes), threading.Lock()
    try:
        client = await asyncio.to_thread(_client)
    except failures as exc:
        raise SandboxUnavailableError(f"container engine: {exc}") from exc
    container = stream = pump = None
    try:
        try:
            await asyncio.to_thread(_ensure_image, client, kwargs["image"])
            container = await asyncio.to_thread(client.containers.create, **kwargs)
            # attached before it starts, so that no output is missed
            stream = await asyncio.to_thread(
                client.api.attach, container.id, stdout=True, stderr=True, stream=True,
                logs=False,
            )  # fmt: skip
            pump = asyncio.ensure_future(asyncio.to_thread(_pump, stream, output, lock))
            await asyncio.to_thread(container.start)
            started = time.perf_counter()
            timed_out, status = False, None
            try:
                result = await asyncio.wait_for(
                    asyncio.to_thread(container.wait, timeout=None), timeout_s
                )
                status = result.get("StatusCode")
            except TimeoutError:
                timed_out = True
            finally:  # also when cancelled: nothing runs on after this run
                seconds = time.perf_counter() - started
                if status is None:
                    await asyncio.to_thread(_kill, container)
        except failures as exc:
            raise SandboxUnavailableError(f"container engine: {exc}") from exc
        if not await _drained(pump):  # the output closes with the container, or is closed
            await asyncio.to_thread(stream.close)
            await _drained(pump)
        data = None
        if report_file is not None:
            data = await asyncio.to_thread(read_report, report_file, MAX_REPORT)
        with lock:
            text = output.text()
        return Finished(
            returncode=None if timed_out else status,
            timed_out=timed_out,
            output=text,
            report=data,
            seconds=seconds,
            isolation=ISOLATION,
        )
    finally:
        if stream is not None:
            await _quietly(stream.close)
        if pump is not None:
            await _drained(pump)
        if container is not None:
            await _quietly(container.remove, force=True, v=True)
        await _quietly(client.close)


async def _drained(pump: asyncio.Future[None]) -> bool:
    """Whether the output pump has ended within ``DRAIN_S`` (its errors are logged)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pump), DRAIN_S)
    if not pump.done():
        return False
    if not pump.cancelled() and pump.exception() is not None:
        log.warning("container output: %s", pump.exception())
    return True


async def _quietly(call: Any, /, **kwargs: Any) -> None:
    """A clean-up call: a failure is logged, never raised over the run's own outcome."""
    try:
        await asyncio.to_thread(call, **kwargs)
    except Exception as exc:
        if type(exc).__name__ != "NotFound":
            log.warning("container clean-up %s: %s", getattr(call, "__name__", call), exc)


__all__ = [
    "DEFAULT_IMAGE",
    "ISOLATION",
    "REPORT",
    "check_sources",
    "container_kwargs",
    "container_problem",
    "default_image",
    "make_report_file",
    "make_scratch",
    "make_skeletons",
    "read_report",
    "rewrite_report",
    "run_in_container",
]
