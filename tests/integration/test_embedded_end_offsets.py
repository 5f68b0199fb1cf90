"""The embedded broker's end offsets, and why fixstream's producers send one record per batch
there: after a batch of several records, tansu 0.6.0 reports the partition's end as the
batch's first offset + 1. Readers to the end stop short, and Faust's table recovery crashes
("persisted offset ... is higher than the last offset in that topic"): the 300-bug soak lost
workers that way. Measured with aiokafka alone; the setting is fixstream's."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from conftest import one_partition_topic

from fixstream.broker import EmbeddedBroker
from fixstream.config import Settings

pytestmark = pytest.mark.integration


async def _end_after_a_burst(bootstrap: str, batch_bytes: int) -> tuple[int, int]:
    """25 records sent at once: (the last offset written + 1, the end offset reported)."""
    topic = await one_partition_topic(bootstrap, "ends")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=batch_bytes)  # fmt: skip
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await producer.start()
    await consumer.start()
    try:
        sent = [await producer.send(topic, b"x" * 10, partition=0) for _ in range(25)]
        last = max((await asyncio.gather(*sent)), key=lambda m: m.offset).offset
        tp = TopicPartition(topic, 0)
        return last + 1, (await consumer.end_offsets([tp]))[tp]
    finally:
        await producer.stop()
        await consumer.stop()


def test_one_record_per_batch_keeps_the_embedded_brokers_end_offsets_true(broker):
    if not isinstance(broker, EmbeddedBroker):  # real Kafka: batches are fine either way
        pytest.skip("the one-record batches are for the embedded broker only")
    settings = Settings(**broker.client_settings())
    written, reported = asyncio.run(_end_after_a_burst(broker.bootstrap, 16384))
    assert reported < written, "tansu reports end offsets right now: drop the workaround"
    written, reported = asyncio.run(
        _end_after_a_burst(broker.bootstrap, settings.producer_batch_bytes)
    )
    assert reported == written
