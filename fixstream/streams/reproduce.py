"""Stage 2, reproduce: the model writes a failing test; the sandbox proves it fails.

The test must fail on the unpatched code, and fail on an assertion or the reported error,
not on an import or syntax error of its own. The run's output goes back to the model on the
next attempt. A bug that never reproduces goes on, marked so: validate then cannot call a
patch "fixed".
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fixstream.answers import ReproductionTest
from fixstream.cache import tags_of
from fixstream.chunktext import chunk_text, header
from fixstream.errors import EditRejectedError, LLMError
from fixstream.llm import Gateway
from fixstream.llm.accounting import Totals
from fixstream.sandbox import Environment, make_workspace
from fixstream.sandbox.edits import apply_edits
from fixstream.schemas import AnalyzedBug, Edit, ReproducedBug, Reproduction, TestRun
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.stage import Outcome, stage_meta
from fixstream.summaries import revise

STAGE = "reproduce"
COLLECTION_ERRORS = (
    "ImportError", "ModuleNotFoundError", "SyntaxError", "IndentationError", "ERROR collecting",
)  # fmt: skip
SUSPECT_CHUNKS = 3
OUTPUT_TAIL = 3000


def _repo_context(repo_dir: Path) -> tuple[list[str], str]:
    """Existing test files, and the head of one, so the model follows the repo's conventions."""
    tests = sorted(str(p.relative_to(repo_dir)) for p in repo_dir.glob("**/test_*.py"))[:10]
    example = ""
    if tests:
        example = "\n".join((repo_dir / tests[0]).read_text(errors="replace").splitlines()[:40])
    return tests, example


def prompt(bug: AnalyzedBug, tests: list[str], example: str, code: str, feedback: str) -> list:
    parts = [
        "TASK: reproduce",
        "Write ONE new pytest file that FAILS on the current code because of this bug and will "
        "pass once the bug is fixed. Fail with an assertion or the reported exception; import "
        "the code the way the existing tests do. Do not modify existing files.",
        f"BUG SUMMARY:\n{bug.summary or bug.report.title}",
        f"EXISTING TEST FILES: {', '.join(tests) or 'none'}",
        f"EXAMPLE TEST (for imports and conventions):\n{example}" if example else "",
        f"SUSPECT CODE:\n{code}",
        f"YOUR PREVIOUS ATTEMPT DID NOT REPRODUCE THE BUG:\n{feedback}" if feedback else "",
    ]
    return [{"role": "user", "content": "\n\n".join(p for p in parts if p)}]


def judge(run: TestRun, test_path: str) -> str | None:
    """None when the run reproduces the bug; otherwise why it does not."""
    if run.timed_out:
        return "the test run timed out"
    if run.exit_code == 0:
        return "the test passed on the buggy code, so it does not reproduce the bug"
    errors = [line for line in run.output.splitlines() if any(e in line for e in COLLECTION_ERRORS)]
    if errors:
        return f"the test file does not load: {errors[0].strip()[:300]}"
    if not any(test_id.startswith(test_path) for test_id in run.failed):
        return f"no test in {test_path} failed (pytest exit code {run.exit_code})"
    return None


def failure_line(run: TestRun) -> str:
    """The line of the output that says what failed (for the summary)."""
    for line in reversed(run.output.splitlines()):
        if line.startswith("E ") or "Error" in line or "assert" in line:
            return line.strip()[:200]
    return f"exit code {run.exit_code}"


async def _try(
    bug: AnalyzedBug, test: ReproductionTest, knobs: StageKnobs, name: str, env: Environment
) -> TestRun:
    ws = await make_workspace(Path(bug.repo_dir), knobs.workspaces, name)
    try:
        await asyncio.to_thread(
            apply_edits, ws, [Edit(path=test.path, search="", replace=test.code)]
        )
        command = [*bug.report.repo.test_command, test.path]
        return await knobs.run_tests(ws, command, env, tags_of(bug.bug_id, bug.scope))
    finally:
        await ws.remove()


async def reproduce(bug: AnalyzedBug, llm: Gateway, knobs: StageKnobs) -> Outcome:
    started = time.perf_counter()
    repo_dir = Path(bug.repo_dir)
    env = await knobs.environment(repo_dir, bug.report.repo)  # its failure ends the bug
    tests, example = await asyncio.to_thread(_repo_context, repo_dir)
    code = "\n\n".join(
        [f"# {header(c)}\n{await asyncio.to_thread(chunk_text, repo_dir, c)}"
         for c in bug.chunks[:SUSPECT_CHUNKS]]
    )  # fmt: skip
    usage = Totals()
    feedback = ""
    result = Reproduction(reproduced=False, reason="no attempt was made")
    for attempt in range(knobs.reproduce_attempts):
        try:
            answer = await llm.structured(
                ReproductionTest,
                prompt(bug, tests, example, code, feedback),
                purpose=STAGE,
                bug_id=bug.bug_id,
                max_tokens=1500,
                scope=bug.scope,
            )
        except LLMError as exc:
            result = Reproduction(reproduced=False, reason=f"{type(exc).__name__}: {exc}")
            break
        usage.add(answer.record)
        test = answer.value
        try:
            run = await _try(bug, test, knobs, f"{bug.bug_id}-repro-{attempt}", env)
        except EditRejectedError as exc:
            feedback = f"the test file was refused: {exc}"
            result = Reproduction(reproduced=False, test_path=test.path, reason=feedback)
            continue
        reason = judge(run, test.path)
        result = Reproduction(
            reproduced=reason is None,
            test_path=test.path,
            test_code=test.code,
            run=run,
            reason=reason or failure_line(run),
        )
        if reason is None:
            break
        feedback = f"{reason}\nOutput:\n{run.output[-OUTPUT_TAIL:]}"
    fact = (
        f"Reproduced by {result.test_path}: {result.reason}"
        if result.reproduced
        else f"Not reproduced: {result.reason[:300]}"
    )
    summary = revise(bug.bug_id, STAGE, 2, bug.summary or "", [fact])
    meta = stage_meta(STAGE, time.perf_counter() - started, usage)
    output = ReproducedBug(
        bug_id=bug.bug_id, meta=meta, analyzed=bug, reproduction=result, summary=summary.text
    )
    return Outcome(
        output=output,
        summary=summary,
        usage=usage,
        note="" if result.reproduced else "not reproduced",
    )
