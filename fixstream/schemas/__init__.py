"""Every event on every topic, registered by name."""

from __future__ import annotations

from fixstream.errors import UnknownNameError
from fixstream.schemas.analysis import (
    AnalyzedBug,
    CallScope,
    CandidateFile,
    ChunkRef,
    Evidence,
    StackFrame,
)
from fixstream.schemas.base import Event, StageMeta
from fixstream.schemas.deadletter import DeadLetter
from fixstream.schemas.pipeline import (
    BugSummary,
    CandidatePatch,
    ChunkResult,
    ChunkTask,
    Edit,
    FixEvent,
    PatchedBug,
    ReproducedBug,
    Reproduction,
    RootCausedBug,
    StageCost,
    StatusEvent,
    Suspect,
    TestRun,
)
from fixstream.schemas.report import Artifact, BugReport, Comment, EnvironmentSpec, RepoRef

EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        BugReport,
        AnalyzedBug,
        ReproducedBug,
        RootCausedBug,
        PatchedBug,
        FixEvent,
        ChunkTask,
        ChunkResult,
        BugSummary,
        StatusEvent,
        DeadLetter,
    )
}


def event_type(name: str) -> type[Event]:
    """The event class called ``name``; an unknown name lists the known ones."""
    try:
        return EVENTS[name]
    except KeyError:
        raise UnknownNameError("event schema", name, EVENTS) from None


__all__ = [
    "EVENTS",
    "AnalyzedBug",
    "Artifact",
    "BugReport",
    "BugSummary",
    "CallScope",
    "CandidateFile",
    "CandidatePatch",
    "ChunkRef",
    "ChunkResult",
    "ChunkTask",
    "Comment",
    "DeadLetter",
    "Edit",
    "EnvironmentSpec",
    "Event",
    "Evidence",
    "FixEvent",
    "PatchedBug",
    "RepoRef",
    "ReproducedBug",
    "Reproduction",
    "RootCausedBug",
    "StackFrame",
    "StageCost",
    "StageMeta",
    "StatusEvent",
    "Suspect",
    "TestRun",
    "event_type",
]
