"""``fixstream demo``: everything embedded, the bundled examples submitted, progress shown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from fixstream.broker import EMBEDDED_SESSION_TIMEOUT, EmbeddedBroker, free_port
from fixstream.config import REPO_ROOT, Settings
from fixstream.kafka import producer, publish
from fixstream.reports import report_from_file
from fixstream.topics import apply_topics, load_catalog

EXAMPLES = REPO_ROOT / "examples"
READY_MARK = "fixstream worker ready"
LAST_STAGE = "analysis"
"""The pipeline's last stage so far; the demo waits for every example to pass it."""


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIXSTREAM_")}
    env |= {
        "FIXSTREAM_BROKER": settings.bootstrap(),
        "FIXSTREAM_BROKER_SESSION_TIMEOUT": str(settings.broker_session_timeout),
        "FIXSTREAM_DATA_DIR": str(settings.data_dir),
        "FIXSTREAM_WEB_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _start_worker(settings: Settings, log: Path, timeout: float = 90.0) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "fixstream", "worker"],
        env=_worker_env(settings),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    while READY_MARK not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        time.sleep(0.1)
    return process


def run_demo(settings: Settings, console: Console, timeout: float) -> int:
    """Returns the exit code: 0 when every example passed the last stage."""
    from fixstream.cli import follow

    reports = sorted(EXAMPLES.glob("*/report.json"))
    if not reports:
        console.print(f"[red]no examples under {EXAMPLES}")
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    worker = None
    try:
        if not settings.broker:
            broker = EmbeddedBroker(log=settings.data_dir / "broker.log")
            asyncio.run(broker.start())
            settings = settings.model_copy(
                update={
                    "broker": broker.bootstrap,
                    "broker_session_timeout": EMBEDDED_SESSION_TIMEOUT,
                }
            )
            console.print(f"embedded broker (tansu, in memory) at {broker.bootstrap}")
        catalog = load_catalog(settings.topics_file, settings.partitions)
        asyncio.run(apply_topics(catalog, settings.bootstrap(), settings.kafka_client_options()))
        console.print("starting a worker…")
        worker = _start_worker(settings, settings.data_dir / "worker.log")
        run_id = time.strftime("%H%M%S")
        bugs = [report_from_file(path) for path in reports]
        bugs = [b.model_copy(update={"bug_id": f"{b.bug_id}-{run_id}"}) for b in bugs]

        async def submit() -> None:
            async with producer(settings) as client:
                for bug in bugs:
                    await publish(client, "bugs.reported", bug.bug_id, bug)

        started = time.perf_counter()
        asyncio.run(submit())
        console.print(f"submitted {len(bugs)} examples")
        ids = {b.bug_id for b in bugs}
        board = asyncio.run(follow(settings, ids, LAST_STAGE, timeout))
        elapsed = time.perf_counter() - started
        passed = sum(
            1
            for b in ids
            if b in board.rows and board.rows[b].reached(LAST_STAGE) and not board.rows[b].dead
        )
        console.print(f"{passed}/{len(ids)} examples through {LAST_STAGE} in {elapsed:.2f}s")
        return 0 if passed == len(ids) else 1
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
