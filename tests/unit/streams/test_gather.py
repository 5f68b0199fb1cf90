"""The gather's bookkeeping: a killed worker must not strand a bug, and nothing of one attempt,
partition or delivery may finish another's gather.

A fake Faust app (a dict for the table, the agents and timer left uncalled) stands in for the
real one; the kill itself is exercised end to end by the soak and
tests/integration/test_reliability.py. One test holds ``partition_of`` against the real
worker app built by ``create_app``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeTopic, report, retried, rootcaused
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

import fixstream.telemetry
from fixstream.app import create_app
from fixstream.config import Settings
from fixstream.llm.gateway import Gateway
from fixstream.llm.transport import ScriptedTransport
from fixstream.schemas import ChunkRef, ChunkResult, ChunkTask
from fixstream.streams.scatter import DEADLINE_TASK, Gathers, ScatterGather
from fixstream.streams.stage import Outcome
from fixstream.streams.topics import partition_of

PARTITIONS = 8


class Killed(BaseException):
    """What SIGKILL looks like from inside a coroutine: nothing after it runs."""


class FakeApp:
    """What ScatterGather asks of a Faust app: a table (a dict here), agents and a timer
    (registered, never run: the tests call them), and the consumer's assignment."""

    def __init__(self, assigned: set[TP] | None = None) -> None:
        self.consumer = SimpleNamespace(assignment=lambda: set(assigned or ()))

    def Table(self, name: str, **options: Any) -> dict[str, Any]:
        return {}

    def agent(self, channel: Any, name: str) -> Any:
        return lambda fn: fn

    def timer(self, interval: float, name: str) -> Any:
        return lambda fn: fn


class FakeStage:
    def __init__(self) -> None:
        self.emitted: list[str] = []
        self.dead: list[str] = []

    async def emit(self, bug_id: str, outcome: Outcome, elapsed_s: float, attempt: int) -> None:
        self.emitted.append(bug_id)

    async def dead_letter(self, bug_id: str, message: Any, exc: Exception, *_: Any, **__: Any):
        self.dead.append(f"{bug_id}: {exc}")


def _scatter_gather(
    finish: Any, stage: str = "root_cause", app: FakeApp | None = None, llm: Any = None
) -> tuple[ScatterGather, FakeStage]:
    topics = {"chunks.tasks": FakeTopic(), "chunks.results": FakeTopic()}
    sg = ScatterGather(
        app or FakeApp(), topics, llm, None, partitions=PARTITIONS,  # type: ignore[arg-type]
        deadline_s=60.0, chunk_concurrency=1, gather_concurrency=1,
    )  # fmt: skip
    fake = FakeStage()
    sg.gatherers[stage] = SimpleNamespace(stage=fake, finish=finish)  # type: ignore[assignment]
    return sg, fake


def _task(i: int, fan_out: int, stage: str = "root_cause", attempt: int = 0) -> ChunkTask:
    chunk = ChunkRef(chunk_id=f"c{i}", path="m.py", start_line=1, end_line=2, tokens=5)
    task_id = f"fix:c{i}:{attempt}" if stage == "fix" else f"{stage}:c{i}"  # as the stages do
    return ChunkTask(
        task_id=task_id, bug_id="b1", stage=stage, fan_out=fan_out, attempt=attempt,
        chunk=chunk, purpose=stage, answer_schema="ChunkVerdict",
        prompt=[{"role": "user", "content": "p"}],
    )  # fmt: skip


def _tasks(n: int, stage: str = "root_cause", attempt: int = 0) -> list[ChunkTask]:
    return [_task(i, n, stage, attempt) for i in range(n)]


def _answer(task: ChunkTask) -> ChunkResult:
    return ChunkResult(
        task_id=task.task_id, bug_id=task.bug_id, stage=task.stage, attempt=task.attempt,
        chunk_id=task.chunk.chunk_id, fan_out=task.fan_out, ok=True,
    )  # fmt: skip


def _nudge(attempt: int = 0) -> ChunkResult:
    return ChunkResult(
        task_id=DEADLINE_TASK, bug_id="b1", stage="root_cause", attempt=attempt, chunk_id="",
        fan_out=2, ok=False,
    )  # fmt: skip


def _event(value: Any) -> SimpleNamespace:
    return SimpleNamespace(value=value, message=None)


async def _finish_started(
    release: asyncio.Event,
) -> tuple[ScatterGather, FakeStage, list[ChunkTask], asyncio.Task[None], list[bool]]:
    """A root cause gather of one task whose answer is in: its finisher has started, recorded
    whether the gather was complete (in the list returned) and waits for ``release``; the task
    handling the answer is returned unawaited."""
    completes: list[bool] = []

    async def finish(context, results, complete, elapsed):
        completes.append(complete)
        await release.wait()
        return Outcome(output=context)

    sg, stage = _scatter_gather(finish)
    tasks = _tasks(1)
    await sg.scatter("root_cause", report(), tasks)
    finishing = asyncio.create_task(sg._gather(_event(_answer(tasks[0]))))
    await asyncio.sleep(0)
    return sg, stage, tasks, finishing, completes


async def test_a_worker_killed_while_finishing_leaves_the_gather_to_the_redelivery():
    calls: list[int] = []

    async def finish(context, results, complete, elapsed):
        calls.append(len(results))
        if len(calls) == 1:
            raise Killed  # the worker dies after the last result, before the output exists
        return Outcome(output=context)

    sg, stage = _scatter_gather(finish)
    tasks = _tasks(2)
    await sg.scatter("root_cause", report(), tasks)
    await sg._gather(_event(_answer(tasks[0])))
    with pytest.raises(Killed):
        await sg._gather(_event(_answer(tasks[1])))
    key = Gathers.key("root_cause", "b1", 0)
    assert key in sg.gathers.table, "the pending gather went with the killed worker"
    assert sg.gathers.finishing == set()
    assert stage.emitted == []
    # the next owner recovers the table without the unacked last result, which is redelivered
    sg.gathers.table[key]["results"].pop(tasks[1].task_id)
    await sg._gather(_event(_answer(tasks[1])))
    assert calls == [2, 2]
    assert stage.emitted == ["b1"]
    assert sg.gathers.table == {}


async def test_a_deadline_nudge_racing_the_last_result_finishes_the_gather_once():
    release = asyncio.Event()
    sg, stage, _, last, calls = await _finish_started(release)
    await sg._gather(_event(_nudge()))  # the deadline timer's nudge while the finisher runs
    release.set()
    await last
    assert calls == [True]
    assert stage.emitted == ["b1"]
    assert sg.gathers.table == {}
    assert sg.gathers.finishing == set()


async def test_a_gather_scattered_again_while_the_last_one_finishes_is_kept():
    """A watchdog re-drive re-scatters a bug whose gather is finishing: the finish must not
    delete the new gather's entry, or its results would find none."""
    release = asyncio.Event()
    sg, _, tasks, finishing, _ = await _finish_started(release)
    await sg.scatter("root_cause", report(), tasks)
    release.set()
    await finishing
    assert sg.gathers.table[Gathers.key("root_cause", "b1", 0)]["results"] == {}


async def test_a_stale_nudge_or_late_result_does_not_finish_the_next_attempts_gather():
    """Fix's first attempt gathers; validate sends the bug back; the retry scatters. Then the
    first attempt's deadline nudge (sent before it finished) and a late repeat of one of its
    answers arrive: the retry's gather neither finishes nor takes them. Its own answers
    finish it, once."""
    finished: list[tuple[int, list[str], bool]] = []

    async def finish(context, results, complete, elapsed):
        finished.append((context.meta.attempt, [r.task_id for r in results], complete))
        return Outcome(output=context)

    sg, stage = _scatter_gather(finish, stage="fix")
    first = rootcaused()
    tasks = _tasks(2, "fix", attempt=0)
    await sg.scatter("fix", first, tasks)
    (stale_nudge,) = sg.gathers.overdue(time.time() + 3600, owns=lambda bug_id: True)
    for task in tasks:
        await sg._gather(_event(_answer(task)))
    assert finished == [(0, ["fix:c0:0", "fix:c1:0"], True)]

    retry = retried(first)
    retry_tasks = _tasks(2, "fix", attempt=1)
    await sg.scatter("fix", retry, retry_tasks)
    await sg._gather(_event(stale_nudge))
    await sg._gather(_event(_answer(tasks[1])))
    assert len(finished) == 1, "the first attempt's nudge finished the retry's gather"
    assert sg.gathers.table[Gathers.key("fix", "b1", 1)]["results"] == {}
    assert sg.gathers.ignored["no gather of its attempt"] == 2

    for task in retry_tasks:
        await sg._gather(_event(_answer(task)))
    await sg._gather(_event(_answer(retry_tasks[1])))  # repeated after the end: ignored
    assert finished[1:] == [(1, ["fix:c0:1", "fix:c1:1"], True)]
    assert stage.emitted == ["b1", "b1"]
    assert sg.gathers.table == {}


async def test_a_result_of_a_task_the_gather_did_not_send_is_not_counted():
    """The bug scattered again with fewer chunks (a worker with other knobs): answers to the
    first scatter's other tasks must not make up the second one's fan-out."""
    finished: list[list[str]] = []

    async def finish(context, results, complete, elapsed):
        finished.append([r.task_id for r in results])
        return Outcome(output=context)

    sg, _ = _scatter_gather(finish)
    await sg.scatter("root_cause", report(), _tasks(4))
    await sg.scatter("root_cause", report(), _tasks(2))
    for i in (3, 2, 0):
        await sg._gather(_event(_answer(_task(i, 4))))
    assert finished == []
    assert sg.gathers.ignored["not a task of this gather"] == 2
    await sg._gather(_event(_answer(_task(1, 2))))
    assert finished == [["root_cause:c0", "root_cause:c1"]]


async def test_a_finisher_that_fails_dead_letters_the_bug_and_ends_the_gather():
    async def finish(context, results, complete, elapsed):
        raise ValueError("no candidate")

    sg, stage = _scatter_gather(finish)
    tasks = _tasks(1)
    await sg.scatter("root_cause", report(), tasks)
    await sg._gather(_event(_answer(tasks[0])))
    assert stage.dead == ["b1: no candidate"]
    assert sg.gathers.table == {}
    assert sg.gathers.finishing == set()


def _bugs_on_two_partitions() -> tuple[str, str]:
    mine = "b-mine"
    here = partition_of(mine, PARTITIONS)
    theirs = next(f"b-{n}" for n in range(100) if partition_of(f"b-{n}", PARTITIONS) != here)
    return mine, theirs


async def test_the_deadline_timer_nudges_only_the_gathers_of_partitions_this_worker_owns():
    """Faust's memory table keeps the entries of a revoked partition: their gathers are
    another worker's now, and a nudge from here would finish them under it."""
    mine, theirs = _bugs_on_two_partitions()
    app = FakeApp(assigned={TP("chunks.results", partition_of(mine, PARTITIONS))})

    async def finish(context, results, complete, elapsed):
        return Outcome(output=context)

    sg, _ = _scatter_gather(finish, app=app)
    for bug_id in (mine, theirs):
        await sg.scatter("root_cause", report(bug_id), _tasks(2))
    sg.gathers.table["root_cause|b-old"] = {"stage": "root_cause", "bug_id": mine}  # pre-attempt
    for entry in sg.gathers.table.values():
        entry["deadline"] = 0.0  # long past
    await sg._deadlines()
    nudges = sg.results.sent
    assert [(n.bug_id, n.task_id, n.attempt) for n in nudges] == [(mine, DEADLINE_TASK, 0)]


def test_partition_of_is_where_the_real_worker_app_puts_a_bugs_gather(tmp_path, monkeypatch):
    """Against the app ``create_app`` builds: its producer puts a bug's chunk results, and the
    stage inputs that scatter, in ``partition_of``'s partition, and its gather table writes an
    entry made while handling one of them to that partition of its changelog."""
    # create_app installs process-wide telemetry and Faust's fetch-wait patch: put them back
    monkeypatch.setattr(fixstream.telemetry, "_active", fixstream.telemetry.active())
    monkeypatch.setattr(
        AIOKafkaConsumerThread,
        "_create_worker_consumer",
        AIOKafkaConsumerThread._create_worker_consumer,
    )
    settings = Settings(broker="localhost:9", data_dir=tmp_path, cache="off", web_enabled=False)
    app = create_app(settings, llm=Gateway(ScriptedTransport()))
    table = app.tables["fixstream-gather"]
    sources = {
        name: app.agents[agent].channel
        for name, agent in [
            ("chunks.results", "fixstream.gather"),
            ("bugs.reproduced", "fixstream.root_cause"),
            ("bugs.rootcaused", "fixstream.fix"),
        ]
    }

    class Handled:  # the record an agent is handling (what Faust routes a table write by)
        def __init__(self, topic: str, partition: int) -> None:
            self.message = SimpleNamespace(topic=topic, partition=partition)

    for n in range(64):
        bug_id = f"bug-{n}"
        for name, topic in sources.items():
            assert topic.get_topic_name() == name
            everything = list(range(topic.partitions))
            raw_key, _ = topic.prepare_key(bug_id, None)
            partition = app.producer.partitioner(raw_key, everything, everything)
            assert partition == partition_of(bug_id, table.partitions), (bug_id, name)
            handled = Handled(name, partition)
            token = _current_event.set(weakref.ref(handled))
            try:
                assert table.partition_for_key(Gathers.key("fix", bug_id, 1)) == partition
            finally:
                _current_event.reset(token)


async def test_a_chunk_worker_answers_a_repeated_task_from_its_record():
    transport = ScriptedTransport(answers=['{"implicated": true, "score": 0.9, "why": "here"}'])
    sg, _ = _scatter_gather(None, llm=Gateway(transport))
    task = _task(0, 1, "fix", attempt=1)
    await sg._call(_event(task))
    await sg._call(_event(task))  # redelivered after a rebalance
    assert len(transport.requests) == 1
    first, again = sg.results.sent
    assert first.ok and first.attempt == 1
    assert again == first
