"""The rewind hook against a real broker and the real aiokafka consumer: records fetched
and dropped before any commit come back, where aiokafka's own rewind leaves them lost."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from conftest import one_partition_topic

from fixstream.faust_hooks import seek_every_partition_to_committed

pytestmark = pytest.mark.integration


async def _fetched_and_dropped(bootstrap: str, rewind) -> list[int]:
    """Five records on a fresh topic, fetched by a group member that commits nothing (as
    Faust drops a paused partition's records), then rewound: the offsets that come again."""
    topic, group = await one_partition_topic(bootstrap, "hooks"), f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"r{n}".encode(), partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
        fetch_max_wait_ms=5,
    )  # fmt: skip
    await consumer.start()
    try:
        seen: list[int] = []
        while len(seen) < 5:
            batch = await consumer.getmany(timeout_ms=2000)
            seen += [r.offset for records in batch.values() for r in records]
        assert seen == [0, 1, 2, 3, 4]
        assert await consumer.committed(TopicPartition(topic, 0)) is None
        await rewind(consumer)
        again: list[int] = []
        for _ in range(3):
            batch = await consumer.getmany(timeout_ms=500)
            again += [r.offset for records in batch.values() for r in records]
        return again
    finally:
        await consumer.stop()


async def test_aiokafkas_own_rewind_leaves_uncommitted_records_behind(broker):
    async def aiokafka_rewind(consumer):
        await consumer.seek_to_committed()

    assert await _fetched_and_dropped(broker.bootstrap, aiokafka_rewind) == []


async def test_the_hook_rewinds_a_partition_with_nothing_committed_to_its_start(broker):
    again = await _fetched_and_dropped(broker.bootstrap, seek_every_partition_to_committed)
    assert again == [0, 1, 2, 3, 4]
