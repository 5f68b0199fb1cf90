"""The system a benchmark runs against: embedded broker, simulator, real worker processes.

Everything is the product's own code path: bugs and chunk tasks go onto the same topics a
tracker or a stage would write, and real ``fixstream worker`` processes take them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fixstream import processes
from fixstream.broker import EmbeddedBroker
from fixstream.config import EXAMPLES, Settings
from fixstream.kafka import producer, publish, reader
from fixstream.llm.simulator.process import simulator_process
from fixstream.reports import report_from_file
from fixstream.scenarios import scenario_files
from fixstream.schemas import BugReport, ChunkResult, ChunkTask
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import WorkerProcess


@dataclass
class Batch:
    """When each bug went in and came out, and how it ended."""

    submitted: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        if not self.finished:
            return 0.0
        return max(self.finished.values()) - min(self.submitted.values())

    def latencies(self) -> list[float]:
        return [self.finished[b] - self.submitted[b] for b in self.finished]


def distinct_bugs(count: int, tag: str, repos: Path, start: int = 0) -> list[BugReport]:
    """``count`` bugs cycling through the examples, each on its own copy of its repository
    with one file that differs: another version, so no two share a cache entry."""
    bugs = []
    for i, bug in enumerate(example_bugs(count, tag), start):
        copy = repos / f"{i:03d}"
        if not copy.exists():
            shutil.copytree(bug.repo.path or "", copy)
            (copy / "VARIANT.txt").write_text(f"{i}\n")
        bugs.append(
            bug.model_copy(update={"repo": bug.repo.model_copy(update={"path": str(copy)})})
        )
    return bugs


def example_bugs(count: int, tag: str) -> list[BugReport]:
    """``count`` bugs cycling through the bundled examples, each with its own id."""
    paths = sorted(EXAMPLES.glob("*/report.json"))
    reports = [report_from_file(p) for p in paths]
    return [
        r.model_copy(update={"bug_id": f"{tag}-{i:03d}-{p.parent.name}"})
        for i, (r, p) in zip(range(count), itertools.cycle(zip(reports, paths, strict=True)))
    ]


class System:
    """Owns the processes; ``settings`` point at them once started."""

    def __init__(self, out: Path, in_flight: int, profile: bool) -> None:
        self.out = out
        self.time_scale = 1.0
        """The running simulator's (workers' LLM timeouts follow it)."""
        self.in_flight = in_flight
        self.profile = profile
        self.stack = contextlib.ExitStack()
        self.workers: list[WorkerProcess] = []
        self.broker: EmbeddedBroker | None = None
        self.settings = Settings(data_dir=out / "var")
        self._spawn: tuple[Settings, dict[str, str]] = (self.settings, {})

    async def start_broker(self) -> None:
        self.broker = broker = EmbeddedBroker(log=self.out / "broker.log")
        await broker.start()
        self.stack.callback(broker.stop)
        self.settings = self.settings.model_copy(update=broker.client_settings())
        catalog = load_catalog(self.settings.topics_file, self.settings.partitions)
        await apply_topics(catalog, self.settings.bootstrap(), {})

    @contextlib.contextmanager
    def simulator(self, time_scale: float, *args: str) -> Iterator[str]:
        self.time_scale = time_scale
        scenarios = [a for f in scenario_files(EXAMPLES) for a in ("--scenario", str(f))]
        with simulator_process("--time-scale", str(time_scale), *scenarios, *args) as url:
            yield url

    async def start_workers(self, name: str, count: int, llm_url: str, **env: str) -> Path:
        """``count`` workers on ``llm_url``; returns the directory their spans go to."""
        trace_dir = self.out / "trace" / name
        shutil.rmtree(trace_dir, ignore_errors=True)  # spans of an earlier run
        settings = self.settings.model_copy(
            update={"llm_base_url": llm_url, "trace_dir": trace_dir}
        )
        models = {**settings.llm_models, "bench.modulo": "modulo-50tps"}
        env = {
            "FIXSTREAM_AGENT_CONCURRENCY": str(self.in_flight),
            "FIXSTREAM_CHUNK_CONCURRENCY": "64",
            "FIXSTREAM_LLM_MODELS": orjson.dumps(models).decode(),
            # one uncut call of the talk's case study takes 100 s of model time
            "FIXSTREAM_LLM_TIMEOUT": str(max(60.0, 1200 * self.time_scale)),
            # W1-W5 repeat the same prompts and bugs on purpose: they measure the work, not
            # the cache (W6 turns it on)
            "FIXSTREAM_CACHE": "off",
            **env,
        }
        self._spawn = (settings, env)
        for i in range(count):
            self.spawn(f"{name}-{i}")
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in self.workers))
        return trace_dir

    def spawn(self, name: str) -> WorkerProcess:
        """One more worker like the last ``start_workers`` started (the soak's replacements)."""
        settings, env = self._spawn
        args = ["--profile", str(self.out / f"worker-{name}.prof")] if self.profile else []
        worker = WorkerProcess(settings, self.out / f"worker-{name}.log", args=args, **env)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        processes.stop_all([w.process for w in self.workers], timeout=30)
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        self.stack.close()


async def run_bugs(
    settings: Settings, bugs: list[BugReport], *, one_at_a_time: bool, timeout_s: float
) -> Batch:
    """Submit ``bugs`` (all at once, or each when the one before has ended) and wait for
    each one's final event: a fix event, or a dead letter."""
    batch = Batch()
    pending = {b.bug_id for b in bugs}
    queue = list(bugs)
    deadline = time.monotonic() + timeout_s
    watched = ["fixes", "bugs.status"]
    async with (
        reader(settings, watched, from_beginning=False) as consumer,
        producer(settings) as out,
    ):

        async def submit(bug: BugReport) -> None:
            batch.submitted[bug.bug_id] = time.time()
            await publish(out, "bugs.reported", bug.bug_id, bug)

        await asyncio.gather(*(submit(bug) for bug in (queue[:1] if one_at_a_time else queue)))
        queue = queue[1:] if one_at_a_time else []
        while pending and time.monotonic() < deadline:
            batch_records = await consumer.getmany(timeout_ms=100)
            ended: list[str] = []
            for records in batch_records.values():
                for r in records:
                    value = orjson.loads(r.value)
                    bug_id = value.get("bug_id")
                    if bug_id not in pending:
                        continue
                    if r.topic == "fixes":
                        batch.status[bug_id] = value["status"]
                    elif value.get("state") == "dead_lettered":
                        batch.status[bug_id] = "dead_lettered"
                    else:
                        continue
                    batch.finished[bug_id] = time.time()
                    pending.discard(bug_id)
                    ended.append(bug_id)
            for _ in ended:
                if queue:
                    await submit(queue.pop(0))
    for bug_id in pending:
        batch.status[bug_id] = "lost (timeout)"
    return batch


async def run_chunk_tasks(
    settings: Settings, tasks: list[ChunkTask], *, parallel: int, timeout_s: float
) -> tuple[float, list[ChunkResult]]:
    """Chunk calls through ``chunks.tasks`` and the workers' chunk agents, at most
    ``parallel`` outstanding (the talk's thread pool); the wall time and the results."""
    results: list[ChunkResult] = []
    waiting = {t.task_id for t in tasks}
    queue = list(tasks)
    deadline = time.monotonic() + timeout_s
    watched = ["chunks.results"]
    async with (
        reader(settings, watched, from_beginning=False) as consumer,
        producer(settings) as out,
    ):
        started = time.perf_counter()
        await asyncio.gather(
            *(publish(out, "chunks.tasks", t.chunk.chunk_id, t) for t in queue[:parallel])
        )
        queue = queue[parallel:]
        while waiting and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=50)
            for records in batch.values():
                for r in records:
                    result = ChunkResult.model_validate_json(r.value)
                    if result.task_id not in waiting:
                        continue
                    waiting.discard(result.task_id)
                    results.append(result)
                    if queue:
                        task = queue.pop(0)
                        await publish(out, "chunks.tasks", task.chunk.chunk_id, task)
        wall = time.perf_counter() - started
    if waiting:
        raise TimeoutError(f"{len(waiting)} chunk calls unanswered after {timeout_s}s")
    return wall, results
