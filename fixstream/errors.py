"""The few ways fixstream fails, each saying whether a retry could help."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError


def describe_validation(exc: ValidationError, limit: int = 10) -> str:
    """``field.path: message; ...`` for the first ``limit`` errors: short and exact."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:limit]
    )


class FixstreamError(Exception):
    """Base class; ``retryable`` tells the dead-letter queue whether a replay may succeed."""

    retryable: bool = False


class UnknownNameError(FixstreamError, KeyError):
    """A name (topic, schema, profile) that is not registered; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind, self.name = kind, name
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")

    def __str__(self) -> str:
        return str(self.args[0])


class BrokerUnreachableError(FixstreamError):
    """No Kafka broker answered at the configured address."""

    retryable = True


class BadInputError(FixstreamError):
    """A message that can never be processed as sent: bad JSON, wrong schema, too large."""


class RepositoryNotFoundError(BadInputError):
    """The report names a repository this worker cannot find or fetch."""


class ArtifactError(BadInputError):
    """A claim-checked artifact is missing or its bytes do not match its sha256."""


class BrokerError(FixstreamError):
    """The broker could not be started, reached or configured."""

    retryable = True


class LLMError(FixstreamError):
    """An LLM call that did not produce a usable answer."""


class RateLimitedError(LLMError):
    """HTTP 429: wait ``retry_after`` seconds (when the server said) and try again."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientLLMError(LLMError):
    """5xx, timeouts, dropped connections: worth another attempt."""

    retryable = True


class PermanentLLMError(LLMError):
    """A 4xx that retrying cannot fix (bad request, auth, unknown model)."""


class InvalidOutputError(LLMError):
    """The model kept answering with output that fails the schema, after every re-ask."""

    retryable = True


class RetryBudgetExhaustedError(LLMError):
    """Every attempt failed; the last error is the cause."""

    retryable = True


class EditRejectedError(BadInputError):
    """An LLM-proposed edit that may not be applied: outside the workspace, absent or
    ambiguous search text, a binary file. The message says which and why."""


class SandboxUnavailableError(FixstreamError):
    """No isolation layer works here, so no test may run; the message says how to fix it.
    Retryable: once the machine is fixed, a replay runs the tests."""

    retryable = True


class SandboxBusyError(SandboxUnavailableError):
    """The kernel refused a namespace for now (EAGAIN: "Resource temporarily unavailable",
    seen when many sandboxes start and end at once): the run is tried again shortly."""


class EnvironmentBuildError(FixstreamError):
    """The repository's environment could not be built; the message is the installer's own
    reason. Retryable: an index that was down may be back."""

    retryable = True
