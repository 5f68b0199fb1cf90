"""Hand-offs of the later stages (reproduce, root cause, fix, validate) and the fix event."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fixstream.schemas.analysis import AnalyzedBug, CallScope, ChunkRef
from fixstream.schemas.base import Event, Part, StageMeta
from fixstream.schemas.report import RepoRef


class TestRun(Part):
    """One sandboxed test run: what ran, how it ended, and its (truncated) output."""

    __test__ = False  # not a pytest class

    command: list[str]
    exit_code: int | None
    timed_out: bool = False
    duration_ms: float = 0.0
    passed: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    output: str = ""
    cached: bool = False
    """An earlier run of the same command on the same workspace content, reused."""
    isolation: str = ""
    """What the run was isolated by: ``bwrap+cgroup``, ``bwrap``, ``container`` or ``unsafe``."""


class Reproduction(Part):
    reproduced: bool
    test_path: str | None = None
    test_code: str | None = None
    run: TestRun | None = None
    reason: str = ""


class ReproducedBug(Event):
    schema_version: ClassVar[int] = 4

    bug_id: str
    meta: StageMeta
    analyzed: AnalyzedBug
    reproduction: Reproduction
    summary: str = ""
    """The latest progressive summary: what the next stage puts in its prompts."""


class Suspect(Part):
    chunk: ChunkRef
    score: float = Field(ge=0.0, le=1.0)
    why: str = ""


class StageCost(Part):
    """What one run of a stage cost (``stage`` is "total" for a fix event's sum)."""

    stage: str
    attempt: int = 0
    elapsed_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    @classmethod
    def of(cls, meta: StageMeta, attempt: int | None = None) -> StageCost:
        return cls(
            stage=meta.stage, attempt=meta.attempt if attempt is None else attempt,
            elapsed_ms=meta.elapsed_ms, tokens_in=meta.tokens_in, tokens_out=meta.tokens_out,
            cost_usd=meta.cost_usd,
        )  # fmt: skip

    @classmethod
    def total(cls, costs: list[StageCost]) -> StageCost:
        return cls(
            stage="total", attempt=max((c.attempt for c in costs), default=0),
            elapsed_ms=sum(c.elapsed_ms for c in costs),
            tokens_in=sum(c.tokens_in for c in costs),
            tokens_out=sum(c.tokens_out for c in costs),
            cost_usd=round(sum(c.cost_usd for c in costs), 6),
        )  # fmt: skip


class RootCausedBug(Event):
    schema_version: ClassVar[int] = 4

    bug_id: str
    meta: StageMeta
    reproduced: ReproducedBug
    suspects: list[Suspect] = Field(default_factory=list)
    root_cause: str = ""
    summary: str = ""
    feedback: str = ""
    """Why the previous candidates failed validation, when validate sends a bug back."""
    failed_runs: list[TestRun] = Field(default_factory=list)
    spent: list[StageCost] = Field(default_factory=list)
    """What the earlier fix attempts and their validations cost (validate adds each attempt
    when it sends the bug back), so the fix event's costs add up over every attempt."""


class Edit(Part):
    """A search/replace edit on one file: the format the LLM answers in."""

    path: str
    search: str
    replace: str


class CandidatePatch(Part):
    candidate_id: str
    edits: list[Edit]
    diff: str = ""
    origin: str = ""
    """Which proposals it came from (merged, single, or the consistency pass)."""


class PatchedBug(Event):
    schema_version: ClassVar[int] = 4

    bug_id: str
    meta: StageMeta
    rootcaused: RootCausedBug
    candidates: list[CandidatePatch] = Field(default_factory=list)
    summary: str = ""
    notes: list[str] = Field(default_factory=list)


FixStatus = Literal["fixed", "not_reproduced_patched", "unverified", "failed"]


class FixEvent(Event):
    """Exactly one per bug: what downstream systems consume."""

    schema_version: ClassVar[int] = 4

    bug_id: str
    meta: StageMeta
    status: FixStatus
    reason: str = ""
    patch: str = ""
    test_code: str | None = None
    test_runs: list[TestRun] = Field(default_factory=list)
    stages: list[StageCost] = Field(default_factory=list)
    """Every stage run, every fix attempt included."""
    total: StageCost = Field(default_factory=lambda: StageCost(stage="total"))
    """The sum of ``stages``: the bug's whole time, tokens and cost."""
    repo: RepoRef | None = None
    """The repository the patch applies to (url or path, and commit); None when the report
    could not be read."""
    test_path: str | None = None
    """Where ``test_code`` goes in the repository."""


class ChunkTask(Event):
    """One LLM call of a scatter: keyed by chunk id so one bug's chunks spread over partitions.

    The prompt travels whole, so a chunk worker needs no repository: any worker can take it.
    """

    schema_version: ClassVar[int] = 2

    task_id: str
    bug_id: str
    stage: str
    chunk: ChunkRef
    fan_out: int = Field(ge=1)
    attempt: int = 0
    purpose: str
    answer_schema: str
    prompt: list[dict[str, str]]
    max_tokens: int = 800
    scope: CallScope = Field(default_factory=CallScope)


class ChunkResult(Event):
    """One gathered answer, keyed by bug id so a bug's results meet in one partition."""

    schema_version: ClassVar[int] = 2

    task_id: str
    bug_id: str
    stage: str
    attempt: int = 0
    """The task's attempt: the gather it belongs to (validate's retries gather anew)."""
    chunk_id: str
    fan_out: int = Field(ge=1)
    ok: bool
    output: dict[str, object] = Field(default_factory=dict)
    error: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    worker: str = ""


class BugSummary(Event):
    """The progressive summary (compacted topic, key = bug id): each stage reads, then rewrites."""

    bug_id: str
    stage: str
    revision: int = Field(ge=0)
    text: str
    tokens: int = Field(ge=0)


StatusState = Literal["started", "done", "failed", "dead_lettered", "progress", "redriven"]
"""``redriven``: the watchdog published a stuck bug's last stage input again."""


class StatusEvent(Event):
    """Progress as it happens: what ``fixstream watch`` shows."""

    schema_version: ClassVar[int] = 3

    bug_id: str
    stage: str
    state: StatusState
    attempt: int = Field(default=0, ge=0)
    """The stage input's attempt (fix and validate count retries): a dead letter of a run
    that another run of the same (stage, attempt) already finished is a duplicate's."""
    message: str = ""
    elapsed_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    worker: str = ""
    source: str | None = None
    """Where the stage input a "started" stage began on sits: ``topic/partition/offset``
    (e.g. ``bugs.analyzed/2/17``), what the watchdog re-drives when the bug gets stuck."""
