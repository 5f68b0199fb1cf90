"""The thin Faust agent around a stage's pure core: iterate, call, send, dead-letter.

Every message is caught on its own: an exception inside a Faust agent would otherwise stop
the agent silently while its consumer stays in the group (faust #175, #640). Outputs are
awaited until the broker has them before the message is acked, so nothing is committed
before its output exists (at-least-once); many messages are in flight at once, acked in
order (``streams.inflight``). At-least-once means redeliveries: a worker does each
(bug, stage, attempt) once (``Once``) and drops the repeats it sees.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import faust

from fixstream import telemetry
from fixstream.llm.accounting import Totals
from fixstream.schemas import BugSummary, Event, StageMeta, StatusEvent
from fixstream.streams.deadletters import DeadLetters, header_count, replays_of
from fixstream.streams.finals import REDRIVE_HEADER
from fixstream.streams.inflight import run_concurrently
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)

V = TypeVar("V")

STAGE_MEMORY = 4096
"""(bug, stage, attempt, re-drive) keys a stage remembers having handled (a few hundred
bytes each)."""


class Once(Generic[V]):
    """Work done once per key in this worker, while the key is remembered.

    Remembers the values of the last ``size`` keys (an LRU) and the keys being worked on. A
    repeat of a key in progress waits for that run to end, so the repeat's ack (and commit)
    cannot overtake the first run's output; then it gets the first run's value. A run that
    returns None, raises or is cancelled is not remembered: the next repeat runs again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._done: OrderedDict[Hashable, V] = OrderedDict()
        self._running: dict[Hashable, asyncio.Event] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """``(value, repeated)``: ``work()``'s value, or a remembered one (``repeated``)."""
        while (running := self._running.get(key)) is not None:
            await running.wait()
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], True
        ended = self._running[key] = asyncio.Event()
        try:
            value = await work()
            if value is not None:
                self._done[key] = value
                if len(self._done) > self.size:
                    self._done.popitem(last=False)
            return value, False
        finally:
            del self._running[key]
            ended.set()


@dataclass(frozen=True)
class Outcome:
    """What a stage's core produced for one bug: the hand-off, and what to report."""

    output: Event
    summary: BugSummary | None = None
    usage: Totals = field(default_factory=Totals)
    note: str = ""
    sink: str | None = None
    """Another topic than the stage's own (validate sends a bug back to fix)."""
    on_emitted: Callable[[], None] | None = None
    """Runs once the broker holds the output (validate records the bug as final)."""


def stage_meta(stage: str, elapsed_s: float, usage: Totals, attempt: int = 0) -> StageMeta:
    """Idempotence key (stage, attempt) plus what the stage cost."""
    return StageMeta(
        stage=stage, attempt=attempt, elapsed_ms=elapsed_s * 1000, tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out, cost_usd=usage.cost_usd,
    )  # fmt: skip


def attempt_of(value: Any) -> int:
    """The attempt a stage works on for an input: the input's ``meta.attempt``. For fix that
    is the retry number validate set on the RootCausedBug it sent back (validate then works
    on the same number); a report has no meta, and reproduce and root cause run once (0)."""
    meta = getattr(value, "meta", None)
    return meta.attempt if isinstance(meta, StageMeta) else 0


def redrive_of(message: Any) -> int:
    """Which of the watchdog's re-drives a record is (0: none, or a bad header). A re-drive
    asks for the stage to run again, so it is not a repeat of the run before it."""
    return header_count(getattr(message, "headers", None), REDRIVE_HEADER)


Handler = Callable[[Any], Awaitable[Outcome | None]]
"""A stage core; ``None`` means it scattered work and the gather will emit later."""


class Stage:
    """One stage: ``handler`` turns an input event into the event sent to ``sink``."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        sink: str,
        topics: Any,
        dead_letters: DeadLetters,
        decided_after: Callable[[str, float], Awaitable[bool]] | None = None,
    ) -> None:
        self.name = name
        self.decided_after = decided_after
        """``PublishedLog.decided_after``: drops inputs written before their bug's verdict."""
        self.handler = handler
        self.sink = sink
        self.topics = topics
        self.dead_letters = dead_letters
        self.scatters = False
        """Set by ScatterGather.register: a ``None`` outcome then means "gathered later"."""
        self.handled: Once[str | None] = Once(STAGE_MEMORY)
        """How this worker's runs of (bug, this stage, attempt) ended."""

    async def status_event(self, bug_id: str, state: str, attempt: int = 0, **fields: Any) -> None:
        event = StatusEvent(
            bug_id=bug_id, stage=self.name, state=state, attempt=attempt, worker=WORKER_ID,
            **fields,
        )  # fmt: skip
        await self.topics["bugs.status"].send(key=bug_id, value=event)

    async def _progress(self, bug_id: str, attempt: int, message: str) -> None:
        await self.status_event(bug_id, "progress", attempt, message=message)

    async def process(self, event: faust.EventT) -> None:
        """Run the stage on an input, unless this worker did (or is doing) its (bug, stage,
        attempt) already: then drop it, without a second LLM call, test run, output or status.
        A watchdog re-drive of the input runs again (its number is part of the key).

        Faust redelivers from the committed offset after a rebalance, so a worker sees inputs
        again that it handled. Memory is enough for these: a redelivery reaches back to the
        committed offset only (a commit interval and what was in flight: hundreds of records,
        not ``STAGE_MEMORY``), and whoever else repeats an input (the partition's next owner)
        has its LLM calls and test runs answered by the answer cache and the test-run cache
        (shared by every worker with Redis), and the finalizer publishes one fix event per bug.
        A dead-lettered run is not remembered: a replay from the DLQ runs again.
        """
        value = event.value
        written_at = event.message.timestamp or 0.0
        replay = replays_of(getattr(event.message, "headers", None)) > 0
        # a replay asks for a run whenever it was written: the operator may have replayed the
        # dead letter before its fix event was out (the finalizer drops what a final verdict
        # already decided)
        if (
            self.decided_after is not None
            and not replay
            and await self.decided_after(value.bug_id, written_at)
        ):
            telemetry.active().metrics.stage_outcomes.labels(self.name, "decided").inc()
            log.info("%s: %s has its fix event already; dropping an older input", self.name,
                     value.bug_id)  # fmt: skip
            return
        key = (value.bug_id, self.name, attempt_of(value), redrive_of(event.message))
        ended, repeated = await self.handled.run(key, lambda: self._run(event))
        if repeated:
            telemetry.active().metrics.stage_outcomes.labels(self.name, "duplicate").inc()
            log.info(
                "%s: %s attempt %d already %s here; dropping a redelivery",
                self.name, key[0], key[2], ended,
            )  # fmt: skip

    async def _run(self, event: faust.EventT) -> str | None:
        """The stage proper: how it ended (done, scattered, dropped), None if dead-lettered."""
        value = event.value
        bug_id, attempt = value.bug_id, attempt_of(value)
        started = time.perf_counter()
        telemetry.current_bug.set(bug_id)
        telemetry.current_stage.set(self.name)
        telemetry.progress.set(functools.partial(self._progress, bug_id, attempt))
        telemetry.active().stage_began(self.name, bug_id)
        where = event.message  # what the watchdog re-drives should the bug get stuck
        await self.status_event(
            bug_id, "started", attempt, source=f"{where.topic}/{where.partition}/{where.offset}"
        )
        try:
            outcome = await self.handler(value)
        except Exception as exc:  # per-message isolation is the point (faust #175)
            elapsed = time.perf_counter() - started
            await self.dead_letter(bug_id, event.message, exc, elapsed, attempt=attempt)
            return None
        if outcome is not None:
            await self.emit(bug_id, outcome, time.perf_counter() - started, attempt)
            return "done"
        if self.scatters:
            return "scattered"
        telemetry.active().stage_ended(self.name, bug_id, "dropped", 0.0)
        return "dropped"

    async def dead_letter(
        self,
        bug_id: str,
        message: Any,
        exc: Exception,
        elapsed_s: float,
        stage: str = "",
        attempt: int = 0,
    ) -> None:
        letter = await self.dead_letters.send(message, exc, stage=stage or self.name)
        telemetry.active().stage_ended(self.name, bug_id, "dead_lettered", elapsed_s)
        await self.status_event(
            bug_id, "dead_lettered", attempt, message=f"{letter.error_class}: {letter.reason}"
        )

    async def emit(self, bug_id: str, outcome: Outcome, elapsed_s: float, attempt: int) -> None:
        """Publish an outcome: summary, hand-off (waiting for the broker), then status."""
        if outcome.summary is not None:
            await (await self.topics["bugs.summaries"].send(key=bug_id, value=outcome.summary))
        sink = self.topics[outcome.sink or self.sink]
        await (await sink.send(key=bug_id, value=outcome.output))
        if outcome.on_emitted is not None:
            outcome.on_emitted()
        telemetry.active().stage_ended(self.name, bug_id, "done", elapsed_s)
        usage = outcome.usage
        await self.status_event(
            bug_id,
            "done",
            attempt,
            elapsed_ms=elapsed_s * 1000,
            message=outcome.note,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=usage.cost_usd,
        )
        log.info("%s: %s done in %.0f ms %s", self.name, bug_id, elapsed_s * 1000, outcome.note)

    def register(self, app: faust.App, source: faust.TopicT, concurrency: int) -> None:
        async def agent(stream: faust.StreamT) -> None:
            await run_concurrently(stream, self.process, concurrency)

        agent.__name__ = agent.__qualname__ = f"run_{self.name}"
        app.agent(source, name=f"fixstream.{self.name}", concurrency=1)(agent)
