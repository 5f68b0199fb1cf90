"""Benchmark pictures: the numbers behind them are exact, and any trace draws a picture."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from fixstream.bench.pictures import (
    STAGES,
    concurrency_series,
    rate_series,
    throughput,
    timeline,
)

T0 = 1_700_000_000.0
BUGS = ("bug-a", "bug-b", "bug-c")


def _span(bug: str | None, stage: str, kind: str, start: float, end: float, out: int = 0) -> dict:
    return {
        "bug_id": bug,
        "stage": stage,
        "kind": kind,
        "name": f"{stage}-{kind}",
        "start": start,
        "end": end,
        "worker": "w1",
        "ok": True,
        "tokens_in": 100,
        "tokens_out": out,
    }


def _run() -> tuple[list[dict], dict[str, float], dict[str, float]]:
    """Three bugs 10 s apart, five 1 s stages each with one LLM call, a test run in validate,
    and four chunk calls at once in bug-a's root_cause (after its LLM call has ended)."""
    spans: list[dict] = []
    submitted: dict[str, float] = {}
    finished: dict[str, float] = {}
    for i, bug in enumerate(BUGS):
        t = T0 + 10 * i
        submitted[bug] = t
        for k, stage in enumerate(STAGES):
            s = t + 0.5 + k
            # stage tokens are totals of the calls inside: counting them would break the sums
            spans.append(_span(bug, stage, "stage", s, s + 1, out=999))
            spans.append(_span(bug, stage, "llm", s + 0.1, s + 0.3, out=30))
        spans.append(_span(bug, "validate", "test", t + 4.9, t + 5.4))
        finished[bug] = t + 6
    chunk_starts = [T0 + 2.85 + 0.01 * j for j in range(4)]
    spans += [_span("bug-a", "root_cause", "chunk", s, T0 + 3.4, out=50) for s in chunk_starts]
    return spans, submitted, finished


def _calls(spans: list[dict]) -> list[tuple[float, float]]:
    return [(s["start"], s["end"]) for s in spans if s["kind"] in ("llm", "chunk")]


def test_concurrency_series_is_an_exact_step_function():
    intervals = [(0.0, 2.0), (1.0, 3.0), (3.0, 4.0), (5.0, 5.0)]
    # one ending at 3 as another starts is no change; the zero-length one is never open
    assert concurrency_series(intervals, 0.0) == ([0.0, 1.0, 2.0, 4.0], [1, 2, 1, 0])
    shifted = [(a + 100, b + 100) for a, b in intervals]
    assert concurrency_series(shifted, 100.0) == ([0.0, 1.0, 2.0, 4.0], [1, 2, 1, 0])
    assert concurrency_series([], 0.0) == ([], [])


def test_concurrency_series_sees_the_parallel_chunk_calls():
    spans, _, _ = _run()
    calls = _calls(spans)
    times, counts = concurrency_series(calls, T0)
    assert max(counts) == 4
    assert counts[-1] == 0
    # between change points the count is what a brute-force count says
    for (a, b), count in zip(pairwise(times), counts, strict=False):
        mid = T0 + (a + b) / 2
        assert count == sum(start <= mid < end for start, end in calls)


def test_rate_series_spreads_tokens_over_each_call():
    half_in_each = [_span("x", "fix", "llm", T0 + 0.25, T0 + 0.75, out=10)]
    assert rate_series(half_in_each, T0, 0.5) == ([0.0, 0.5], [10.0, 10.0])

    instant = [_span("x", "fix", "chunk", T0 + 1.2, T0 + 1.2, out=6)]
    assert rate_series(instant, T0, 0.5) == ([1.0], [12.0])

    early = [_span("x", "fix", "llm", T0 - 1.0, T0, out=8)]  # bins reach back before t0
    assert rate_series(early, T0, 1.0) == ([-1.0], [8.0])

    not_calls = [_span("x", "fix", kind, T0, T0 + 1, out=50) for kind in ("stage", "test")]
    assert rate_series(not_calls, T0, 0.5) == ([], [])


@pytest.mark.parametrize("bin_s", [0.05, 0.3, 1.0, 7.0])
def test_rate_series_conserves_tokens(bin_s: float):
    spans, _, _ = _run()
    total = sum(s["tokens_out"] for s in spans if s["kind"] in ("llm", "chunk"))
    assert total == 15 * 30 + 4 * 50
    starts, rates = rate_series(spans, T0, bin_s)
    assert sum(rate * bin_s for rate in rates) == pytest.approx(total, rel=1e-12)
    first = round(starts[0] / bin_s)  # bins sit on multiples of bin_s, one after another
    assert starts == pytest.approx([(first + i) * bin_s for i in range(len(starts))])
    assert rates[0] > 0 and rates[-1] > 0  # no empty bins before the first or after the last
    assert all(rate >= 0 for rate in rates)


def test_rate_series_needs_a_positive_bin():
    with pytest.raises(ValueError, match="bin_s"):
        rate_series([], T0, 0.0)


def _assert_pictures(paths: list[Path], out: Path) -> str:
    assert paths == [out.with_suffix(".png"), out.with_suffix(".svg")]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG")
    text = svg.read_text()
    assert "<svg" in text
    return text


def test_timeline_and_throughput_draw_a_run(tmp_path: Path):
    spans, submitted, finished = _run()
    out = tmp_path / "pictures" / "timeline"  # the folder does not exist yet
    svg = _assert_pictures(timeline(spans, submitted, finished, out, "three bugs"), out)
    assert "three bugs" in svg
    assert all(bug in svg for bug in BUGS)  # rows are labelled
    assert "root_cause" in svg  # the stage legend
    assert "4 chunk calls" in svg
    assert "no data" not in svg

    out = tmp_path / "throughput"
    svg = _assert_pictures(throughput(spans, submitted, finished, out, "three bugs"), out)
    assert "three bugs" in svg
    assert "peak 4)" in svg  # LLM calls in flight, the parallel chunk calls
    assert "650 tokens out" in svg
    assert "no data" not in svg


def test_rows_are_unlabelled_past_sixty_bugs(tmp_path: Path):
    submitted = {f"bug-{i:03d}": T0 + i for i in range(61)}
    spans = [_span(bug, "analysis", "stage", t, t + 2) for bug, t in submitted.items()]
    out = tmp_path / "many"
    svg = _assert_pictures(timeline(spans, submitted, {}, out, "many"), out)
    assert "61 bugs, by submit time" in svg
    assert "bug-000" not in svg

    del submitted["bug-060"]
    out = tmp_path / "sixty"
    svg = _assert_pictures(timeline(spans[:60], submitted, {}, out, "sixty"), out)
    assert "bug-000" in svg and "bug-059" in svg


def test_partial_traces_still_draw(tmp_path: Path):
    """Bugs seen only in spans, submitted but never started, or spans without a bug."""
    spans = [
        _span("only-spans", "fix", "stage", T0 + 1, T0 + 2),
        _span("only-spans", "fix", "chunk", T0 + 1, T0 + 1.5, out=5),
        _span(None, "", "llm", T0, T0 + 1, out=7),
    ]
    submitted = {"never-started": T0 + 0.5}
    for draw in (timeline, throughput):
        out = tmp_path / draw.__name__
        svg = _assert_pictures(draw(spans, submitted, {}, out, "partial"), out)
        assert "no data" not in svg
    assert "only-spans" in (tmp_path / "timeline.svg").read_text()


def test_empty_input_says_no_data(tmp_path: Path):
    for draw in (timeline, throughput):
        out = tmp_path / draw.__name__
        svg = _assert_pictures(draw([], {}, {}, out, "empty run"), out)
        assert "no data" in svg
        assert "empty run" in svg
