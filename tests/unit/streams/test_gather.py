"""The gather's bookkeeping: a worker killed while finishing must not strand the bug.

Fakes stand in for the Faust table and topics (unit test); the kill itself is exercised
end to end by the soak and tests/integration/test_reliability.py.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from fixstream.schemas import BugReport, ChunkRef, ChunkResult, ChunkTask, RepoRef
from fixstream.streams.scatter import DEADLINE_TASK, ScatterGather, _Gatherer
from fixstream.streams.stage import Outcome


class Killed(BaseException):
    """What SIGKILL looks like from inside a coroutine: nothing after it runs."""


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, key: str, value: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeStage:
    def __init__(self) -> None:
        self.emitted: list[str] = []

    async def emit(self, bug_id: str, outcome: Outcome, elapsed_s: float) -> None:
        self.emitted.append(bug_id)


def _gather_with(finish: Any) -> tuple[ScatterGather, FakeStage]:
    sg = ScatterGather.__new__(ScatterGather)  # no Faust app: the table is a dict here
    sg.pending, sg.finishing, sg.tasks, sg.deadline_s = {}, set(), FakeTopic(), 60.0
    stage = FakeStage()
    sg.gatherers = {"root_cause": _Gatherer(stage, finish)}  # type: ignore[arg-type]
    return sg, stage


def _task(i: int, fan_out: int) -> ChunkTask:
    chunk = ChunkRef(chunk_id=f"c{i}", path="m.py", start_line=1, end_line=2, tokens=5)
    return ChunkTask(
        task_id=f"root_cause:c{i}", bug_id="b1", stage="root_cause", fan_out=fan_out,
        chunk=chunk, purpose="root_cause", answer_schema="ChunkVerdict",
        prompt=[{"role": "user", "content": "p"}],
    )  # fmt: skip


def _tasks(n: int) -> list[ChunkTask]:
    return [_task(i, n) for i in range(n)]


def _result(task: ChunkTask | None) -> SimpleNamespace:
    value = ChunkResult(
        task_id=task.task_id if task else DEADLINE_TASK, bug_id="b1", stage="root_cause",
        chunk_id=task.chunk.chunk_id if task else "", fan_out=2, ok=True,
    )  # fmt: skip
    return SimpleNamespace(value=value, message=None)


async def test_a_worker_killed_while_finishing_leaves_the_gather_to_the_redelivery():
    calls: list[int] = []

    async def finish(context, results, complete, elapsed):
        calls.append(len(results))
        if len(calls) == 1:
            raise Killed  # the worker dies after the last result, before the output exists
        return Outcome(output=context)

    sg, stage = _gather_with(finish)
    report = BugReport(bug_id="b1", title="t", repo=RepoRef(path="/tmp"))
    tasks = _tasks(2)
    await sg.scatter("root_cause", report, tasks)
    await sg._gather(_result(tasks[0]))
    with pytest.raises(Killed):
        await sg._gather(_result(tasks[1]))
    assert "root_cause|b1" in sg.pending, "the pending gather went with the killed worker"
    assert stage.emitted == []
    # the next owner recovers the table without the unacked last result, which is redelivered
    sg.pending["root_cause|b1"]["results"].pop(tasks[1].task_id)
    sg.finishing.clear()
    await sg._gather(_result(tasks[1]))
    assert calls == [2, 2]
    assert stage.emitted == ["b1"]
    assert sg.pending == {}


async def test_a_deadline_nudge_racing_the_last_result_finishes_the_gather_once():
    release = asyncio.Event()
    calls: list[bool] = []

    async def finish(context, results, complete, elapsed):
        calls.append(complete)
        await release.wait()
        return Outcome(output=context)

    sg, stage = _gather_with(finish)
    tasks = _tasks(1)
    await sg.scatter("root_cause", BugReport(bug_id="b1", title="t", repo=RepoRef(path="/")), tasks)
    last = asyncio.create_task(sg._gather(_result(tasks[0])))
    await asyncio.sleep(0)
    await sg._gather(_result(None))  # the deadline timer's nudge while the finisher runs
    release.set()
    await last
    assert calls == [True]
    assert stage.emitted == ["b1"]
    assert sg.pending == {}
