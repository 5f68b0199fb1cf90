"""The regular-program parts of the later stages: judging runs, ranking, planning patches."""

from __future__ import annotations

from pathlib import Path

from fixstream.config import EXAMPLES
from fixstream.sandbox.environments import Environments
from fixstream.sandbox.runner import Environment
from fixstream.scenarios import example_rules, scenario_files, scenario_text
from fixstream.schemas import (
    AnalyzedBug,
    BugReport,
    CandidatePatch,
    ChunkRef,
    ChunkResult,
    Edit,
    Evidence,
    PatchedBug,
    RepoRef,
    ReproducedBug,
    Reproduction,
    RootCausedBug,
    StageMeta,
    TestRun,
)
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.reproduce import judge
from fixstream.streams.root_cause import rank
from fixstream.streams.validate import validate


def _run(exit_code: int, failed=(), passed=(), output="", timed_out=False) -> TestRun:
    return TestRun(
        command=["pytest"],
        exit_code=exit_code,
        failed=list(failed),
        passed=list(passed),
        output=output,
        timed_out=timed_out,
    )


def test_judge_accepts_only_a_real_failure_of_the_new_test():
    path = "tests/test_repro.py"
    assert judge(_run(1, failed=[f"{path}::test_bug"]), path) is None
    assert "passed on the buggy code" in judge(_run(0, passed=[f"{path}::t"]), path)
    assert "timed out" in judge(_run(None, timed_out=True), path)
    broken = _run(2, output="ERROR collecting tests/test_repro.py\nImportError: cannot import x")
    assert "does not load" in judge(broken, path)
    other = _run(1, failed=["tests/test_other.py::test_old"])
    assert "no test in tests/test_repro.py failed" in judge(other, path)


def _chunk(n: int) -> ChunkRef:
    return ChunkRef(chunk_id=f"c{n}", path=f"m{n}.py", start_line=1, end_line=9, tokens=50)


def _reproduced(chunks: list[ChunkRef]) -> ReproducedBug:
    report = BugReport(bug_id="b", title="t", repo=RepoRef(path="/tmp"))
    analyzed = AnalyzedBug(
        bug_id="b",
        meta=StageMeta(stage="analysis"),
        report=report,
        repo_dir="/tmp",
        evidence=Evidence(),
        chunks=chunks,
    )
    return ReproducedBug(
        bug_id="b",
        meta=StageMeta(stage="reproduce"),
        analyzed=analyzed,
        reproduction=Reproduction(reproduced=False),
    )


def _verdict(n: int, implicated: bool, score: float, ok: bool = True) -> ChunkResult:
    return ChunkResult(
        task_id=f"t{n}",
        bug_id="b",
        stage="root_cause",
        chunk_id=f"c{n}",
        fan_out=4,
        ok=ok,
        output={"implicated": implicated, "score": score, "why": f"w{n}"} if ok else {},
    )


def test_rank_keeps_implicated_chunks_over_the_threshold_best_first():
    bug = _reproduced([_chunk(n) for n in range(4)])
    knobs = StageKnobs(
        workspaces=Path("/tmp"),
        envs=Environments(Path("/tmp/unused")),
        suspect_threshold=0.5,
        fix_suspects=3,
    )
    results = [
        _verdict(0, False, 0.9),
        _verdict(1, True, 0.6),
        _verdict(2, True, 0.95),
        _verdict(3, True, 0.2, ok=False),
    ]
    assert [s.chunk.chunk_id for s in rank(bug, results, knobs)] == ["c2", "c1"]


def test_rank_falls_back_to_the_single_best_guess():
    bug = _reproduced([_chunk(n) for n in range(2)])
    knobs = StageKnobs(workspaces=Path("/tmp"), envs=Environments(Path("/tmp/unused")))
    suspects = rank(bug, [_verdict(0, False, 0.3), _verdict(1, False, 0.1)], knobs)
    assert [s.chunk.chunk_id for s in suspects] == ["c0"]


def test_committed_scenarios_match_fix_json():
    """Run `fixstream examples scenarios` after changing a fix.json or a prompt format."""
    for example in sorted(p.parent for p in EXAMPLES.glob("*/fix.json")):
        committed = (example / "scenario.yaml").read_text()
        assert committed == scenario_text(example_rules(example)), example.name
    assert scenario_files(EXAMPLES)[-1].name == "scenario.common.yaml"  # fallbacks go last


class _NoEnvironment(StageKnobs):
    """Knobs whose environment is never built: no candidate here gets as far as the tests."""

    async def environment(self, repo_dir: Path, repo: RepoRef) -> Environment:
        return Environment(key="none", path=repo_dir, interpreter="/usr")


async def test_a_failure_with_no_patch_that_applies_says_the_model_gave_no_usable_answer(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "m.py").write_text("def f():\n    return 1\n")
    bug = _reproduced([_chunk(0)])
    analyzed = bug.analyzed.model_copy(update={"repo_dir": str(repo)})
    rootcaused = RootCausedBug(
        bug_id="b", meta=StageMeta(stage="root_cause", attempt=2),
        reproduced=bug.model_copy(update={"analyzed": analyzed}),
    )  # fmt: skip
    arbitrary = Edit(path="m.py", search="lorem ipsum dolor", replace="sit amet")
    patched = PatchedBug(
        bug_id="b", meta=StageMeta(stage="fix", attempt=2), rootcaused=rootcaused,
        candidates=[CandidatePatch(candidate_id="b:1", edits=[arbitrary], origin="proposal 1")],
    )  # fmt: skip
    knobs = _NoEnvironment(workspaces=tmp_path / "ws", envs=Environments(tmp_path / "envs"))
    outcome = await validate(patched, knobs)
    assert outcome.output.status == "failed"
    assert outcome.output.reason.startswith("the model gave no usable answer: no candidate passed")
    assert "patch refused" in outcome.output.reason
