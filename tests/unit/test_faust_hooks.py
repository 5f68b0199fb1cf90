"""The Faust and aiokafka private code fixstream leans on, held against the installed source."""

from __future__ import annotations

import asyncio
import inspect

import aiokafka
import faust
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP as FaustTP

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

    async def beginning_offsets(self, tps):
        return {tp: 3 for tp in tps}


async def test_partitions_with_nothing_or_zero_committed_go_back_to_their_start():
    unset, zero, later = (TopicPartition("t", n) for n in range(3))
    consumer = FakeConsumer({unset: None, zero: 0, later: 7})
    heads = await faust_hooks.seek_every_partition_to_committed(consumer)
    # nothing committed: the head is the log's start (3 here: retention deleted 0-2)
    assert heads == {unset: 3, zero: 0, later: 7}
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


# The interleavings instrumented soaks found losing records, each replayed on Faust's real
# Consumer (built, not started: its thread is replaced by the few calls the hooks make).

TP = FaustTP("bugs.reported", 2)


@pytest.fixture
async def consumer():
    faust_hooks.install(fetch_wait_ms=5, rebalance_wait_s=1.0)
    app = faust.App(f"hooks-{id(object())}", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    consumer.seeks = []
    consumer.assignment = lambda: {TP}

    async def position(tp):  # past every record, until a seek puts it back
        return next((offset for sought, offset in reversed(consumer.seeks) if sought == tp), 100)

    async def _seek(tp, offset):
        consumer.seeks.append((tp, offset))

    consumer.position = position
    consumer._seek = _seek
    return consumer


def acked(consumer, *offsets: int) -> None:
    consumer._acked[TP].extend(offsets)
    consumer._acked_index[TP].update(offsets)


def unhooked(method):
    return method.__wrapped__


def test_nothing_committed_and_the_first_record_acked_is_4_commits_nothing(consumer):
    """Run 3: bugs.reported/2 assigned with nothing committed, first record yielded 4,
    committed as 5: offsets 0-3 were gone. Faust's own check let it through."""
    acked(consumer, 4)
    assert unhooked(Consumer._new_offset)(consumer, TP) == 5  # what Faust alone commits
    acked(consumer, 4)
    assert consumer._new_offset(TP) is None


def test_a_one_record_hole_after_the_committed_offset_holds_the_commit(consumer):
    consumer._committed_offset[TP] = 5
    acked(consumer, 6, 7, 8, 9)
    assert unhooked(Consumer._new_offset)(consumer, TP) == 10
    acked(consumer, 6, 7, 8, 9)
    assert consumer._new_offset(TP) is None
    acked(consumer, 5)
    assert consumer._new_offset(TP) == 10


def test_offsets_the_log_does_not_have_are_told_from_lost_ones_by_the_fetch_sequence(consumer):
    """After a seek to 5, the first record yielded is 7 (5 and 6 are, say, transaction
    markers): they count as done. Faust's _add_gap would start at 6 and hold the commit."""
    consumer._committed_offset[TP] = 5
    book = faust_hooks.ledger(consumer)
    book.next[TP] = book.sought[TP] = 5  # sought to 5: the fetch began there
    assert faust_hooks._in_sequence(consumer, book, TP, 7)
    acked(consumer, 7)
    assert consumer._new_offset(TP) == 8


async def test_a_jump_no_seek_vouches_for_is_fetched_again_not_taken_for_absent(consumer):
    """The 300-bug soak: records 3-4 of bugs.analyzed/4 were dropped as stale, and the rewind
    after the batch did not happen; the next record yielded was 5. Taken for "3-4 absent",
    the commit went past 4, which nobody had processed (a bug stalled for 20 minutes)."""
    consumer._active_partitions = {TP}
    consumer.flow_active = True
    consumer.app.topics._acking_topics.add(TP.topic)
    consumer._committed_offset[TP] = 3
    book = faust_hooks.ledger(consumer)
    book.next[TP] = 3  # delivered up to 2; no seek since
    got = await _yielded_from(consumer, Consumer.getmany, {TP: [record(5), record(6)]})
    assert got == [] and consumer.seeks == [(TP, 3)]
    assert not consumer._gap[TP]
    # fetched again from 3: the sequence holds, and a jump right after the seek is absence
    got = await _yielded_from(consumer, Consumer.getmany, {TP: [record(4), record(5)]})
    assert got == [(TP, 4), (TP, 5)] and consumer._gap[TP].at(3)


class Held:
    """A message an agent has in flight (tracked by Faust, not acked)."""

    def __init__(self, offset: int) -> None:
        self.tp, self.offset, self.acked = TP, offset, False


async def test_a_hole_no_agent_holds_is_sought_back_to(consumer):
    """Acked 4, and 0 is neither acked nor held by an agent: after HOLE_COMMITS commits the
    partition is rewound to its head; while an agent holds 0, nothing happens."""
    book = faust_hooks.ledger(consumer)
    book.next[TP] = 5
    acked(consumer, 4)
    consumer._unacked_messages.add(in_flight := Held(0))
    for _ in range(faust_hooks.HOLE_COMMITS + 1):
        await consumer.force_commit()
    assert consumer.seeks == []  # 0 is in flight: not a hole
    in_flight.acked = True
    for _ in range(faust_hooks.HOLE_COMMITS):
        await consumer.force_commit()
    assert consumer.seeks == [(TP, 0)]
    assert book.next[TP] == 0


async def test_a_last_record_no_agent_took_is_sought_back_to(consumer):
    """The soak's 'committed 0 of 1': the only record of bugs.patched/4 was fetched, then
    skipped by Faust's stream (a message of an older rebalance generation is dropped without
    an ack), and nothing acked after it: no hole for the commit check to see."""
    book = faust_hooks.ledger(consumer)
    book.next[TP] = 1
    for _ in range(faust_hooks.HOLE_COMMITS):
        await consumer.force_commit()
    assert consumer.seeks == [(TP, 0)]
    await consumer.force_commit()
    assert consumer.seeks == [(TP, 0)]  # once: the seek put the fetch back at the head


def record(offset: int, tp: FaustTP = TP) -> ConsumerRecord:
    return ConsumerRecord(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=0, timestamp_type=0,
        key=b"k", value=b"v", checksum=None, serialized_key_size=1, serialized_value_size=1,
        headers=(),
    )  # fmt: skip


async def _yielded_from(consumer, getmany, records) -> list[tuple[FaustTP, int]]:
    async def _getmany(active_partitions, timeout):
        return records

    consumer._getmany = _getmany
    consumer.highwater = lambda tp: 100
    return [(tp, message.offset) async for tp, message in getmany(consumer, 0.1)]


async def test_records_fetched_for_a_paused_partition_are_sought_back_to(consumer):
    """Run 4: 20 records of chunks.tasks/1 fetched, then discarded because recovery had
    paused the partition. aiokafka's position was past them; now they come again."""
    paused = FaustTP("chunks.tasks", 1)
    consumer.assignment = lambda: {TP, paused}
    consumer._active_partitions = {TP}
    consumer.flow_active = True
    batch = {TP: [record(0), record(1)], paused: [record(o, paused) for o in range(36, 56)]}
    got = await _yielded_from(consumer, unhooked(Consumer.getmany), dict(batch))
    assert got == [(TP, 0), (TP, 1)] and consumer.seeks == []  # Faust alone: 36-55 gone
    got = await _yielded_from(consumer, Consumer.getmany, dict(batch))
    assert got == [(TP, 0), (TP, 1)]
    assert consumer.seeks == [(paused, 36)]


async def test_a_batch_cut_short_by_a_rebalance_is_sought_back_to(consumer):
    consumer._active_partitions = {TP}
    consumer.flow_active = True
    getmany = Consumer.getmany(consumer, 0.1)

    async def _getmany(active_partitions, timeout):
        return {TP: [record(10), record(11), record(12)]}

    consumer._getmany = _getmany
    consumer.highwater = lambda tp: 100
    _, first = await getmany.__anext__()
    consumer.flow_active = False  # the flow stops mid-batch: Faust breaks out
    assert [m.offset async for _, m in getmany] == []
    assert first.offset == 10 and consumer.seeks == [(TP, 11)]


def test_a_rebalance_waits_a_bounded_time_for_messages_in_flight(consumer):
    source = inspect.getsource(faust.transport.consumer.Consumer.wait_empty)
    assert "while not self.should_stop and self._unacked_messages" in source  # no bound


async def test_the_bounded_wait_lets_the_rebalance_go_on(consumer):
    class Stuck:
        acked = False
        refcount = 1

    consumer._unacked_messages.add(stuck := Stuck())
    committed = []

    async def commit_and_end_transactions():
        committed.append(True)

    consumer.commit_and_end_transactions = commit_and_end_transactions
    consumer.commit = commit_and_end_transactions
    await asyncio.wait_for(consumer.wait_empty(), 30)  # Faust's never returns (or cancels)
    assert committed and stuck in consumer._unacked_messages


async def test_a_partition_revoked_and_assigned_again_is_not_rewound_before_its_seek(consumer):
    """After a rebalance Faust forgets the committed offset of a revoked partition; until the
    seek to the committed offset, its head is unknown, not 0 (the first soak rewound
    partitions to 0 that had 15 committed)."""
    book = faust_hooks.ledger(consumer)
    consumer._committed_offset[TP] = 15
    book.next[TP] = 20
    await consumer.on_partitions_revoked({TP})
    faust_hooks._in_sequence(consumer, book, TP, 21)  # a record fetched before the seek
    for _ in range(faust_hooks.HOLE_COMMITS + 1):
        await consumer.force_commit()
    assert consumer.seeks == []


async def test_a_message_the_stream_skipped_is_not_acked(consumer):
    """Faust's stream acks a message it skips (an older rebalance generation, a stopped flow)
    "so that the lag does not grow": the 300-bug soak lost two validated candidates so. A
    skipped message was never tracked; a processed one always is."""
    from faust.types.tuples import ConsumerMessage

    consumer.app.topics._acking_topics.add(TP.topic)

    def message(offset: int, tracked: bool) -> ConsumerMessage:
        m = ConsumerMessage(TP.topic, TP.partition, offset, 0.0, 0, [], b"k", b"v", None)
        m.tracked = tracked
        return m

    assert unhooked(Consumer.ack)(consumer, message(0, tracked=False))  # Faust alone: acked
    consumer._acked[TP].clear()
    consumer._acked_index[TP].clear()
    assert not consumer.ack(message(0, tracked=False))
    assert consumer._acked[TP] == []
    assert consumer.ack(message(0, tracked=True))
    assert consumer._new_offset(TP) == 1


async def test_records_of_a_batch_fetched_before_a_seek_are_not_delivered(consumer):
    """The 60-bug soak: records 41-69 of chunks.results/5 were yielded while the rebalance's
    seek to the committed offset (41) ran; then 70, from the same batch, came out. Delivered,
    it read as "41-69 absent from the log", and the commit could skip records nobody had
    processed (three bugs stalled until the watchdog re-drove them)."""
    consumer._active_partitions = {TP}
    consumer.flow_active = True
    consumer.app.topics._acking_topics.add(TP.topic)
    book = faust_hooks.ledger(consumer)

    async def _getmany(active_partitions, timeout):
        return {TP: [record(69), record(70)]}

    consumer._getmany = _getmany
    consumer.highwater = lambda tp: 100
    plain = unhooked(Consumer.getmany)(consumer, 0.1)
    assert (await plain.__anext__())[1].offset == 69
    await consumer.seek(TP, 41)
    assert [m.offset async for _, m in plain] == [70]  # Faust alone: a stale record

    consumer.seeks.clear()
    book.next[TP] = 69  # the fetch sequence is at 69 when the batch comes
    hooked = Consumer.getmany(consumer, 0.1)
    _, first = await hooked.__anext__()
    await consumer.seek(TP, 41)  # the rebalance's seek lands mid-batch
    assert [m.offset async for _, m in hooked] == []
    assert first.offset == 69 and book.next[TP] == 41
    assert not consumer._gap[TP]  # 41-69 are not taken for absent
    consumer._committed_offset[TP] = 41
    acked(consumer, 69)
    assert consumer._new_offset(TP) is None


def test_an_offset_both_acked_and_marked_absent_does_not_slow_the_commit(consumer):
    """Faust walks a sorted list in which a gap entry and an ack repeat an offset: the run
    ended at the first repeat, and the commit crawled one offset per commit (chunks.results/1
    ended the soak committed at 153 of 228)."""
    consumer._committed_offset[TP] = 41
    acked(consumer, *range(41, 71))
    consumer._gap[TP].addi(41, 70)
    assert unhooked(Consumer._new_offset)(consumer, TP) == 42  # Faust alone: one at a time
    consumer._acked[TP].clear()
    consumer._acked_index[TP].clear()
    acked(consumer, *range(41, 71))
    consumer._gap[TP].addi(41, 70)
    assert consumer._new_offset(TP) == 71
    assert consumer._acked[TP] == [] and not consumer._gap[TP]


async def test_faust_does_not_mark_the_record_it_delivers_as_absent(consumer):
    """Faust's _add_gap(tp, 6, 7) covers 6-7: record 7, about to be processed, would count as
    done for the commit. Gaps come from the fetch sequence (``_in_sequence``) alone."""
    await unhooked(Consumer._add_gap)(consumer, TP, 6, 7)
    assert consumer._gap[TP].at(7)
    consumer._gap[TP].clear()
    await consumer._add_gap(TP, 6, 7)
    assert not consumer._gap[TP]


def test_lost_leader_counts_only_refusals_under_the_same_departed_leader(monkeypatch):
    from fixstream.faust_hooks import LostLeader

    monkeypatch.setattr("fixstream.faust_hooks.random.randint", lambda a, b: b)  # most rounds
    seen = LostLeader(rounds=2)
    assert seen.needed == 4
    seen.joined("L", "F")
    assert [seen.refused("F") for _ in range(3)] == [False, False, False]
    seen.joined("G", "F")  # another leader: a new episode
    assert not seen.refused("F") and seen.stuck == 1
    seen.joined("F", "F")  # this member leads: never stuck
    assert not seen.refused("F") and seen.stuck == 0
    seen.joined("L", "F")
    for _ in range(3):
        seen.refused("F")
    seen.synced()  # an assignment came: start over
    assert seen.stuck == 0 and not seen.refused("F")
    assert [seen.refused("F") for _ in range(3)] == [False, False, True]
