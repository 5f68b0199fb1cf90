"""Build bug reports for ``submit``: from a JSON file, or from flags and log files."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from fixstream.artifacts import ArtifactStore
from fixstream.schemas import Artifact, BugReport, RepoRef


def new_bug_id() -> str:
    return f"bug-{uuid.uuid4().hex[:12]}"


def report_from_file(
    path: Path,
    bug_id: str | None = None,
    *,
    store: ArtifactStore | None = None,
    inline_limit: int = 16_384,
) -> BugReport:
    """A report from JSON; a relative ``repo.path`` is taken relative to the file, and with a
    ``store`` artifacts over ``inline_limit`` bytes travel by claim check."""
    data = orjson.loads(path.read_bytes())
    repo = data.get("repo") or {}
    if repo.get("path") and not Path(repo["path"]).is_absolute():
        repo["path"] = str((path.parent / repo["path"]).resolve())
    if bug_id or "bug_id" not in data:
        data["bug_id"] = bug_id or new_bug_id()
    for artifact in data.get("artifacts", []):
        source = artifact.pop("file", None)
        if source is not None:
            artifact["content"] = (path.parent / source).read_text(errors="replace")
    report = BugReport.model_validate(data)
    if store is None:
        return report
    artifacts = [store.claim_check(a, inline_limit) for a in report.artifacts]
    return report.model_copy(update={"artifacts": artifacts})


def report_from_flags(
    *,
    repo: Path,
    title: str,
    description: str,
    logs: list[Path],
    test_command: list[str] | None,
    store: ArtifactStore,
    inline_limit: int,
    bug_id: str | None = None,
    source: str = "cli",
) -> BugReport:
    artifacts = [
        store.claim_check(
            Artifact(name=log.name, kind="log", content=log.read_text(errors="replace")),
            inline_limit,
        )
        for log in logs
    ]
    ref = RepoRef(path=str(repo.resolve()))
    if test_command:
        ref = ref.model_copy(update={"test_command": test_command})
    return BugReport(
        bug_id=bug_id or new_bug_id(),
        source=source,
        title=title,
        description=description,
        artifacts=artifacts,
        repo=ref,
    )
