"""Every place fixstream reaches into Faust's or aiokafka's private code, in one module.

Faust stays for what it does well (agents, co-partitioned tables, rebalancing, the web
page); what it gets wrong about offsets is corrected here, not worked around in the stages.
Instrumented soaks found faust-streaming 0.15.3 losing records in four ways, each fixed by
one hook below (``install`` applies them all):

- ``Consumer.getmany`` throws away records aiokafka already handed over (the position has
  moved past them) when their partition is paused for recovery, or when a rebalance starts
  mid-batch. ``rewind_undelivered``: whatever was fetched and not yielded is sought back to.
- aiokafka's ``seek_to_committed`` skips partitions with nothing (or 0) committed, so the
  rewind after a rebalance missed them. ``seek_every_partition_to_committed``.
- ``Consumer._new_offset`` commits past a hole at the head when nothing (or 0) is committed,
  and past a one-record hole otherwise. ``commit_contiguous``: per partition, only the highest
  offset contiguous from the committed one is committed; a hole no stream is working on is
  sought back to. Offsets the log does not have (compaction, transaction markers, retention)
  are told from lost ones by the fetch sequence, which after these hooks has no holes.
- A batch fetched before a seek (the rebalance's seek to the committed offset runs while
  ``getmany`` yields) is stale: delivered, its records jump ahead of the new position, and
  the jump read as offsets absent from the log. ``rewind_undelivered`` does not deliver them.

And one for exactly_once: Faust puts each send in the transaction of its *destination*
partition, so a chunk task for another worker's partition fails and one for an idle
partition is never committed. ``transactions_by_source``: an event's sends join its source
partition's transaction, the one its offset is committed in.

And one for the embedded broker's group coordinator (tansu 0.6.0): a leader that leaves while
the group is forming stays its recorded leader, so every follower's SyncGroup is refused and
the group never forms again (the 300-bug soak stalled for 20 minutes; reproduced with
aiokafka alone). ``adopt_lost_leader``: a member that sees it for some rounds re-joins under
the departed leader's id, is elected, and assigns the group.

And one that bounds a wait: Faust blocks a rebalance until every message in flight is acked,
which a 120 s validate turns into minutes. ``bounded_rebalance_wait``: in-flight work on
revoked partitions is never acked (``streams.inflight``), so the next owner redoes it.

Each hook is written against the pinned versions (``PINNED``) and refuses to install on any
other, so an upgrade is a decision, not a surprise; ``tests/unit/test_faust_hooks.py`` holds
each one against the installed source.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiokafka
import faust
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.structs import TopicPartition
from faust.exceptions import ProducerSendError
from faust.streams import current_event
from faust.transport.consumer import Consumer, TopicPartitionGroup, TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

log = logging.getLogger(__name__)

PINNED = {"faust": "0.15.3", "aiokafka": ("0.11", "0.12", "0.13", "0.14")}
HOOKED = "__fixstream__"


def check_versions() -> None:
    if faust.__version__ != PINNED["faust"] or not aiokafka.__version__.startswith(
        PINNED["aiokafka"]
    ):
        raise RuntimeError(
            f"fixstream's Faust hooks are written for faust-streaming {PINNED['faust']} and "
            f"aiokafka {'/'.join(PINNED['aiokafka'])}.x, not {faust.__version__} and "
            f"{aiokafka.__version__}: check fixstream/faust_hooks.py against the new source"
        )


def _hook(owner: type, name: str, make: Any) -> None:
    """Replace ``owner.name`` with ``make(original)``, once: installing twice is a no-op."""
    current = getattr(owner, name)
    if getattr(current, HOOKED, False):
        return
    hooked = functools.wraps(current)(make(current))
    setattr(hooked, HOOKED, True)
    setattr(owner, name, hooked)


def install(*, fetch_wait_ms: int, rebalance_wait_s: float, lost_leader_rounds: int = 0) -> None:
    """Every hook, for this process's Faust consumers."""
    check_versions()
    fetch_wait(fetch_wait_ms)
    rewind_uncommitted()
    rewind_undelivered()
    commit_contiguous()
    bounded_rebalance_wait(rebalance_wait_s)
    transactions_by_source()
    adopt_lost_leader(lost_leader_rounds)


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


async def seek_every_partition_to_committed(consumer: Any) -> Mapping[TopicPartition, int]:
    """aiokafka's ``seek_to_committed`` seeks only partitions whose committed offset is above
    0. Faust calls it after a rebalance to rewind what it fetched but threw away while the
    partition was paused for recovery. A partition with nothing committed (None) or 0
    committed was then never rewound, and its first records were lost: a bug submitted just
    before a worker died was never picked up by the survivor. Here those go back to their
    start too, and the start is returned as the partition's head: the offset from which
    ``commit_contiguous`` counts (the log may not begin at 0)."""
    committed = await consumer.seek_to_committed()
    for tp, offset in committed.items():
        if offset == 0:
            consumer.seek(tp, 0)
    unset = [tp for tp, offset in committed.items() if offset is None]
    if not unset:
        return committed
    # nothing committed: from the start, as auto_offset_reset=earliest says
    await consumer.seek_to_beginning(*unset)
    starts = await consumer.beginning_offsets(unset)
    return {**committed, **{tp: starts[tp] for tp in unset}}


def rewind_uncommitted() -> None:
    """Faust's rewind after a rebalance covers every assigned partition (see above)."""
    check_versions()

    def make(_: Any) -> Any:
        async def seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[TopicPartition, Any]:
            return await self.call_thread(
                seek_every_partition_to_committed, self._ensure_consumer()
            )

        return seek_to_committed

    _hook(AIOKafkaConsumerThread, "seek_to_committed", make)


@dataclass
class Ledger:
    """What fixstream knows about a Faust consumer's partitions, beyond what Faust keeps."""

    next: dict[Any, int] = field(default_factory=dict)
    """Per partition, the offset the fetch sequence is at: the next record yielded must be
    this one, or the log does not have the ones in between. Only partitions assigned and
    sought to their committed offset since (``perform_seek``): before that, Faust's head
    for them is not known."""
    batch: Mapping[Any, list[Any]] | None = None
    """The records of the batch ``getmany`` is yielding (the position is already past them)."""
    seeks: dict[Any, int] = field(default_factory=dict)
    """Per partition, how many times it was sought: a record of a batch fetched before the
    latest seek is stale (the seek will fetch it again, or it was already delivered)."""
    batch_seeks: dict[Any, int] = field(default_factory=dict)
    """``seeks`` as it was when the batch being yielded was fetched."""
    sought: dict[Any, int] = field(default_factory=dict)
    """Per partition, the offset it was sought to, until a record of it is delivered: a first
    record past it proves the offsets in between absent (the fetch began exactly there)."""
    holes: dict[Any, int] = field(default_factory=dict)
    """A partition whose head no agent holds, and for how many commits in a row."""
    rewinds: int = 0


def ledger(consumer: Any) -> Ledger:
    found = consumer.__dict__.get("_fixstream")
    if found is None:
        found = consumer.__dict__["_fixstream"] = Ledger()
    return found


async def _rewind(consumer: Consumer, tp: Any, offset: int, why: str) -> None:
    """Seek ``tp`` back to ``offset`` unless it is no longer ours or already before it."""
    try:
        if tp not in consumer.assignment():
            return  # its next owner starts from the committed offset
        position = await consumer.position(tp)
        if position is not None and position <= offset:
            return  # a rewind after a rebalance got there first
        await consumer.seek(tp, offset)
    except Exception as exc:  # revoked meanwhile, broker gone: the hole check comes back
        log.warning("could not rewind %s to %d (%s): %r", tp, offset, why, exc)
        return
    ledger(consumer).rewinds += 1
    log.warning("rewound %s to %d: %s", tp, offset, why)


def rewind_undelivered() -> None:
    """``Consumer.getmany`` never drops a record without a rewind to it.

    Faust's getmany skips records of partitions not in its active set (paused for recovery)
    and stops mid-batch when the flow stops or the generation changes. aiokafka's position is
    already past every record it returned, so each record not yielded is sought back to.
    And the fetch sequence is checked record by record (``_in_sequence``): a jump is either
    offsets the log does not have, or records that were fetched and not delivered, which
    are fetched again. A record of a batch fetched before a seek is not delivered (``_stale``)."""
    check_versions()

    def make_wait(original: Any) -> Any:
        async def _wait_next_records(self: Consumer, timeout: float) -> Any:
            book = ledger(self)
            seeks = dict(book.seeks)  # before the fetch: a seek meanwhile makes it stale
            records, active = await original(self, timeout)
            book.batch, book.batch_seeks = records, seeks
            return records, active

        return _wait_next_records

    def make_getmany(original: Any) -> Any:
        async def getmany(self: Consumer, timeout: float) -> AsyncIterator[Any]:
            book = ledger(self)
            book.batch = None
            yielded: dict[Any, int] = {}
            try:
                async for tp, message in original(self, timeout):
                    offset = message.offset
                    if self.app.topics.acks_enabled_for(message.topic):
                        if _stale(book, tp):
                            log.debug("%s@%d fetched before a seek: not delivered", tp, offset)
                            continue
                        if not _in_sequence(self, book, tp, offset):
                            expected = book.next[tp]
                            why = f"{offset} came after {expected - 1}: fetching {expected} again"
                            await _rewind(self, tp, expected, why)
                            continue
                    yielded[tp] = offset
                    yield tp, message
            finally:
                batch, book.batch = book.batch, None
                if batch and not self.should_stop:
                    for tp, records in batch.items():
                        left = [r.offset for r in records if r.offset > yielded.get(tp, -1)]
                        if left:
                            await _rewind(self, tp, left[0], f"{len(left)} fetched, not yielded")

        return getmany

    _hook(Consumer, "_wait_next_records", make_wait)
    _hook(Consumer, "getmany", make_getmany)

    def make_seek(original: Any) -> Any:
        async def seek(self: Consumer, partition: Any, offset: int) -> None:
            book = ledger(self)
            _count_seek(book, {partition})
            await original(self, partition, offset)
            book.next[partition] = book.sought[partition] = offset
            _count_seek(book, {partition})

        return seek

    def make_perform_seek(original: Any) -> Any:
        async def perform_seek(self: Consumer) -> None:
            book = ledger(self)
            _count_seek(book, self.assignment())
            await original(self)
            book.holes.clear()
            for tp in self.assignment():
                offset = self._read_offset[tp]
                book.next[tp] = book.sought[tp] = offset if offset is not None else 0
            _count_seek(book, self.assignment())
            log.debug("sought to committed: %s", book.next)

        return perform_seek

    def make_on_revoked(original: Any) -> Any:
        async def on_partitions_revoked(self: Consumer, revoked: Any) -> None:
            book = ledger(self)
            for tp in revoked:  # known again only once the next perform_seek has run
                book.next.pop(tp, None)
                book.sought.pop(tp, None)
                book.holes.pop(tp, None)
            await original(self, revoked)

        return on_partitions_revoked

    _hook(Consumer, "seek", make_seek)
    _hook(Consumer, "perform_seek", make_perform_seek)
    _hook(Consumer, "on_partitions_revoked", make_on_revoked)


def _count_seek(book: Ledger, partitions: Any) -> None:
    """Counted before and after the seek: a batch whose fetch overlapped it in any way is
    stale. Its records are not delivered; the rewind after the batch brings back any the
    seek did not (aiokafka's position moves only when a batch is handed over)."""
    for tp in partitions:
        book.seeks[tp] = book.seeks.get(tp, 0) + 1


def _stale(book: Ledger, tp: Any) -> bool:
    """Whether ``tp`` was sought since the batch being yielded was fetched. Yielded, its
    records would be delivered twice, and the jump back in the fetch sequence would read as
    offsets absent from the log: the soak's commit skipped three unprocessed records so, and
    duplicated gap entries made it crawl one offset per commit."""
    return book.seeks.get(tp, 0) != book.batch_seeks.get(tp, 0)


def _in_sequence(consumer: Consumer, book: Ledger, tp: Any, offset: int) -> bool:
    """Whether a record may go to the agents: it is the next of the fetch sequence, or it
    comes first after a seek, past the offset sought (those in between are absent from the
    log: compacted away, transaction markers, deleted by retention). They go to Faust's gap
    tree, which the commit counts as done. Any other jump means records were fetched and not
    delivered (a batch dropped for a seek whose own rewind did not finish, a partition paused
    mid-batch): the record is held back and the partition fetched again from where the
    sequence is. Concluding "absent" from such a jump let the 300-bug soak commit past a
    record nobody processed."""
    expected = book.next.get(tp)
    if expected is None:
        return True  # not sought since its assignment: where the sequence starts is not known
    if offset > expected:
        if book.sought.get(tp) != expected:
            return False
        start = max(expected, head_of(consumer, tp))
        if start < offset:
            gaps = consumer._gap[tp]
            gaps.addi(start, offset)
            gaps.merge_overlaps()
            log.debug("offsets %d-%d of %s absent from the log", start, offset - 1, tp)
    book.sought.pop(tp, None)
    book.next[tp] = max(offset + 1, expected)
    return True


HOLE_COMMITS = 2
"""A head no agent holds is sought back to once seen this many commits in a row: a record
between its fetch and an agent's buffer is held by nobody for a moment."""


def head_of(consumer: Consumer, tp: Any) -> int:
    """The lowest offset of ``tp`` not yet processed: the committed offset, or the log's start
    (``seek_every_partition_to_committed`` records it; Faust stores 0 as None)."""
    return consumer._committed_offset[tp] or 0


def contiguous_offset(consumer: Consumer, tp: Any) -> int | None:
    """The offset to commit for ``tp``: one past the last of the offsets acked or known absent
    that run without a break from the head; None if the head itself is not done.

    Faust's own walks a sorted list that may hold an offset twice (an ack and a gap entry for
    the same record): its run then ends at the repeat, and the commit crawled one offset per
    commit. Here the run is walked over sets. What it covers is forgotten, as Faust does (it
    moves its committed offset whether the commit succeeded or not)."""
    head = head_of(consumer, tp)
    acked = consumer._acked[tp]
    if not acked:
        return None
    done = {offset for offset in acked if offset >= head}
    gaps = consumer._gap[tp]
    offset = head
    while True:
        if offset in done:
            offset += 1
        elif covering := gaps.at(offset):
            offset = max(interval.end for interval in covering)
        else:
            break
    if offset == head:
        acked[:] = sorted(done)
        return None
    acked[:] = rest = sorted(o for o in done if o >= offset)
    index = consumer._acked_index[tp]
    index.clear()
    index.update(rest)
    gaps.chop(0, offset)
    log.debug("commit %s at %d (head %d)", tp, offset, head)
    return offset


def _done_from(consumer: Consumer, tp: Any, head: int) -> bool:
    """Whether the record at ``head`` is acked or known absent: the commit can move."""
    if head in consumer._acked_index.get(tp, ()):
        return True
    return any(iv.begin <= head < iv.end for iv in consumer._gap[tp])


def _held(consumer: Consumer) -> set[tuple[Any, int]]:
    """(partition, offset) of every record an agent holds: in flight (tracked, not acked) or
    waiting in an agent's buffer."""
    held = {(m.tp, m.offset) for m in list(consumer._unacked_messages) if not m.acked}
    for channel in list(consumer.app.topics._topics):
        queue = getattr(channel, "_queue", None)  # None: nothing was ever buffered there
        for event in list(getattr(queue, "_queue", ())):
            message = getattr(event, "message", None)
            if message is not None:
                held.add((message.tp, message.offset))
    return held


def commit_contiguous() -> None:
    """Commit only the highest offset contiguous from the partition's head.

    Faust's ``_new_offset`` checks the head only when something above 0 is committed, and
    then lets a one-record hole through: ``(committed=None, acked=[4]) -> 5`` lost 0-3. Here
    the lowest acked offset (or known-absent one) must be the head itself, else nothing is
    committed.

    A message Faust's stream skips (it came from an older rebalance generation, or arrived
    while the flow was stopped) is acked by Faust "so that the lag does not grow", though no
    agent saw it: the 300-bug soak lost two validated candidates on ``bugs.final`` that way,
    the "validated fix reported failed". A skipped message is never tracked, so an untracked
    message's ack is refused here (``streams.topics`` tracks an undecodable message once it is
    dead-lettered, whose ack is real).

    And a head that was fetched but that no agent holds (neither in flight nor buffered) is
    sought back to: with acked records above it (a hole), or alone at the end of its
    partition (Faust's stream skips a message of an older rebalance generation without
    acking it, and nothing would bring it back before the next rebalance). What was acked
    after it is done again: idempotent stages, cached answers."""
    check_versions()

    def make_new_offset(_: Any) -> Any:
        def _new_offset(self: Consumer, tp: Any) -> int | None:
            return contiguous_offset(self, tp)

        return _new_offset

    def make_add_gap(_: Any) -> Any:
        async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
            """Faust's marks the record being delivered as absent too (its interval ends one
            past it), and starts one past the committed offset: ``_in_sequence`` marks gaps."""

        return _add_gap

    def make_force_commit(original: Any) -> Any:
        async def force_commit(self: Consumer, *args: Any, **kwargs: Any) -> bool:
            committed = await original(self, *args, **kwargs)
            await _rewind_unheld_heads(self)
            return committed

        return force_commit

    def make_ack(original: Any) -> Any:
        def ack(self: Consumer, message: Any) -> bool:
            if not message.tracked:
                return False  # skipped by the stream, never processed: see ``commit_contiguous``
            log.debug("ack %s@%d", message.tp, message.offset)
            return original(self, message)

        return ack

    _hook(Consumer, "_new_offset", make_new_offset)
    _hook(Consumer, "_add_gap", make_add_gap)
    _hook(Consumer, "force_commit", make_force_commit)
    _hook(Consumer, "ack", make_ack)


async def _rewind_unheld_heads(consumer: Consumer) -> None:
    book = ledger(consumer)
    assigned = consumer.assignment()
    stuck = {}
    for tp, fetched_to in list(book.next.items()):
        if tp not in assigned:
            continue
        head = head_of(consumer, tp)
        if fetched_to > head and not _done_from(consumer, tp, head):
            stuck[tp] = head
    if not stuck:
        book.holes.clear()
        return
    held = _held(consumer)
    for tp in list(book.holes):
        if tp not in stuck:
            del book.holes[tp]
    for tp, head in stuck.items():
        if (tp, head) in held:
            book.holes.pop(tp, None)
            continue
        book.holes[tp] = times = book.holes.get(tp, 0) + 1
        if times >= HOLE_COMMITS:
            del book.holes[tp]
            acked = min(consumer._acked.get(tp, ()), default=None)
            after = f"acked from {acked}" if acked is not None else "nothing after it acked"
            await _rewind(consumer, tp, head, f"no agent holds {head}, {after}")


_rebalance_wait_s = 10.0


def bounded_rebalance_wait(seconds: float) -> None:
    """Faust's ``wait_empty`` holds a rebalance until every message in flight is acked, with
    no bound (17.7 s seen; a validate may take 120 s), and cannot be cancelled from outside
    (its ack wait swallows the cancellation). This one is Faust's loop with a deadline: it
    commits what is done and lets the rebalance go on; the rest is never acked
    (``streams.inflight``) and the partition's next owner redoes it."""
    check_versions()
    global _rebalance_wait_s
    _rebalance_wait_s = seconds  # the hook installs once; the latest setting counts

    def make(_: Any) -> Any:
        async def wait_empty(self: Consumer) -> None:
            loop = asyncio.get_running_loop()
            seconds = _rebalance_wait_s
            deadline = loop.time() + seconds
            while not self.should_stop and self._unacked_messages:
                if loop.time() >= deadline:
                    log.warning(
                        "rebalance: %d messages still in flight after %.0f s; their "
                        "partitions move on and they will be redone",
                        len(self._unacked_messages), seconds,
                    )  # fmt: skip
                    break
                await self.commit()
                await self._wait_for_ack(timeout=min(1.0, max(0.0, deadline - loop.time())))
                self._clean_unacked_messages()
            await self.commit_and_end_transactions()

        return wait_empty

    _hook(Consumer, "wait_empty", make)


class PartitionRevoked(ProducerSendError):
    """An event's partition moved to another worker while it was processed: under
    exactly_once its outputs are refused (its transaction moved too) and the partition's
    next owner redoes it (``streams.inflight`` drops it)."""


def transactions_by_source() -> None:
    """Under exactly_once, what an event's processing sends joins the transaction of the
    partition the event came from: the one Faust commits that event's offset in.

    Faust's ``TransactionManager.send`` picks the transaction of the destination partition:
    a send to a partition another worker owns fails ("No transaction producer found": every
    chunk task for another worker), and one to an owned partition nothing is consumed from
    is never committed (a transaction commits only with offsets of its own partition), so
    read_committed consumers never see it. The event is found as Faust's ``Topic.send``
    finds it, by the ``current_event`` context variable, which asyncio copies into each task
    ``streams.inflight`` starts. Sends with no event (timers, a table's changelog buffer)
    keep Faust's routing: theirs is the partition they write, which this worker owns."""
    check_versions()

    def make(original: Any) -> Any:
        async def send(
            self: TransactionManager,
            topic: str,
            key: Any,
            value: Any,
            partition: Any,
            timestamp: Any,
            headers: Any,
            *,
            transactional_id: str | None = None,
        ) -> Any:
            event = current_event()
            if event is None:
                return await original(self, topic, key, value, partition, timestamp, headers)
            source = event.message.tp
            tid = self.transactional_id_format.format(
                tpg=TopicPartitionGroup(
                    source.topic, source.partition, self.app.assignor.group_for_topic(source.topic)
                ),
                group_id=self.app.conf.id,
            )
            producers = self.producer._transaction_producers
            if tid not in producers:
                raise PartitionRevoked(f"{source} was revoked: no transaction {tid}")
            if producers[tid]._txn_manager.state is TransactionState.READY:
                # a rebalance ended it (commit_and_end_transactions) and has not begun the
                # next one yet: begin it rather than fail the send
                await self.producer.maybe_begin_transaction(tid)
            p = self.consumer.key_partition(topic, key, partition)
            return await self.producer.send(
                topic, key, value, p, timestamp, headers, transactional_id=tid
            )

        return send

    _hook(TransactionManager, "send", make)


JOIN_GROUP, SYNC_GROUP = 11, 14
"""Kafka API keys of the two requests a rebalance is made of."""
ADOPT_JITTER_S = 3.0
"""Members stuck together see the same rounds: a random wait of up to this long, and a
random number of extra rounds, keep two of them from adopting the same id at once."""
_lost_leader_rounds = 0


@dataclass
class LostLeader:
    """What one consumer has seen of its group's rounds since it last got an assignment."""

    rounds: int
    leader: str | None = None
    stuck: int = 0
    needed: int = 0

    def __post_init__(self) -> None:
        self.synced()

    def joined(self, leader: str, member: str) -> None:
        if leader == member or leader != self.leader:
            self.stuck = 0
        self.leader = leader

    def refused(self, member: str) -> bool:
        """A follower's SyncGroup refused (REBALANCE_IN_PROGRESS): True once it has been so
        for ``needed`` rounds in a row under the same other leader."""
        if self.leader is None or self.leader == member:
            return False
        self.stuck += 1
        return self.stuck >= self.needed

    def synced(self) -> None:
        self.stuck = 0
        self.needed = self.rounds + random.randint(0, self.rounds)


def adopt_lost_leader(rounds: int) -> None:
    """With ``rounds`` > 0: a member whose SyncGroup is refused ``rounds`` rounds in a row (plus
    up to as many again, at random) under the same leader re-joins with that leader's member
    id. The embedded broker (tansu 0.6.0, ``coordinator/group/administrator.rs``) elects a
    leader only when it has none, and a LeaveGroup while the group forms removes the member
    but keeps it as leader: every JoinGroup then names the departed member, only its SyncGroup
    would form the group, and aiokafka's followers re-join every ~8 s forever. Joining under
    that id makes this member the leader the broker waits for; its old id expires after one
    session timeout and the next round assigns without it. Off (0) on real Kafka, whose
    coordinator replaces a departed leader itself (``broker.client_settings`` turns it on)."""
    check_versions()
    global _lost_leader_rounds
    _lost_leader_rounds = rounds  # the hook installs once; the latest setting counts

    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import RebalanceInProgressError

    def make(original: Any) -> Any:
        async def send_req(self: GroupCoordinator, request: Any) -> Any:
            response = await original(self, request)
            if _lost_leader_rounds <= 0:
                return response
            seen = self.__dict__.setdefault(
                "_fixstream_lost_leader", LostLeader(_lost_leader_rounds)
            )
            api = getattr(request, "API_KEY", None)
            if api == JOIN_GROUP and response.error_code == 0:
                seen.joined(response.leader_id, response.member_id)
            elif api == SYNC_GROUP and response.error_code == 0:
                seen.synced()
            elif (
                api == SYNC_GROUP
                and response.error_code == RebalanceInProgressError.errno
                and seen.refused(self.member_id)
            ):
                log.warning(
                    "group %s: no assignment after %d rounds under leader %s, which is "
                    "gone; re-joining as it (the broker keeps a leader that left while "
                    "the group formed)", self.group_id, seen.stuck, seen.leader,
                )  # fmt: skip
                await asyncio.sleep(random.uniform(0, ADOPT_JITTER_S))
                self.member_id = seen.leader  # the next JoinGroup carries it
                seen.synced()
            return response

        return send_req

    _hook(GroupCoordinator, "_send_req", make)
