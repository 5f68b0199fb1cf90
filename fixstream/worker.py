"""Run a Faust worker for the app (the ``worker`` and ``up`` commands)."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import importlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import faust
import orjson
from pydantic import SecretStr

from fixstream import processes
from fixstream.broker import free_port
from fixstream.config import Settings
from fixstream.tokens import count_tokens

log = logging.getLogger(__name__)
READY_MARK = "fixstream worker ready"
"""Logged once the worker has its partitions (the app's on_rebalance_complete)."""
BROKER_WAIT_S = 15.0
"""How long a starting worker waits for its broker to answer before it gives up."""


def run_worker(settings: Settings, loglevel: str = "info", profile: Path | None = None) -> None:
    """Block until the worker is stopped (SIGINT/SIGTERM stop it cleanly). With ``profile``,
    the whole run is profiled and written there (pstats) when the worker stops."""
    from fixstream.app import create_app
    from fixstream.kafka import wait_for_broker
    from fixstream.sandbox.runner import isolation

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    asyncio.run(wait_for_broker(settings, BROKER_WAIT_S))
    iso = isolation(settings.sandbox)  # probed now: a refusal is said at start, with its fix
    log.info("test runs: isolation %s (host uid %d)", iso.level, iso.uid)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    # loaded now rather than inside the first bug's first call (~150 ms between them)
    count_tokens("load the tokenizer")
    importlib.import_module("openai.resources.chat.completions")
    worker = faust.Worker(app, loglevel=loglevel, loop=loop, redirect_stdouts=False)
    logging.getLogger("faust").setLevel(logging.WARNING)
    with profiled(profile):  # written before Faust's SystemExit leaves the block
        worker.execute_from_commandline()


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """cProfile around a block, written as pstats (``python -m pstats PATH``, snakeviz)."""
    if path is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        path.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(path)


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a ``fixstream worker`` child: every setting of ``settings`` (so
    none is lost on the way), a free web port, and none of the parent's own FIXSTREAM_/OPENAI_
    variables. Secrets go along in clear: it is the child's environment, never logged (test
    runs never see it: sandbox_env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIXSTREAM_", "OPENAI_"))}
    for name in settings.model_fields_set | _non_default(settings):
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, dict | list):
            text = orjson.dumps(value, default=_plain).decode()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"FIXSTREAM_{name.upper()}"] = text
    env["FIXSTREAM_WEB_PORT"] = str(free_port())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _non_default(settings: Settings) -> set[str]:
    defaults = type(settings).model_fields
    return {
        n
        for n, f in defaults.items()
        if getattr(settings, n) != f.get_default(call_default_factory=True)
    }


def _plain(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")  # type: ignore[union-attr]
    return str(value)


class WorkerProcess:
    """``fixstream worker`` as a child process with its log in a file (demo, tests, bench)."""

    def __init__(self, settings: Settings, log: Path, args: Sequence[str] = (), **env: str) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fixstream", "worker", *args],
            env=subprocess_env(settings, **env),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while READY_MARK not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready in {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> None:
        processes.stop(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit (crash tests)."""
        processes.kill(self.process)
