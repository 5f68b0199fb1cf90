"""Stage 5, validate: apply each candidate in its own workspace and run the tests.

No tokens: the reproduction test and the repository's own tests decide. Candidates run in
parallel; the first (in the fix stage's order) that passes both wins. When none does, the
bug goes back to fix with what failed, a bounded number of times, and then ends "failed"
with the test output. Without a reproduction a passing patch is only "not reproduced but
patched": nothing showed it fixes the bug.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from fixstream.cache import tags_of
from fixstream.errors import EditRejectedError
from fixstream.sandbox import Environment, make_workspace
from fixstream.sandbox.edits import apply_edits, unified_diff
from fixstream.schemas import (
    CandidatePatch,
    Edit,
    FixEvent,
    PatchedBug,
    StageCost,
    StageMeta,
    TestRun,
)
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.stage import Outcome
from fixstream.summaries import revise

STAGE = "validate"
FEEDBACK_TAIL = 1500


@dataclass(frozen=True, slots=True)
class Verdict:
    candidate: CandidatePatch
    passed: bool
    reason: str
    diff: str = ""
    run: TestRun | None = None


async def check(
    bug: PatchedBug, candidate: CandidatePatch, knobs: StageKnobs, env: Environment
) -> Verdict:
    """Apply one candidate (plus the reproduction test) to a fresh copy and run every test."""
    analyzed = bug.rootcaused.reproduced.analyzed
    repro = bug.rootcaused.reproduced.reproduction
    repo_dir = Path(analyzed.repo_dir)
    ws = await make_workspace(repo_dir, knobs.workspaces, candidate.candidate_id.replace(":", "-"))
    try:
        try:
            changed = await asyncio.to_thread(apply_edits, ws, candidate.edits)
        except EditRejectedError as exc:
            return Verdict(candidate, False, f"patch refused: {exc}")
        diff = await asyncio.to_thread(unified_diff, repo_dir, ws.path, changed)
        if repro.reproduced and repro.test_path and repro.test_code:
            test = Edit(path=repro.test_path, search="", replace=repro.test_code)
            await asyncio.to_thread(apply_edits, ws, [test])
        run = await knobs.run_tests(
            ws, analyzed.report.repo.test_command, env, tags_of(bug.bug_id, analyzed.scope)
        )
    finally:
        await ws.remove()
    if run.timed_out:
        return Verdict(candidate, False, "the tests timed out", diff, run)
    if run.exit_code != 0:
        failed = ", ".join(run.failed[:5]) or f"exit code {run.exit_code}"
        return Verdict(candidate, False, f"tests failed: {failed}", diff, run)
    if repro.reproduced and not any(t.startswith(repro.test_path or "") for t in run.passed):
        return Verdict(candidate, False, "the reproduction test did not run", diff, run)
    return Verdict(candidate, True, "all tests pass", diff, run)


def stage_costs(bug: PatchedBug, own: StageMeta) -> list[StageCost]:
    """Every stage run of the bug, in order; earlier fix attempts from ``spent``."""
    reproduced = bug.rootcaused.reproduced
    first = [StageCost.of(reproduced.analyzed.meta), StageCost.of(reproduced.meta)]
    # the root cause's meta carries the fix attempt on a retry: it ran once, as attempt 0
    root_cause = StageCost.of(bug.rootcaused.meta, attempt=0)
    return [*first, root_cause, *bug.rootcaused.spent, StageCost.of(bug.meta), StageCost.of(own)]


def feedback(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        lines.append(f"candidate {v.candidate.origin}: {v.reason}")
        if v.run is not None:
            lines.append(v.run.output[-FEEDBACK_TAIL:])
    return "\n".join(lines) or "no candidate patch was proposed"


async def validate(bug: PatchedBug, knobs: StageKnobs) -> Outcome:
    started = time.perf_counter()
    analyzed = bug.rootcaused.reproduced.analyzed
    env = await knobs.environment(Path(analyzed.repo_dir), analyzed.report.repo)
    verdicts = list(await asyncio.gather(*(check(bug, c, knobs, env) for c in bug.candidates)))
    winner = next((v for v in verdicts if v.passed), None)
    attempt = bug.meta.attempt
    repro = bug.rootcaused.reproduced.reproduction
    meta = StageMeta(
        stage=STAGE, attempt=attempt, elapsed_ms=(time.perf_counter() - started) * 1000
    )
    if winner is None and attempt + 1 < knobs.fix_attempts:
        retry = bug.rootcaused.model_copy(
            update={
                "meta": bug.rootcaused.meta.model_copy(update={"attempt": attempt + 1}),
                "feedback": feedback(verdicts),
                "failed_runs": [v.run for v in verdicts if v.run is not None],
                "spent": [*bug.rootcaused.spent, StageCost.of(bug.meta), StageCost.of(meta)],
            }
        )
        note = f"no candidate passed; back to fix (attempt {attempt + 2})"
        return Outcome(output=retry, sink="bugs.rootcaused", note=note)
    if winner is not None:
        status = "fixed" if repro.reproduced else "not_reproduced_patched"
        reason = f"{winner.candidate.origin}: {winner.reason}"
        runs = [winner.run] if winner.run else []
        patch = winner.diff
    else:
        status, patch = "failed", ""
        reason = (
            f"no candidate passed after {attempt + 1} fix attempt(s): "
            + "; ".join(f"{v.candidate.origin}: {v.reason}" for v in verdicts)
            if verdicts
            else f"no candidate patch after {attempt + 1} fix attempt(s)"
        )
        runs = [v.run for v in verdicts if v.run is not None]
        if not runs:  # nothing even reached the tests: say whose answer it was
            reason = f"the model gave no usable answer: {reason}"
    summary = revise(bug.bug_id, STAGE, 10 + attempt, bug.summary, [f"Result: {status}: {reason}"])
    event = FixEvent(
        bug_id=bug.bug_id,
        meta=meta,
        status=status,
        reason=reason[:2000],
        patch=patch,
        test_code=repro.test_code if repro.reproduced else None,
        test_runs=runs,
        stages=(costs := stage_costs(bug, meta)),
        total=StageCost.total(costs),
        repo=analyzed.report.repo,
        test_path=repro.test_path if repro.reproduced else None,
    )
    return Outcome(output=event, summary=summary, note=status)
