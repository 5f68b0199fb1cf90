"""The finalizer's and the watchdog's bookkeeping, with fakes for the Faust table, topics,
consumer and producer: re-drives before failing, only owned entries, entries deleted at the
end, every message isolated, no unbounded wait on ``fixes``. End to end on a real broker:
tests/integration/test_reliability.py."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from fakes import FakeTopic
from faust.exceptions import ConsumerNotStarted

from fixstream.config import Settings
from fixstream.schemas import FixEvent, StageMeta, StatusEvent
from fixstream.streams import finals
from fixstream.streams.finals import (
    FINAL,
    REDRIVE_HEADER,
    WATCHDOG,
    Finals,
    PublishedLog,
    PublishedLogError,
    RedriveError,
    advance,
    next_step,
    parse_source,
    stuck_reason,
)
from fixstream.streams.topics import partition_of

PARTITIONS = 4
SOURCE = "bugs.analyzed/2/17"


def status(bug_id: str = "b1", stage: str = "reproduce", state: str = "started", **kw) -> Any:
    return StatusEvent(bug_id=bug_id, stage=stage, state=state, **kw)


class NamedTopic(FakeTopic):
    """A fake topic with its name and dead letters (``dead_letters.sent``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.dead_letters = SimpleNamespace(sent=[], send=self._dead_letter)

    async def _dead_letter(self, message: Any, exc: BaseException, *, stage: str) -> None:
        self.dead_letters.sent.append((message, type(exc).__name__, stage))

    def get_topic_name(self) -> str:
        return self.name


class FakeConsumer:
    """Faust's consumer as the watchdog asks it: the assignment, and where a key goes."""

    def __init__(self, owned: set[int] | None) -> None:
        self.owned = owned

    def assignment(self) -> set[TopicPartition]:
        if self.owned is None:
            raise ConsumerNotStarted("Consumer thread not yet started")
        return {TopicPartition("bugs.status", p) for p in self.owned} | {
            TopicPartition("bugs.reported", p) for p in range(PARTITIONS)
        }


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    async def send_and_wait(self, topic, key, value, partition, timestamp, headers) -> None:
        self.sent.append((topic, key, value, partition, headers))


class FakePublished:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.decided_at: dict[str, float] = {}

    def note(self, bug_id: str, stage: str, at: float) -> None:
        PublishedLog.note(self, bug_id, stage, at)  # type: ignore[arg-type]

    def final(self, bug_id: str) -> bool:
        return PublishedLog.final(self, bug_id)  # type: ignore[arg-type]

    async def holds(self, bug_id: str) -> bool:
        return self.final(bug_id)


def make_finals(owned: set[int] | None = None, redrives: int = 2) -> Finals:
    f = Finals.__new__(Finals)  # no Faust app: the table is a dict here
    f.app = SimpleNamespace(
        consumer=FakeConsumer(set(range(PARTITIONS)) if owned is None else owned),
        producer=FakeProducer(),
    )
    f.settings = Settings(broker="localhost:9092")
    f.candidates, f.fixes, f.status = (
        NamedTopic("bugs.final"), NamedTopic("fixes"), NamedTopic("bugs.status"),
    )  # fmt: skip
    f.stuck_after_s, f.max_redrives, f.partitions = 4.0, redrives, PARTITIONS
    f.published = FakePublished()  # type: ignore[assignment]
    f.progress = {}  # type: ignore[assignment]
    f._acted = {}
    return f


def record(source: str = SOURCE, headers=(("trace", b"t1"),)) -> Any:
    topic, partition, offset = parse_source(source)
    return SimpleNamespace(
        topic=topic, partition=partition, offset=offset, key=b"b1", value=b'{"bug_id": "b1"}',
        headers=list(headers),
    )  # fmt: skip


@pytest.fixture
def read_back(monkeypatch):
    """The watchdog's read-back of a record, answering from ``records`` (by source)."""
    records: dict[str, Any] = {SOURCE: record()}
    calls: list[str] = []

    async def fake(settings: Settings, source: str) -> Any:
        calls.append(source)
        found = records[source]
        if isinstance(found, BaseException):
            raise found
        return found

    monkeypatch.setattr(finals, "read_back", fake)
    return SimpleNamespace(records=records, calls=calls)


async def deliver(f: Finals, *statuses: StatusEvent) -> None:
    """What the progress agent does with status events (the watchdog's included)."""
    for s in statuses:
        await f._track(s)


def stuck(f: Finals, bug_id: str = "b1", by: float = 10.0) -> None:
    """Move the bug's entry back in time: silent for ``by`` seconds."""
    f.progress[bug_id] = {**f.progress[bug_id], "at": f.progress[bug_id]["at"] - by}


# --- entry transitions ---------------------------------------------------------------------


def test_a_started_stage_records_where_its_input_sits_and_later_statuses_keep_it():
    e = advance(None, status(source=SOURCE), now=100.0)
    assert e == {"stage": "reproduce", "state": "started", "at": 100.0, "ended": False,
                 "source": SOURCE, "redrives": 0, "done": []}  # fmt: skip
    e = advance(e, status(state="progress", message="building"), now=101.0)
    assert (e["state"], e["source"], e["at"]) == ("progress", SOURCE, 101.0)
    e = advance(e, status(stage="root_cause", source="bugs.reproduced/1/3"), now=102.0)
    assert e["source"] == "bugs.reproduced/1/3"


def test_a_redrive_counts_keeps_the_stuck_stage_and_resets_only_the_clock():
    e = advance(None, status(source=SOURCE), now=100.0)
    e = advance(e, status(stage=WATCHDOG, state="redriven"), now=110.0)
    assert (e["stage"], e["state"], e["redrives"], e["at"]) == ("reproduce", "started", 1, 110.0)
    # the re-driven stage starts again: the clock moves, the count stays
    e = advance(e, status(source="bugs.analyzed/2/40"), now=111.0)
    assert (e["redrives"], e["at"], e["source"]) == (1, 111.0, "bugs.analyzed/2/40")
    e = advance(e, status(stage="root_cause", state="done"), now=112.0)
    assert e["redrives"] == 1 and not e["ended"]
    e = advance(e, status(stage=WATCHDOG, state="failed"), now=120.0)
    assert e["ended"] and e["stage"] == "root_cause"


def test_an_entry_from_before_redrives_reads_as_none_so_far():
    old = {"stage": "fix", "state": "started", "at": 1.0, "ended": False, "dead": False}
    assert next_step(old, 100.0, 4.0, 2) == "fail"  # nothing to re-drive
    assert advance(old, status(stage=WATCHDOG, state="redriven"), 2.0)["redrives"] == 1


def test_the_watchdog_waits_then_redrives_up_to_the_limit_then_fails():
    e = advance(None, status(source=SOURCE), now=100.0)
    assert next_step(e, 103.9, 4.0, 2) is None
    assert next_step(e, 104.0, 4.0, 2) == "redrive"
    assert next_step({**e, "redrives": 1}, 104.0, 4.0, 2) == "redrive"
    assert next_step({**e, "redrives": 2}, 104.0, 4.0, 2) == "fail"
    assert next_step(e, 104.0, 4.0, 0) == "fail"
    assert next_step({**e, "source": None}, 104.0, 4.0, 2) == "fail"
    assert next_step({**e, "ended": True}, 1e9, 4.0, 2) is None


def test_the_reason_says_how_long_what_was_tried_and_where_the_bug_was():
    e = advance(None, status(source=SOURCE), now=100.0)
    assert stuck_reason({**e, "redrives": 2}, 107.2, 4.0) == (
        "no progress for 7 s (limit 4 s) after 2 re-drives; last: reproduce started"
    )
    assert "after 1 re-drive;" in stuck_reason({**e, "redrives": 1}, 107.0, 0.5)
    assert "(limit 0.5 s)" in stuck_reason(e, 107.0, 0.5)
    bare = stuck_reason({**e, "source": None}, 107.0, 4.0)
    assert "with no stage input to re-drive; last: reproduce started" in bare


def test_a_source_is_topic_partition_offset():
    assert parse_source("bugs.analyzed/2/17") == ("bugs.analyzed", 2, 17)
    for bad in ["bugs.analyzed", "bugs.analyzed/x/1", "a/1/2/x"]:
        with pytest.raises(RedriveError, match="not topic/partition/offset"):
            parse_source(bad)


# --- the watchdog ----------------------------------------------------------------------------


async def test_a_stuck_bug_is_redriven_twice_then_failed_naming_the_redrives(read_back):
    f = make_finals()
    await deliver(f, status(source=SOURCE))
    stuck(f)
    await f._watchdog()
    ((topic, key, value, partition, headers),) = f.app.producer.sent
    assert (topic, partition, key, value) == ("bugs.analyzed", 2, b"b1", b'{"bug_id": "b1"}')
    assert headers == [("trace", b"t1"), (REDRIVE_HEADER, b"1")]
    (report,) = f.status.sent
    assert (report.stage, report.state) == (WATCHDOG, "redriven")
    assert report.message.startswith(f"re-drive 1 of 2: {SOURCE} published again")

    await f._watchdog()  # its report is not back yet: nothing more
    assert len(f.app.producer.sent) == 1 and read_back.calls == [SOURCE]

    await deliver(f, report)  # the progress agent gets the report
    assert f.progress["b1"]["redrives"] == 1
    stuck(f)
    await f._watchdog()
    assert f.app.producer.sent[-1][-1][-1] == (REDRIVE_HEADER, b"2")
    await deliver(f, f.status.sent[-1])
    stuck(f, by=7.2)
    await f._watchdog()
    assert len(f.app.producer.sent) == 2, "two re-drives, no third"
    (candidate,) = f.candidates.sent
    assert candidate.status == "failed" and candidate.meta.stage == WATCHDOG
    assert candidate.reason == (
        "no progress for 7 s (limit 4 s) after 2 re-drives; last: reproduce started"
    )
    assert (f.status.sent[-1].state, f.status.sent[-1].message) == ("failed", candidate.reason)


async def test_progress_after_a_redrive_resets_the_clock_not_the_count(read_back):
    f = make_finals(redrives=1)
    await deliver(f, status(source=SOURCE))
    stuck(f)
    await f._watchdog()
    await deliver(f, f.status.sent[-1], status(source="bugs.analyzed/2/40"))
    await f._watchdog()
    assert len(f.app.producer.sent) == 1 and not f.candidates.sent, "not stuck: it moved"
    stuck(f)
    await f._watchdog()
    assert len(f.app.producer.sent) == 1, "the count was not reset"
    assert "after 1 re-drive;" in f.candidates.sent[0].reason


async def test_a_record_gone_from_its_topic_fails_the_bug_with_why(read_back):
    f = make_finals()
    read_back.records[SOURCE] = RedriveError(f"{SOURCE} is not on the topic (offsets 20 to 30)")
    await deliver(f, status(source=SOURCE))
    stuck(f)
    await f._watchdog()
    assert not f.app.producer.sent
    (candidate,) = f.candidates.sent
    assert candidate.reason.endswith(
        "after 0 re-drives; last: reproduce started; "
        f"{SOURCE} is not on the topic (offsets 20 to 30)"
    )


async def test_a_broker_error_while_redriving_is_tried_again_next_pass(read_back):
    f = make_finals()
    read_back.records[SOURCE] = KafkaConnectionError("broker away")
    await deliver(f, status(source=SOURCE))
    stuck(f)
    await f._watchdog()
    assert not f.candidates.sent and not f.status.sent
    read_back.records[SOURCE] = record()
    await f._watchdog()
    assert len(f.app.producer.sent) == 1 and read_back.calls == [SOURCE, SOURCE]


async def test_the_watchdog_walks_only_entries_of_partitions_this_worker_owns(read_back):
    ids = [f"bug-{i}" for i in range(40)]
    mine = {0, 1}
    f = make_finals(owned=mine)
    for bug_id in ids:
        await deliver(f, status(bug_id, source=SOURCE))
        stuck(f, bug_id)
    await f._watchdog()
    acted = {s.bug_id for s in f.status.sent}
    assert acted == {b for b in ids if partition_of(b, PARTITIONS) in mine}
    assert acted and acted != set(ids), "both kinds are in the sample"


async def test_no_pass_before_the_consumer_runs(read_back):
    f = make_finals()
    await deliver(f, status(source=SOURCE))
    stuck(f)
    f.app.consumer.owned = None
    await f._watchdog()
    assert not f.status.sent and not f.candidates.sent


# --- the progress table: deletion at the end, stragglers, replays --------------------------


async def test_the_entry_is_deleted_when_the_fix_event_is_out_and_stragglers_ignored():
    f = make_finals()
    await deliver(f, status(stage="analysis", source="bugs.reported/1/0"))
    assert "b1" in f.progress
    f.published.ids["b1"] = "validate"  # the finalizer published validate's verdict
    await deliver(f, status(stage=FINAL, state="done", message="fixed: ok"))
    assert "b1" not in f.progress
    await deliver(
        f,
        status(stage="validate", state="done"),  # a stage's own "done" trailing its output
        status(stage="fix", source="bugs.rootcaused/1/9"),  # a re-drive's copy, run late
        status(stage=WATCHDOG, state="failed"),
    )
    assert "b1" not in f.progress
    await deliver(f, status(stage=FINAL, state="done"))  # a dropped duplicate's: no entry
    assert f.progress == {}


async def test_a_dead_letter_sends_a_candidate_ends_the_entry_and_a_replay_is_tracked_again():
    f = make_finals()
    await deliver(f, status(stage="analysis", source="bugs.reported/1/0"))
    await deliver(f, status(stage="analysis", state="dead_lettered", message="RepoError: gone"))
    (candidate,) = f.candidates.sent
    assert candidate.meta.stage == "dlq:analysis"
    assert candidate.reason == "dead-lettered in analysis: RepoError: gone"
    assert f.progress["b1"]["ended"]
    await deliver(f, status(stage="analysis", state="done"))
    assert f.progress["b1"]["state"] == "dead_lettered", "ended: stragglers change nothing"

    f.published.ids["b1"] = "dlq:analysis"
    await deliver(f, status(stage=FINAL, state="done"))
    assert "b1" not in f.progress
    await deliver(f, status(stage="analysis", state="progress"))
    assert "b1" not in f.progress, "a straggler of the dead-lettered run"
    await deliver(f, status(stage="analysis", source="bugs.reported/1/5"))  # the replay
    assert f.progress["b1"]["source"] == "bugs.reported/1/5"
    assert not f.progress["b1"]["ended"]


async def test_a_dead_letter_of_a_run_another_run_finished_does_not_end_the_bug():
    """The 300-bug soak: reproduce finished on one worker, its redelivery was dead-lettered
    on another; the bug went on from the first run's output and got two fix events."""
    f = make_finals()
    await deliver(f, status(stage="reproduce", source="bugs.analyzed/2/19"))
    await deliver(f, status(stage="reproduce", state="done"))
    await deliver(f, status(stage="root_cause", source="bugs.reproduced/2/23"))
    await deliver(f, status(stage="reproduce", source="bugs.analyzed/2/19"))  # the redelivery
    await deliver(f, status(stage="reproduce", state="dead_lettered", message="Busy: later"))
    assert f.candidates.sent == [] and not f.progress["b1"]["ended"]

    # the same stage at a later attempt has not finished: its dead letter ends the bug
    await deliver(f, status(stage="fix", state="done", attempt=0))
    await deliver(f, status(stage="fix", state="dead_lettered", attempt=1, message="E: x"))
    (candidate,) = f.candidates.sent
    assert candidate.meta.stage == "dlq:fix" and f.progress["b1"]["ended"]
    assert f.progress["b1"]["done"] == ["reproduce/0", "fix/0"]


# --- every message isolated -----------------------------------------------------------------


class Exited(BaseException):
    pass


def candidate(stage: str = "validate", status_: str = "fixed") -> FixEvent:
    return FixEvent(bug_id="b1", meta=StageMeta(stage=stage), status=status_, reason="r")


async def test_the_finalizer_publishes_the_first_candidate_and_reports_final_for_each():
    f = make_finals()
    first = candidate()
    for fix in (first, candidate(WATCHDOG, "failed")):
        await f._finalize_one(SimpleNamespace(value=fix))
    assert f.fixes.sent == [first]
    assert [s.stage for s in f.status.sent] == [FINAL, FINAL]
    assert f.status.sent[0].message == "fixed: r"
    assert f.status.sent[1].message == "dropped failed from watchdog: the fix event is out"


async def test_the_finalizer_exits_unacked_when_it_cannot_decide(monkeypatch):
    f = make_finals()

    async def unknown(bug_id: str) -> bool:
        raise PublishedLogError("fixes not read to its end")

    f.published.holds = unknown  # type: ignore[method-assign]
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(Exited):
        await f._finalize_one(SimpleNamespace(value=candidate()))
    assert codes == [70] and not f.fixes.sent


async def test_a_status_that_cannot_be_tracked_is_dead_lettered_and_the_next_one_is():
    f = make_finals()
    bad = status("bad", stage="analysis", state="dead_lettered")

    async def send_fails(key: str, value: Any) -> Any:
        raise RuntimeError("no candidate")

    f.candidates.send = send_fails  # type: ignore[method-assign]
    events = [SimpleNamespace(value=s, message=f"m{i}") for i, s in enumerate([bad, status()])]
    for event in events:
        await f._follow_one(event)
    assert f.status.dead_letters.sent == [("m0", "RuntimeError", "progress")]
    assert "b1" in f.progress and "bad" not in f.progress


# --- PublishedLog: bounded, restarted, surviving broker errors ------------------------------


class FixesConsumer:
    """The follower's consumer: ``fixes`` with one record per partition given."""

    def __init__(self, records: dict[int, list[tuple[str, str]]]) -> None:
        self.tps = {p: TopicPartition("fixes", p) for p in records}
        self.pending = {
            self.tps[p]: [
                SimpleNamespace(partition=p, offset=i, key=k.encode(), timestamp=0,
                                value=orjson.dumps({"meta": {"stage": stage}}))
                for i, (k, stage) in enumerate(rs)
            ]
            for p, rs in records.items()
        }  # fmt: skip
        self.read = dict.fromkeys(self.tps.values(), 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.tps.values())

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.pending[tp]) + self.read[tp] for tp in parts}

    async def getmany(self, timeout_ms: int) -> dict:
        await asyncio.sleep(0.01)
        batch = {tp: rs for tp, rs in self.pending.items() if rs}
        for tp, rs in batch.items():
            self.read[tp] += len(rs)
        self.pending = {tp: [] for tp in self.pending}
        return batch

    async def position(self, tp: TopicPartition) -> int:
        return self.read[tp]


def fails_once(
    monkeypatch: pytest.MonkeyPatch, error: Exception, records: dict[int, list[tuple[str, str]]]
) -> SimpleNamespace:
    """Patch ``finals.reader``: its first opening raises ``error``, the next ones read
    ``records`` (as FixesConsumer takes them). The answer's ``opened`` counts the openings."""
    reader = SimpleNamespace(opened=0)

    @asynccontextmanager
    async def opens(settings: Settings, topics: list[str]):
        reader.opened += 1
        if reader.opened == 1:
            raise error
        yield FixesConsumer(records)

    monkeypatch.setattr(finals, "reader", opens)
    return reader


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(finals, "RETRY_S", 0.01)
    monkeypatch.setattr(finals, "CATCH_UP_S", 0.3)


async def test_holds_gives_up_when_the_follower_cannot_catch_up_instead_of_spinning(fast):
    published = PublishedLog(Settings(broker="localhost:9092"))
    starts = 0

    async def dies() -> None:
        nonlocal starts
        starts += 1
        raise RuntimeError("follower bug")

    published.follow = dies  # type: ignore[method-assign]
    with pytest.raises(PublishedLogError, match="read nothing for 0.3 s"):
        await asyncio.wait_for(published.holds("b1"), timeout=5)
    assert starts > 1, "the dead follower was started again"
    await asyncio.gather(published.start(), return_exceptions=True)  # the last one's end


async def test_holds_restarts_a_dead_follower_and_answers_once_it_read_to_the_end(
    fast, monkeypatch
):
    published = PublishedLog(Settings(broker="localhost:9092"))
    reader = fails_once(
        monkeypatch,
        RuntimeError("follower bug"),  # not a broker error: the follower dies
        {0: [("b1", "validate")], 1: [("b2", "dlq:analysis")]},
    )
    assert await asyncio.wait_for(published.holds("b1"), timeout=5) is True
    assert reader.opened == 2
    assert await published.holds("b2") is False, "a dead letter may be replayed"
    published.start().cancel()


async def test_the_follower_survives_a_broker_error(fast, monkeypatch):
    published = PublishedLog(Settings(broker="localhost:9092"))
    reader = fails_once(monkeypatch, KafkaConnectionError("broker away"), {0: [("b1", "validate")]})
    task = published.start()
    assert await asyncio.wait_for(published.holds("b1"), timeout=5) is True
    assert reader.opened == 2 and not task.done()
    task.cancel()
