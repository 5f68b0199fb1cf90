"""The arithmetic behind ``fixstream bench``'s figures, on hand-made inputs."""

from __future__ import annotations

import pytest

from fixstream.bench.soak import final_counts
from fixstream.bench.system import Batch, example_bugs
from fixstream.bench.workloads import (
    cache_figures,
    code_text,
    hops,
    overhead,
    split_evenly,
    union_length,
    window_usage,
)
from fixstream.tokens import count_tokens


def test_union_length_merges_overlaps_and_clips():
    assert union_length([(0, 2), (1, 3), (5, 6)], 0, 10) == 4
    assert union_length([(0, 2), (1, 3)], 1.5, 2.5) == 1
    assert union_length([], 0, 1) == 0
    assert union_length([(2, 3), (0, 10)], 0, 10) == 10  # a later start inside an earlier one


def _span(bug, kind, start, end, stage="fix"):
    return {"bug_id": bug, "kind": kind, "stage": stage, "start": start, "end": end}


def test_overhead_is_what_llm_calls_and_test_runs_do_not_cover():
    batch = Batch(submitted={"a": 0.0, "b": 0.0}, finished={"a": 10.0, "b": 4.0})
    spans = [
        _span("a", "llm", 1, 4),
        _span("a", "chunk", 3, 6),  # parallel calls are counted once
        _span("a", "test", 7, 9.5),
        _span("a", "stage", 0, 10),  # stage spans are not LLM or test time
        _span("b", "test", 0, 4),
        _span("other", "llm", 0, 10),
    ]
    assert sorted(overhead(batch, spans)) == [0.0, pytest.approx(10 - 5 - 2.5)]


def test_hops_are_gaps_between_stages_and_from_submission():
    batch = Batch(submitted={"a": 0.0}, finished={"a": 5.0})
    spans = [_span("a", "stage", 0.1, 1, "analysis"), _span("a", "stage", 1.25, 2, "reproduce")]
    assert hops(spans, batch) == [pytest.approx(0.1), pytest.approx(0.25)]


def test_window_usage_skips_warm_up_and_drain():
    # 100 tokens charged per second for 10 s, nothing after: with 2 s windows and a limit
    # of 250 per window, every whole window between warm-up and drain is 80% used
    samples = [(float(t), min(t, 10) * 100) for t in range(0, 15)]
    shares = window_usage(samples, window=2.0, limit=250)
    assert shares and all(s == pytest.approx(0.8) for s in shares)
    assert len(shares) == 4  # 2-4, 4-6, 6-8, 8-10
    assert window_usage(samples[:1], 2.0, 250) == []


def test_synthetic_code_hits_its_token_target_and_splits_evenly():
    text = code_text(10_000, seed=3)
    assert 9_000 < count_tokens(text) <= 10_500
    parts = split_evenly(text, 16)
    assert len(parts) == 16 and "".join(parts) == text
    sizes = [count_tokens(p) for p in parts]
    assert max(sizes) < 1.3 * min(sizes)


def test_example_bugs_cycle_through_the_examples_with_unique_ids():
    bugs = example_bugs(12, "t")
    assert len({b.bug_id for b in bugs}) == 12
    assert len({b.repo.path for b in bugs}) == 5


def test_cache_figures_count_semantic_hits_among_the_exact_misses():
    before = {"llm": {"hits": 10, "misses": 40}, "tests": {"hits": 0, "misses": 20}}
    after = {
        "llm": {"hits": 30, "misses": 50, "tokens_saved": 9000, "seconds_saved": 12.0},
        "semantic": {"hits": 4, "misses": 6, "tokens_saved": 1000, "seconds_saved": 2.0},
        "tests": {"hits": 15, "misses": 25, "seconds_saved": 7.5},
    }
    figures = cache_figures(before, after)
    assert figures["llm_calls"] == 30  # 20 exact hits + 10 misses, 4 of them semantic hits
    assert figures["llm_hit_rate"] == pytest.approx(24 / 30)
    assert figures["test_hit_rate"] == pytest.approx(15 / 20)
    assert figures["tokens_saved"] == 10_000 and figures["seconds_saved"] == pytest.approx(21.5)
    assert cache_figures({}, {})["llm_hit_rate"] == 0.0


def test_soak_counts_lost_duplicated_and_silent_failures():
    events = {
        "a": [{"status": "fixed", "reason": ""}],
        "b": [{"status": "failed", "reason": "RetryBudgetExhaustedError: gave up"}],
        "c": [{"status": "failed", "reason": ""}],
        "d": [{"status": "fixed", "reason": ""}, {"status": "fixed", "reason": ""}],
        "other": [{"status": "fixed", "reason": ""}],
    }
    counts = final_counts(events, {"a", "b", "c", "d", "e"})
    assert counts["submitted"] == 5 and counts["fixed"] == 2
    assert counts["failed_with_reason"] == 1 and counts["failed_silently"] == 1
    assert counts["lost"] == 1 and counts["duplicated"] == 1
    assert counts["reasons"][0][0] == "RetryBudgetExhaustedError"
