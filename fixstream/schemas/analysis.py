"""What the analysis stage learns from a report: evidence, candidate files, chunks."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fixstream.schemas.base import Event, Part, StageMeta
from fixstream.schemas.report import BugReport, Priority


class StackFrame(Part):
    path: str
    line: int | None = None
    function: str | None = None
    language: str = "generic"


class Evidence(Part):
    """What a regular program (no tokens spent) extracts from logs, description and comments."""

    exception_types: list[str] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)
    frames: list[StackFrame] = Field(default_factory=list)
    file_refs: list[tuple[str, int | None]] = Field(default_factory=list)
    identifiers: list[str] = Field(default_factory=list)
    log_excerpt: str = ""
    log_tokens: int = 0


class CandidateFile(Part):
    path: str
    reason: Literal["stack-trace", "file-reference", "identifier", "keyword", "import"]
    score: float
    lines: list[int] = Field(default_factory=list)


class ChunkRef(Part):
    """A slice of one file at the commit under test; the text is read from the repo, not sent."""

    chunk_id: str
    path: str
    start_line: int = Field(ge=1)
    end_line: int = Field(ge=1)
    tokens: int = Field(ge=0)
    symbol: str | None = None


class CallScope(Part):
    """What every LLM call of a bug carries besides its prompt: the repository version the
    prompt was built from (cache keys include it) and the bug's priority."""

    repo: str = ""
    """The repository as the report names it (path or URL): ``cache clear --repo`` takes it."""
    version: str = ""
    """The commit, or a content hash of the files when the report names no commit."""
    priority: Priority = "interactive"


class AnalyzedBug(Event):
    """The report, analysed and cut into chunks: the input of every later stage."""

    schema_version: ClassVar[int] = 4

    bug_id: str
    meta: StageMeta
    report: BugReport
    repo_dir: str
    evidence: Evidence
    candidates: list[CandidateFile] = Field(default_factory=list)
    chunks: list[ChunkRef] = Field(default_factory=list)
    summary: str | None = None
    scope: CallScope = Field(default_factory=CallScope)
