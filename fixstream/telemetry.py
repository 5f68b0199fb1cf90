"""What a worker is doing, for operators and for the benchmark: Prometheus metrics and spans.

Metrics are served on the Faust web server's ``/metrics``, next to Faust's own. Spans (one
JSON line per stage run, LLM call, chunk call and test run) go to a file per worker when a
trace directory is set; ``fixstream bench`` builds its timelines and overhead figures from
them. Whose work a call or a test run is comes from context variables set where a message
is taken up, so the gateway and the sandbox need not be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:  # the gateway reports to telemetry; telemetry needs no gateway
    from fixstream.llm.accounting import CallRecord

WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"
current_bug: ContextVar[str | None] = ContextVar("fixstream_bug", default=None)
current_stage: ContextVar[str] = ContextVar("fixstream_stage", default="")
in_chunk: ContextVar[bool] = ContextVar("fixstream_in_chunk", default=False)
progress: ContextVar[Callable[[str], Awaitable[None]] | None] = ContextVar(
    "fixstream_progress", default=None
)
"""Set where a message is taken up: a stage's core reports a step (an environment build) as
a ``progress`` status event without knowing topics."""


async def report_progress(message: str) -> None:
    reporter = progress.get()
    if reporter is not None:
        await reporter(message)


SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """fixstream's own series; Faust's (messages, commits, offsets) sit beside them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def make(kind: type, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
            return kind(f"fixstream_{name}", doc, labels, registry=registry, **kw)

        self.stage_seconds = make(
            Histogram, "stage_seconds", "Time from taking a bug up to its hand-off, per stage",
            ("stage",), buckets=SECONDS,
        )  # fmt: skip
        self.stage_outcomes = make(
            Counter, "stage_outcomes", "Stage runs by outcome", ("stage", "outcome")
        )
        self.bugs_in_flight = make(
            Gauge, "bugs_in_flight", "Bugs taken up by a stage and not yet handed on", ("stage",)
        )
        self.chunk_calls_in_flight = make(
            Gauge, "chunk_calls_in_flight", "Scatter-gather chunk calls running in this worker"
        )
        self.llm_calls = make(Counter, "llm_calls", "LLM calls answered", ("model", "purpose"))
        self.llm_tokens = make(
            Counter, "llm_tokens", "LLM tokens; rate() gives tokens/s", ("model", "direction")
        )
        self.llm_seconds = make(
            Histogram, "llm_call_seconds", "LLM call latency, retries included", ("purpose",),
            buckets=SECONDS,
        )  # fmt: skip
        self.llm_rate_limited = make(Counter, "llm_rate_limited", "429 answers", ("model",))
        self.llm_retries = make(Counter, "llm_retries", "Attempts beyond the first", ("model",))
        self.llm_reasks = make(Counter, "llm_reasks", "Re-asks after invalid output", ("model",))
        self.cache = make(Counter, "cache_lookups", "Cache lookups", ("cache", "result"))
        self.cache_tokens = make(
            Counter, "cache_saved_tokens", "LLM tokens a cache hit spared", ("cache",)
        )
        self.cache_seconds = make(
            Counter, "cache_saved_seconds", "Seconds a cache hit spared", ("cache",)
        )
        self.test_runs = make(Counter, "test_runs", "Sandboxed test runs", ("outcome",))
        self.test_seconds = make(
            Histogram, "test_run_seconds", "Sandboxed test run time", buckets=SECONDS
        )
        self.consumer_lag = make(
            Gauge, "consumer_lag", "End offset minus committed offset", ("topic", "partition")
        )


class Telemetry:
    """Metrics always; spans only with a trace directory. One per worker process."""

    def __init__(
        self, registry: CollectorRegistry | None = None, trace_dir: Path | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.trace_file = trace_dir / f"{WORKER_ID}.jsonl" if trace_dir else None
        self._spans: list[bytes] = []
        self._open: set[tuple[str, str]] = set()

    def span(
        self, kind: str, name: str, start: float, end: float, *, ok: bool = True,
        tokens_in: int = 0, tokens_out: int = 0, bug_id: str | None = None,
        stage: str | None = None, cached: bool = False,
    ) -> None:  # fmt: skip
        """Wall-clock seconds, so spans from several workers line up."""
        if self.trace_file is None:
            return
        record = {
            "bug_id": bug_id if bug_id is not None else current_bug.get(),
            "stage": stage if stage is not None else current_stage.get(),
            "kind": kind, "name": name, "start": start, "end": end, "worker": WORKER_ID,
            "ok": ok, "tokens_in": tokens_in, "tokens_out": tokens_out, "cached": cached,
        }  # fmt: skip
        self._spans.append(orjson.dumps(record))

    def stage_began(self, stage: str, bug_id: str) -> None:
        if (stage, bug_id) not in self._open:
            self.metrics.bugs_in_flight.labels(stage).inc()
            self._open.add((stage, bug_id))

    def stage_ended(self, stage: str, bug_id: str, outcome: str, elapsed_s: float) -> None:
        """``elapsed_s`` from the stage itself: a gather may finish on another worker."""
        if (stage, bug_id) in self._open:
            self._open.discard((stage, bug_id))
            self.metrics.bugs_in_flight.labels(stage).dec()
        self.metrics.stage_outcomes.labels(stage, outcome).inc()
        if outcome == "done":
            self.metrics.stage_seconds.labels(stage).observe(elapsed_s)
        end = time.time()
        self.span("stage", outcome, end - elapsed_s, end, ok=outcome == "done",
                  bug_id=bug_id, stage=stage)  # fmt: skip

    @contextlib.contextmanager
    def chunk_call(self) -> Iterator[None]:
        self.metrics.chunk_calls_in_flight.inc()
        token = in_chunk.set(True)
        try:
            yield
        finally:
            in_chunk.reset(token)
            self.metrics.chunk_calls_in_flight.dec()

    def llm_call(self, record: CallRecord) -> None:
        m = self.metrics
        m.llm_calls.labels(record.model, record.purpose).inc()
        m.llm_tokens.labels(record.model, "in").inc(record.tokens_in)
        m.llm_tokens.labels(record.model, "out").inc(record.tokens_out)
        m.llm_seconds.labels(record.purpose).observe(record.latency_s)
        m.llm_rate_limited.labels(record.model).inc(record.rate_limited)
        m.llm_retries.labels(record.model).inc(max(0, record.attempts - 1 - record.reasks))
        m.llm_reasks.labels(record.model).inc(record.reasks)
        end = time.time()
        kind = "chunk" if in_chunk.get() else "llm"
        self.span(kind, record.purpose, end - record.latency_s, end, bug_id=record.bug_id,
                  tokens_in=record.tokens_in, tokens_out=record.tokens_out,
                  cached=record.cache_hit)  # fmt: skip

    def cache_lookup(self, cache: str, hit: bool) -> None:
        self.metrics.cache.labels(cache, "hit" if hit else "miss").inc()

    def cache_saved(self, cache: str, tokens: int, seconds: float) -> None:
        self.metrics.cache_tokens.labels(cache).inc(tokens)
        self.metrics.cache_seconds.labels(cache).inc(max(0.0, seconds))

    def test_run(self, name: str, seconds: float, passed: bool, timed_out: bool) -> None:
        outcome = "timed_out" if timed_out else "passed" if passed else "failed"
        self.metrics.test_runs.labels(outcome).inc()
        self.metrics.test_seconds.observe(seconds)
        end = time.time()
        self.span("test", name, end - seconds, end, ok=passed)

    def lag(self, end_offsets: dict[Any, int], committed: dict[Any, int]) -> None:
        """From Faust's monitor: what is written but not yet committed, per partition."""
        for tp, end in end_offsets.items():
            done = committed.get(tp, 0)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - done))

    async def flush(self) -> None:
        """Append buffered spans to the trace file, off the event loop."""
        if self.trace_file is None or not self._spans:
            return
        lines, self._spans = self._spans, []
        await asyncio.to_thread(_append, self.trace_file, lines)


def _append(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(b"\n".join(lines) + b"\n")


_active = Telemetry()


def install(telemetry: Telemetry) -> Telemetry:
    """Make ``telemetry`` the process's (one worker per process)."""
    global _active
    _active = telemetry
    return telemetry


def active() -> Telemetry:
    return _active


def read_spans(trace_dir: Path) -> list[dict[str, Any]]:
    """Every span every worker wrote under ``trace_dir``."""
    spans: list[dict[str, Any]] = []
    for path in sorted(trace_dir.glob("*.jsonl")):
        spans += [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return spans
