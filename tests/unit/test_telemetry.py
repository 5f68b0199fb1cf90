"""Spans and metrics: whose work a call was comes from context, and spans reach the disk."""

from __future__ import annotations

import asyncio

from fixstream import telemetry
from fixstream.llm.accounting import CallRecord
from fixstream.telemetry import Telemetry, read_spans


def _record(**overrides) -> CallRecord:
    fields = dict(
        bug_id="b1", purpose="fix", model="gpt-4.1", tokens_in=100, tokens_out=20,
        estimated_in=100, cost_usd=0.0, latency_s=0.5, ttft_s=0.1, attempts=4, reasks=1,
        rate_limited=2,
    )  # fmt: skip
    return CallRecord(**(fields | overrides))


def _value(t: Telemetry, name: str, **labels: str) -> float:
    return t.registry.get_sample_value(name, labels) or 0.0


def test_a_call_counts_tokens_retries_reasks_and_429s():
    t = Telemetry()
    t.llm_call(_record())
    assert _value(t, "fixstream_llm_tokens_total", model="gpt-4.1", direction="out") == 20
    assert _value(t, "fixstream_llm_rate_limited_total", model="gpt-4.1") == 2
    # four attempts: the first, one re-ask, and two retries after 429s
    assert _value(t, "fixstream_llm_retries_total", model="gpt-4.1") == 2
    assert _value(t, "fixstream_llm_reasks_total", model="gpt-4.1") == 1


def test_cache_lookups_and_what_hits_saved_are_counted_per_cache():
    t = Telemetry()
    t.cache_lookup("llm", True)
    t.cache_lookup("llm", False)
    t.cache_lookup("tests", True)
    t.cache_saved("llm", 120, 1.5)
    assert _value(t, "fixstream_cache_lookups_total", cache="llm", result="hit") == 1
    assert _value(t, "fixstream_cache_lookups_total", cache="llm", result="miss") == 1
    assert _value(t, "fixstream_cache_lookups_total", cache="tests", result="hit") == 1
    assert _value(t, "fixstream_cache_saved_tokens_total", cache="llm") == 120
    assert _value(t, "fixstream_cache_saved_seconds_total", cache="llm") == 1.5


def test_in_flight_follows_begin_and_end_and_only_done_is_timed():
    t = Telemetry()
    t.stage_began("fix", "b1")
    t.stage_began("fix", "b1")  # a redelivery of the same bug is still one bug
    t.stage_began("fix", "b2")
    assert _value(t, "fixstream_bugs_in_flight", stage="fix") == 2
    t.stage_ended("fix", "b1", "done", 1.5)
    t.stage_ended("fix", "b2", "dead_lettered", 0.1)
    assert _value(t, "fixstream_bugs_in_flight", stage="fix") == 0
    assert _value(t, "fixstream_stage_seconds_count", stage="fix") == 1
    assert _value(t, "fixstream_stage_seconds_sum", stage="fix") == 1.5
    assert _value(t, "fixstream_stage_outcomes_total", stage="fix", outcome="dead_lettered") == 1


def test_spans_take_bug_and_stage_from_context_and_are_flushed_to_disk(tmp_path):
    t = Telemetry(trace_dir=tmp_path)

    async def work(bug: str, chunk: bool) -> None:
        telemetry.current_bug.set(bug)
        telemetry.current_stage.set("root_cause")
        if chunk:
            with t.chunk_call():
                assert _value(t, "fixstream_chunk_calls_in_flight") >= 1
                t.llm_call(_record(bug_id=bug))
        else:
            t.test_run("tests/test_x.py", 0.25, passed=False, timed_out=False)

    async def main() -> None:
        await asyncio.gather(work("b1", True), work("b2", False))
        await t.flush()

    asyncio.run(main())
    spans = sorted(read_spans(tmp_path), key=lambda s: s["bug_id"])
    assert [(s["bug_id"], s["stage"], s["kind"]) for s in spans] == [
        ("b1", "root_cause", "chunk"),
        ("b2", "root_cause", "test"),
    ]
    assert abs((spans[0]["end"] - spans[0]["start"]) - 0.5) < 1e-6
    assert spans[1]["ok"] is False
    assert _value(t, "fixstream_chunk_calls_in_flight") == 0
    assert _value(t, "fixstream_test_runs_total", outcome="failed") == 1


def test_without_a_trace_dir_nothing_is_buffered():
    t = Telemetry()
    t.test_run("suite", 0.1, passed=True, timed_out=False)
    assert t._spans == []
    asyncio.run(t.flush())


def test_lag_is_end_minus_committed_never_negative():
    from faust.types import TP

    t = Telemetry()
    t.lag({TP("fixes", 0): 10, TP("fixes", 1): 3}, {TP("fixes", 0): 4, TP("fixes", 1): 5})
    assert _value(t, "fixstream_consumer_lag", topic="fixes", partition="0") == 6
    assert _value(t, "fixstream_consumer_lag", topic="fixes", partition="1") == 0
