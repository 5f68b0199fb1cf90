"""The thin Faust agent around a stage's pure core: iterate, call, send, dead-letter.

Every message is caught on its own: an exception inside a Faust agent would otherwise stop
the agent silently while its consumer stays in the group (faust #175, #640). Outputs are
awaited until the broker has them before the loop moves on, so nothing is committed before
its output exists (at-least-once).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from fixstream.llm.accounting import Totals
from fixstream.schemas import BugSummary, Event, StatusEvent
from fixstream.streams.deadletters import DeadLetters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a stage's core produced for one bug: the hand-off, and what to report."""

    output: Event
    summary: BugSummary | None = None
    usage: Totals = field(default_factory=Totals)
    note: str = ""


Handler = Callable[[Any], Awaitable[Outcome]]
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"


class Stage:
    """One stage: ``handler`` turns an input event into the event sent to ``sink``."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        sink: faust.TopicT,
        status: faust.TopicT,
        summaries: faust.TopicT,
        dead_letters: DeadLetters,
    ) -> None:
        self.name = name
        self.handler = handler
        self.sink = sink
        self.status = status
        self.summaries = summaries
        self.dead_letters = dead_letters

    async def _status(self, bug_id: str, state: str, **fields: Any) -> None:
        event = StatusEvent(bug_id=bug_id, stage=self.name, state=state, worker=WORKER_ID, **fields)
        await self.status.send(key=bug_id, value=event)

    async def process(self, event: faust.EventT) -> None:
        value = event.value
        bug_id = value.bug_id
        started = time.perf_counter()
        await self._status(bug_id, "started")
        try:
            outcome = await self.handler(value)
        except Exception as exc:  # per-message isolation is the point (faust #175)
            letter = await self.dead_letters.send(event.message, exc, stage=self.name)
            await self._status(
                bug_id, "dead_lettered", message=f"{letter.error_class}: {letter.reason}"
            )
            return
        if outcome.summary is not None:
            await (await self.summaries.send(key=bug_id, value=outcome.summary))
        await (await self.sink.send(key=bug_id, value=outcome.output))
        elapsed_ms = (time.perf_counter() - started) * 1000
        usage = outcome.usage
        await self._status(
            bug_id,
            "done",
            elapsed_ms=elapsed_ms,
            message=outcome.note,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=usage.cost_usd,
        )
        log.info("%s: %s done in %.0f ms", self.name, bug_id, elapsed_ms)

    def register(self, app: faust.App, source: faust.TopicT, concurrency: int) -> None:
        async def agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.process(event)

        agent.__name__ = agent.__qualname__ = f"run_{self.name}"
        app.agent(source, name=f"fixstream.{self.name}", concurrency=concurrency)(agent)
