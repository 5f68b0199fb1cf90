"""The arithmetic behind ``fixstream bench``'s figures, on hand-made inputs."""

from __future__ import annotations

import pytest

from fixstream.bench.sandboxcost import (
    PHASES,
    breakdown_figures,
    env_figures,
    overhead_figures,
)
from fixstream.bench.system import Batch, example_bugs
from fixstream.bench.workloads import (
    cache_figures,
    code_text,
    hops,
    overhead,
    print_report,
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


def test_w7_environments_cold_in_seconds_warm_in_milliseconds():
    lookups = [0.0004] * 98 + [0.002, 0.030]  # one slow lookup in a hundred
    figures = env_figures([1.0, 3.0, 2.0], lookups)
    assert figures["builds"] == 3 and figures["lookups"] == 100
    assert figures["cold_s_p50"] == 2.0 and figures["cold_s_max"] == 3.0
    assert figures["warm_ms_p50"] == pytest.approx(0.4)
    assert figures["warm_ms_p99"] == pytest.approx(30.0)  # nearest rank: the slowest of 100
    assert figures["cold_over_warm"] == pytest.approx(2000 / 0.4)
    assert not figures["warm_within_target"]  # the target is on p99: 30 ms > 10 ms
    assert env_figures([1.0], [0.001] * 100)["warm_within_target"]
    assert env_figures([], [])["warm_within_target"] is False


def test_w7_overhead_is_sandboxed_p50_minus_bare_p50():
    bare = [0.010 + i / 1000 for i in range(10)]  # 10..19 ms
    boxed = [0.030 + i / 1000 for i in range(10)]  # 30..39 ms
    figures = overhead_figures(bare, boxed)
    assert figures["runs"] == 10
    assert figures["bare_ms_p50"] == pytest.approx(15)
    assert figures["sandboxed_ms_p50"] == pytest.approx(35)
    assert figures["bare_ms_p99"] == pytest.approx(19)
    assert figures["sandboxed_ms_p99"] == pytest.approx(39)
    assert figures["overhead_ms_p50"] == pytest.approx(20)
    assert figures["overhead_share"] == pytest.approx(20 / 15)
    assert figures["within_target"]
    assert not overhead_figures(bare, [b + 0.060 for b in bare])["within_target"]


def _trace(at: float, copy: float) -> dict[str, float]:
    """Timestamps of one run: each phase 1 ms longer than the one before, the copy extra."""
    t, stamps = at, {"start": at}
    for n, (_name, _a, b) in enumerate(PHASES, 1):
        t += n / 1000 + (copy if b == "command" else 0)
        stamps[b] = t
    return stamps


def test_w7_breakdown_splits_bwrap_from_the_workspace_copy():
    full = [_trace(100.0 * i, copy=0.005) for i in range(5)]
    no_copy = [_trace(100.0 * i, copy=0.0) for i in range(5)]
    figures = breakdown_figures(full, no_copy, [0.002] * 5)
    phases = figures["phases_ms_p50"]
    assert list(phases) == [
        "cgroup_create", "command_line", "fork", "cgroup_join", "jail", "bwrap_setup",
        "workspace_copy", "teardown", "cgroup_close",
    ]  # fmt: skip
    assert phases["cgroup_create"] == pytest.approx(1)
    assert phases["cgroup_join"] == pytest.approx(4)
    assert phases["bwrap_setup"] == pytest.approx(6)
    assert phases["workspace_copy"] == pytest.approx(5)
    assert phases["cgroup_close"] == pytest.approx(8)
    assert figures["total_ms_p50"] == pytest.approx(sum(range(1, 9)) + 5)
    assert figures["overhead_ms_p50"] == pytest.approx(figures["total_ms_p50"] - 2)
    assert figures["largest"] == "cgroup_close"
    assert sum(phases.values()) == pytest.approx(figures["total_ms_p50"])


def test_w7_rows_are_printed_with_their_targets():
    from rich.console import Console

    runs = overhead_figures([0.010] * 3, [0.030] * 3) | {"command": "python -c pass"}
    trace = [_trace(0.0, 0.003)]
    results = {
        "time_scale": 0.05, "pipeline_time_scale": 0.5, "bench_seconds": 3.0,
        "W7": {
            "isolation": "bwrap+cgroup", "packages_from": "/wheels (offline)",
            "environments": env_figures([0.8, 0.9], [0.0005] * 10),
            "sandbox_example": "long_log",
            "sandbox": {"trivial": runs, "pytest": runs | {"command": "python -m pytest -q"}},
            "breakdown": breakdown_figures(trace, trace, [0.002]),
        },
    }  # fmt: skip
    console = Console(record=True, width=200)
    print_report(results, console)
    text = console.export_text()
    assert "W7 environments" in text and "W7 sandbox (bwrap+cgroup)" in text
    assert "p99 <= 10 ms" in text and "p50 <= 50 ms" in text
    assert "pytest (long_log)" in text and "wheelhouse, offline" in text
    assert "LLM SIMULATOR" not in text  # W7 alone runs no simulator
