"""Fakes and event builders the stream unit tests share.

Imported by bare name (``from fakes import ...``), as other tests import ``conftest`` or a
sibling test module: with no ``__init__.py`` here, pytest's default ``prepend`` import mode
puts this directory on ``sys.path`` when it imports a test module from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fixstream.schemas import (
    AnalyzedBug,
    BugReport,
    Evidence,
    RepoRef,
    ReproducedBug,
    Reproduction,
    RootCausedBug,
    StageMeta,
)


class FakeTopic:
    """A Faust topic that keeps what is sent to it (in ``sent``) and acks it at once."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, key: str, value: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def report(bug_id: str = "b1") -> BugReport:
    """A bug report of ``bug_id`` in /tmp."""
    return BugReport(bug_id=bug_id, title="t", repo=RepoRef(path="/tmp"))


def rootcaused(attempt: int = 0) -> RootCausedBug:
    """Bug b1 through analysis, reproduce (not reproduced) and root cause, at ``attempt``."""
    analyzed = AnalyzedBug(
        bug_id="b1", meta=StageMeta(stage="analysis"), report=report(), repo_dir="/tmp",
        evidence=Evidence(),
    )  # fmt: skip
    reproduced = ReproducedBug(
        bug_id="b1", meta=StageMeta(stage="reproduce"), analyzed=analyzed,
        reproduction=Reproduction(reproduced=False),
    )  # fmt: skip
    return RootCausedBug(
        bug_id="b1", meta=StageMeta(stage="root_cause", attempt=attempt), reproduced=reproduced
    )


def retried(bug: RootCausedBug) -> RootCausedBug:
    """What validate sends back to fix when no candidate passed: the next attempt."""
    meta = bug.meta.model_copy(update={"attempt": bug.meta.attempt + 1})
    return bug.model_copy(update={"meta": meta, "feedback": "tests failed"})
