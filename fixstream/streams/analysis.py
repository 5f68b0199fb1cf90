"""Stage 1, analysis: parse the report, find the suspect files, cut them into chunks.

Mostly a regular program, no tokens spent: stack traces, file:line references, exception
types, deduplicated and truncated logs, then candidate files ranked and chunked on
definition boundaries under a token budget. Then one call to the cheap model compresses the
report into the first progressive summary, which later stages read instead of the report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from fixstream.analysis.chunks import chunk_id, chunk_source
from fixstream.analysis.locate import LocatedFile, locate_files
from fixstream.analysis.logs import ParsedLog, identifiers, parse_log
from fixstream.analysis.related import refine
from fixstream.artifacts import ArtifactStore
from fixstream.cache import Cache, key_of, tags_of
from fixstream.errors import LLMError
from fixstream.llm import Gateway
from fixstream.llm.accounting import Totals
from fixstream.repos import resolve_repo, scope_of
from fixstream.schemas import (
    AnalyzedBug,
    BugReport,
    CallScope,
    CandidateFile,
    ChunkRef,
    Evidence,
    StackFrame,
    StageMeta,
)
from fixstream.streams.stage import Outcome, stage_meta
from fixstream.summaries import ReportSummary, render, report_prompt, summary_event
from fixstream.tokens import count_tokens

STAGE = "analysis"


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    store: ArtifactStore
    checkout_dir: Path
    chunk_budget: int = 800
    max_log_tokens: int = 4000
    max_files: int = 12
    max_chunks: int = 64
    inline_limit: int = 16_384
    cache: Cache | None = None


def _merge(parsed: list[ParsedLog]) -> ParsedLog:
    """One evidence set from several logs, keeping first-seen order and dropping repeats."""

    def unique(items):  # type: ignore[no-untyped-def]
        return tuple(dict.fromkeys(items))

    return ParsedLog(
        frames=unique(f for p in parsed for f in p.frames),
        exception_types=unique(t for p in parsed for t in p.exception_types),
        messages=unique(m for p in parsed for m in p.messages),
        file_refs=unique(r for p in parsed for r in p.file_refs),
        text="\n".join(p.text for p in parsed if p.text),
    )


def _prose(report: BugReport) -> str:
    return "\n".join([report.title, report.description, *(c.body for c in report.comments)])


def _parse(report: BugReport, logs: list[str], cfg: AnalysisConfig) -> tuple[ParsedLog, str]:
    """Evidence from the logs and the prose, merged, and the logs' excerpt."""
    parsed_logs = [parse_log(text, max_tokens=cfg.max_log_tokens) for text in logs]
    merged = _merge([*parsed_logs, parse_log(_prose(report), max_tokens=cfg.max_log_tokens)])
    return merged, "\n".join(p.text for p in parsed_logs)


def _search(repo_dir: Path, merged: ParsedLog, prose: str, limit: int) -> list[LocatedFile]:
    return refine(repo_dir, locate_files(repo_dir, merged, prose, limit=limit), prose, limit=limit)


async def _located(
    report: BugReport, repo_dir: Path, merged: ParsedLog, scope: CallScope, cfg: AnalysisConfig
) -> list[LocatedFile]:
    """The repository search, or the same search's result on the same repository version."""
    prose = _prose(report)
    if cfg.cache is None:
        return await asyncio.to_thread(_search, repo_dir, merged, prose, cfg.max_files)
    key = key_of("search", scope.repo, scope.version, prose, repr(merged), cfg.max_files)
    cached = await cfg.cache.get("search", key)
    if cached is not None:
        return [LocatedFile(f["path"], f["reason"], f["score"], tuple(f["lines"]))
                for f in orjson.loads(cached)]  # fmt: skip
    located = await asyncio.to_thread(_search, repo_dir, merged, prose, cfg.max_files)
    value = orjson.dumps([dataclasses.asdict(f) for f in located])
    await cfg.cache.put(key, value, tags_of(report.bug_id, scope))
    return located


def _analyse_files(
    report: BugReport,
    repo_dir: Path,
    merged: ParsedLog,
    excerpt: str,
    located: list[LocatedFile],
    cfg: AnalysisConfig,
) -> tuple[Evidence, list[CandidateFile], list[ChunkRef]]:
    """The CPU- and file-bound part, run in a thread so the event loop stays free."""
    prose = _prose(report)
    chunks: list[ChunkRef] = []
    for found in located:
        if len(chunks) >= cfg.max_chunks:
            break
        source = (repo_dir / found.path).read_text(errors="replace")
        for piece in chunk_source(found.path, source, budget=cfg.chunk_budget):
            chunks.append(
                ChunkRef(
                    chunk_id=chunk_id(report.bug_id, piece.path, piece.start_line, piece.end_line),
                    path=piece.path,
                    start_line=piece.start_line,
                    end_line=piece.end_line,
                    tokens=piece.tokens,
                    symbol=piece.symbol,
                )
            )
    evidence = Evidence(
        exception_types=list(merged.exception_types),
        messages=list(merged.messages),
        frames=[
            StackFrame(path=f.path, line=f.line, function=f.function, language=f.language)
            for f in merged.frames
        ],
        file_refs=list(merged.file_refs),
        identifiers=identifiers(prose)[:50],
        log_excerpt=excerpt,
        log_tokens=count_tokens(excerpt),
    )
    candidates = [
        CandidateFile(path=f.path, reason=f.reason, score=f.score, lines=list(f.lines))
        for f in located
    ]
    return evidence, candidates, chunks[: cfg.max_chunks]


async def analyse(report: BugReport, cfg: AnalysisConfig) -> AnalyzedBug:
    """The analysed bug, with large inline artifacts moved to the store (claim check)."""
    started = time.perf_counter()
    repo_dir = await resolve_repo(report.repo, cfg.checkout_dir)
    artifacts = [
        await asyncio.to_thread(cfg.store.claim_check, a, cfg.inline_limit)
        for a in report.artifacts
    ]
    logs = [await cfg.store.text_of(a) for a in artifacts if a.kind == "log"]
    scope = await scope_of(report.repo, repo_dir, report.priority)
    merged, excerpt = await asyncio.to_thread(_parse, report, logs, cfg)
    located = await _located(report, repo_dir, merged, scope, cfg)
    evidence, candidates, chunks = await asyncio.to_thread(
        _analyse_files, report, repo_dir, merged, excerpt, located, cfg
    )
    return AnalyzedBug(
        bug_id=report.bug_id,
        meta=StageMeta(stage=STAGE, elapsed_ms=(time.perf_counter() - started) * 1000),
        report=report.model_copy(update={"artifacts": artifacts}),
        repo_dir=str(repo_dir),
        evidence=evidence,
        candidates=candidates,
        chunks=chunks,
        scope=scope,
    )


async def summarise(bug: AnalyzedBug, llm: Gateway) -> Outcome:
    """The first progressive summary, by the cheap model; a regular-program one if it fails.
    Its cost goes into the stage's meta, which the fix event's costs are added from."""
    started = time.perf_counter()
    usage = Totals()
    note = ""
    try:
        answer = await llm.structured(
            ReportSummary,
            report_prompt(bug),
            purpose="summary",
            bug_id=bug.bug_id,
            max_tokens=400,
            scope=bug.scope,
        )
        usage.add(answer.record)
        summary: ReportSummary | None = answer.value
    except LLMError as exc:
        summary = None
        note = f"summary from evidence only: {type(exc).__name__}: {exc}"
    text = render(bug, summary)
    meta = stage_meta(STAGE, bug.meta.elapsed_ms / 1000 + time.perf_counter() - started, usage)
    return Outcome(
        output=bug.model_copy(update={"summary": text, "meta": meta}),
        summary=summary_event(bug.bug_id, STAGE, 1, text),
        usage=usage,
        note=note,
    )
