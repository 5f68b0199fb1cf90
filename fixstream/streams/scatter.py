"""Scatter-gather over Kafka: one LLM call per chunk, any worker, gathered per bug.

A stage publishes one ``ChunkTask`` per chunk to ``chunks.tasks`` (keyed by chunk id, so one
bug's chunks spread over every partition and worker) and records what it is waiting for in
a Faust table. Chunk workers make the calls and publish ``ChunkResult``s to
``chunks.results``, keyed by bug id, so a bug's results meet in the partition that holds its
pending entry (the same key on co-partitioned topics). When the last result lands, or the
deadline passes, the stage's finisher turns the results into the stage's output.

A gather is one entry per (stage, bug, attempt): validate sends a bug back to fix with the
next attempt, and a late result or deadline nudge of the attempt before carries its attempt,
finds no entry and is ignored, instead of finishing the retry's gather early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
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
from fixstream.streams.stage import Once, Outcome, Stage, attempt_of
from fixstream.streams.topics import Topics, owned_now
from fixstream.telemetry import WORKER_ID

log = logging.getLogger(__name__)

DEADLINE_TASK = "deadline"
RESULTS = "chunks.results"
ANSWERS_REMEMBERED = 2048
"""Chunk results a chunk worker keeps to answer a repeated task (a few KB each at most)."""


def answer_schemas() -> dict[str, type[BaseModel]]:
    from fixstream.sandbox.edits import EditProposal

    return {m.__name__: m for m in (ChunkVerdict, ReproductionTest, EditProposal)}


Finisher = Callable[[Any, list[ChunkResult], bool, float], Awaitable[Outcome]]
"""(context, results, complete, seconds since the scatter) -> the stage's outcome."""


@dataclass
class _Gatherer:
    stage: Stage
    finish: Finisher


@dataclass(frozen=True, slots=True)
class Due:
    """A gather to finish now: every result is in, or its deadline passed."""

    key: str
    entry: dict[str, Any]
    complete: bool


class Gathers:
    """The gathers in flight, one entry per (stage, bug, attempt) in ``table``: the Faust table
    in a worker (changelogged, so a partition's next owner has them), a dict in tests. Only
    the bookkeeping: no Faust, no sends."""

    def __init__(self, table: MutableMapping[str, Any], deadline_s: float) -> None:
        self.table = table
        self.deadline_s = deadline_s
        self.finishing: set[str] = set()
        """Gathers this worker is finishing: a nudge racing the last result finds them here."""
        self.ignored: Counter[str] = Counter()
        """Results and nudges that fit no gather, by why (each also logged at debug)."""

    @staticmethod
    def key(stage: str, bug_id: str, attempt: int) -> str:
        return f"{stage}|{bug_id}|{attempt}"

    def open(self, stage: str, context: Event, attempt: int, tasks: list[ChunkTask]) -> None:
        bug_id = context.bug_id  # type: ignore[attr-defined]
        now = time.time()
        self.table[self.key(stage, bug_id, attempt)] = {
            "stage": stage,
            "bug_id": bug_id,
            "attempt": attempt,
            "context_type": type(context).__name__,
            "context": context.model_dump(mode="json"),
            "fan_out": len(tasks),
            "order": [task.task_id for task in tasks],
            "results": {},
            "started": now,
            "deadline": now + self.deadline_s,
        }

    def take(self, result: ChunkResult) -> Due | None:
        """Record a result or a deadline nudge; the gather to finish now, if any."""
        key = self.key(result.stage, result.bug_id, result.attempt)
        entry = self.table.get(key)
        nudge = result.task_id == DEADLINE_TASK
        if entry is None:  # finished already, or it is another attempt's
            self._ignore("no gather of its attempt", result)
            return None
        if not nudge:
            if result.task_id not in entry["order"]:
                self._ignore("not a task of this gather", result)
                return None
            # a repeat keeps the first answer (one from a cache reports no tokens); whether
            # the gather is complete is checked again all the same
            entry["results"].setdefault(result.task_id, result.model_dump(mode="json"))
        complete = len(entry["results"]) >= entry["fan_out"]
        if not (complete or nudge):
            self.table[key] = entry
            return None
        if key in self.finishing:
            return None  # this worker is finishing it already (a nudge raced the last result)
        return Due(key, entry, complete)

    def _ignore(self, why: str, result: ChunkResult) -> None:
        self.ignored[why] += 1
        log.debug(
            "gather: %s of %s %s attempt %d ignored: %s",
            result.task_id, result.stage, result.bug_id, result.attempt, why,
        )  # fmt: skip

    @contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Finishing ``key``: nothing else starts finishing it meanwhile, however it ends."""
        self.finishing.add(key)
        try:
            yield
        finally:
            self.finishing.discard(key)

    def close(self, due: Due) -> None:
        """Forget a finished gather: unless it is gone already (its partition moved while it
        finished) or the stage scattered the bug again meanwhile (a watchdog re-drive)."""
        entry = self.table.get(due.key)
        if entry and entry["started"] == due.entry["started"]:
            del self.table[due.key]

    def overdue(self, now: float, owns: Callable[[str], bool]) -> list[ChunkResult]:
        """Nudges for the gathers past their deadline that this worker runs: ``owns(bug_id)``
        (a memory table keeps the entries of revoked partitions; another worker runs them)."""
        nudges = []
        for key, entry in list(self.table.items()):
            # an entry without an attempt is from before gathers were per attempt (restored
            # from the changelog): no result finds it, and its bug is the watchdog's
            overdue = entry and "attempt" in entry and now > entry["deadline"]
            if not overdue or key in self.finishing or not owns(entry["bug_id"]):
                continue
            nudge = ChunkResult(
                task_id=DEADLINE_TASK, bug_id=entry["bug_id"], stage=entry["stage"],
                attempt=entry["attempt"], chunk_id="", fan_out=max(1, entry["fan_out"]),
                ok=False, error="gather deadline passed", worker=WORKER_ID,
            )  # fmt: skip
            nudges.append(nudge)
        return nudges


class ScatterGather:
    """The Faust side: the gathers' table, the chunk worker and gather agents, the deadline
    timer."""

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
        self.results = topics[RESULTS]
        self.partitions = partitions
        self.gatherers: dict[str, _Gatherer] = {}
        self.gathers = Gathers(
            app.Table("fixstream-gather", default=None, partitions=partitions), deadline_s
        )
        self.answered: Once[ChunkResult] = Once(ANSWERS_REMEMBERED)
        """The chunk worker's answers by (bug, stage, attempt, task)."""
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
        """Record the pending gather, then publish the tasks (called inside the stage agent).

        The gather, its tasks and so their results are the attempt the stage works on."""
        attempt = attempt_of(context)
        tasks = [task.model_copy(update={"attempt": attempt}) for task in tasks]
        self.gathers.open(stage, context, attempt, tasks)
        # all sent before any is awaited: one batch, not one broker round trip per chunk
        sent = [await self.tasks.send(key=task.chunk.chunk_id, value=task) for task in tasks]
        await asyncio.gather(*sent)

    async def _call(self, event: faust.EventT) -> None:
        """A chunk worker: one result per task, whatever happens.

        A task this worker answered already (a redelivery after a rebalance) is answered again
        from its record, without an LLM call. The answer cache alone would not do: a repeated
        identical call is free only with a cache on and a deterministic request (temperature
        0), a failed call is not cached, and a repeat arriving while the first call runs would
        miss. Another worker's repeat is the answer cache's (shared with Redis)."""
        task: ChunkTask = event.value
        telemetry.current_bug.set(task.bug_id)
        telemetry.current_stage.set(task.stage)
        key = (task.bug_id, task.stage, task.attempt, task.task_id)
        result, repeated = await self.answered.run(key, lambda: self._answer(task))
        if repeated:
            log.debug("chunk worker: %s answered again from its record", task.task_id)
        await (await self.results.send(key=task.bug_id, value=result))

    async def _answer(self, task: ChunkTask) -> ChunkResult:
        """One LLM call; its failure is a result too."""
        started = time.perf_counter()
        common = {
            "task_id": task.task_id, "bug_id": task.bug_id, "stage": task.stage,
            "attempt": task.attempt, "chunk_id": task.chunk.chunk_id, "fan_out": task.fan_out,
            "worker": WORKER_ID,
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
            return ChunkResult(
                **common, ok=True, output=answer.value.model_dump(mode="json"),
                tokens_in=answer.record.tokens_in, tokens_out=answer.record.tokens_out,
                latency_ms=answer.record.latency_s * 1000,
            )  # fmt: skip
        except (LLMError, UnknownNameError) as exc:
            return ChunkResult(
                **common, ok=False, error=f"{type(exc).__name__}: {exc}",
                latency_ms=(time.perf_counter() - started) * 1000,
            )  # fmt: skip

    async def _gather(self, event: faust.EventT) -> None:
        due = self.gathers.take(event.value)
        if due is None:
            return
        with self.gathers.claim(due.key):
            await self._finish(due.entry, event, due.complete)
        # only now that the output exists: a worker killed while finishing leaves the entry,
        # and the redelivered result finishes the gather again on the partition's next owner
        self.gathers.close(due)

    async def _finish(self, entry: dict[str, Any], event: faust.EventT, complete: bool) -> None:
        gatherer = self.gatherers[entry["stage"]]
        telemetry.current_bug.set(entry["bug_id"])
        telemetry.current_stage.set(entry["stage"])
        context = event_type(entry["context_type"]).model_validate(entry["context"])
        # in the order the tasks were sent, not the order answers came back: the same bug
        # gathers to the same outcome, and the next stage's prompts are the same (cacheable)
        gathered = entry["results"]
        results = [ChunkResult.model_validate(gathered[t]) for t in entry["order"] if t in gathered]
        elapsed = time.time() - entry["started"]
        try:
            outcome = await gatherer.finish(context, results, complete, elapsed)
        except Exception as exc:  # the finisher's failure is this bug's, not the worker's
            await gatherer.stage.dead_letter(
                entry["bug_id"], event.message, exc, elapsed, stage=f"{entry['stage']}.gather",
                attempt=attempt_of(context),
            )  # fmt: skip
            return
        elapsed = time.time() - entry["started"]
        await gatherer.stage.emit(entry["bug_id"], outcome, elapsed, attempt_of(context))

    async def _deadlines(self) -> None:
        """Nudge this worker's gathers past their deadline through their own partition (tables
        may only be changed from inside the stream that owns them)."""
        owns = owned_now(self.app.consumer, RESULTS, self.partitions)
        for nudge in self.gathers.overdue(time.time(), owns):
            await self.results.send(key=nudge.bug_id, value=nudge)
