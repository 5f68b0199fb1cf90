"""Exactly one final event per bug, whoever decides it, and no bug forgotten.

Three things can end a bug: validate's verdict, a dead letter in any stage, and the watchdog
giving up on a bug that made no progress. All three send a ``FixEvent`` to ``bugs.final``
(keyed by bug id); the finalizer publishes the first one per bug to ``fixes`` and drops the
rest.

What was published is read back from ``fixes`` itself, not from a table written after the
publish: a worker killed between its publish and its table write would leave the next owner
a table without the event, and the bug would get a second one (the soak found this). Before
publishing, the finalizer reads ``fixes`` up to its current end, so whatever any worker
published before dying counts. The price: each worker keeps the bug ids of ``fixes``'
retention in memory and reads the topic once at start.

The watchdog follows ``bugs.status``: per bug, the last thing it did, when, and where the
last stage input a stage started on sits (``StatusEvent.source``). A bug silent for longer
than ``stuck_after_s`` is re-driven: that record is read back and published again to its
topic, so the stage does it again (its LLM answers and test runs come from the caches). A
lost record then costs a re-drive, not the bug. Only after ``redrives`` re-drives is the bug
failed, with the stage it was stuck in. Tables may only be changed by the agent that owns
their partition, so the watchdog's timer reports through ``bugs.status`` like any stage would.
It walks only the entries of partitions this worker owns now: an in-memory table keeps the
entries of partitions it lost, and another worker is progressing those bugs.

A bug's entry is deleted once its fix event is out; a status after that is a straggler,
which ``PublishedLog`` tells apart, except that a stage starting a dead-lettered bug again is
a replay (``fixstream dlq replay``), tracked anew.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Literal, TypedDict

import faust
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted

from fixstream.config import Settings
from fixstream.kafka import reader
from fixstream.schemas import FixEvent, StageMeta, StatusEvent
from fixstream.streams.inflight import run_concurrently
from fixstream.streams.topics import Topics, owned_now
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)

FINAL = "final"
"""The status stage the finalizer reports under once it has decided on a candidate."""
WATCHDOG = "watchdog"
DEAD_LETTER = "dlq:"
REDRIVE_HEADER = "fixstream.redrive"
"""On a re-driven copy: which re-drive it is, so a stage's de-duplication (which drops
repeats of a (bug, stage, attempt) it handled) can tell a re-drive from a redelivery."""
CATCH_UP_S = 30.0
"""How long the finalizer waits for the ``fixes`` follower to read anything more before it
gives up on reading ``fixes`` to its end."""
RETRY_S = 1.0
"""The pause before the ``fixes`` follower reconnects, or is started again after dying."""
READ_BACK_S = 10.0
"""How long the watchdog waits for the record it re-drives, once the topic says it has it."""
EXIT_UNACKED = 70
"""The worker's exit status when it stops without acking (``streams.inflight`` uses it too)."""


class PublishedLogError(RuntimeError):
    """``fixes`` could not be read to its end: whether a bug has its fix event is unknown."""


class RedriveError(Exception):
    """The record to re-drive is not on its topic any more (retention, compaction)."""


class Entry(TypedDict):
    """A bug's progress entry: the table's value (JSON in its changelog). Entries written
    before re-drives existed lack ``source`` and ``redrives``: read them with ``get``."""

    stage: str
    state: str
    at: float
    ended: bool
    """Its end is on the way to the finalizer (a dead letter's or the watchdog's)."""
    source: str | None
    """``topic/partition/offset`` of the last stage input a stage started on."""
    redrives: int
    done: list[str]
    """``stage/attempt`` of every stage run that finished (``done``): see ``duplicate``."""


Step = Literal["redrive", "fail"]


def failed(bug_id: str, reason: str, stage: str) -> FixEvent:
    return FixEvent(bug_id=bug_id, meta=StageMeta(stage=stage), status="failed", reason=reason)


def advance(entry: Entry | None, status: StatusEvent, now: float) -> Entry:
    """The entry after ``status`` (a FINAL deletes it instead). Any status resets the clock.
    A stage's says where the bug is now; the watchdog's leave that (the stage the bug is
    stuck in, for the reason) and count the re-drives. Nothing resets the count: a bug gets
    ``redrives`` re-drives in all, however far each one takes it."""
    ended = status.state == "dead_lettered" or (
        status.stage == WATCHDOG and status.state == "failed"
    )
    redrives = entry.get("redrives", 0) if entry else 0
    if status.stage == WATCHDOG and entry:
        redrives += status.state == "redriven"
        return {**entry, "at": now, "ended": ended, "redrives": redrives}
    done = list(entry.get("done", [])) if entry else []
    if status.state == "done":
        done.append(run_of(status))
    return {
        "stage": status.stage, "state": status.state, "at": now, "ended": ended,
        "source": status.source or (entry.get("source") if entry else None),
        "redrives": redrives, "done": done,
    }  # fmt: skip


def run_of(status: StatusEvent) -> str:
    return f"{status.stage}/{status.attempt}"


def duplicate(entry: Entry | None, status: StatusEvent) -> bool:
    """A dead letter from a run whose (stage, attempt) another run already finished: a
    redelivery's (a worker killed before its commit) or a re-drive's. The bug goes on from
    the finished run's output, so this one must not end it: in the 300-bug soak 44 bugs got
    a dead letter's "failed" and then the finished line's "fixed"."""
    return (
        status.state == "dead_lettered"
        and entry is not None
        and run_of(status) in entry.get("done", [])
    )


def next_step(entry: Entry, now: float, stuck_after_s: float, max_redrives: int) -> Step | None:
    """What the watchdog does with an entry: nothing, re-drive its source, or fail the bug."""
    if entry.get("ended") or now - entry["at"] < stuck_after_s:
        return None
    if entry.get("source") and entry.get("redrives", 0) < max_redrives:
        return "redrive"
    return "fail"


def stuck_reason(entry: Entry, now: float, stuck_after_s: float) -> str:
    """The failed fix event's reason: how long, what was tried, where the bug was."""
    n = entry.get("redrives", 0)
    if entry.get("source"):
        tried = f"after {n} re-drive{'' if n == 1 else 's'}"
    else:
        tried = "with no stage input to re-drive"
    return (
        f"no progress for {now - entry['at']:.0f} s (limit {stuck_after_s:g} s) {tried}; "
        f"last: {entry['stage']} {entry['state']}"
    )


def parse_source(source: str) -> tuple[str, int, int]:
    """``topic/partition/offset`` (topic names have no ``/``) as its three parts."""
    try:
        topic, partition, offset = source.rsplit("/", 2)
        return topic, int(partition), int(offset)
    except ValueError:
        raise RedriveError(f"{source!r} is not topic/partition/offset") from None


async def read_back(settings: Settings, source: str) -> ConsumerRecord:
    """The one record at ``source``, by assign and seek (no group, nothing committed).

    RedriveError when the topic no longer holds it; a broker error or a read that takes
    longer than READ_BACK_S raises as is (worth another try)."""
    topic, partition, offset = parse_source(source)
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap(),
        enable_auto_commit=False,
        isolation_level="read_committed",  # as every fixstream reader (fixstream.kafka)
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.kafka_client_options(),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            raise RedriveError(f"{source} is not on the topic (offsets {first} to {end - 1})")
        consumer.seek(tp, offset)
        async with asyncio.timeout(READ_BACK_S):
            while True:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if record.offset == offset:
                        return record
                    if record.offset > offset:
                        raise RedriveError(f"{source} was compacted away")
    finally:
        await consumer.stop()


class PublishedLog:
    """The bug ids on ``fixes``, read from the topic: what no crash can make a worker forget.
    For each, the stage its final event came from (``dlq:STAGE`` for a dead letter)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ids: dict[str, str] = {}
        self.decided_at: dict[str, float] = {}
        """When each bug's latest fix event was written (seconds, the record's timestamp)."""
        self.positions: dict[TopicPartition, int] = {}
        """How far the follower's current consumer has read each partition of ``fixes``."""
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._current = False
        """Read to its end once since this worker started (``decided_after``)."""

    async def run(self) -> None:
        """The worker task: a follower running until the worker stops. One that dies is
        started again here within RETRY_S, at once by ``holds``."""
        try:
            while True:
                await asyncio.wait([self.start()])
                await asyncio.sleep(RETRY_S)
        finally:
            if self._task is not None:
                self._task.cancel()

    def start(self) -> asyncio.Task[None]:
        """The follower task, started (again, saying why it died) unless it runs."""
        task = self._task
        if task is not None and not task.done():
            return task
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("the fixes follower died: starting it again", exc_info=task.exception())
        self._task = asyncio.create_task(self.follow(), name="fixstream.fixes-follower")
        return self._task

    async def follow(self) -> None:
        """Read ``fixes`` from the beginning, then keep up with it. A broker error starts
        over with a new consumer (``ids`` stay: what was read was published)."""
        while True:
            try:
                async with reader(self.settings, ["fixes"]) as consumer:
                    self._consumer = consumer
                    while True:
                        for records in (await consumer.getmany(timeout_ms=1000)).values():
                            for record in records:
                                self._note(record)
                        self.positions = {
                            tp: await consumer.position(tp) for tp in consumer.assignment()
                        }
            except KafkaError as exc:
                log.warning("reading fixes failed (%r): reconnecting in %g s", exc, RETRY_S)
            finally:
                self._consumer = None
                self.positions = {}
            await asyncio.sleep(RETRY_S)

    def _note(self, record: ConsumerRecord) -> None:
        try:
            stage = orjson.loads(record.value)["meta"]["stage"]
            self.note(record.key.decode(), stage, record.timestamp / 1000)
        except (AttributeError, ValueError, KeyError, TypeError):
            log.warning("fixes[%d]@%d is not a fix event: skipped", record.partition, record.offset)

    def note(self, bug_id: str, stage: str, at: float) -> None:
        """A fix event for ``bug_id`` from ``stage``, written at ``at`` (seconds)."""
        self.ids[bug_id] = stage
        self.decided_at[bug_id] = max(self.decided_at.get(bug_id, 0.0), at)

    async def decided_after(self, bug_id: str, written_at: float) -> bool:
        """Whether ``bug_id``'s fix event was written after a stage input written at
        ``written_at``: the input is a redelivery from before the verdict. A dead-lettered
        bug's input redelivered after a rebalance would otherwise be processed again and its
        verdict would supersede the dead letter's (the 300-bug soak: 53 bugs with two fix
        events). A replay (``fixstream dlq replay``) or a re-drive writes a new record, later
        than the verdict, and runs.

        The first call waits until ``fixes`` is read to its end: a worker that had just
        started took redeliveries before its follower had read their verdicts, and two bugs
        got a second fix event so."""
        if not self._current:
            try:
                await self.read_to_end()
                self._current = True
            except PublishedLogError as exc:  # judged on what was read; the next call waits
                log.warning("deciding on %s before fixes was read to its end: %s", bug_id, exc)
        at = self.decided_at.get(bug_id)
        return at is not None and 0 < written_at < at

    def final(self, bug_id: str) -> bool:
        """A final event no later run may replace: anything but a dead letter's, which an
        operator may replay (``fixstream dlq replay``) once its cause is fixed."""
        stage = self.ids.get(bug_id)
        return stage is not None and not stage.startswith(DEAD_LETTER)

    async def holds(self, bug_id: str) -> bool:
        """Whether ``fixes`` has a final event for ``bug_id``, having read up to its end."""
        await self.read_to_end()
        return self.final(bug_id)

    async def read_to_end(self) -> None:
        """Until the follower has read ``fixes`` up to its end as it is now.

        Bounded: a dead follower is started again, and one that reads nothing more for
        CATCH_UP_S raises PublishedLogError (a follower still reading, say a long ``fixes``
        at start, is waited for)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_S
        ends: dict[TopicPartition, int] | None = None
        seen = self.positions
        while True:
            self.start()
            consumer = self._consumer
            if ends is None and consumer is not None:
                try:
                    ends = await consumer.end_offsets(list(consumer.assignment()))
                except KafkaError as exc:  # the follower reconnects; ask its next consumer
                    log.info("end of fixes unknown yet: %r", exc)
            positions = self.positions
            if ends is not None and all(positions.get(tp, -1) >= end for tp, end in ends.items()):
                return
            if positions != seen:
                seen, deadline = positions, loop.time() + CATCH_UP_S
            if loop.time() > deadline:
                raise PublishedLogError(
                    f"fixes not read to its end: the follower read nothing for {CATCH_UP_S:g} s "
                    f"(at {sorted((tp.partition, p) for tp, p in positions.items())}, "
                    f"end {sorted((tp.partition, e) for tp, e in (ends or {}).items())})"
                )
            await asyncio.sleep(0.005)


class Finals:
    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        settings: Settings,
        *,
        partitions: int,
        stuck_after_s: float,
    ) -> None:
        self.app = app
        self.settings = settings
        self.candidates = topics["bugs.final"]
        self.fixes = topics["fixes"]
        self.status = topics["bugs.status"]
        self.stuck_after_s = stuck_after_s
        self.max_redrives = settings.redrives
        self.published = PublishedLog(settings)
        self.partitions = partitions
        self.progress = app.Table("fixstream-progress", default=None, partitions=partitions)
        self._acted: dict[str, float] = {}
        """Bug id -> the ``at`` of the entry the watchdog last acted on. Its report is on the
        way through ``bugs.status``; until the entry moves, later passes leave it alone."""
        app.task(self.published.run)
        app.agent(self.candidates, name="fixstream.finalize")(self._finalize)
        app.agent(self.status, name="fixstream.progress")(self._follow)
        # often enough to fire on a worker that lives less than a minute (the soak's churn:
        # at 30 s, short-lived workers never fired and stuck bugs were lost); a pass is one
        # walk over this worker's progress entries
        every = max(0.5, min(5.0, stuck_after_s / 4))
        app.timer(interval=every, name="fixstream.watchdog")(self._watchdog)

    async def _report(self, bug_id: str, stage: str, state: str, message: str) -> None:
        event = StatusEvent(
            bug_id=bug_id, stage=stage, state=state, message=message, worker=WORKER_ID
        )
        await (await self.status.send(key=bug_id, value=event))

    async def _finalize(self, stream: faust.StreamT) -> None:
        """Decide on each candidate. An error exits the worker unacked, and the restarted
        worker decides again, rather than skipping the candidate: a dead letter's or the
        watchdog's candidate is the end of its bug's progress entry, so a skipped one would
        leave the bug with no fix event and nothing to notice. Candidates are our own events
        (an undecodable one is dead-lettered by the topic), so what fails here is the broker
        or the ``fixes`` follower, which a restart retries."""
        await run_concurrently(stream, self._finalize_one, 1)

    async def _finalize_one(self, event: faust.EventT) -> None:
        """One candidate, acked only once decided. Faust's own ``async for`` acks the event
        an agent is cancelled in (a worker stopping gracefully, SIGTERM): the 60-bug soak
        lost a validated candidate when its joining worker left mid-decision."""
        fix: FixEvent = event.value
        try:
            await self._decide(fix)
        except Exception:
            log.critical(
                "finalizer: no decision on %s's %s candidate from %s: exiting unacked",
                fix.bug_id, fix.status, fix.meta.stage, exc_info=True,
            )  # fmt: skip
            os._exit(EXIT_UNACKED)

    async def _decide(self, fix: FixEvent) -> None:
        """Publish the bug's first candidate, drop the others; FINAL either way, which
        deletes the bug's progress entry."""
        bug_id = fix.bug_id
        if await self.published.holds(bug_id):
            log.info("%s already has its fix event; dropping %s", bug_id, fix.status)
            outcome = f"dropped {fix.status} from {fix.meta.stage}: the fix event is out"
        elif bug_id in self.published.ids and fix.meta.stage.startswith(DEAD_LETTER):
            outcome = f"dead-lettered again after a replay: {fix.reason}"  # fixes says so
        else:
            await (await self.fixes.send(key=bug_id, value=fix))
            self.published.note(bug_id, fix.meta.stage, time.time())
            outcome = f"{fix.status}: {fix.reason}"
        await self._report(bug_id, FINAL, "done", outcome[:500])

    async def _follow(self, stream: faust.StreamT) -> None:
        """Track each status event. One that fails is dead-lettered and skipped, not a
        reason to exit: it is bookkeeping, the bug's next status brings its entry up to
        date (and a stuck bug is re-driven, which makes more), while an exit would stop
        every worker that owns the partition in turn on the same event."""
        await run_concurrently(stream, self._follow_one, 1)

    async def _follow_one(self, event: faust.EventT) -> None:
        """One status, acked once tracked (see ``_finalize_one``)."""
        status: StatusEvent = event.value
        try:
            await self._track(status)
        except Exception as exc:
            log.exception("progress: could not track %s %s", status.bug_id, status.stage)
            try:
                await self.status.dead_letters.send(event.message, exc, stage="progress")
            except Exception:
                log.exception("progress: could not dead-letter %s's status", status.bug_id)

    async def _track(self, status: StatusEvent) -> None:
        bug_id = status.bug_id
        entry: Entry | None = self.progress.get(bug_id)
        if status.stage == FINAL:
            if entry is not None:
                del self.progress[bug_id]  # the bug is over: no table grows without bound
            return
        if entry is None and await self._after_the_end(status):
            return
        if entry is not None and entry["ended"]:
            return  # its end is on the way to the finalizer
        if duplicate(entry, status):
            log.info(
                "%s: %s dead-lettered a run that another run finished; the bug goes on",
                bug_id, run_of(status),
            )  # fmt: skip
            return
        if status.state == "dead_lettered":
            reason = f"dead-lettered in {status.stage}: {status.message}"
            candidate = failed(bug_id, reason, f"{DEAD_LETTER}{status.stage}")
            await (await self.candidates.send(key=bug_id, value=candidate))
        self.progress[bug_id] = advance(entry, status, time.time())

    async def _after_the_end(self, status: StatusEvent) -> bool:
        """Whether a status of a bug with no entry comes after its fix event: a stage's own
        "done" trailing its output, a redelivery, a re-drive's copy. A dead-lettered bug
        that a stage starts again is a replay, tracked again."""
        if await self.published.holds(status.bug_id):
            return True
        return status.bug_id in self.published.ids and status.state != "started"

    def _ownership(self) -> Callable[[str], bool] | None:
        """Whether this worker owns a bug's entry now (None before its consumer runs). An
        entry sits in the partition of the ``bugs.status`` record that wrote it, which the
        producer's partitioner chose from the bug id: ``owned_now``."""
        try:
            return owned_now(self.app.consumer, self.status.get_topic_name(), self.partitions)
        except ConsumerNotStarted:
            return None

    async def _watchdog(self) -> None:
        """One pass over the entries this worker owns: a stuck bug is re-driven, or failed
        once it has had its re-drives. An error on one bug is logged, and the next pass
        tries again (a timer that raises would stop for good)."""
        owns = self._ownership()
        if owns is None:
            return
        now = time.time()
        self._acted = {
            bug_id: at
            for bug_id, at in self._acted.items()
            if (self.progress.get(bug_id) or {}).get("at") == at
        }
        for bug_id, entry in list(self.progress.items()):
            if not entry or self._acted.get(bug_id) == entry["at"] or not owns(bug_id):
                continue
            step = next_step(entry, now, self.stuck_after_s, self.max_redrives)
            if step is None:
                continue
            try:
                if step == "redrive":
                    await self._redrive(bug_id, entry, now)
                else:
                    await self._fail(bug_id, stuck_reason(entry, now, self.stuck_after_s))
            except Exception:
                log.exception("watchdog: could not %s %s; the next pass tries again", step, bug_id)
            else:
                self._acted[bug_id] = entry["at"]

    async def _redrive(self, bug_id: str, entry: Entry, now: float) -> None:
        """Publish the last stage input a stage started on again: the same key, value and
        headers to the same topic and partition, so the stage does the bug again."""
        source = entry["source"]
        assert source is not None, "next_step re-drives only entries with a source"
        n = entry.get("redrives", 0) + 1
        try:
            record = await read_back(self.settings, source)
        except RedriveError as exc:
            await self._fail(bug_id, f"{stuck_reason(entry, now, self.stuck_after_s)}; {exc}")
            return
        headers = [(k, v) for k, v in record.headers if k != REDRIVE_HEADER]
        headers.append((REDRIVE_HEADER, str(n).encode()))
        await self.app.producer.send_and_wait(
            record.topic, record.key, record.value, record.partition, None, headers
        )
        message = (
            f"re-drive {n} of {self.max_redrives}: {source} published again (no progress for "
            f"{now - entry['at']:.0f} s; last: {entry['stage']} {entry['state']})"
        )
        log.warning("watchdog: %s: %s", bug_id, message)
        await self._report(bug_id, WATCHDOG, "redriven", message)

    async def _fail(self, bug_id: str, reason: str) -> None:
        log.warning("watchdog: failing %s: %s", bug_id, reason)
        await (await self.candidates.send(key=bug_id, value=failed(bug_id, reason, WATCHDOG)))
        await self._report(bug_id, WATCHDOG, "failed", reason)
