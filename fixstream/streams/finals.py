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

The watchdog follows ``bugs.status``: the last thing each bug did and when. A bug silent for
longer than ``stuck_after_s`` is failed with the stage it was stuck in. Tables may only be
changed by the agent that owns their partition, so the watchdog's timer reports through
``bugs.status`` like any stage would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson

from fixstream.config import Settings
from fixstream.kafka import reader
from fixstream.schemas import FixEvent, StageMeta, StatusEvent
from fixstream.streams.topics import Topics
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)

FINAL = "final"
"""The status stage the finalizer reports under once a bug's fix event is published."""
WATCHDOG = "watchdog"
DEAD_LETTER = "dlq:"


def failed(bug_id: str, reason: str, stage: str) -> FixEvent:
    return FixEvent(bug_id=bug_id, meta=StageMeta(stage=stage), status="failed", reason=reason)


class PublishedLog:
    """The bug ids on ``fixes``, read from the topic: what no crash can make a worker forget.
    For each, the stage its final event came from (``dlq:STAGE`` for a dead letter)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ids: dict[str, str] = {}
        self._consumer: Any = None
        self._reading = asyncio.Event()

    async def follow(self) -> None:
        """Read ``fixes`` from the beginning, then keep up with it (a worker task)."""
        async with reader(self.settings, ["fixes"]) as consumer:
            self._consumer = consumer
            self._reading.set()
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        if r.key and r.value:
                            self.ids[r.key.decode()] = orjson.loads(r.value)["meta"]["stage"]

    def final(self, bug_id: str) -> bool:
        """A final event no later run may replace: anything but a dead letter's, which an
        operator may replay (``fixstream dlq replay``) once its cause is fixed."""
        stage = self.ids.get(bug_id)
        return stage is not None and not stage.startswith(DEAD_LETTER)

    async def holds(self, bug_id: str) -> bool:
        """Whether ``fixes`` has a final event for ``bug_id``, having read up to its end."""
        await self._reading.wait()
        consumer = self._consumer
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        # the reading task advances the positions; poll them (there is nothing to wait on)
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        return self.final(bug_id)


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
        self.candidates = topics["bugs.final"]
        self.fixes = topics["fixes"]
        self.status = topics["bugs.status"]
        self.stuck_after_s = stuck_after_s
        self.published = PublishedLog(settings)
        self.progress = app.Table("fixstream-progress", default=None, partitions=partitions)
        app.task(self.published.follow)
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
        async for event in stream:
            fix: FixEvent = event
            if await self.published.holds(fix.bug_id):
                log.info("%s already has its fix event; dropping %s", fix.bug_id, fix.status)
                continue
            if fix.bug_id in self.published.ids and fix.meta.stage.startswith(DEAD_LETTER):
                continue  # dead-lettered again after a replay: it already says so
            await (await self.fixes.send(key=fix.bug_id, value=fix))
            self.published.ids[fix.bug_id] = fix.meta.stage
            await self._report(fix.bug_id, FINAL, "done", f"{fix.status}: {fix.reason}"[:500])

    async def _follow(self, stream: faust.StreamT) -> None:
        async for event in stream:
            status: StatusEvent = event
            await self._track(status)

    async def _track(self, status: StatusEvent) -> None:
        bug_id = status.bug_id
        entry: dict[str, Any] | None = self.progress.get(bug_id)
        replayed = entry is not None and entry.get("dead") and status.state == "started"
        if entry is not None and entry.get("ended") and not replayed:
            return  # stragglers after the end (a stage's own "done" can trail its output)
        ended = status.stage == FINAL
        dead = status.state == "dead_lettered"
        if dead:
            reason = f"dead-lettered in {status.stage}: {status.message}"
            candidate = failed(bug_id, reason, f"{DEAD_LETTER}{status.stage}")
            await (await self.candidates.send(key=bug_id, value=candidate))
            ended = True
        elif status.stage == WATCHDOG:
            ended = True  # the watchdog's verdict is on its way to the finalizer
        self.progress[bug_id] = {
            "stage": status.stage, "state": status.state, "at": time.time(), "ended": ended,
            "dead": dead or bool(entry and entry.get("dead") and status.stage == FINAL),
        }  # fmt: skip

    async def _watchdog(self) -> None:
        now = time.time()
        for bug_id, entry in list(self.progress.items()):
            if not entry or entry.get("ended") or now - entry["at"] < self.stuck_after_s:
                continue
            reason = (
                f"no progress for {now - entry['at']:.0f} s (limit {self.stuck_after_s:.0f} s); "
                f"last: {entry['stage']} {entry['state']}"
            )
            log.warning("watchdog: failing %s: %s", bug_id, reason)
            await (await self.candidates.send(key=bug_id, value=failed(bug_id, reason, WATCHDOG)))
            await self._report(bug_id, WATCHDOG, "failed", reason)
