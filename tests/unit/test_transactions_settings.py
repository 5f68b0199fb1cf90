"""``processing_guarantee`` reaches the worker's Faust app (and through it its consumer and
producers) and a worker started as a child process; fixstream's own readers read committed
whatever it says.

No broker: the aiokafka classes are replaced by recorders that keep the keyword arguments
they were built with and refuse before anything connects."""

from __future__ import annotations

import os

import aiokafka
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types.enums import ProcessingGuarantee
from pydantic import ValidationError

import fixstream.kafka
import fixstream.telemetry
from fixstream.app import create_app
from fixstream.config import Settings
from fixstream.kafka import reader
from fixstream.llm.gateway import Gateway
from fixstream.llm.transport import ScriptedTransport
from fixstream.worker import subprocess_env

BROKER = "kafka.example:9092"


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    """Only what a test passes counts, not the developer's FIXSTREAM_/OPENAI_ variables."""
    for name in list(os.environ):
        if name.startswith(("FIXSTREAM_", "OPENAI_")):
            monkeypatch.delenv(name)


class Refused(Exception):
    """Raised by a recorder where the real client would go on to connect."""


def recorder(calls: list[dict[str, object]]) -> type:
    class Client:
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append(kwargs)
            raise Refused

    return Client


def settings_for(tmp_path, **overrides: object) -> Settings:
    return Settings(
        broker=BROKER,
        data_dir=tmp_path / "var",
        llm_base_url="http://127.0.0.1:9/v1",
        web_enabled=False,
        **overrides,
    )


def test_at_least_once_is_the_default_and_the_environment_chooses(monkeypatch):
    assert Settings().processing_guarantee == "at_least_once"
    monkeypatch.setenv("FIXSTREAM_PROCESSING_GUARANTEE", "exactly_once")
    assert Settings().processing_guarantee == "exactly_once"
    monkeypatch.setenv("FIXSTREAM_PROCESSING_GUARANTEE", "exactly-once")
    with pytest.raises(ValidationError, match="at_least_once"):
        Settings()


@pytest.mark.parametrize(
    ("guarantee", "faust_guarantee", "commit_interval", "isolation", "idempotent"),
    [
        ("at_least_once", ProcessingGuarantee.AT_LEAST_ONCE, 2.8, "read_uncommitted", False),
        ("exactly_once", ProcessingGuarantee.EXACTLY_ONCE, 0.1, "read_committed", True),
    ],
)
def test_the_guarantee_reaches_the_worker_app_its_consumer_and_its_producers(
    tmp_path, monkeypatch, guarantee, faust_guarantee, commit_interval, isolation, idempotent
):
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", recorder(calls))
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", recorder(calls))
    # create_app installs process-wide telemetry and Faust's fetch-wait patch: put them back
    monkeypatch.setattr(fixstream.telemetry, "_active", fixstream.telemetry.active())
    monkeypatch.setattr(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        AIOKafkaConsumerThread._create_worker_consumer,
    )
    settings = settings_for(tmp_path, processing_guarantee=guarantee)

    app = create_app(settings, llm=Gateway(ScriptedTransport()))

    assert app.conf.processing_guarantee == faust_guarantee
    # under exactly_once each hop waits for its sender's commit: Kafka Streams' 100 ms
    assert app.conf.broker_commit_interval == commit_interval
    app.in_worker = True  # what faust.Worker sets before the consumer exists
    assert app.in_transaction is (guarantee == "exactly_once")
    with pytest.raises(Refused):
        app.consumer._thread._create_worker_consumer(app.transport)
    with pytest.raises(Refused):  # the producer, and each partition's transactional one
        app.producer._new_producer()
    consumer, producer = calls
    assert consumer["isolation_level"] == isolation
    assert producer.get("enable_idempotence", False) is idempotent
    if idempotent:
        assert producer["acks"] == "all"


def test_a_worker_child_process_gets_the_guarantee(tmp_path):
    env = subprocess_env(settings_for(tmp_path, processing_guarantee="exactly_once"))
    assert env["FIXSTREAM_PROCESSING_GUARANTEE"] == "exactly_once"
    default = subprocess_env(settings_for(tmp_path))
    assert default.get("FIXSTREAM_PROCESSING_GUARANTEE", "at_least_once") == "at_least_once"


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_every_reader_reads_committed_whatever_the_guarantee(
    tmp_path, monkeypatch, guarantee
):
    """An operator's shell without the workers' setting reads what the workers committed."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(fixstream.kafka, "AIOKafkaConsumer", recorder(calls))
    settings = settings_for(tmp_path, processing_guarantee=guarantee)
    with pytest.raises(Refused):
        async with reader(settings, ["fixes"]):
            pass
    with pytest.raises(Refused):
        await fixstream.kafka.read_to_end(settings, ["fixes"])
    assert [kwargs["isolation_level"] for kwargs in calls] == ["read_committed"] * 2
    # and aiokafka accepts it (it refuses an unknown isolation level when built)
    client = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=BROKER, isolation_level=calls[0]["isolation_level"]
    )
    await client.stop()
