"""Every place fixstream reaches into Faust's or aiokafka's private code, in one module.

Each hook is written against the pinned versions (``PINNED``) and refuses to install on any
other, so an upgrade is a decision, not a surprise; ``tests/unit/test_faust_hooks.py`` holds
each one against the installed source.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

PINNED = {"faust": "0.15.3", "aiokafka": ("0.11", "0.12", "0.13", "0.14")}


def check_versions() -> None:
    if faust.__version__ != PINNED["faust"] or not aiokafka.__version__.startswith(
        PINNED["aiokafka"]
    ):
        raise RuntimeError(
            f"fixstream's Faust hooks are written for faust-streaming {PINNED['faust']} and "
            f"aiokafka {'/'.join(PINNED['aiokafka'])}.x, not {faust.__version__} and "
            f"{aiokafka.__version__}: check fixstream/faust_hooks.py against the new source"
        )


def fetch_wait(ms: int) -> None:
    """Faust builds its consumer with ``fetch_max_wait_ms=1500``, fixed; this process's
    Faust consumers use ``ms`` instead (see ``broker.EMBEDDED_FETCH_MAX_WAIT_MS``)."""
    check_versions()
    original = getattr(AIOKafkaConsumerThread._create_worker_consumer, "__wrapped__", None)
    create = original or AIOKafkaConsumerThread._create_worker_consumer

    @functools.wraps(create)
    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = ms  # read when the consumer starts its fetcher
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


async def seek_every_partition_to_committed(consumer: Any) -> Mapping[TopicPartition, int | None]:
    """aiokafka's ``seek_to_committed`` seeks only partitions whose committed offset is above
    0. Faust calls it after a rebalance to rewind what it fetched but threw away while the
    partition was paused for recovery (``Consumer.getmany`` drops records of inactive
    partitions). A partition with nothing committed (None) or 0 committed was then never
    rewound, and its first records were lost: a bug submitted just before a worker died was
    never picked up by the survivor. Here those go back to their start too."""
    committed = await consumer.seek_to_committed()
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    unset = [tp for tp, offset in committed.items() if offset is None]
    if unset:  # nothing committed: from the start, as auto_offset_reset=earliest says
        await consumer.seek_to_beginning(*unset)
    return committed


def rewind_uncommitted() -> None:
    """Faust's rewind after a rebalance covers every assigned partition (see above)."""
    check_versions()
    if getattr(AIOKafkaConsumerThread.seek_to_committed, "__fixstream__", False):
        return

    async def seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[TopicPartition, Any]:
        return await self.call_thread(seek_every_partition_to_committed, self._ensure_consumer())

    seek_to_committed.__fixstream__ = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
