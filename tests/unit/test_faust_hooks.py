"""The Faust and aiokafka private code fixstream leans on, held against the installed source."""

from __future__ import annotations

import inspect

import aiokafka
import faust
import pytest
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from fixstream import faust_hooks


def test_the_hooks_are_for_the_installed_versions_and_refuse_others(monkeypatch):
    faust_hooks.check_versions()
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(RuntimeError, match="written for faust-streaming 0.15.3"):
        faust_hooks.rewind_uncommitted()


def test_aiokafka_still_skips_partitions_committed_at_none_or_zero():
    """The gap the rewind hook fills: if aiokafka ever seeks these itself, drop the hook."""
    source = inspect.getsource(aiokafka.AIOKafkaConsumer.seek_to_committed)
    assert "if offset and offset > 0:" in source


def test_faust_rewinds_through_the_consumer_threads_seek_to_committed():
    """Faust's perform_seek (after a rebalance) is where the hook takes effect."""
    source = inspect.getsource(faust.transport.consumer.Consumer.perform_seek)
    assert "await self.seek_to_committed()" in source
    assert "self._thread.seek_to_committed()" in inspect.getsource(
        faust.transport.consumer.ThreadDelegateConsumer.seek_to_committed
    )


class FakeConsumer:
    def __init__(self, committed):
        self.committed = committed
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.to_beginning: list[TopicPartition] = []

    async def seek_to_committed(self):
        return self.committed

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, *tps):
        self.to_beginning += tps


async def test_partitions_with_nothing_or_zero_committed_go_back_to_their_start():
    unset, zero, later = (TopicPartition("t", n) for n in range(3))
    consumer = FakeConsumer({unset: None, zero: 0, later: 7})
    committed = await faust_hooks.seek_every_partition_to_committed(consumer)
    assert committed == {unset: None, zero: 0, later: 7}
    assert consumer.seeks == [(zero, 0)]  # 7 is aiokafka's own seek
    assert consumer.to_beginning == [unset]


def test_the_rewind_hook_installs_once():
    original = AIOKafkaConsumerThread.seek_to_committed
    try:
        faust_hooks.rewind_uncommitted()
        installed = AIOKafkaConsumerThread.seek_to_committed
        faust_hooks.rewind_uncommitted()
        assert AIOKafkaConsumerThread.seek_to_committed is installed
        assert installed.__fixstream__
    finally:
        AIOKafkaConsumerThread.seek_to_committed = original
