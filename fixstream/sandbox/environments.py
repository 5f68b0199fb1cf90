"""An environment per repository version: its own interpreter and packages, built with uv.

Test runs never use the worker's packages: a repository gets the dependencies it declares
(``pyproject.toml`` with its test extras, ``requirements*.txt``, ``setup.cfg``/``setup.py``,
``uv.lock``, ``poetry.lock``), plus the runner its test command needs (pytest), plus what
its report's ``repo.environment`` adds (Python version, extras, packages, install commands).

- **Key**: a hash of the dependency files, the interpreter, the spec and the index settings.
  One build per key, shared by every bug, candidate and worker on the machine (``env_dir``).
- **Coalesced**: concurrent requests for one key wait for one build (a task per key in this
  process, a file lock across processes).
- **Built in the sandbox** (``bwrap.py``'s layout, with the network): the repository's build
  scripts are untrusted code too. The virtualenv is made at ``/fixstream/env``, the path every
  test run binds it at, so one build serves every workspace; the project itself, when it has
  a build system, is installed editable from ``/testbed``.
- **Bounded**: a build has a timeout; the store has a disk budget, least recently used
  environments evicted first.
- **Failure** is the installer's own reason (``EnvironmentBuildError``): the bug ends failed
  with it, never "not reproduced".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import re
import shlex
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from fixstream import telemetry
from fixstream.errors import EnvironmentBuildError
from fixstream.sandbox import bwrap
from fixstream.sandbox.bwrap import ENV, TESTBED, Bind, Layout
from fixstream.sandbox.runner import Environment, Limits, SandboxMode, chown_tree, sandboxed
from fixstream.sandbox.workspace import make_workspace
from fixstream.schemas import EnvironmentSpec

if TYPE_CHECKING:
    from fixstream.config import Settings

log = logging.getLogger(__name__)
BUILDER = "2"
"""Bumped when what a build does changes: every key changes with it."""
TEST_EXTRAS = ("test", "tests", "testing", "dev")
RUNNERS = ("pytest",)
UV_CACHE = "/fixstream/uv-cache"
PASSED_THROUGH = (
    "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
    "UV_NO_INDEX", "UV_OFFLINE", "UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "HTTP_PROXY",
    "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)  # fmt: skip
"""The worker's settings for reaching an index; nothing else of its environment."""
BUILD_LIMITS = Limits(memory_mb=4096, cpu_s=1800, processes=512, file_mb=2048, disk_mb=1024,
                      cpus=2.0)  # fmt: skip
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DRAWING = " \u00d7\u2570\u2500\u25b6\u2502|"
"""uv draws its error chains with these (multiplication sign, box corners, arrow)."""


@dataclass(frozen=True)
class Plan:
    """What a build installs, read from the repository's files (no side effects)."""

    key: str
    python: str
    """uv's ``--python``: a version the spec asks for, or the worker's own interpreter."""
    requirements: tuple[str, ...] = ()
    """``uv pip install`` arguments (paths as the build sandbox sees the repository); empty
    when there is nothing to install this way."""
    lock: str = ""
    """A lock file whose pins are installed (``uv.lock`` or ``poetry.lock``)."""
    lock_pins: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    """With a lock: the project itself (``-e /testbed[...]``), installed without its
    dependencies (the lock's pins are them) in an install of its own, so that the runner and
    the spec's packages still get theirs."""
    offline: bool = False
    commands: tuple[tuple[str, ...], ...] = ()
    find_links: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    """The dependency files that make the key."""


def _listing(find_links: tuple[str, ...]) -> list[list[object]]:
    """The wheels a build may take, by name, size and time: a new wheel at the same path
    makes a new key."""
    found: list[list[object]] = []
    for link in find_links:
        found.append([link])
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(link), key=lambda e: e.name):
                info = entry.stat()
                found.append([link, entry.name, info.st_size, info.st_mtime_ns])
    return found


def dependency_files(repo: Path) -> list[Path]:
    names = ["pyproject.toml", "setup.cfg", "setup.py", "uv.lock", "poetry.lock"]
    found = [repo / n for n in names if (repo / n).is_file()]
    found += sorted(p for p in repo.glob("requirements*.txt") if p.is_file())
    found += sorted(p for p in repo.glob("requirements/*.txt") if p.is_file())
    return found


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _extras(repo: Path, pyproject: dict, spec: EnvironmentSpec) -> list[str]:
    """The test extras the project declares, and the spec's."""
    declared: set[str] = set()
    project = pyproject.get("project", {})
    declared |= set(project.get("optional-dependencies", {}) or {})
    if (repo / "setup.cfg").is_file():
        import configparser

        parser = configparser.ConfigParser()
        with contextlib.suppress(configparser.Error, UnicodeDecodeError):
            parser.read(repo / "setup.cfg")
            if parser.has_section("options.extras_require"):
                declared |= set(parser.options("options.extras_require"))
    return sorted({e for e in declared if e in TEST_EXTRAS} | set(spec.extras))


def _poetry_pins(lock: Path) -> list[str]:
    return [
        f"{p['name']}=={p['version']}"
        for p in _toml(lock).get("package", [])
        if p.get("name") and p.get("version") and p.get("source", {}).get("type") is None
    ]


def plan(
    repo: Path,
    spec: EnvironmentSpec | None,
    test_command: list[str],
    *,
    find_links: tuple[str, ...] = (),
    offline: bool = False,
    mode: SandboxMode = "bwrap",
) -> Plan:
    """The build for this repository version, and its key."""
    spec = spec or EnvironmentSpec()
    files = dependency_files(repo)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    python = spec.python or os.path.realpath(sys.executable)
    identity = spec.python or f"{python} {sys.version}"
    runners = [r for r in RUNNERS if any(r in part for part in test_command)]
    settings = orjson.dumps([BUILDER, identity, spec.model_dump(mode="json"), runners,
                             _listing(find_links), offline, mode])  # fmt: skip
    digest.update(settings)
    names = {p.relative_to(repo).as_posix() for p in files}
    args: list[str] = []
    lock, pins = "", ()
    if "uv.lock" in names:
        lock = "uv.lock"
    elif "poetry.lock" in names:
        lock, pins = "poetry.lock", tuple(_poetry_pins(repo / "poetry.lock"))
    if not lock:
        for name in sorted(n for n in names if n.endswith(".txt")):
            args += ["-r", f"{TESTBED}/{name}"]
    pyproject = _toml(repo / "pyproject.toml") if "pyproject.toml" in names else {}
    has_project = "setup.py" in names or "build-system" in pyproject
    extras = _extras(repo, pyproject, spec)
    project: tuple[str, ...] = ()
    if has_project:
        project = ("-e", f"{TESTBED}[{','.join(extras)}]" if extras else TESTBED)
        if not lock:
            args += project
            project = ()
    elif extras and "pyproject.toml" in names and not lock:  # dependencies without a build
        args += ["-r", f"{TESTBED}/pyproject.toml", *(f"--extra={e}" for e in extras)]
    elif "pyproject.toml" in names and not lock and pyproject.get("project"):
        args += ["-r", f"{TESTBED}/pyproject.toml"]
    args += [*runners, *spec.packages]
    if args:  # an install of nothing but index options is an error to uv
        args += _index_options(offline, find_links)
    return Plan(
        key=digest.hexdigest()[:24], python=python, requirements=tuple(args), lock=lock,
        lock_pins=pins, project=project, offline=offline,
        commands=tuple(tuple(c) for c in spec.install), find_links=find_links,
        files=tuple(sorted(names)),
    )  # fmt: skip


def build_script(p: Plan, env: str = ENV, testbed: str = TESTBED, uv: str = "uv") -> str:
    """What runs inside the build sandbox, as one shell script (``env``, ``testbed``, ``uv``:
    other paths for FIXSTREAM_SANDBOX=unsafe, which builds on the host)."""

    def q(args: list[str]) -> str:
        return shlex.join(a.replace(TESTBED, testbed) for a in args)

    lines = ["set -e", q([uv, "venv", "--quiet", "--python", p.python, env])]
    install = [uv, "pip", "install", "--quiet", "--python", f"{env}/bin/python"]
    index = _index_options(p.offline, p.find_links)
    if p.lock == "uv.lock":
        export = [uv, "export", "--quiet", "--frozen", "--no-hashes", "--all-extras",
                  "--no-emit-project", "--project", TESTBED, "-o", "/tmp/lock.txt"]  # fmt: skip
        lines += [q(export), q([*install, "-r", "/tmp/lock.txt", *index])]
    elif p.lock == "poetry.lock" and p.lock_pins:
        lines += [q([*install, *p.lock_pins, *index])]
    if p.project:
        lines.append(q([*install, "--no-deps", *p.project, *index]))
    if p.requirements:
        lines.append(q([*install, *p.requirements]))
    for command in p.commands:
        lines.append(q(list(command)))
    return "\n".join(lines)


def _index_options(offline: bool, find_links: tuple[str, ...]) -> list[str]:
    args = ["--no-index"] if offline else []
    for link in find_links:
        args += ["--find-links", link]
    return args


def build_env_vars() -> dict[str, str]:
    passed = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {
        "PATH": f"{ENV}/bin:/fixstream/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": UV_CACHE,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_LINK_MODE": "copy",
        "UV_NO_PROGRESS": "1",
        "UV_NO_CONFIG": "1",
        **passed,
    }


def installer_reason(output: str) -> str:
    """uv's own words, on one line: what went wrong, without its drawing characters."""
    lines = [_ANSI.sub("", line).strip(_DRAWING).strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    start = next(
        (i for i, line in enumerate(lines)
         if line.lower().startswith(("error", "no solution", "because", "failed"))),
        max(0, len(lines) - 3),
    )  # fmt: skip
    reason = " ".join(lines[start : start + 4]).removeprefix("error: ")
    return reason[:600] or "the installer failed without saying why"


def _uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _dir_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _chown_for_sandbox(path: Path) -> None:
    if bwrap.as_root():
        os.chown(path, bwrap.SANDBOX_UID, bwrap.SANDBOX_UID)


@dataclass
class Environments:
    """The machine's environments under ``root``: looked up, built once, evicted."""

    root: Path
    timeout_s: float = 900.0
    disk_mb: int = 20_000
    find_links: tuple[str, ...] = ()
    offline: bool = False
    mode: SandboxMode = "bwrap"
    builds: int = 0
    """Builds this process ran (reused ones do not count)."""
    _inflight: dict[str, asyncio.Task[tuple[Environment, bool]]] = field(default_factory=dict)
    _serial: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def of(cls, settings: Settings) -> Environments:
        """The machine's store as the settings describe it (workers, ``fixstream plan``)."""
        return cls(
            settings.environments_dir, timeout_s=settings.env_build_timeout_s,
            disk_mb=settings.env_disk_mb, find_links=tuple(settings.env_find_links),
            offline=settings.env_offline, mode=settings.sandbox,
        )  # fmt: skip

    def plan(self, repo: Path, spec: EnvironmentSpec | None, command: list[str]) -> Plan:
        return plan(repo, spec, command, find_links=self.find_links, offline=self.offline,
                    mode=self.mode)  # fmt: skip

    async def ensure(
        self, repo: Path, spec: EnvironmentSpec | None, command: list[str]
    ) -> tuple[Environment, bool]:
        """The environment for this repository version, and whether it was built now. A
        build is a visible step: a progress event (inside a stage) before and after it."""
        p = await asyncio.to_thread(self.plan, repo, spec, command)
        found = await asyncio.to_thread(self._lookup, p.key)
        if found is not None:
            return found, False
        files = ", ".join(p.files) or "no dependency files"
        await telemetry.report_progress(f"environment {p.key}: building ({files})")
        task = self._inflight.get(p.key)
        if task is None:
            task = asyncio.ensure_future(self._build_locked(repo, p))
            self._inflight[p.key] = task
            task.add_done_callback(lambda _t, key=p.key: self._inflight.pop(key, None))
        env, built = await asyncio.shield(task)
        if built:
            await telemetry.report_progress(f"environment {env.key} built")
        return env, built

    def ready(self, key: str) -> bool:
        return (self.root / key / "meta.json").is_file()

    def build_seconds(self) -> list[float]:
        """How long each environment in the store took to build (for ``fixstream plan``)."""
        seconds = []
        for meta in self.root.glob("*/meta.json"):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                seconds.append(float(orjson.loads(meta.read_bytes())["seconds"]))
        return seconds

    def _lookup(self, key: str) -> Environment | None:
        meta = self.root / key / "meta.json"
        try:
            data = orjson.loads(meta.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        with contextlib.suppress(OSError):
            os.utime(meta)  # recency, for eviction
        return Environment(key=key, path=self.root / key / "env", interpreter=data["interpreter"])

    async def _build_locked(self, repo: Path, p: Plan) -> tuple[Environment, bool]:
        await asyncio.to_thread(self._prepare_root)
        lock_path = self.root / ".locks" / f"{p.key}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            found = await asyncio.to_thread(self._lookup, p.key)  # built by another worker
            if found is not None:
                return found, False
            return await self._build(repo, p), True
        finally:
            os.close(fd)

    def _prepare_root(self) -> None:
        for sub in (".locks", ".building", "uv-cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        _chown_for_sandbox(self.root / "uv-cache")

    async def _build(self, repo: Path, p: Plan) -> Environment:
        work = self.root / ".building" / f"{p.key}-{os.getpid()}-{next(self._serial)}"
        env_dir = work / "env"
        env_dir.mkdir(parents=True)
        _chown_for_sandbox(env_dir)
        source = await make_workspace(repo, work, "source")  # readable by the sandbox's uid
        await asyncio.to_thread(chown_tree, source.path)
        started, wall = time.perf_counter(), time.time()
        binds = [
            Bind(_uv(), "/fixstream/bin/uv"),
            Bind(str(self.root / "uv-cache"), UV_CACHE, True),
        ]
        binds += [Bind(link, link) for link in p.find_links]
        script = build_script(p)
        if self.mode == "unsafe":  # on the host: its paths, and an export per build
            script = build_script(p, str(env_dir), str(source.path), _uv()).replace(
                "/tmp/lock.txt", str(work / "lock.txt")
            )
        layout = Layout(
            command=["/bin/sh", "-c", script], workspace=str(source.path),
            env=str(env_dir), env_writable=True, interpreters=bwrap.interpreter_prefixes(),
            extra=tuple(binds), network=True, disk_mb=BUILD_LIMITS.disk_mb,
        )  # fmt: skip
        log.info("environment %s: building for %s (%s)", p.key, repo, ", ".join(p.files) or
                 "no dependency files")  # fmt: skip
        try:
            done = await sandboxed(
                layout, limits=BUILD_LIMITS, timeout_s=self.timeout_s,
                env_vars=build_env_vars(), env_dir=env_dir, max_output_bytes=32_000,
                mode=self.mode,
            )  # fmt: skip
            if done.timed_out:
                raise EnvironmentBuildError(
                    f"environment: the build took over {self.timeout_s:.0f} s"
                )
            if done.returncode != 0:
                raise EnvironmentBuildError(f"environment: {installer_reason(done.output)}")
            await source.remove()  # the store keeps the environment, not a stale copy
            interpreter = await asyncio.to_thread(_base_prefix, env_dir)
            meta = {"key": p.key, "interpreter": interpreter, "files": list(p.files),
                    "seconds": time.perf_counter() - started, "built_at": wall,
                    "bytes": await asyncio.to_thread(_dir_bytes, env_dir)}  # fmt: skip
            (work / "meta.json").write_bytes(orjson.dumps(meta))
            await asyncio.to_thread(os.rename, work, self.root / p.key)
        finally:
            telemetry.active().span("env", "build", wall, time.time(),
                                    ok=(self.root / p.key).exists())  # fmt: skip
            await asyncio.to_thread(shutil.rmtree, work, True)
        self.builds += 1
        log.info("environment %s: built in %.1f s", p.key, time.perf_counter() - started)
        await asyncio.to_thread(self.evict, keep=p.key)
        found = self._lookup(p.key)
        assert found is not None
        return found

    def evict(self, keep: str = "") -> list[str]:
        """Least recently used environments first, until the store fits its budget."""
        entries = []
        for meta in self.root.glob("*/meta.json"):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                data = orjson.loads(meta.read_bytes())
                entries.append((meta.stat().st_mtime, meta.parent.name, data.get("bytes", 0)))
        total = sum(size for _, _, size in entries)
        evicted = []
        for _, key, size in sorted(entries):
            if total <= self.disk_mb * 1024 * 1024:
                break
            if key == keep:
                continue
            lock = os.open(self.root / ".locks" / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            try:
                doomed = self.root / ".building" / f"evicted-{key}-{os.getpid()}"
                os.rename(self.root / key, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            finally:
                os.close(lock)
            total -= size
            evicted.append(key)
            log.info("environment %s evicted (store over %d MB)", key, self.disk_mb)
        return evicted


def _base_prefix(env_dir: Path) -> str:
    """The prefix of the interpreter the virtualenv was made from (``home`` in pyvenv.cfg)."""
    for line in (env_dir / "pyvenv.cfg").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "home":
            return os.path.realpath(Path(value.strip()).parent)
    raise EnvironmentBuildError("environment: the virtualenv has no pyvenv.cfg home")
