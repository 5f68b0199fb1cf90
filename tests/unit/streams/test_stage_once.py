"""A stage does each (bug, stage, attempt) once per worker: what Faust redelivers after a
rebalance is dropped, without a second LLM call, test run, output or status."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from fakes import FakeTopic, report, retried, rootcaused

from fixstream.schemas import RootCausedBug
from fixstream.streams.finals import REDRIVE_HEADER
from fixstream.streams.stage import Once, Outcome, Stage, attempt_of


class FakeDeadLetters:
    async def send(self, message: Any, exc: Exception, *, stage: str) -> SimpleNamespace:
        return SimpleNamespace(error_class=type(exc).__name__, reason=str(exc))


def _fix_stage(handler: Any) -> tuple[Stage, dict[str, FakeTopic]]:
    topics = {name: FakeTopic() for name in ("bugs.status", "bugs.patched", "bugs.summaries")}
    return Stage("fix", handler, "bugs.patched", topics, FakeDeadLetters()), topics  # type: ignore[arg-type]


def _recording_fix_stage(
    release: asyncio.Event | None = None,
) -> tuple[Stage, dict[str, FakeTopic], list[int]]:
    """A fix stage whose handler records each run's attempt, waits for ``release`` if given,
    and passes its input on as its output."""
    calls: list[int] = []

    async def handler(bug: RootCausedBug) -> Outcome:
        calls.append(bug.meta.attempt)
        if release is not None:
            await release.wait()
        return Outcome(output=bug)

    stage, topics = _fix_stage(handler)
    return stage, topics, calls


def _event(
    value: Any, headers: tuple[tuple[str, bytes], ...] = (), written_at: float = 1000.0
) -> SimpleNamespace:
    message = SimpleNamespace(
        key=b"b1", topic="bugs.rootcaused", partition=0, offset=7, headers=list(headers),
        timestamp=written_at,
    )  # fmt: skip
    return SimpleNamespace(value=value, message=message)


def _states(topics: dict[str, FakeTopic]) -> list[str]:
    return [status.state for status in topics["bugs.status"].sent]


def test_the_attempt_of_an_input_is_the_retry_number_validate_set():
    bug = rootcaused()
    assert attempt_of(report()) == 0  # a report has no meta
    assert attempt_of(bug) == 0
    assert attempt_of(retried(retried(bug))) == 2


async def test_a_redelivered_input_is_dropped_once_its_output_was_emitted():
    stage, topics, calls = _recording_fix_stage()
    bug = rootcaused()
    await stage.process(_event(bug))
    await stage.process(_event(bug))  # Faust redelivers from the committed offset
    assert calls == [0]
    assert len(topics["bugs.patched"].sent) == 1
    assert _states(topics) == ["started", "done"]


async def test_a_redelivery_while_the_first_run_is_in_flight_waits_for_it_then_is_dropped():
    """Its ack must not overtake the first run's output, which may not exist yet."""
    release = asyncio.Event()
    stage, topics, calls = _recording_fix_stage(release)
    bug = rootcaused()
    first = asyncio.create_task(stage.process(_event(bug)))
    await asyncio.sleep(0)
    again = asyncio.create_task(stage.process(_event(bug)))
    await asyncio.sleep(0.01)
    assert not again.done()
    release.set()
    await asyncio.gather(first, again)
    assert calls == [0]
    assert len(topics["bugs.patched"].sent) == 1


async def test_the_next_attempt_of_the_same_bug_runs():
    stage, topics, calls = _recording_fix_stage()
    bug = rootcaused()
    await stage.process(_event(bug))
    await stage.process(_event(retried(bug)))
    assert calls == [0, 1]
    assert len(topics["bugs.patched"].sent) == 2


async def test_a_watchdog_redrive_runs_again_and_its_own_redelivery_is_dropped():
    stage, topics, calls = _recording_fix_stage()
    bug = rootcaused()
    redriven = ((REDRIVE_HEADER, b"1"),)
    for headers in ((), redriven, redriven):
        await stage.process(_event(bug, headers))
    assert calls == [0, 0]
    assert len(topics["bugs.patched"].sent) == 2


async def test_a_dead_lettered_input_runs_again_so_a_replay_from_the_dlq_works():
    calls: list[int] = []

    async def handler(bug: RootCausedBug) -> Outcome:
        calls.append(bug.meta.attempt)
        if len(calls) == 1:
            raise ValueError("the sandbox was down")
        return Outcome(output=bug)

    stage, topics = _fix_stage(handler)
    bug = rootcaused()
    await stage.process(_event(bug))
    await stage.process(_event(bug))
    assert calls == [0, 0]
    assert _states(topics) == ["started", "dead_lettered", "started", "done"]


async def test_once_remembers_only_the_last_keys():
    runs: list[str] = []
    once: Once[str] = Once(size=2)

    async def work(key: str) -> str:
        runs.append(key)
        return key.upper()

    for key in ("a", "b", "a", "c", "a", "b"):
        value, _ = await once.run(key, lambda key=key: work(key))
        assert value == key.upper()
    assert runs == ["a", "b", "c", "b"]  # "a" was used after "b": "b" was forgotten first


async def test_an_input_written_before_its_bug_got_its_fix_event_is_dropped():
    """The 300-bug soak: reproduce dead-lettered a bug (its failed fix event was out), the
    input was redelivered after a rebalance and the bug got a second, "fixed", event."""
    from fixstream.config import Settings
    from fixstream.streams.finals import PublishedLog

    published = PublishedLog(Settings())
    read: list[bool] = []

    async def read_to_end() -> None:  # the follower reads the verdict only now
        read.append(True)
        published.ids["b1"], published.decided_at["b1"] = "dlq:fix", 2000.0

    published.read_to_end = read_to_end
    stage, topics, calls = _recording_fix_stage()
    stage.decided_after = published.decided_after
    await stage.process(_event(rootcaused(), written_at=1000.0))  # from before the verdict
    assert calls == [] and topics["bugs.status"].sent == []
    assert read == [True], "a worker just started reads fixes to its end before it decides"
    await stage.process(_event(rootcaused(), written_at=3000.0))  # a replay: a new record
    assert calls == [0] and read == [True]  # once


async def test_a_replay_written_before_the_dead_letters_fix_event_still_runs():
    """An operator replayed a dead letter as soon as it was on bugs.dlq, before the finalizer
    had published its failed fix event: by the clock the replay is older than the verdict,
    but it asks for a run (the full suite under load saw the replay dropped)."""
    from fixstream.config import Settings
    from fixstream.streams.deadletters import REPLAYS_HEADER
    from fixstream.streams.finals import PublishedLog

    published = PublishedLog(Settings())

    async def read_to_end() -> None:
        published.ids["b1"], published.decided_at["b1"] = "dlq:fix", 2000.0

    published.read_to_end = read_to_end
    stage, _topics, calls = _recording_fix_stage()
    stage.decided_after = published.decided_after
    replayed = ((REPLAYS_HEADER, b"1"),)
    await stage.process(_event(rootcaused(), headers=replayed, written_at=1500.0))
    assert calls == [0]
