"""The bug report as producers send it to ``bugs.reported``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from fixstream.schemas.base import Event, Part, utcnow

ArtifactKind = Literal["log", "screenshot", "file", "other"]

_NAME = r"[A-Za-z0-9_:@-]"  # a character of an id segment other than "." and "/"
_SEGMENT = rf"(?:{_NAME}[A-Za-z0-9._:@-]*|\.{_NAME}[A-Za-z0-9._:@-]*|\.\.[A-Za-z0-9._:@-]+)"
BUG_ID_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""Letters, digits and ``._:@-``, in ``/``-separated segments none of which is empty, ``.``
or ``..``: workspaces and artifacts are named after the bug, and ``..`` would step out of
their root. One regular expression, so the exported JSON Schema says exactly this."""

BugId = Annotated[str, Field(min_length=1, max_length=200, pattern=BUG_ID_PATTERN)]
_BUG_ID: TypeAdapter[str] = TypeAdapter(BugId)


def is_bug_id(text: str) -> bool:
    try:
        _BUG_ID.validate_python(text)
    except ValidationError:
        return False
    return True


def _schema_says(**keywords: Any) -> ConfigDict:
    """A model validator's rule, said in the exported JSON Schema too (``oneOf``, ``anyOf``),
    so what the schema accepts is what the worker accepts."""
    return ConfigDict(json_schema_extra=keywords)


class Artifact(Part):
    """A log, screenshot or file attached to a report.

    Small text travels inline in ``content``; anything big travels by claim check
    (``uri`` + ``sha256``) so Kafka messages stay small.
    """

    model_config = _schema_says(oneOf=[
        {"properties": {"content": {"type": "string"}, "uri": {"type": "null"}},
         "required": ["content"]},
        {"properties": {"uri": {"type": "string"}, "sha256": {"type": "string"},
                        "content": {"type": "null"}},
         "required": ["uri", "sha256"]},
    ])  # fmt: skip

    name: str = Field(min_length=1, max_length=512)
    kind: ArtifactKind = "log"
    media_type: str = "text/plain"
    content: str | None = None
    uri: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _inline_or_claim_check(self) -> Artifact:
        if (self.content is None) == (self.uri is None):
            raise ValueError("an artifact has either inline content or a uri, not both or neither")
        if self.uri is not None and self.sha256 is None:
            raise ValueError("an artifact stored by uri needs its sha256")
        return self


class EnvironmentSpec(Part):
    """What the repository's own files cannot say about its test environment."""

    python: str | None = Field(default=None, max_length=64, pattern=r"^[0-9A-Za-z.+_-]+$")
    """A Python version for uv (``3.12``); None: the worker's own interpreter's."""
    extras: list[str] = Field(default_factory=list, max_length=32)
    """Extras of the project to install, beyond its test extras (test, tests, testing, dev)."""
    packages: list[str] = Field(default_factory=list, max_length=256)
    """More requirements, in pip's syntax (``pytest-asyncio``, ``foo==1.2``)."""
    install: list[list[str]] = Field(default_factory=list, max_length=16)
    """Commands run after the install, in the environment, with the network."""


class RepoRef(Part):
    """The repository to fix: a local path, or a git URL plus a commit."""

    model_config = _schema_says(anyOf=[
        {"properties": {"path": {"type": "string", "minLength": 1}}, "required": ["path"]},
        {"properties": {"url": {"type": "string", "minLength": 1}}, "required": ["url"]},
    ])  # fmt: skip

    path: str | None = None
    url: str | None = None
    commit: str | None = None
    test_command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "pytest", "-q"], min_length=1
    )
    environment: EnvironmentSpec | None = None
    """Built from the repository's dependency files; this adds what they cannot say."""

    @model_validator(mode="after")
    def _path_or_url(self) -> RepoRef:
        if not (self.path or self.url):
            raise ValueError("a repository needs a local path or a git url")
        return self


Priority = Literal["interactive", "batch"]
"""interactive: answers as fast as the model streams them. batch: the LLM calls go through
the Batch API (half the price at OpenAI, done within its completion window)."""


class Comment(Part):
    author: str = "unknown"
    body: str
    created_at: datetime | None = None


class BugReport(Event):
    """A bug as reported by a tracker, CI or an error monitor."""

    schema_version: ClassVar[int] = 4

    bug_id: BugId
    source: str = "unknown"
    title: str = Field(min_length=1, max_length=1000)
    description: str = ""
    comments: list[Comment] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    repo: RepoRef
    labels: list[str] = Field(default_factory=list)
    priority: Priority = "interactive"
    reported_at: datetime = Field(default_factory=utcnow)
