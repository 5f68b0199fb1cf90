"""The soak's oracle, Kafka's: every record of every pipeline topic accounted for.

Counting fix events per bug cannot see a loss: a record lost inside the pipeline ends its bug
by the watchdog ("no progress for ... s"), which is a fix event too. So, after the run, every
record of every topic the workers consume is read back and each one must have had its effect
(the oracle of Kafka's own transaction and exactly-once tests). No Kafka I/O here: the soak
reads the topics, this module only counts.

The topology (``fixstream/app.py``): each stage consumes one topic and produces ``bugs.X``
events whose ``meta`` is (stage, attempt); root_cause and fix scatter ``ChunkTask``s to
``chunks.tasks`` and gather ``ChunkResult``s from ``chunks.results``; validate sends its
verdict to ``bugs.final``, or the bug back to fix on ``bugs.rootcaused`` with attempt + 1;
the finalizer publishes the first candidate per bug on ``bugs.final`` to ``fixes``.

A record's effect, per topic, for bug b:
- a stage input of attempt a (``bugs.reported`` is attempt 0): the stage's output for (b, a)
  on its sink (``meta.stage`` is the stage; validate's is its verdict on ``bugs.final`` or the
  retry on ``bugs.rootcaused`` with attempt a + 1); for root_cause and fix also the chunk
  tasks they scattered for (b, a). A redelivered or duplicated input shares its output.
- ``chunks.tasks``: a result with its task id on ``chunks.results``.
- ``chunks.results``: the output of the gather it belongs to (stage, b, and the attempt of its
  task; a deadline nudge belongs to every gather of its stage and bug).
- ``bugs.final``: the bug on ``fixes``. A fix event from the watchdog is no effect of the
  other candidates: they were never finalized.

A record is processed when its effect exists; dead-lettered when a dead letter on ``bugs.dlq``
names its (topic, partition, offset) or its bug was dead-lettered in the record's stage (the
other results of a gather that failed); ended (counted processed) when its bug's fix event
was decided otherwise than by the watchdog, so a straggler after the verdict is no loss.
Anything else is lost. A chunk task is answered whatever happens to its bug, so only its own
dead letter or result accounts for it. A duplicated effect is a copy of an effect beyond the
first (at-least-once allows them: counted, not failed).

A bug is lost when it has no fix event, or when its first one is the watchdog's: a record of
it went missing somewhere, which the per-topic table then names. A wrong verdict is a bug
that validate passed ("fixed" on ``bugs.final``) whose fix event says "failed". A re-driven
bug is one whose stage input the watchdog published again (header ``fixstream.redrive``)
after it made no progress: a copy shares its original's effect, so the record that went
missing is repaired and no longer visible above; the re-drive is how it shows.
``bugs.status`` has no effect on a topic (it feeds the watchdog's table): the soak's offset
check covers it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from fixstream.schemas import DeadLetter

STAGES = {
    "bugs.reported": "analysis",
    "bugs.analyzed": "reproduce",
    "bugs.reproduced": "root_cause",
    "bugs.rootcaused": "fix",
    "bugs.patched": "validate",
}
"""Each stage's input topic."""
TASKS, RESULTS, FINAL, FIXES, DLQ = (
    "chunks.tasks", "chunks.results", "bugs.final", "fixes", "bugs.dlq",
)  # fmt: skip
ACCOUNTED = (*STAGES, TASKS, RESULTS, FINAL)
"""The topics whose every record must have its effect."""
CONSUMED = (*ACCOUNTED, "bugs.status")
"""Every topic the worker group consumes (its offsets must reach the end)."""
OUTPUTS = ("bugs.analyzed", "bugs.reproduced", "bugs.rootcaused", "bugs.patched", FINAL)
VALIDATE, WATCHDOG, DEADLINE_TASK = "validate", "watchdog", "deadline"
"""``validate.STAGE``, ``finals.WATCHDOG``, ``scatter.DEADLINE_TASK``."""
REDRIVE_HEADER = "fixstream.redrive"
"""``finals.REDRIVE_HEADER``: on a stage input the watchdog published again."""
LISTED = 20
"""Lost records and bugs named in the figures (the counts are whole)."""


@dataclass(frozen=True)
class Record:
    """One record as read back: where it sits, its key, its value decoded (None if not JSON)."""

    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: dict[str, Any] | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def of(cls, r: Any) -> Record:
        """From an aiokafka ``ConsumerRecord``."""
        try:
            value = orjson.loads(r.value) if r.value else None
        except orjson.JSONDecodeError:
            value = None
        key = r.key.decode(errors="replace") if r.key is not None else None
        value = value if isinstance(value, dict) else None
        return cls(r.topic, r.partition, r.offset, key, value, tuple(r.headers or ()))

    @property
    def bug(self) -> str | None:
        return self.field("bug_id") or self.key

    @property
    def stage(self) -> str:
        """The stage that produced it (``meta.stage``), or a chunk's stage."""
        return self.meta.get("stage") or self.field("stage") or ""

    @property
    def attempt(self) -> int:
        return int(self.meta.get("attempt") or self.field("attempt") or 0)

    @property
    def meta(self) -> dict[str, Any]:
        return self.field("meta") or {}

    def field(self, name: str) -> Any:
        return (self.value or {}).get(name)

    def __str__(self) -> str:
        what = self.field("state") or f"attempt {self.attempt}"  # a status event's state
        return " ".join(filter(None, (f"{self.topic}[{self.partition}]@{self.offset}", self.bug,
                                      self.stage, what)))  # fmt: skip


def output_of(r: Record) -> tuple[str, str | None, int] | None:
    """(stage, bug, attempt of the input) that a hand-off record is the output of."""
    if r.topic == "bugs.rootcaused" and r.attempt > 0:
        return VALIDATE, r.bug, r.attempt - 1  # validate sent the bug back to fix
    if r.topic == FINAL and r.stage != VALIDATE:
        return None  # a dead letter's or the watchdog's candidate, no stage's output
    return r.stage, r.bug, r.attempt


def is_watchdogs(fix: Record) -> bool:
    return fix.stage == WATCHDOG or "no progress" in (fix.field("reason") or "")


@dataclass
class TopicFigures:
    produced: int = 0
    processed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    lost_records: list[str] = field(default_factory=list)


@dataclass
class BugFigures:
    submitted: int = 0
    fixed: int = 0
    failed_with_reason: int = 0
    failed_silently: int = 0
    lost: int = 0
    duplicate_fix_events: int = 0
    wrong_verdicts: int = 0
    redriven: int = 0
    lost_bugs: dict[str, str] = field(default_factory=dict)
    """Bug id -> why it counts lost (no fix event, or the watchdog's reason)."""
    redrives: dict[str, list[str]] = field(default_factory=dict)
    """Bug id -> the copies the watchdog published of its stage inputs."""
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: list[tuple[str, int]] = field(default_factory=list)
    """The most common reasons of verdicts other than "fixed"."""


@dataclass
class Accounts:
    topics: dict[str, TopicFigures]
    bugs: BugFigures
    sinks: dict[str, int]
    """Records on ``fixes`` and ``bugs.dlq``, which no worker consumes."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """Indexes of every effect, built once from all records."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.by_topic: dict[str, list[Record]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
            self.by_topic[r.topic].append(r)
        self.copies: Counter[tuple[Any, ...]] = Counter()
        for topic in OUTPUTS:
            self.copies.update(("out", *o) for r in self.by_topic[topic] if (o := output_of(r)))
        self.scattered: dict[tuple[str, str | None, int], set[str]] = defaultdict(set)
        self.task_attempt: dict[str, int] = {}
        for r in self.by_topic[TASKS]:
            task_id = r.field("task_id")
            self.copies["task", task_id] += 1
            self.scattered[r.stage, r.bug, r.attempt].add(task_id)
            self.task_attempt[task_id] = r.attempt
        self.copies.update(
            ("result", r.field("task_id"))
            for r in self.by_topic[RESULTS]
            if r.field("task_id") != DEADLINE_TASK
        )
        self.fixes: dict[str | None, list[Record]] = defaultdict(list)
        for r in self.by_topic[FIXES]:
            self.fixes[r.bug].append(r)
            self.copies["fix", r.bug] += 1
        self.redrives: dict[str | None, list[str]] = defaultdict(list)
        for topic in STAGES:
            for r in self.by_topic[topic]:
                if any(k == REDRIVE_HEADER for k, _ in r.headers):
                    self.redrives[r.bug].append(str(r))
        self.named: set[tuple[str, int | None, int | None]] = set()
        self.dead_in: dict[str | None, set[str]] = defaultdict(set)
        for r in self.by_topic[DLQ]:
            try:
                letter = DeadLetter.from_record(None, None, list(r.headers))
            except ValidationError:
                continue  # anyone can produce to the topic
            self.named.add((letter.original_topic, letter.partition, letter.offset))
            self.dead_in[r.bug].add(letter.stage.split(".")[0])  # root_cause.gather: root_cause

    def effects(self, r: Record) -> list[tuple[Any, ...]]:
        """The identities of what ``r`` should have caused (see the module docstring)."""
        bug = r.bug
        if r.topic in STAGES:
            stage = STAGES[r.topic]
            attempt = 0 if r.topic == "bugs.reported" else r.attempt
            tasks = self.scattered.get((stage, bug, attempt))
            # a scatter's output is the gather's effect, counted on chunks.results
            return [("task", t) for t in sorted(tasks)] if tasks else [("out", stage, bug, attempt)]
        if r.topic == TASKS:
            return [("result", r.field("task_id"))]
        if r.topic == RESULTS:
            if (attempt := self.task_attempt.get(r.field("task_id"))) is not None:
                return [("out", r.stage, bug, attempt)]
            # a deadline nudge: whichever gather of its stage and bug was pending
            return [("out", s, b, a) for (s, b, a) in self.scattered if (s, b) == (r.stage, bug)]
        if r.topic == FINAL:
            fixes = self.fixes.get(bug)
            if fixes and is_watchdogs(fixes[0]) and r.stage != WATCHDOG:
                return []
            return [("fix", bug)]
        return []

    def ended(self, bug: str | None) -> bool:
        """Its fix event was decided, and not by the watchdog."""
        fixes = self.fixes.get(bug)
        return bool(fixes) and not is_watchdogs(fixes[0])

    def dead_lettered(self, r: Record) -> bool:
        if (r.topic, r.partition, r.offset) in self.named:
            return True
        return r.topic != TASKS and (STAGES.get(r.topic) or r.stage) in self.dead_in[r.bug]

    def topic(self, name: str) -> TopicFigures:
        figures = TopicFigures()
        effects: set[tuple[Any, ...]] = set()
        for r in self.by_topic[name]:
            figures.produced += 1
            own = self.effects(r)
            effects.update(own)
            if any(self.copies[e] for e in own):
                figures.processed += 1
            elif self.dead_lettered(r):
                figures.dead_lettered += 1
            elif name != TASKS and self.ended(r.bug):
                figures.processed += 1
            else:
                figures.lost += 1
                if len(figures.lost_records) < LISTED:
                    figures.lost_records.append(str(r))
        figures.duplicated = sum(max(0, self.copies[e] - 1) for e in effects)
        return figures

    def bugs(self, submitted: set[str]) -> BugFigures:
        figures = BugFigures(submitted=len(submitted))
        validated = {r.bug for r in self.by_topic[FINAL]
                     if r.stage == VALIDATE and r.field("status") == "fixed"}  # fmt: skip
        firsts = []
        for bug in sorted(submitted):
            fixes = self.fixes.get(bug, [])
            figures.duplicate_fix_events += max(0, len(fixes) - 1)
            if bug in self.redrives:
                figures.redriven += 1
                figures.redrives[bug] = self.redrives[bug][:LISTED]
            if fixes and fixes[0].field("status") == "failed" and bug in validated:
                figures.wrong_verdicts += 1
            if not fixes or is_watchdogs(fixes[0]):
                figures.lost += 1
                if len(figures.lost_bugs) < LISTED:
                    why = fixes[0].field("reason") if fixes else "no fix event"
                    figures.lost_bugs[bug] = why
                continue
            first = fixes[0].value or {}
            firsts.append(first)
            status, reason = first.get("status"), first.get("reason") or ""
            if status == "fixed":
                figures.fixed += 1
            elif reason:
                figures.failed_with_reason += 1
            else:
                figures.failed_silently += 1
        figures.statuses = dict(Counter(f.get("status") for f in firsts))
        figures.reasons = Counter(
            (f.get("reason") or "").split(":")[0][:60] for f in firsts if f.get("status") != "fixed"
        ).most_common(5)
        return figures


def account(records: Iterable[Record], submitted: set[str]) -> Accounts:
    """Per topic and per bug: what was processed, dead-lettered, lost and duplicated."""
    ledger = Ledger(records)
    return Accounts(
        topics={name: ledger.topic(name) for name in ACCOUNTED},
        bugs=ledger.bugs(submitted),
        sinks={name: len(ledger.by_topic[name]) for name in (FIXES, DLQ)},
    )
