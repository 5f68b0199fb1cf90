"""Scatter-gather over Kafka: one LLM call per chunk, any worker, gathered per bug.

A stage publishes one ``ChunkTask`` per chunk to ``chunks.tasks`` (keyed by chunk id, so one
bug's chunks spread over every partition and worker) and records what it is waiting for in
a Faust table. Chunk workers make the calls and publish ``ChunkResult``s to
``chunks.results``, keyed by bug id, so a bug's results meet in the partition that holds its
pending entry (the same key on co-partitioned topics). When the last result lands, or the
deadline passes, the stage's finisher turns the results into the stage's output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import BaseModel

from fixstream import telemetry
from fixstream.answers import ChunkVerdict, ReproductionTest
from fixstream.errors import LLMError, UnknownNameError
from fixstream.llm import Gateway
from fixstream.schemas import ChunkResult, ChunkTask, Event, event_type
from fixstream.streams.deadletters import DeadLetters
from fixstream.streams.inflight import run_concurrently
from fixstream.streams.stage import Outcome, Stage
from fixstream.streams.topics import Topics
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)

DEADLINE_TASK = "deadline"


def answer_schemas() -> dict[str, type[BaseModel]]:
    from fixstream.sandbox.edits import EditProposal

    return {m.__name__: m for m in (ChunkVerdict, ReproductionTest, EditProposal)}


Finisher = Callable[[Any, list[ChunkResult], bool, float], Awaitable[Outcome]]
"""(context, results, complete, seconds since the scatter) -> the stage's outcome."""


@dataclass
class _Gatherer:
    stage: Stage
    finish: Finisher


class ScatterGather:
    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        llm: Gateway,
        dead_letters: DeadLetters,
        *,
        partitions: int,
        deadline_s: float,
        chunk_concurrency: int,
        gather_concurrency: int,
    ) -> None:
        self.app = app
        self.llm = llm
        self.dead_letters = dead_letters
        self.tasks = topics["chunks.tasks"]
        self.results = topics["chunks.results"]
        self.deadline_s = deadline_s
        self.gatherers: dict[str, _Gatherer] = {}
        self.finishing: set[str] = set()
        self.pending = app.Table("fixstream-gather", default=None, partitions=partitions)
        app.agent(self.tasks, name="fixstream.chunk_worker")(
            self._agent(self._call, chunk_concurrency)
        )
        app.agent(self.results, name="fixstream.gather")(
            self._agent(self._gather, gather_concurrency)
        )
        app.timer(interval=max(0.5, deadline_s / 10), name="fixstream.gather_deadlines")(
            self._deadlines
        )

    @staticmethod
    def _agent(process: Callable[[Any], Awaitable[None]], concurrency: int) -> Any:
        async def agent(stream: faust.StreamT) -> None:
            await run_concurrently(stream, process, concurrency)

        agent.__name__ = agent.__qualname__ = process.__name__.strip("_")
        return agent

    def register(self, stage: Stage, finish: Finisher) -> None:
        stage.scatters = True
        self.gatherers[stage.name] = _Gatherer(stage, finish)

    async def scatter(self, stage: str, context: Event, tasks: list[ChunkTask]) -> None:
        """Record the pending gather, then publish the tasks (called inside the stage agent)."""
        bug_id = context.bug_id  # type: ignore[attr-defined]
        now = time.time()
        self.pending[f"{stage}|{bug_id}"] = {
            "stage": stage,
            "bug_id": bug_id,
            "context_type": type(context).__name__,
            "context": context.model_dump(mode="json"),
            "fan_out": len(tasks),
            "order": [task.task_id for task in tasks],
            "results": {},
            "started": now,
            "deadline": now + self.deadline_s,
        }
        # all sent before any is awaited: one batch, not one broker round trip per chunk
        sent = [await self.tasks.send(key=task.chunk.chunk_id, value=task) for task in tasks]
        await asyncio.gather(*sent)

    async def _call(self, event: faust.EventT) -> None:
        """A chunk worker: one LLM call, one result, whatever happens."""
        task: ChunkTask = event.value
        started = time.perf_counter()
        telemetry.current_bug.set(task.bug_id)
        telemetry.current_stage.set(task.stage)
        common = {
            "task_id": task.task_id, "bug_id": task.bug_id, "stage": task.stage,
            "chunk_id": task.chunk.chunk_id, "fan_out": task.fan_out, "worker": WORKER_ID,
        }  # fmt: skip
        try:
            schema = answer_schemas().get(task.answer_schema)
            if schema is None:
                raise UnknownNameError("answer schema", task.answer_schema, answer_schemas())
            with telemetry.active().chunk_call():
                answer = await self.llm.structured(
                    schema, task.prompt, purpose=task.purpose, bug_id=task.bug_id,
                    max_tokens=task.max_tokens, scope=task.scope,
                )  # fmt: skip
            result = ChunkResult(
                **common, ok=True, output=answer.value.model_dump(mode="json"),
                tokens_in=answer.record.tokens_in, tokens_out=answer.record.tokens_out,
                latency_ms=answer.record.latency_s * 1000,
            )  # fmt: skip
        except (LLMError, UnknownNameError) as exc:
            result = ChunkResult(
                **common, ok=False, error=f"{type(exc).__name__}: {exc}",
                latency_ms=(time.perf_counter() - started) * 1000,
            )  # fmt: skip
        await (await self.results.send(key=task.bug_id, value=result))

    async def _gather(self, event: faust.EventT) -> None:
        result: ChunkResult = event.value
        key = f"{result.stage}|{result.bug_id}"
        entry = self.pending.get(key)
        if entry is None:
            return  # a late or repeated result: that gather already finished
        deadline_passed = result.task_id == DEADLINE_TASK
        if not deadline_passed:
            entry["results"][result.task_id] = result.model_dump(mode="json")
        complete = len(entry["results"]) >= entry["fan_out"]
        if not (complete or deadline_passed):
            self.pending[key] = entry
            return
        if key in self.finishing:
            return  # this worker is finishing it already (a nudge raced the last result)
        self.finishing.add(key)
        try:
            await self._finish(entry, event, complete)
        finally:
            self.finishing.discard(key)
        # only now that the output exists: a worker killed while finishing leaves the entry,
        # and the redelivered result finishes the gather again on the partition's next owner
        if key in self.pending:  # gone if the partition moved away while finishing
            del self.pending[key]

    async def _finish(self, entry: dict[str, Any], event: faust.EventT, complete: bool) -> None:
        gatherer = self.gatherers[entry["stage"]]
        telemetry.current_bug.set(entry["bug_id"])
        telemetry.current_stage.set(entry["stage"])
        context = event_type(entry["context_type"]).model_validate(entry["context"])
        # in the order the tasks were sent, not the order answers came back: the same bug
        # gathers to the same outcome, and the next stage's prompts are the same (cacheable)
        gathered = entry["results"]
        order = entry.get("order") or list(gathered)
        results = [ChunkResult.model_validate(gathered[t]) for t in order if t in gathered]
        elapsed = time.time() - entry["started"]
        try:
            outcome = await gatherer.finish(context, results, complete, elapsed)
        except Exception as exc:  # the finisher's failure is this bug's, not the worker's
            await gatherer.stage.dead_letter(
                entry["bug_id"], event.message, exc, elapsed, stage=f"{entry['stage']}.gather"
            )
            return
        await gatherer.stage.emit(entry["bug_id"], outcome, time.time() - entry["started"])

    async def _deadlines(self) -> None:
        """Nudge gathers past their deadline through their own partition (tables may only be
        changed from inside the stream that owns them)."""
        now = time.time()
        for entry in list(self.pending.values()):
            if entry and now > entry["deadline"]:
                nudge = ChunkResult(
                    task_id=DEADLINE_TASK,
                    bug_id=entry["bug_id"],
                    stage=entry["stage"],
                    chunk_id="",
                    fan_out=max(1, entry["fan_out"]),
                    ok=False,
                    error="gather deadline passed",
                    worker=WORKER_ID,
                )
                await self.results.send(key=entry["bug_id"], value=nudge)
