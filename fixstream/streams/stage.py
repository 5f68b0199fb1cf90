"""The thin Faust agent around a stage's pure core: iterate, call, send, dead-letter.

Every message is caught on its own: an exception inside a Faust agent would otherwise stop
the agent silently while its consumer stays in the group (faust #175, #640). Outputs are
awaited until the broker has them before the message is acked, so nothing is committed
before its output exists (at-least-once); many messages are in flight at once, acked in
order (``streams.inflight``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from fixstream import telemetry
from fixstream.llm.accounting import Totals
from fixstream.schemas import BugSummary, Event, StageMeta, StatusEvent
from fixstream.streams.deadletters import DeadLetters
from fixstream.streams.inflight import run_concurrently
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)


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
    ) -> None:
        self.name = name
        self.handler = handler
        self.sink = sink
        self.topics = topics
        self.dead_letters = dead_letters
        self.scatters = False
        """Set by ScatterGather.register: a ``None`` outcome then means "gathered later"."""

    async def status_event(self, bug_id: str, state: str, **fields: Any) -> None:
        event = StatusEvent(bug_id=bug_id, stage=self.name, state=state, worker=WORKER_ID, **fields)
        await self.topics["bugs.status"].send(key=bug_id, value=event)

    async def _progress(self, bug_id: str, message: str) -> None:
        await self.status_event(bug_id, "progress", message=message)

    async def process(self, event: faust.EventT) -> None:
        value = event.value
        bug_id = value.bug_id
        started = time.perf_counter()
        telemetry.current_bug.set(bug_id)
        telemetry.current_stage.set(self.name)
        telemetry.progress.set(functools.partial(self._progress, bug_id))
        telemetry.active().stage_began(self.name, bug_id)
        await self.status_event(bug_id, "started")
        try:
            outcome = await self.handler(value)
        except Exception as exc:  # per-message isolation is the point (faust #175)
            await self.dead_letter(bug_id, event.message, exc, time.perf_counter() - started)
            return
        if outcome is not None:
            await self.emit(bug_id, outcome, time.perf_counter() - started)
        elif not self.scatters:
            telemetry.active().stage_ended(self.name, bug_id, "dropped", 0.0)

    async def dead_letter(
        self, bug_id: str, message: Any, exc: Exception, elapsed_s: float, stage: str = ""
    ) -> None:
        letter = await self.dead_letters.send(message, exc, stage=stage or self.name)
        telemetry.active().stage_ended(self.name, bug_id, "dead_lettered", elapsed_s)
        await self.status_event(
            bug_id, "dead_lettered", message=f"{letter.error_class}: {letter.reason}"
        )

    async def emit(self, bug_id: str, outcome: Outcome, elapsed_s: float) -> None:
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
