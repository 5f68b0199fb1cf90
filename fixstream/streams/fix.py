"""Stage 4, fix: scatter one edit proposal per suspect chunk; merge; resolve conflicts.

Proposals whose edits do not overlap are merged into one candidate (a bug spanning two files
needs both); every proposal is also a candidate of its own. Overlapping edits from different
proposals conflict, and one final consistency call resolves them into another candidate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fixstream.chunktext import chunk_text, header
from fixstream.errors import EditRejectedError, LLMError
from fixstream.llm.gateway import Gateway
from fixstream.sandbox.edits import EditProposal
from fixstream.sandbox.workspace import Workspace
from fixstream.schemas import (
    CandidatePatch,
    ChunkResult,
    ChunkTask,
    Edit,
    PatchedBug,
    RootCausedBug,
    StageMeta,
)
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.root_cause import usage_of
from fixstream.streams.scatter import ScatterGather
from fixstream.streams.stage import Outcome, stage_meta
from fixstream.summaries import revise

STAGE = "fix"


def chunk_prompt(bug: RootCausedBug, why: str, where: str, code: str) -> list[dict[str, str]]:
    repro = bug.reproduced.reproduction
    parts = [
        "TASK: fix one chunk",
        f"BUG SUMMARY:\n{bug.summary}",
        f"WHAT IS WRONG HERE: {why}",
        f"REPRODUCTION TEST {repro.test_path}:\n{repro.test_code}" if repro.reproduced else "",
        f"PREVIOUS CANDIDATE PATCHES FAILED VALIDATION:\n{bug.feedback}" if bug.feedback else "",
        f"CODE {where}:\n{code}",
        "Propose the smallest search/replace edits that fix the bug. Each search text must be "
        "copied exactly from the code above and occur once in its file.",
    ]
    return [{"role": "user", "content": "\n\n".join(p for p in parts if p)}]


async def scatter(bug: RootCausedBug, sg: ScatterGather, knobs: StageKnobs) -> Outcome | None:
    suspects = bug.suspects[: knobs.fix_suspects]
    attempt = bug.meta.attempt
    if not suspects:
        output = PatchedBug(
            bug_id=bug.bug_id,
            meta=StageMeta(stage=STAGE, attempt=attempt),
            rootcaused=bug,
            summary=bug.summary,
            notes=["no suspect code to fix"],
        )
        return Outcome(output=output, note="no suspects")
    repo_dir = Path(bug.reproduced.analyzed.repo_dir)
    tasks = [
        ChunkTask(
            task_id=f"{STAGE}:{s.chunk.chunk_id}:{attempt}",
            bug_id=bug.bug_id,
            stage=STAGE,
            chunk=s.chunk,
            fan_out=len(suspects),
            attempt=attempt,
            purpose=STAGE,
            answer_schema=EditProposal.__name__,
            prompt=chunk_prompt(
                bug, s.why, header(s.chunk), await asyncio.to_thread(chunk_text, repo_dir, s.chunk)
            ),
            max_tokens=1200,
            scope=bug.reproduced.analyzed.scope,
        )
        for s in suspects
    ]
    await sg.scatter(STAGE, bug, tasks)
    return None


def _spans(repo_dir: Path, edits: list[Edit]) -> list[tuple[str, int, int]]:
    """Where each edit's search text sits in the original file (unfound edits have no span).

    Paths come from the model: resolved like the sandbox does, so nothing outside the
    repository is ever read; validate refuses such edits with the reason.
    """
    spans = []
    repo = Workspace(repo_dir)
    for edit in edits:
        try:
            path = repo.resolve(edit.path)
        except EditRejectedError:
            continue
        text = path.read_text(errors="replace") if edit.search and path.is_file() else ""
        at = text.find(edit.search) if text else -1
        if at >= 0:
            spans.append((edit.path, at, at + len(edit.search)))
    return spans


def _overlap(a: list[tuple[str, int, int]], b: list[tuple[str, int, int]]) -> bool:
    return any(pa == pb and sa < eb and sb < ea for pa, sa, ea in a for pb, sb, eb in b)


def plan_candidates(
    repo_dir: Path, proposals: list[EditProposal], bug_id: str, attempt: int
) -> tuple[list[CandidatePatch], list[EditProposal]]:
    """Candidates (merged first, then each proposal) and the proposals that conflict."""
    unique: list[EditProposal] = []
    for p in proposals:
        if p.edits and all(p.edits != q.edits for q in unique):
            unique.append(p)
    spans = [_spans(repo_dir, p.edits) for p in unique]
    conflicting = {
        i for i in range(len(unique)) for j in range(len(unique))
        if i != j and _overlap(spans[i], spans[j])
    }  # fmt: skip
    candidates: list[CandidatePatch] = []
    mergeable = [p for i, p in enumerate(unique) if i not in conflicting]
    if len(mergeable) > 1:
        edits = [e for p in mergeable for e in p.edits]
        candidates.append(CandidatePatch(candidate_id="", edits=edits, origin="merged"))
    candidates += [
        CandidatePatch(candidate_id="", edits=p.edits, origin=f"proposal {i + 1}")
        for i, p in enumerate(unique)
    ]
    for n, c in enumerate(candidates):
        candidates[n] = c.model_copy(update={"candidate_id": f"{bug_id}:{attempt}:{n}"})
    return candidates, [unique[i] for i in sorted(conflicting)]


def consistency_prompt(bug: RootCausedBug, conflicting: list[EditProposal]) -> list:
    shown = "\n\n".join(
        f"PROPOSAL {i + 1} ({p.rationale}):\n" + "\n".join(
            f"--- {e.path}\nSEARCH:\n{e.search}\nREPLACE:\n{e.replace}" for e in p.edits
        )
        for i, p in enumerate(conflicting)
    )  # fmt: skip
    return [
        {
            "role": "user",
            "content": f"TASK: resolve conflicting edits\n\nBUG SUMMARY:\n{bug.summary}\n\n"
            f"These proposals edit the same code in different ways:\n\n{shown}\n\n"
            "Answer one consistent set of search/replace edits that fixes the bug.",
        }
    ]


async def finish(
    bug: RootCausedBug,
    results: list[ChunkResult],
    complete: bool,
    elapsed_s: float,
    llm: Gateway,
    knobs: StageKnobs,
) -> Outcome:
    repo_dir = Path(bug.reproduced.analyzed.repo_dir)
    attempt = bug.meta.attempt
    proposals = [EditProposal.model_validate(r.output) for r in results if r.ok]
    notes = [f"{r.chunk_id}: {r.error}" for r in results if not r.ok]
    if not complete:
        notes.append(f"deadline: {len(results)} of {len(bug.suspects)} proposals arrived")
    candidates, conflicting = await asyncio.to_thread(
        plan_candidates, repo_dir, proposals, bug.bug_id, attempt
    )
    usage = usage_of(results, llm, STAGE)
    if conflicting:
        try:
            answer = await llm.structured(
                EditProposal,
                consistency_prompt(bug, conflicting),
                purpose=STAGE,
                bug_id=bug.bug_id,
                max_tokens=1500,
                scope=bug.reproduced.analyzed.scope,
            )
            usage.add(answer.record)
            resolved = CandidatePatch(
                candidate_id=f"{bug.bug_id}:{attempt}:resolved",
                edits=answer.value.edits,
                origin="consistency pass",
            )
            candidates.insert(0, resolved)
        except LLMError as exc:
            notes.append(f"consistency pass failed: {exc}")
    summary = revise(
        bug.bug_id,
        STAGE,
        4 + attempt,
        bug.summary,
        [f"Fix attempt {attempt + 1}: {len(candidates)} candidate patch(es)"],
    )
    meta = stage_meta(STAGE, elapsed_s, usage, attempt)
    output = PatchedBug(
        bug_id=bug.bug_id,
        meta=meta,
        rootcaused=bug,
        candidates=candidates,
        summary=summary.text,
        notes=notes,
    )
    return Outcome(output=output, summary=summary, usage=usage, note="; ".join(notes)[:500])
