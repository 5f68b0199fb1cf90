"""Pictures of a benchmark run: where each bug spent its time, and how busy the pipeline was.

Input is a run's trace: spans (dicts, one JSON object per line in the trace file) with `bug_id`,
`stage`, `kind` ("stage", "llm", "chunk" or "test"), `name`, `start`, `end` (epoch seconds),
`worker`, `ok`, `tokens_in` and `tokens_out`, plus when each bug was submitted and finished.

Everything is drawn on a bare `Figure` with an Agg canvas, never pyplot, so drawing leaves no
global state behind and is safe from any thread. The numeric helpers (`concurrency_series`,
`rate_series`) are kept separate and exact so tests can check the numbers the pictures show.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

Span = Mapping[str, Any]

STAGES = ("analysis", "reproduce", "root_cause", "fix", "validate")
STAGE_COLOURS = {
    "analysis": "#4c72b0",
    "reproduce": "#dd8452",
    "root_cause": "#55a868",
    "fix": "#c44e52",
    "validate": "#8172b3",
}
OTHER_STAGE_COLOUR = "#b0b0b0"  # "" or a stage name this module does not know yet
CALL_COLOURS = {"llm": "#222222", "chunk": "#1f9bb4", "test": "#f2c12e"}
CALL_KINDS = ("llm", "chunk")  # what counts as an LLM call: tokens and calls in flight
LANE_KINDS = ("llm", "chunk", "test")  # drawn in the lower band of a bug's row
FAILED_EDGE = "#d62728"
MAX_LABELLED_ROWS = 60  # more rows than this and the labels would overlap
MAX_FIGURE_HEIGHT_IN = 32.0
PNG_DPI = 110

# a row i spans [i - 0.5, i + 0.5] with the y axis inverted: stages on top, calls underneath,
# and the bug's lifetime line in the gap between them at y = i
STAGE_BAND = (-0.44, -0.02)
CALL_BAND = (0.04, 0.46)


def concurrency_series(
    intervals: Iterable[tuple[float, float]], t0: float
) -> tuple[list[float], list[int]]:
    """How many intervals are open, as a step function: at each time (relative to `t0`) where
    the count changes, the count from then on.

    Intervals are half-open, so one ending exactly when another starts is not an overlap, and
    an interval with `end <= start` is never open.
    """
    deltas: dict[float, int] = {}
    for start, end in intervals:
        if end <= start:
            continue
        deltas[start] = deltas.get(start, 0) + 1
        deltas[end] = deltas.get(end, 0) - 1
    times: list[float] = []
    counts: list[int] = []
    open_now = 0
    for t in sorted(deltas):
        if deltas[t] == 0:  # as many ended as started: no change to show
            continue
        open_now += deltas[t]
        times.append(t - t0)
        counts.append(open_now)
    return times, counts


def rate_series(spans: Iterable[Span], t0: float, bin_s: float) -> tuple[list[float], list[float]]:
    """Output tokens per second of LLM calls (`llm` and `chunk` spans), in bins of `bin_s`.

    Returns each bin's start (relative to `t0`, on multiples of `bin_s`) and its rate. A span's
    `tokens_out` are spread evenly over its duration and every token lands in some bin, so
    `sum(rate) * bin_s` is the total. Stage spans are left out, since their tokens (if any) are
    totals of the calls inside them and would count twice.
    """
    if bin_s <= 0:
        raise ValueError(f"bin_s must be positive, not {bin_s}")
    # relative times: epoch seconds carry ~1e-7 s of rounding, enough to lose tokens in the sums
    calls = [
        (s["start"] - t0, max(s["start"], s["end"]) - t0, s["tokens_out"])
        for s in spans
        if s.get("kind") in CALL_KINDS and s.get("tokens_out")
    ]
    if not calls:
        return [], []
    # the bins a call touches: one ending exactly on a bin edge does not reach the next bin
    reach = [
        (math.floor(a / bin_s), max(math.floor(a / bin_s), math.ceil(b / bin_s) - 1))
        for a, b, _ in calls
    ]
    first = min(lo for lo, _ in reach)
    tokens = [0.0] * (max(hi for _, hi in reach) - first + 1)
    for (a, b, n), (lo, hi) in zip(calls, reach, strict=True):
        placed = 0.0
        for k in range(lo, hi):  # a zero-length call skips this and goes whole into its bin
            share = n * (min(b, (k + 1) * bin_s) - max(a, k * bin_s)) / (b - a)
            tokens[k - first] += share
            placed += share
        tokens[hi - first] += n - placed  # the rest, so rounding never loses a token
    starts = [(first + i) * bin_s for i in range(len(tokens))]
    return starts, [n / bin_s for n in tokens]


def timeline(
    spans: Sequence[Span],
    submitted: Mapping[str, float],
    finished: Mapping[str, float],
    out: Path,
    title: str,
) -> list[Path]:
    """A Gantt chart, one row per bug by submit time: stages on top, LLM calls, chunk calls and
    test runs in lanes underneath (one lane per call running at once, so parallelism shows as
    stacked lines). Writes `out` as .png and .svg and returns the paths."""
    rows = _bug_order(spans, submitted, finished)
    if not rows:
        return _no_data(out, title)
    t0 = _origin(spans, submitted)
    horizon = _horizon(spans, submitted, finished) - t0
    row_of = {bug: i for i, bug in enumerate(rows)}
    by_bug: dict[str, list[Span]] = {bug: [] for bug in rows}
    for s in spans:
        if s.get("bug_id") in by_bug:
            by_bug[s["bug_id"]].append(s)

    n = len(rows)
    fig = Figure(figsize=(13.0, min(2.2 + 0.3 * n, MAX_FIGURE_HEIGHT_IN)), layout="constrained")
    ax = fig.add_subplot()
    min_width = max(horizon, 1e-9) / 1500  # about a pixel: short calls stay visible
    _draw_lifetimes(ax, rows, submitted, finished, t0, horizon)
    stage_names = _draw_stages(ax, by_bug, row_of, t0, min_width)
    counts = _draw_lanes(ax, by_bug, row_of, t0, min_width)

    subs = [(submitted[b] - t0, row_of[b]) for b in rows if b in submitted]
    fins = [(finished[b] - t0, row_of[b]) for b in rows if b in finished]
    if subs:
        ax.plot(*zip(*subs, strict=True), ls="none", marker="|", ms=9, mew=1.5, color="black")
    if fins:
        ax.plot(*zip(*fins, strict=True), ls="none", marker="D", ms=4, color="black", zorder=5)

    ax.set_ylim(n - 0.5, -0.5)
    if n <= MAX_LABELLED_ROWS:
        ax.set_yticks(range(n), [_short(b) for b in rows], fontsize=8 if n > 25 else 9)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} bugs, by submit time")
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(_left(spans, t0, horizon), horizon * 1.01 + 1e-9)
    ax.set_xlabel("seconds since first submission")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(
        f"{title}\n{n} bugs, {len(fins)} finished; {counts['llm']} LLM calls, "
        f"{counts['chunk']} chunk calls, {counts['test']} test runs",
        fontsize=11,
    )
    ax.legend(
        handles=_timeline_legend(stage_names),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    return _save(fig, out)


def throughput(
    spans: Sequence[Span],
    submitted: Mapping[str, float],
    finished: Mapping[str, float],
    out: Path,
    title: str,
) -> list[Path]:
    """Three stacked plots over time: bugs finished and in flight, LLM calls in flight, and
    output tokens per second. Writes `out` as .png and .svg and returns the paths."""
    if not (spans or submitted or finished):
        return _no_data(out, title)
    t0 = _origin(spans, submitted)
    horizon = _horizon(spans, submitted, finished) - t0
    left = _left(spans, t0, horizon)

    fig = Figure(figsize=(12.0, 8.0), layout="constrained")
    ax_bugs, ax_calls, ax_rate = fig.subplots(3, 1, sharex=True)
    fig.suptitle(title, fontsize=12)

    done = sorted(f - t0 for f in finished.values())
    ax_bugs.plot(
        [left, *done, horizon],
        [0, *range(1, len(done) + 1), len(done)],
        drawstyle="steps-post",
        color="#2ca02c",
        label=f"finished (cumulative, {len(done)})",
    )
    # a bug not finished yet is still in flight when the trace ends: no drop to zero there
    lives = [(t, finished.get(b, math.inf)) for b, t in submitted.items()]
    _step(ax_bugs, concurrency_series(lives, t0), left, horizon, "bugs in flight", "#4c72b0")
    ax_bugs.set_ylabel("bugs")

    calls = [s for s in spans if s.get("kind") in CALL_KINDS]
    _step(
        ax_calls,
        concurrency_series(((s["start"], s["end"]) for s in calls), t0),
        left,
        horizon,
        "LLM calls (llm + chunk)",
        "#222222",
        fill=True,
    )
    _step(
        ax_calls,
        concurrency_series(((s["start"], s["end"]) for s in calls if s["kind"] == "chunk"), t0),
        left,
        horizon,
        "of which chunk calls",
        CALL_COLOURS["chunk"],
    )
    tests = [(s["start"], s["end"]) for s in spans if s.get("kind") == "test"]
    _step(ax_calls, concurrency_series(tests, t0), left, horizon, "test runs", "#b8860b", ls="--")
    ax_calls.set_ylabel("in flight")

    bin_s = max(horizon / 100, 0.05)
    starts, rates = rate_series(spans, t0, bin_s)
    total = sum(int(s.get("tokens_out") or 0) for s in calls)
    if rates:
        ax_rate.stairs(
            rates,
            [*starts, starts[-1] + bin_s],
            fill=True,
            color="#dd8452",
            alpha=0.8,
            label=f"{total:,} tokens out, peak {max(rates):,.0f} tok/s ({bin_s:.2g} s bins)",
        )
    ax_rate.set_ylabel("output tokens/s")
    ax_rate.set_xlabel("seconds since first submission")
    ax_rate.set_xlim(left, horizon * 1.01 + 1e-9)

    for ax in (ax_bugs, ax_calls, ax_rate):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=ax is not ax_rate)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out)


def _draw_lifetimes(
    ax: Axes,
    rows: list[str],
    submitted: Mapping[str, float],
    finished: Mapping[str, float],
    t0: float,
    horizon: float,
) -> None:
    """A thin line from submit to finish (dotted to the end when unfinished): queueing shows."""
    for done, style in ((True, "-"), (False, ":")):
        ys, lo, hi = [], [], []
        for i, bug in enumerate(rows):
            if bug in submitted and (bug in finished) == done:
                ys.append(i)
                lo.append(submitted[bug] - t0)
                hi.append(finished[bug] - t0 if done else horizon)
        if ys:
            ax.hlines(ys, lo, hi, colors="#888888", linewidth=0.7, linestyles=style, zorder=1)


def _draw_stages(
    ax: Axes, by_bug: Mapping[str, list[Span]], row_of: Mapping[str, int], t0: float, w: float
) -> list[str]:
    """One bar per stage span, one colour per stage; a stage that ended not ok gets a red edge."""
    bars: dict[str, list[tuple[int, float, float, bool]]] = {}
    for bug, spans in by_bug.items():
        for s in spans:
            if s.get("kind") == "stage":
                bar = (row_of[bug], s["start"] - t0, s["end"] - s["start"], s.get("ok", True))
                bars.setdefault(s.get("stage") or "", []).append(bar)
    low, high = STAGE_BAND
    for name, group in bars.items():
        ok = [g[3] for g in group]
        ax.barh(
            [g[0] + (low + high) / 2 for g in group],
            [max(g[2], w) for g in group],
            left=[g[1] for g in group],
            height=high - low,
            color=STAGE_COLOURS.get(name, OTHER_STAGE_COLOUR),
            edgecolor=["white" if good else FAILED_EDGE for good in ok],
            linewidth=[0.5 if good else 1.4 for good in ok],
            zorder=2,
        )
    known = [name for name in STAGES if name in bars]
    return known + sorted(set(bars) - set(known))


def _draw_lanes(
    ax: Axes, by_bug: Mapping[str, list[Span]], row_of: Mapping[str, int], t0: float, w: float
) -> dict[str, int]:
    """LLM calls, chunk calls and test runs in the lower band, one lane per concurrent call."""
    bars: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in LANE_KINDS}
    low, high = CALL_BAND
    for bug, spans in by_bug.items():
        calls = sorted(
            (s for s in spans if s.get("kind") in LANE_KINDS), key=lambda s: (s["start"], s["end"])
        )
        if not calls:
            continue
        lanes = _lanes([(s["start"], s["end"]) for s in calls])
        lane_h = (high - low) / (max(lanes) + 1)
        for s, lane in zip(calls, lanes, strict=True):
            y = row_of[bug] + low + lane_h * (lane + 0.5)
            bars[s["kind"]].append((y, s["start"] - t0, s["end"] - s["start"], lane_h * 0.8))
    for kind, group in bars.items():
        if not group:
            continue
        ax.barh(
            [g[0] for g in group],
            [max(g[2], w) for g in group],
            left=[g[1] for g in group],
            height=[g[3] for g in group],
            color=CALL_COLOURS[kind],
            edgecolor="#5a4500" if kind == "test" else "none",
            linewidth=0.4,
            hatch="////" if kind == "test" else None,
            zorder=3,
        )
    return {kind: len(group) for kind, group in bars.items()}


def _lanes(intervals: list[tuple[float, float]]) -> list[int]:
    """Greedy lane per interval (sorted by start): the lowest lane free by its start."""
    free_at: list[float] = []
    lanes = []
    for start, end in intervals:
        lane = next((i for i, t in enumerate(free_at) if t <= start), len(free_at))
        if lane == len(free_at):
            free_at.append(end)
        else:
            free_at[lane] = end
        lanes.append(lane)
    return lanes


def _timeline_legend(stage_names: list[str]) -> list[Any]:
    handles: list[Any] = [
        Patch(color=STAGE_COLOURS.get(name, OTHER_STAGE_COLOUR), label=name or "(no stage)")
        for name in stage_names
    ]
    handles += [
        Patch(facecolor="white", edgecolor=FAILED_EDGE, linewidth=1.4, label="stage not ok"),
        Patch(color=CALL_COLOURS["llm"], label="LLM call"),
        Patch(color=CALL_COLOURS["chunk"], label="chunk call"),
        Patch(facecolor=CALL_COLOURS["test"], edgecolor="#5a4500", hatch="////", label="test run"),
        Line2D([], [], ls="none", marker="|", ms=9, mew=1.5, color="black", label="submitted"),
        Line2D([], [], ls="none", marker="D", ms=4, color="black", label="finished"),
        Line2D([], [], color="#888888", linewidth=0.7, label="in the pipeline"),
    ]
    return handles


def _step(
    ax: Axes,
    series: tuple[list[float], list[int]],
    left: float,
    right: float,
    label: str,
    colour: str,
    *,
    fill: bool = False,
    ls: str = "-",
) -> None:
    """Draw a `concurrency_series` from `left` to `right`, zero before its first change."""
    times, counts = series
    if times and math.isinf(times[-1]):  # intervals never closed: the count stays to the end
        times, counts = times[:-1], counts[:-1]
    if not times:
        return
    xs, ys = [left, *times, right], [0, *counts, counts[-1]]
    ax.plot(xs, ys, drawstyle="steps-post", color=colour, ls=ls, label=f"{label} (peak {max(ys)})")
    if fill:
        ax.fill_between(xs, ys, step="post", color=colour, alpha=0.15, linewidth=0)


def _bug_order(
    spans: Sequence[Span], submitted: Mapping[str, float], finished: Mapping[str, float]
) -> list[str]:
    """Bugs by submit time; a bug never submitted (as far as we know) by its first sign of life."""
    first: dict[str, float] = dict(submitted)
    for s in spans:
        bug = s.get("bug_id")
        if bug and bug not in submitted:
            first[bug] = min(first.get(bug, math.inf), s["start"])
    for bug, t in finished.items():
        first.setdefault(bug, t)
    return sorted(first, key=lambda b: (first[b], b))


def _origin(spans: Sequence[Span], submitted: Mapping[str, float]) -> float:
    if submitted:
        return min(submitted.values())
    return min((s["start"] for s in spans), default=0.0)


def _horizon(
    spans: Sequence[Span], submitted: Mapping[str, float], finished: Mapping[str, float]
) -> float:
    """The last moment anything happened, in epoch seconds."""
    times = [*submitted.values(), *finished.values()]
    times += [max(s["start"], s["end"]) for s in spans]
    return max(times, default=0.0)


def _left(spans: Sequence[Span], t0: float, horizon: float) -> float:
    """Zero, or earlier when a span started before the first submission."""
    earliest = min((s["start"] - t0 for s in spans), default=0.0)
    return min(0.0, earliest) - 0.01 * max(horizon, 1e-9)


def _short(bug: str, limit: int = 24) -> str:
    return bug if len(bug) <= limit else bug[: limit - 1] + "…"


def _no_data(out: Path, title: str) -> list[Path]:
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=18, color="#666666")
    return _save(fig, out)


def _save(fig: Figure, out: Path) -> list[Path]:
    """PNG to look at, SVG to zoom into; SVG text stays text so it can be searched."""
    FigureCanvasAgg(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "fixstream"}):
        fig.savefig(paths[0], dpi=PNG_DPI)
        fig.savefig(paths[1], metadata={"Date": None})
    return paths
