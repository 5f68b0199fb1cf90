"""The five stages end to end on the embedded broker, with real workers, the simulator over
HTTP and real test runs: bug reports in, exactly one validated fix event per bug out."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import EXAMPLES, read_until

from fixstream.artifacts import ArtifactStore
from fixstream.kafka import producer, publish
from fixstream.llm.simulator.process import simulator_process
from fixstream.reports import report_from_file
from fixstream.scenarios import NOT_IMPLICATED, example_rules, scenario_text
from fixstream.schemas import (
    BugReport,
    BugSummary,
    ChunkResult,
    ChunkTask,
    FixEvent,
    StatusEvent,
)
from fixstream.tokens import count_tokens
from fixstream.worker import WorkerProcess

pytestmark = pytest.mark.integration
STAGES = ["analysis", "reproduce", "root_cause", "fix", "validate"]


def _reports(settings, suffix: str, names: list[str] | None = None) -> list[BugReport]:
    store = ArtifactStore(settings.artifact_dir)
    paths = sorted(EXAMPLES.glob("*/report.json"))
    reports = [
        report_from_file(p, store=store, inline_limit=settings.inline_artifact_bytes)
        for p in paths
        if names is None or p.parent.name in names
    ]
    return [r.model_copy(update={"bug_id": f"{r.bug_id}-{suffix}"}) for r in reports]


def await_text(store: ArtifactStore, artifact) -> str:
    return asyncio.run(store.text_of(artifact))


def _submit(settings, reports: list[BugReport]) -> None:
    async def send() -> None:
        async with producer(settings) as client:
            for report in reports:
                await publish(client, "bugs.reported", report.bug_id, report)

    asyncio.run(send())


def _fixes(settings, ids: set[str], timeout: float = 240) -> list[FixEvent]:
    def done(records) -> bool:
        return {r.key.decode() for r in records} >= ids

    records = asyncio.run(read_until(settings, "fixes", done, timeout=timeout))
    return [FixEvent.model_validate_json(r.value) for r in records if r.key.decode() in ids]


def _records(settings, topic: str, settle: float = 1.0) -> list:
    """Everything on ``topic`` so far (waiting ``settle`` seconds for stragglers)."""
    deadline = time.monotonic() + settle
    return asyncio.run(read_until(settings, topic, lambda _: time.monotonic() > deadline))


def test_every_example_is_fixed_end_to_end_with_exactly_one_fix_event(settings, start_worker):
    start_worker()
    reports = _reports(settings, "e2e")
    ids = {r.bug_id for r in reports}
    _submit(settings, reports)
    fixes = _fixes(settings, ids)
    time.sleep(2)  # anything duplicated would arrive now
    fixes = [
        FixEvent.model_validate_json(r.value)
        for r in _records(settings, "fixes")
        if r.key.decode() in ids
    ]
    assert sorted(f.bug_id for f in fixes) == sorted(ids), "exactly one fix event per bug"
    for fix in fixes:
        assert fix.status == "fixed", (fix.bug_id, fix.reason)
        assert fix.patch.startswith("--- a/") and "+++ b/" in fix.patch
        assert fix.test_code and fix.test_runs and fix.test_runs[0].exit_code == 0
        assert [s.stage for s in fix.stages] == STAGES
        assert all(s.elapsed_ms > 0 for s in fix.stages)
        assert sum(s.tokens_in for s in fix.stages) > 0
    two_files = next(f for f in fixes if f.bug_id.startswith("example-two_files"))
    assert "station/units.py" in two_files.patch and "station/report.py" in two_files.patch

    # progressive summaries: every stage rewrote the bug's summary, and the summary later
    # stages read is far smaller than the raw report it replaces
    summaries = [
        BugSummary.model_validate_json(r.value) for r in _records(settings, "bugs.summaries")
    ]
    long_log = next(r for r in reports if r.bug_id.startswith("example-long_log"))
    mine = sorted((s for s in summaries if s.bug_id == long_log.bug_id), key=lambda s: s.revision)
    assert [s.stage for s in mine][:4] == ["analysis", "reproduce", "root_cause", "fix"]
    store = ArtifactStore(settings.artifact_dir)
    raw = count_tokens(
        long_log.description + "".join([await_text(store, a) for a in long_log.artifacts])
    )
    assert mine[2].tokens * 5 < raw
    tasks = [
        ChunkTask.model_validate_json(r.value)
        for r in _records(settings, "chunks.tasks")
        if ChunkTask.model_validate_json(r.value).bug_id == long_log.bug_id
    ]
    assert tasks, "root cause and fix scattered chunk calls"
    assert all(count_tokens(t.prompt[-1]["content"]) * 3 < raw for t in tasks)


def test_a_wrong_fix_is_rejected_retried_and_reported_failed(settings, start_worker, tmp_path):
    example = EXAMPLES / "off_by_one"
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(scenario_text([*example_rules(example, wrong_fix=True), NOT_IMPLICATED]))
    with simulator_process("--time-scale", "0.01", "--scenario", str(scenario)) as url:
        wrong = settings.model_copy(update={"llm_base_url": url})
        worker = WorkerProcess(wrong, tmp_path / "wrong-worker.log", FIXSTREAM_FIX_ATTEMPTS="2")
        try:
            worker.wait_ready()
            report = _reports(wrong, "wrong", ["off_by_one"])[0]
            _submit(wrong, [report])
            (fix,) = _fixes(wrong, {report.bug_id})
            statuses = [
                StatusEvent.model_validate_json(r.value)
                for r in _records(wrong, "bugs.status")
                if r.key.decode() == report.bug_id
            ]
        finally:
            worker.stop()
    assert fix.status == "failed"
    assert fix.reason.startswith("no candidate passed after 2 fix attempt(s)")
    assert fix.patch == ""
    assert any("test_last_partial_page_is_reachable" in run.output for run in fix.test_runs)
    sent_back = [s for s in statuses if s.stage == "validate" and "back to fix" in s.message]
    assert len(sent_back) == 1, "validate sent the bug back to fix once, with feedback"
    fix_runs = [s for s in statuses if s.stage == "fix" and s.state == "done"]
    assert len(fix_runs) == 2


def test_two_workers_share_the_chunk_tasks_of_one_bug(settings, start_worker):
    for worker in [start_worker("worker-a", ready=False), start_worker("worker-b", ready=False)]:
        worker.wait_ready()
    reports = _reports(settings, "shared", ["long_log", "none_handling", "two_files"])
    ids = {r.bug_id for r in reports}
    _submit(settings, reports)
    fixes = _fixes(settings, ids)
    assert sorted(f.bug_id for f in fixes) == sorted(ids)
    assert all(f.status == "fixed" for f in fixes), [f.reason for f in fixes]
    results = [
        ChunkResult.model_validate_json(r.value) for r in _records(settings, "chunks.results")
    ]
    workers_per_bug = {
        bug: {r.worker for r in results if r.bug_id == bug and r.task_id != "deadline"}
        for bug in ids
    }
    assert len(set().union(*workers_per_bug.values())) == 2, workers_per_bug
    assert any(len(w) == 2 for w in workers_per_bug.values()), (
        "one bug's chunk calls were spread over both workers",
        workers_per_bug,
    )


def _run_with_scenario(settings, tmp_path, rules, names, suffix, **env):
    """One worker against a simulator scripted with ``rules``; the fix events and statuses."""
    scenario = tmp_path / f"{suffix}.yaml"
    scenario.write_text(scenario_text(rules))
    args = ["--time-scale", "0.01", *(["--scenario", str(scenario)] if rules else [])]
    with simulator_process(*args) as url:
        scripted = settings.model_copy(update={"llm_base_url": url})
        worker = WorkerProcess(scripted, tmp_path / f"{suffix}.log", **env)
        try:
            worker.wait_ready()
            reports = _reports(scripted, suffix, names)
            _submit(scripted, reports)
            ids = {r.bug_id for r in reports}
            fixes = _fixes(scripted, ids)
            statuses = [
                StatusEvent.model_validate_json(r.value)
                for r in _records(scripted, "bugs.status")
                if r.key.decode() in ids
            ]
        finally:
            worker.stop()
    return fixes, statuses


def test_without_a_scenario_a_bug_is_never_reported_fixed(settings, tmp_path):
    """The simulator's unscripted answers are arbitrary (schema-valid, meaningless)."""
    fixes, _ = _run_with_scenario(
        settings, tmp_path, [], ["off_by_one", "two_files"], "unscripted",
        FIXSTREAM_FIX_ATTEMPTS="2", FIXSTREAM_REPRODUCE_ATTEMPTS="1",
    )  # fmt: skip
    assert len(fixes) == 2
    assert all(f.status == "failed" for f in fixes), [(f.status, f.reason) for f in fixes]


def test_a_gather_past_its_deadline_goes_on_with_what_it_has(settings, tmp_path):
    example = EXAMPLES / "off_by_one"
    slow_chunk = {  # one innocent chunk's verdict takes far longer than the deadline
        "match": "re:(?s)TASK: root-cause one chunk.*\\nCHUNK pager/links\\.py",
        "response": {"implicated": False, "score": 0.0, "why": "late"},
        "delay_seconds": 10,
    }
    fixes, statuses = _run_with_scenario(
        settings, tmp_path, [slow_chunk, *example_rules(example), NOT_IMPLICATED],
        ["off_by_one"], "deadline", FIXSTREAM_GATHER_DEADLINE_S="4",
    )  # fmt: skip
    (fix,) = fixes
    assert fix.status == "fixed", fix.reason
    root_cause = next(s for s in statuses if s.stage == "root_cause" and s.state == "done")
    assert root_cause.message.startswith("deadline: gathered 2 of 3 chunks")
