"""Shared fixtures: a real embedded broker, real worker processes, settings pointing at them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixstream.broker import EmbeddedBroker, free_port
from fixstream.config import Settings
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import WorkerProcess, subprocess_env

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture
def broker(tmp_path_factory) -> Iterator[EmbeddedBroker]:
    """An in-memory broker per test (it starts in milliseconds), every topic created: no test
    sees another's messages."""
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    embedded = EmbeddedBroker(log=log)
    asyncio.run(embedded.start())
    catalog = load_catalog(Settings().topics_file, partitions=4)
    asyncio.run(apply_topics(catalog, embedded.bootstrap))
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def llm_sim() -> Iterator[str]:
    """The LLM simulator as a real HTTP server in its own process, 100x faster than real,
    scripted to fix the bundled examples."""
    from fixstream.llm.simulator.process import simulator_process
    from fixstream.scenarios import scenario_files

    scenarios = [arg for f in scenario_files(EXAMPLES) for arg in ("--scenario", str(f))]
    with simulator_process("--time-scale", "0.01", *scenarios) as base_url:
        yield base_url


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return subprocess_env(settings, **extra)


@pytest.fixture
def settings(broker: EmbeddedBroker, llm_sim: str, tmp_path: Path, request) -> Settings:
    """Settings for one test: its own consumer group and data directory."""
    return Settings(
        **broker.client_settings(),
        app_id=f"fixstream-test-{request.node.name[:40]}-{os.getpid()}".replace("[", "-")
        .replace("]", "")
        .replace(" ", ""),
        partitions=4,
        data_dir=tmp_path / "var",
        max_message_bytes=64 * 1024,
        llm_base_url=llm_sim,
    )


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path):
    """Start worker processes for this test; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(name: str = "worker", *, ready: bool = True, **env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}.log", **env)
        started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


async def read_until(
    settings: Settings,
    topic: str,
    done,
    timeout: float = 60.0,
) -> list:
    """Records of ``topic`` from the beginning until ``done(records)`` holds (or time runs out)."""
    from fixstream.kafka import reader

    records: list = []
    deadline = time.monotonic() + timeout
    async with reader(settings, [topic]) as consumer:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if done(records):
                return records
    raise AssertionError(f"{topic}: condition not met in {timeout}s; saw {len(records)} records")


def make_repo(root: Path) -> tuple[Path, str]:
    """A small real repository with a real bug, and the real traceback it raises."""
    pkg = root / "repo" / "shop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "pricing.py").write_text(
        '"""Prices."""\n\n\nTAX = 0.2\n\n\n'
        "def unit_price(total, quantity):\n"
        '    """Price of one item."""\n'
        "    return total / quantity\n\n\n"
        "def with_tax(price):\n"
        "    return price * (1 + TAX)\n"
    )
    (pkg / "cart.py").write_text(
        "from shop.pricing import unit_price, with_tax\n\n\n"
        "class Cart:\n"
        "    def __init__(self):\n"
        "        self.items = []\n\n"
        "    def add(self, total, quantity):\n"
        "        self.items.append((total, quantity))\n\n"
        "    def prices(self):\n"
        "        return [with_tax(unit_price(t, q)) for t, q in self.items]\n"
    )
    (pkg / "unrelated.py").write_text("def hello():\n    return 'hi'\n")
    script = "from shop.cart import Cart\nc = Cart()\nc.add(10, 0)\nc.prices()\n"
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=root / "repo", capture_output=True, text=True
    )
    assert "ZeroDivisionError" in run.stderr
    return root / "repo", run.stderr


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port (Debian's package; .ci/run installs it)."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run .ci/run or `apt-get install redis-server`")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)
