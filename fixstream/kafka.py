"""Plain aiokafka clients for the CLI and tests (the workers use Faust's)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import tenacity
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from fixstream.config import Settings
from fixstream.errors import BrokerUnreachableError
from fixstream.schemas import Event
from fixstream.wire import SCHEMA_HEADER, schema_tag

ISOLATION_LEVEL = "read_committed"
"""Every reader's, whatever ``processing_guarantee`` says: under exactly_once a reader never
sees an aborted or still open transaction's records, and ``end_offsets`` is the last stable
offset; on a topic nobody writes in transactions it reads exactly what read_uncommitted does
(an operator's shell without the workers' setting reads what the workers committed)."""


async def start(client: Any, bootstrap: str) -> None:
    """Start a client (producer, consumer, admin), or close what it opened and say which
    broker did not answer: one error, not aiokafka's log lines and a leaked connection."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its own "Unable connect to" line says it once more
    try:
        await client.start()
    except BaseException as exc:
        await (client.stop() if hasattr(client, "stop") else client.close())
        if isinstance(exc, KafkaError):
            raise BrokerUnreachableError(f"cannot reach the Kafka broker at {bootstrap}") from exc
        raise
    finally:
        quiet.setLevel(level)


@asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap(),
        max_request_size=4 * settings.max_message_bytes,
        max_batch_size=settings.producer_batch_bytes,
        **settings.kafka_client_options(),
    )
    await start(client, settings.bootstrap())
    try:
        yield client
    finally:
        await client.stop()


async def wait_for_broker(settings: Settings, timeout: float) -> None:
    """Until the broker answers (a worker may start beside it), then BrokerUnreachableError:
    one line, where Faust would print a page of ConsumerNotStarted traceback."""
    async for attempt in tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(BrokerUnreachableError),
        wait=tenacity.wait_fixed(0.5),
        stop=tenacity.stop_after_delay(timeout),
        reraise=True,
    ):
        with attempt:
            async with producer(settings):
                return


async def publish(client: AIOKafkaProducer, topic: str, key: str, event: Event) -> None:
    """One event as the wire contract says (``fixstream.wire``): keyed, with its schema."""
    headers = [(SCHEMA_HEADER, schema_tag(type(event)))]
    await client.send_and_wait(topic, event.to_bytes(), key=key.encode(), headers=headers)


@asynccontextmanager
async def reader(
    settings: Settings, topics: Iterable[str], *, from_beginning: bool = True
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer assigned every partition of ``topics`` (an observer, not a worker)."""
    client = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap(),
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        isolation_level=ISOLATION_LEVEL,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.kafka_client_options(),
    )
    await start(client, settings.bootstrap())
    try:
        partitions = []
        for topic in topics:
            ids = client.partitions_for_topic(topic)
            if ids is None:
                await client._client.force_metadata_update()
                ids = client.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        client.assign(partitions)
        if from_beginning:
            await client.seek_to_beginning(*partitions)
        else:
            await client.seek_to_end(*partitions)
        yield client
    finally:
        await client.stop()


async def read_to_end(
    settings: Settings, topics: Iterable[str], timeout: float = 60.0
) -> list[ConsumerRecord]:
    """Every record of ``topics`` up to the end offsets seen when reading began."""
    records: list[ConsumerRecord] = []
    async with reader(settings, topics) as consumer:
        parts = list(consumer.assignment())
        if not parts:
            raise KafkaError(f"no such topics {list(topics)}: run `fixstream topics apply`")
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout
        # positions, not record offsets: compaction and markers leave gaps
        while left := [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{list(topics)} not read to the end in {timeout:.0f} s")
            for tp, part in (await consumer.getmany(*left, timeout_ms=200)).items():
                records += [r for r in part if r.offset < ends[tp]]
    return records
