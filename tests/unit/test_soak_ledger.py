"""The soak's record ledger on hand-made topics: every record accounted for, every loss named."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fixstream.bench import ledger
from fixstream.bench.ledger import Record, account
from fixstream.schemas import DeadLetter

WATCHDOG_REASON = "no progress for 301 s (limit 300 s); last: validate started"


class Topics:
    """Records as the pipeline would leave them, offsets counted per topic (one partition)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.ends: Counter[str] = Counter()

    def put(self, topic: str, value: dict[str, Any], **headers: Any) -> Record:
        key = value.get("chunk", {}).get("chunk_id") or value.get("bug_id")
        record = Record(topic, 0, self.ends[topic], key, value, tuple(headers.items()))
        self.ends[topic] += 1
        self.records.append(record)
        return record

    def output(self, topic: str, bug: str, stage: str, attempt: int = 0) -> Record:
        return self.put(topic, {"bug_id": bug, "meta": {"stage": stage, "attempt": attempt}})

    def scatter(self, bug: str, stage: str, chunks: int, answered: int | None = None) -> None:
        """``chunks`` tasks, the first ``answered`` of them (all by default) with a result."""
        attempt = 0
        for n in range(chunks):
            task = {"task_id": f"{stage}:c{n}:{attempt}", "bug_id": bug, "stage": stage,
                    "attempt": attempt, "chunk": {"chunk_id": f"{bug}-c{n}"}}  # fmt: skip
            self.put("chunks.tasks", task)
        for n in range(chunks if answered is None else answered):
            self.put("chunks.results", {"task_id": f"{stage}:c{n}:{attempt}", "bug_id": bug,
                                        "stage": stage, "ok": True})  # fmt: skip

    def verdict(
        self, bug: str, stage: str, status: str, reason: str, attempt: int = 0
    ) -> dict[str, Any]:
        return {"bug_id": bug, "meta": {"stage": stage, "attempt": attempt}, "status": status,
                "reason": reason}  # fmt: skip

    def until_patched(self, bug: str, *, answered: int | None = None) -> None:
        """A bug through every stage up to validate's input."""
        self.put("bugs.reported", {"bug_id": bug})
        self.output("bugs.analyzed", bug, "analysis")
        self.output("bugs.reproduced", bug, "reproduce")
        self.scatter(bug, "root_cause", 2, answered)
        self.output("bugs.rootcaused", bug, "root_cause")
        self.scatter(bug, "fix", 1)
        self.output("bugs.patched", bug, "fix")

    def fixed(self, bug: str) -> None:
        self.until_patched(bug)
        self.finalized(self.verdict(bug, "validate", "fixed", "merged: all tests pass"))

    def finalized(self, event: dict[str, Any]) -> None:
        self.put("bugs.final", event)
        self.put("fixes", event)

    def dead_letter(self, record: Record, stage: str) -> None:
        letter = DeadLetter(original_topic=record.topic, partition=record.partition,
                            offset=record.offset, stage=stage, error_class="BadInputError",
                            reason="no such repository")  # fmt: skip
        self.put("bugs.dlq", record.value or {}, **dict(letter.headers()))
        reason = f"dead-lettered in {stage}: BadInputError: no such repository"
        self.finalized(self.verdict(record.bug or "", f"dlq:{stage}", "failed", reason))


def lost(accounts: ledger.Accounts) -> dict[str, int]:
    return {name: t.lost for name, t in accounts.topics.items() if t.lost}


def test_a_clean_bug_has_every_record_processed_and_nothing_lost():
    topics = Topics()
    topics.fixed("b1")
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {}
    for name, figures in accounts.topics.items():
        assert figures.produced == figures.processed == topics.ends[name], name
        assert figures.dead_lettered == figures.duplicated == 0, name
    bugs = accounts.bugs
    assert (bugs.submitted, bugs.fixed, bugs.lost, bugs.duplicate_fix_events) == (1, 1, 0, 0)
    assert accounts.sinks == {"fixes": 1, "bugs.dlq": 0}


def test_a_record_without_its_output_is_lost_and_the_watchdog_does_not_excuse_it():
    topics = Topics()
    topics.until_patched("b1")  # validate never produced anything for it
    topics.finalized(topics.verdict("b1", "watchdog", "failed", WATCHDOG_REASON))
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {"bugs.patched": 1}
    assert accounts.topics["bugs.patched"].lost_records == ["bugs.patched[0]@0 b1 fix attempt 0"]
    assert accounts.bugs.lost == 1 and accounts.bugs.fixed == 0
    assert accounts.bugs.lost_bugs == {"b1": WATCHDOG_REASON}
    assert accounts.topics["bugs.final"].processed == 1  # the watchdog's own candidate


def test_a_bug_with_no_fix_event_at_all_is_lost():
    topics = Topics()
    topics.put("bugs.reported", {"bug_id": "b1"})
    accounts = account(topics.records, {"b1", "b2"})
    assert lost(accounts) == {"bugs.reported": 1}
    assert accounts.bugs.lost_bugs == {"b1": "no fix event", "b2": "no fix event"}


def test_a_dead_lettered_record_is_dead_lettered_not_lost():
    topics = Topics()
    topics.put("bugs.reported", {"bug_id": "b1"})
    analyzed = topics.output("bugs.analyzed", "b1", "analysis")
    topics.dead_letter(analyzed, "reproduce")
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {}
    assert accounts.topics["bugs.analyzed"].dead_lettered == 1
    assert accounts.bugs.failed_with_reason == 1 and accounts.bugs.lost == 0
    assert accounts.sinks["bugs.dlq"] == 1


def test_a_failed_gather_dead_letters_every_result_it_held():
    topics = Topics()
    topics.put("bugs.reported", {"bug_id": "b1"})
    topics.output("bugs.analyzed", "b1", "analysis")
    topics.output("bugs.reproduced", "b1", "reproduce")
    topics.scatter("b1", "root_cause", 3)
    topics.dead_letter(topics.records[-1], "root_cause.gather")  # names the last result only
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {}
    assert accounts.topics["chunks.results"].dead_lettered == 3


def test_verdicts_are_counted_by_the_first_fix_event_and_a_failure_needs_its_reason():
    topics = Topics()
    for bug, status, reason in (
        ("b1", "fixed", "merged: all tests pass"), ("b2", "failed", ""),
        ("b3", "failed", "no candidate passed after 3 fix attempt(s): proposal 1"),
    ):  # fmt: skip
        topics.until_patched(bug)
        topics.finalized(topics.verdict(bug, "validate", status, reason))
    bugs = account(topics.records, {"b1", "b2", "b3"}).bugs
    assert (bugs.fixed, bugs.failed_with_reason, bugs.failed_silently) == (1, 1, 1)
    assert bugs.statuses == {"fixed": 1, "failed": 2}
    assert ("no candidate passed after 3 fix attempt(s)", 1) in bugs.reasons


def test_a_second_fix_event_is_a_duplicate():
    topics = Topics()
    topics.fixed("b1")
    topics.put("fixes", topics.verdict("b1", "validate", "fixed", "merged: all tests pass"))
    accounts = account(topics.records, {"b1"})
    assert accounts.bugs.duplicate_fix_events == 1
    assert accounts.topics["bugs.final"].duplicated == 1
    assert accounts.bugs.fixed == 1 and lost(accounts) == {}


def test_a_validated_fix_reported_failed_is_a_wrong_verdict():
    topics = Topics()
    topics.until_patched("b1")
    topics.put("bugs.final", topics.verdict("b1", "validate", "fixed", "merged: all tests pass"))
    topics.finalized(topics.verdict("b1", "watchdog", "failed", WATCHDOG_REASON))
    accounts = account(topics.records, {"b1"})
    assert accounts.bugs.wrong_verdicts == 1 and accounts.bugs.lost == 1
    # the finalizer never published validate's candidate: that record is the loss
    assert lost(accounts) == {"bugs.final": 1}


def test_a_dead_letter_winning_over_a_pass_is_a_wrong_verdict_too():
    topics = Topics()
    topics.until_patched("b1")
    topics.put("bugs.final", topics.verdict("b1", "validate", "fixed", "merged: all tests pass"))
    topics.dead_letter(topics.records[-2], "validate")
    accounts = account(topics.records, {"b1"})
    assert accounts.bugs.wrong_verdicts == 1
    assert accounts.bugs.failed_with_reason == 1 and accounts.bugs.lost == 0


def test_a_duplicated_input_is_processed_and_duplicated_outputs_are_counted():
    topics = Topics()
    topics.put("bugs.reported", {"bug_id": "b1"})
    topics.output("bugs.analyzed", "b1", "analysis")
    topics.output("bugs.analyzed", "b1", "analysis")  # analysis ran twice (a redelivery)
    topics.output("bugs.reproduced", "b1", "reproduce")  # reproduce's output, for both
    topics.finalized(topics.verdict("b1", "validate", "failed", "no candidate passed"))
    accounts = account(topics.records, {"b1"})
    assert accounts.topics["bugs.analyzed"].processed == 2
    assert accounts.topics["bugs.analyzed"].duplicated == 0
    assert accounts.topics["bugs.reported"].duplicated == 1
    assert lost(accounts) == {} and accounts.bugs.duplicate_fix_events == 0


def test_validates_retry_is_its_output_and_fixs_next_input():
    topics = Topics()
    topics.until_patched("b1")
    topics.output("bugs.rootcaused", "b1", "root_cause", attempt=1)  # validate: back to fix
    topics.output("bugs.patched", "b1", "fix", attempt=1)
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {"bugs.patched": 1}
    assert accounts.topics["bugs.patched"].lost_records == ["bugs.patched[0]@1 b1 fix attempt 1"]
    topics.finalized(topics.verdict("b1", "validate", "fixed", "proposal 1: all tests pass", 1))
    assert lost(account(topics.records, {"b1"})) == {}


def test_a_chunk_task_without_a_result_is_lost_even_when_its_bug_was_fixed():
    topics = Topics()
    topics.until_patched("b1", answered=1)  # root_cause's second chunk never answered
    topics.put("chunks.results", {"task_id": "deadline", "bug_id": "b1", "stage": "root_cause"})
    topics.finalized(topics.verdict("b1", "validate", "fixed", "merged: all tests pass"))
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {"chunks.tasks": 1}
    assert accounts.topics["chunks.tasks"].lost_records == [
        "chunks.tasks[0]@1 b1 root_cause attempt 0"
    ]
    assert accounts.topics["chunks.results"].processed == 3  # the deadline's nudge included
    assert accounts.bugs.fixed == 1


def test_a_stage_input_the_watchdog_published_again_makes_its_bug_re_driven():
    topics = Topics()
    topics.until_patched("b1")
    patched = topics.records[-1]
    topics.records.append(Record("bugs.patched", 0, 1, "b1", patched.value,
                                 (("fixstream.redrive", b"1"),)))  # fmt: skip
    topics.finalized(topics.verdict("b1", "validate", "fixed", "merged: all tests pass"))
    accounts = account(topics.records, {"b1"})
    assert lost(accounts) == {} and accounts.bugs.fixed == 1
    assert accounts.bugs.redriven == 1
    assert accounts.bugs.redrives == {"b1": ["bugs.patched[0]@1 b1 fix attempt 0"]}


def test_the_ledgers_topology_is_the_apps():
    from fixstream.config import Settings
    from fixstream.streams import analysis, finals, fix, reproduce, root_cause, scatter, validate
    from fixstream.topics import load_catalog

    stages = [m.STAGE for m in (analysis, reproduce, root_cause, fix, validate)]
    assert list(ledger.STAGES.values()) == stages
    assert ledger.VALIDATE == validate.STAGE and ledger.WATCHDOG == finals.WATCHDOG
    assert ledger.DEADLINE_TASK == scatter.DEADLINE_TASK
    assert ledger.REDRIVE_HEADER == finals.REDRIVE_HEADER
    names = {spec.name for spec in load_catalog(Settings().topics_file)}
    assert {*ledger.CONSUMED, ledger.FIXES, ledger.DLQ} <= names
