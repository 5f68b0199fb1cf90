"""Stage 3, root cause: scatter one "is this chunk implicated?" call per chunk, gather, rank.

Each call sees one chunk and the summary, never the whole repository: short prompts, all in
parallel across workers. Ranking and the root-cause statement are a regular program.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fixstream.answers import ChunkVerdict
from fixstream.chunktext import chunk_text, header
from fixstream.llm.accounting import Totals, cost_usd
from fixstream.llm.gateway import Gateway
from fixstream.schemas import (
    ChunkResult,
    ChunkTask,
    ReproducedBug,
    RootCausedBug,
    StageMeta,
    Suspect,
)
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.scatter import ScatterGather
from fixstream.streams.stage import Outcome, stage_meta
from fixstream.summaries import revise

STAGE = "root_cause"
FAILURE_TAIL = 1500


def chunk_prompt(bug: ReproducedBug, where: str, code: str) -> list[dict[str, str]]:
    run = bug.reproduction.run
    failing = ""
    if bug.reproduction.reproduced and run is not None:
        failing = f"FAILING TEST {bug.reproduction.test_path}:\n{run.output[-FAILURE_TAIL:]}"
    parts = [
        "TASK: root-cause one chunk",
        f"BUG SUMMARY:\n{bug.summary}",
        failing,
        f"CHUNK {where}:\n{code}",
        "Is the bug in this chunk? Answer implicated, a score from 0 to 1, and why.",
    ]
    return [{"role": "user", "content": "\n\n".join(p for p in parts if p)}]


def usage_of(results: list[ChunkResult], llm: Gateway, purpose: str) -> Totals:
    """Tokens and dollars of a gather's calls (they were made by other workers)."""
    totals = Totals()
    model = llm.model_for(purpose)
    for r in results:
        totals.calls += 1
        totals.tokens_in += r.tokens_in
        totals.tokens_out += r.tokens_out
        totals.cost_usd += cost_usd(llm.config.prices, model, r.tokens_in, r.tokens_out)
    return totals


async def scatter(bug: ReproducedBug, sg: ScatterGather, knobs: StageKnobs) -> Outcome | None:
    chunks = bug.analyzed.chunks[: knobs.root_cause_chunks]
    if not chunks:
        output = RootCausedBug(
            bug_id=bug.bug_id,
            meta=StageMeta(stage=STAGE),
            reproduced=bug,
            root_cause="no candidate code was found",
            summary=bug.summary,
        )
        return Outcome(output=output, note="no chunks to examine")
    repo_dir = Path(bug.analyzed.repo_dir)
    tasks = [
        ChunkTask(
            task_id=f"{STAGE}:{chunk.chunk_id}",
            bug_id=bug.bug_id,
            stage=STAGE,
            chunk=chunk,
            fan_out=len(chunks),
            purpose=STAGE,
            answer_schema=ChunkVerdict.__name__,
            prompt=chunk_prompt(
                bug,
                header(chunk),
                await asyncio.to_thread(chunk_text, repo_dir, chunk, numbered=True),
            ),
            max_tokens=300,
            scope=bug.analyzed.scope,
        )
        for chunk in chunks
    ]
    await sg.scatter(STAGE, bug, tasks)
    return None


def rank(bug: ReproducedBug, results: list[ChunkResult], knobs: StageKnobs) -> list[Suspect]:
    """Implicated chunks above the threshold, best first; at least the single best guess."""
    chunks = {c.chunk_id: c for c in bug.analyzed.chunks}
    scored = []
    for r in results:
        if r.ok and r.chunk_id in chunks:
            verdict = ChunkVerdict.model_validate(r.output)
            scored.append((verdict.implicated, verdict.score, verdict, chunks[r.chunk_id]))
    scored.sort(key=lambda s: (s[0], s[1]), reverse=True)  # stable: ties keep chunk order
    picked = [s for s in scored if s[0] and s[1] >= knobs.suspect_threshold][: knobs.fix_suspects]
    picked = picked or scored[:1]
    return [Suspect(chunk=chunk, score=score, why=v.why) for _, score, v, chunk in picked]


async def finish(
    bug: ReproducedBug,
    results: list[ChunkResult],
    complete: bool,
    elapsed_s: float,
    llm: Gateway,
    knobs: StageKnobs,
) -> Outcome:
    suspects = rank(bug, results, knobs)
    failed = sum(1 for r in results if not r.ok)
    notes = []
    if not complete:
        expected = min(len(bug.analyzed.chunks), knobs.root_cause_chunks)
        notes.append(f"deadline: gathered {len(results)} of {expected} chunks")
    if failed:
        notes.append(f"{failed} chunk calls failed")
    root_cause = "; ".join(f"{header(s.chunk)}: {s.why}" for s in suspects) or "unknown"
    usage = usage_of(results, llm, STAGE)
    summary = revise(bug.bug_id, STAGE, 3, bug.summary, [f"Root cause: {root_cause}"])
    meta = stage_meta(STAGE, elapsed_s, usage)
    output = RootCausedBug(
        bug_id=bug.bug_id,
        meta=meta,
        reproduced=bug,
        suspects=suspects,
        root_cause=root_cause,
        summary=summary.text,
    )
    return Outcome(output=output, summary=summary, usage=usage, note="; ".join(notes))
