"""``fixstream bench``: the talk's claims as workloads, measured side by side in one run.

W1  the GPT-4.1 case study: 100K tokens in, 10K out, as one call against 16 chunk calls.
W2  the Modulo example: 50 files, 30K output tokens at 50 tok/s, one prompt against chunks.
W3  pipelining: a batch of bugs through all five stages, one at a time against all in flight.
W4  rate limits: W3's batch under a TPM limit the simulator enforces.
W5  overhead: per bug, the time not spent in LLM calls or test runs (Kafka hops, gathering,
    serialization, fixstream's own CPU).
W6  caching: a batch cold, the same batch again, then a batch of which 30% are near-duplicate
    reports of the first: hit rate, tokens saved and time saved.
W7  environments and sandbox cost (no broker, no LLM): per example an environment built cold
    and then looked up warm; a test run bare against sandboxed, and where the difference goes
    (``sandboxcost.py``).

Every call goes through the product: chunk tasks onto ``chunks.tasks`` and real workers;
bugs onto ``bugs.reported``. The simulator's time scale shrinks LLM time only; test runs are
real and take what they take, which is stated next to W3's figures. W7 runs in this process.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from fixstream.bench import WORKLOADS, percentile, pictures, sandboxcost
from fixstream.bench.system import (
    Batch,
    System,
    distinct_bugs,
    example_bugs,
    run_bugs,
    run_chunk_tasks,
)
from fixstream.broker import free_port
from fixstream.llm.simulator import builtin_profiles
from fixstream.llm.simulator.latency import total_seconds
from fixstream.schemas import ChunkRef, ChunkResult, ChunkTask
from fixstream.telemetry import read_spans
from fixstream.tokens import count_tokens

ALL = WORKLOADS
LLM_WORKLOADS = {"W1", "W2", "W3", "W4", "W5", "W6"}
"""The workloads that need the broker, the simulator and worker processes."""


@dataclass(frozen=True)
class BenchConfig:
    out: Path
    time_scale: float = 0.05
    """For W1 and W2, which are nothing but LLM calls: their ratios do not depend on it."""
    pipeline_time_scale: float = 0.5
    """For W3-W5, where real test runs (not scaled) sit between the LLM calls: squeezing
    the LLM time 20x would make the batch a test of the machine's two cores instead."""
    bugs: int = 50
    monolith_bugs: int = 10
    in_flight: int = 32
    workloads: tuple[str, ...] = ALL
    profile: bool = False
    wheelhouse: Path | None = None
    """W7: build environments from these wheels alone (offline); None: the package index."""
    env_lookups: int = 200
    """W7: warm lookups per example."""
    sandbox_runs: int = 30
    """W7: runs of each command bare and sandboxed (and of each breakdown variant)."""


def code_text(tokens: int, seed: int) -> str:
    """Deterministic source-like text of about ``tokens`` tokens (a file to analyse)."""
    lines = [
        f"def handler_{seed}_{i}(value, limit={i % 97}):\n"
        f"    return value * {i} + limit if value > {seed} else value - {i}\n"
        for i in range(max(1, tokens // 28))
    ]
    text = "".join(lines)
    ratio = tokens / max(1, count_tokens(text))
    return "".join(lines[: max(1, int(len(lines) * ratio))])


def chunk_tasks(run: str, texts: list[str], out_tokens: list[int], purpose: str) -> list[ChunkTask]:
    return [
        ChunkTask(
            task_id=f"{run}-{i}",
            bug_id=run,
            stage="bench",
            chunk=ChunkRef(
                chunk_id=f"{run}-{i}",
                path=f"file_{i}.py",
                start_line=1,
                end_line=max(1, text.count("\n")),
                tokens=count_tokens(text),
            ),
            fan_out=len(texts),
            purpose=purpose,
            answer_schema="ChunkVerdict",
            prompt=[{"role": "user", "content": f"Is the bug in this code?\n{text}"}],
            max_tokens=tokens,
        )
        for i, (text, tokens) in enumerate(zip(texts, out_tokens, strict=True))
    ]


def split_evenly(text: str, parts: int) -> list[str]:
    lines = text.splitlines(keepends=True)
    cuts = [len(lines) * i // parts for i in range(parts + 1)]
    return ["".join(lines[a:b]) for a, b in itertools.pairwise(cuts)]


def _model_seconds(results: list[ChunkResult], model: str, scale: float) -> float:
    """The latency model's time for the slowest call: the lower bound for the gather."""
    profile = builtin_profiles()[model]
    return max(total_seconds(profile, r.tokens_in, r.tokens_out, scale) for r in results)


async def w1(system: System, cfg: BenchConfig) -> dict[str, Any]:
    text = code_text(100_000, seed=1)
    one = chunk_tasks("w1-one", [text], [10_000], "bench")
    chunks = chunk_tasks("w1-16", split_evenly(text, 16), [625] * 16, "bench")
    timeout = 4000 * cfg.time_scale + 120
    one_s, one_r = await run_chunk_tasks(system.settings, one, parallel=1, timeout_s=timeout)
    many_s, many_r = await run_chunk_tasks(system.settings, chunks, parallel=16, timeout_s=timeout)
    model_one = _model_seconds(one_r, "gpt-4.1", cfg.time_scale)
    model_many = _model_seconds(many_r, "gpt-4.1", cfg.time_scale)
    allowed = model_one / model_many
    measured = one_s / many_s
    return {
        "one_call_s": one_s,
        "chunks_16_s": many_s,
        "tokens_in": sum(r.tokens_in for r in one_r),
        "tokens_out_one": sum(r.tokens_out for r in one_r),
        "tokens_out_16": sum(r.tokens_out for r in many_r),
        "model_one_call_s": model_one,
        "model_16_chunks_s": model_many,
        "speedup": measured,
        "model_speedup": allowed,
        "efficiency": measured / allowed,
        "gather_overhead_ms": (many_s - model_many) * 1000,
    }


async def w2(system: System, cfg: BenchConfig) -> dict[str, Any]:
    files = [code_text(500, seed=i) for i in range(50)]
    timeout = 2000 * cfg.time_scale + 120
    s = system.settings
    runs = {
        "one_prompt": (chunk_tasks("w2-one", ["".join(files)], [30_000], "bench.modulo"), 1),
        "per_file_16_way": (chunk_tasks("w2-files", files, [600] * 50, "bench.modulo"), 16),
        "balanced_16_way": (
            chunk_tasks("w2-even", split_evenly("".join(files), 64), [469] * 64, "bench.modulo"),
            16,
        ),
        "all_at_once": (chunk_tasks("w2-all", files, [600] * 50, "bench.modulo"), 50),
    }
    walls: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for name, (tasks, parallel) in runs.items():
        walls[name], results = await run_chunk_tasks(s, tasks, parallel=parallel, timeout_s=timeout)
        tokens[name] = sum(r.tokens_out for r in results)
    base = walls["one_prompt"]
    return {
        "seconds": walls,
        "output_tokens": tokens,
        "speedup": {k: base / v for k, v in walls.items()},
        "talk": {"one_prompt_s": 600, "chunked_16_way_s": 40, "speedup": 15},
    }


def _batch_figures(batch: Batch) -> dict[str, Any]:
    latencies = batch.latencies()
    fixed = sum(1 for s in batch.status.values() if s == "fixed")
    wall = batch.wall_s
    return {
        "bugs": len(batch.submitted),
        "fixed": fixed,
        "statuses": dict(Counter(batch.status.values())),
        "makespan_s": wall,
        "bugs_per_min": len(latencies) / wall * 60 if wall else 0.0,
        "mean_time_to_fix_s": statistics.fmean(latencies) if latencies else 0.0,
        "p50_time_to_fix_s": percentile(latencies, 0.5),
    }


def overhead(batch: Batch, spans: list[dict[str, Any]]) -> list[float]:
    """Per bug: time to fix minus the time covered by its LLM calls and test runs."""
    busy: dict[str, list[tuple[float, float]]] = {}
    for s in spans:
        if s["kind"] in ("llm", "chunk", "test") and s["bug_id"] in batch.finished:
            busy.setdefault(s["bug_id"], []).append((s["start"], s["end"]))
    result = []
    for bug, end in batch.finished.items():
        start = batch.submitted[bug]
        covered = union_length(busy.get(bug, []), start, end)
        result.append(max(0.0, end - start - covered))
    return result


def union_length(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Total length of the union of ``intervals`` clipped to [lo, hi]."""
    total, reach = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, hi)
        if b > a:
            total += b - a
            reach = b
    return total


def hops(spans: list[dict[str, Any]], batch: Batch) -> list[float]:
    """Gaps between one stage's end and the next stage's start for the same bug: a Kafka
    hop plus the wait for an agent slot."""
    stages: dict[str, list[tuple[float, float]]] = {}
    for s in spans:
        if s["kind"] == "stage" and s["bug_id"] in batch.finished:
            stages.setdefault(s["bug_id"], []).append((s["start"], s["end"]))
    gaps = []
    for bug, runs in stages.items():
        runs.sort()
        gaps.append(runs[0][0] - batch.submitted[bug])
        gaps += [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(runs)]
    return gaps


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/v1/simulator/stats", timeout=5) as r:
        return orjson.loads(r.read())


def _draw(name: str, batch: Batch, spans: list[dict[str, Any]], out: Path) -> list[str]:
    ours = [s for s in spans if s["bug_id"] in batch.submitted]
    title = f"{name}: {len(batch.submitted)} bugs"
    paths: list[Path] = []
    for draw, suffix in ((pictures.timeline, "timeline"), (pictures.throughput, "throughput")):
        paths += draw(ours, batch.submitted, batch.finished, out / f"{name}-{suffix}", title)
    return [str(p) for p in paths]


async def pipelined(system: System, cfg: BenchConfig, url: str, results: dict) -> None:
    """W3 and W5 on one worker set: the batch all at once, then the monolith."""
    trace = await system.start_workers("w3", 1, url)
    timeout = 600 + 400 * cfg.bugs * cfg.pipeline_time_scale
    before = _stats(url)
    pipe = await run_bugs(
        system.settings, example_bugs(cfg.bugs, "w3p"), one_at_a_time=False, timeout_s=timeout
    )
    charged = _stats(url)["charged_tokens"] - before["charged_tokens"]
    mono = await run_bugs(
        system.settings, example_bugs(cfg.monolith_bugs, "w3m"), one_at_a_time=True,
        timeout_s=timeout,
    )  # fmt: skip
    await asyncio.sleep(1.5)  # the workers flush spans every second
    system.stop_workers()
    spans = read_spans(trace)
    p, m = _batch_figures(pipe), _batch_figures(mono)
    # the monolith runs one bug at a time, so its makespan for the whole batch is linear
    mono_batch_s = m["makespan_s"] / max(1, m["bugs"]) * p["bugs"]
    results["W3"] = {
        "pipeline": p,
        "monolith": m | {"makespan_for_batch_s": mono_batch_s},
        "throughput_ratio": p["bugs_per_min"] / m["bugs_per_min"] if m["bugs_per_min"] else 0,
        "makespan_ratio": mono_batch_s / p["makespan_s"] if p["makespan_s"] else 0,
        "charged_tokens": charged,
        "test_run_seconds_p50": percentile(
            [s["end"] - s["start"] for s in spans if s["kind"] == "test"], 0.5
        ),
        "pictures": _draw("w3-pipeline", pipe, spans, cfg.out)
        + _draw("w3-monolith", mono, spans, cfg.out),
    }
    alone, crowded = overhead(mono, spans), overhead(pipe, spans)
    gaps = hops(spans, mono)
    results["W5"] = {
        "overhead_ms_p50": percentile(alone, 0.5) * 1000,
        "overhead_ms_p99": percentile(alone, 0.99) * 1000,
        "hop_ms_p50": percentile(gaps, 0.5) * 1000,
        "hop_ms_p99": percentile(gaps, 0.99) * 1000,
        "in_batch_overhead_ms_p50": percentile(crowded, 0.5) * 1000,
        "measured_on": f"{len(mono.finished)} bugs one at a time (no queueing)",
    }


async def rate_limited(system: System, cfg: BenchConfig, results: dict) -> None:
    """W4: the W3 batch under a TPM limit that makes it last about eight rate windows.

    The window is the simulator's minute, so W4 runs at a fifth of W3's time scale: enough
    whole windows to measure the share used between warm-up and the batch draining."""
    scale = cfg.pipeline_time_scale / 5
    window = 60 * scale
    charged = results.get("W3", {}).get("charged_tokens") or 500_000 * cfg.bugs // 50
    tpm = int(charged / 8)
    with system.simulator(scale, "--tpm", str(tpm)) as url:
        trace = await system.start_workers(
            "w4", 1, url, FIXSTREAM_LLM_TPM=str(tpm),
            FIXSTREAM_LLM_RATE_WINDOW_SECONDS=str(window),
        )  # fmt: skip
        samples: list[tuple[float, int]] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                samples.append(
                    (time.time(), (await asyncio.to_thread(_stats, url))["charged_tokens"])
                )
                await asyncio.sleep(window / 10)

        sampler = asyncio.create_task(sample())
        batch = await run_bugs(
            system.settings, example_bugs(cfg.bugs, "w4"), one_at_a_time=False,
            timeout_s=900 + 800 * cfg.bugs * cfg.pipeline_time_scale,
        )  # fmt: skip
        done.set()
        await sampler
        stats = _stats(url)
        await asyncio.sleep(1.5)
        system.stop_workers()
    spans = read_spans(trace)
    used = window_usage(samples, window, tpm)
    figures = _batch_figures(batch)
    bound = stats["charged_tokens"] / tpm * window
    results["W4"] = {
        "time_scale": scale,
        "tpm": tpm,
        "window_s": window,
        "limit_used_share": statistics.fmean(used) if used else 0.0,
        "windows_measured": len(used),
        "rate_limited_429": stats["rate_limited"],
        "bound_s": bound,
        "makespan_s": figures["makespan_s"],
        "makespan_over_bound": figures["makespan_s"] / bound if bound else 0,
        "fixed": figures["fixed"],
        "statuses": figures["statuses"],
        "pictures": _draw("w4-rate-limited", batch, spans, cfg.out),
    }


def window_usage(samples: list[tuple[float, int]], window: float, limit: int) -> list[float]:
    """Share of the limit charged in each whole window after the first (warm-up) and before
    the charging stops (the batch draining)."""
    if len(samples) < 2:
        return []
    start, end = samples[0][0] + window, samples[-1][0]
    last_charge = max(
        t for (t, c), (_, prev) in zip(samples[1:], samples, strict=False) if c > prev
    )
    end = min(end, last_charge)
    shares, t = [], start
    while t + window <= end:
        shares.append((_charged_at(samples, t + window) - _charged_at(samples, t)) / limit)
        t += window
    return shares


def _charged_at(samples: list[tuple[float, int]], t: float) -> int:
    """The counter at time ``t`` (the last sample at or before it)."""
    value = samples[0][1]
    for ts, charged in samples:
        if ts > t:
            break
        value = charged
    return value


NEAR_DUPLICATE = " Reported again by another customer this morning, same symptoms."


def _worker_cache(port: int) -> dict[str, dict[str, float]]:
    url = f"http://127.0.0.1:{port}/cache/stats/"
    with urllib.request.urlopen(url, timeout=5) as response:
        return orjson.loads(response.read())["counters"]


def cache_figures(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Hit rates and savings between two readings of a worker's cache counters. Every LLM call
    makes one exact lookup; a semantic hit is one of the exact misses, answered anyway."""

    def delta(cache: str, what: str) -> float:
        return after.get(cache, {}).get(what, 0) - before.get(cache, {}).get(what, 0)

    llm_calls = delta("llm", "hits") + delta("llm", "misses")
    tests = delta("tests", "hits") + delta("tests", "misses")
    return {
        "llm_calls": llm_calls,
        "llm_hit_rate": (delta("llm", "hits") + delta("semantic", "hits")) / llm_calls
        if llm_calls else 0.0,
        "semantic_hits": delta("semantic", "hits"),
        "test_runs": tests,
        "test_hit_rate": delta("tests", "hits") / tests if tests else 0.0,
        "tokens_saved": delta("llm", "tokens_saved") + delta("semantic", "tokens_saved"),
        "seconds_saved": sum(delta(c, "seconds_saved") for c in ("llm", "semantic", "tests")),
    }  # fmt: skip


async def cached(system: System, cfg: BenchConfig, url: str, results: dict) -> None:
    """W6: one worker with its memory cache. A batch of distinct bugs cold, the same batch
    again (new bug ids), then a batch of the same size where 30% are near-duplicate reports
    of the first batch and the rest bugs the cache has not seen."""
    port = free_port()
    await system.start_workers("w6", 1, url, FIXSTREAM_CACHE="memory",
                               FIXSTREAM_WEB_PORT=str(port))  # fmt: skip
    repos = cfg.out / "w6-repos"
    first = distinct_bugs(cfg.bugs, "w6-cold", repos)
    duplicates = round(0.3 * cfg.bugs)
    near = [
        b.model_copy(update={"bug_id": b.bug_id.replace("w6-cold", "w6-near"),
                             "description": b.description + NEAR_DUPLICATE})
        for b in first[:duplicates]
    ] + distinct_bugs(cfg.bugs - duplicates, "w6-new", repos, start=cfg.bugs)  # fmt: skip
    again = [b.model_copy(update={"bug_id": b.bug_id.replace("w6-cold", "w6-again")})
             for b in first]  # fmt: skip
    timeout = 600 + 400 * cfg.bugs * cfg.pipeline_time_scale
    runs: dict[str, Any] = {}
    for name, bugs in (("cold", first), ("same_batch", again), ("near_duplicates", near)):
        counters, llm = _worker_cache(port), _stats(url)
        batch = await run_bugs(system.settings, bugs, one_at_a_time=False, timeout_s=timeout)
        spent = _stats(url)
        runs[name] = (
            _batch_figures(batch)
            | cache_figures(counters, _worker_cache(port))
            | {"tokens_spent": spent["input_tokens"] + spent["output_tokens"]
               - llm["input_tokens"] - llm["output_tokens"]}
        )  # fmt: skip
    system.stop_workers()
    cold = runs["cold"]
    for name in ("same_batch", "near_duplicates"):
        run = runs[name]
        run["time_saved_s"] = cold["makespan_s"] - run["makespan_s"]
        run["tokens_saved_share"] = (
            1 - run["tokens_spent"] / cold["tokens_spent"] if cold["tokens_spent"] else 0.0
        )
    results["W6"] = runs | {"near_duplicate_share": duplicates / cfg.bugs if cfg.bugs else 0}


async def run(cfg: BenchConfig) -> dict[str, Any]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    system = System(cfg.out, cfg.in_flight, cfg.profile)
    results: dict[str, Any] = {
        "time_scale": cfg.time_scale,
        "pipeline_time_scale": cfg.pipeline_time_scale,
        "bugs": cfg.bugs,
    }
    started = time.perf_counter()
    try:
        if LLM_WORKLOADS & set(cfg.workloads):
            await system.start_broker()
        if {"W1", "W2"} & set(cfg.workloads):
            with system.simulator(cfg.time_scale) as url:
                await system.start_workers("chunks", 1, url)
                if "W1" in cfg.workloads:
                    results["W1"] = await w1(system, cfg)
                if "W2" in cfg.workloads:
                    results["W2"] = await w2(system, cfg)
                system.stop_workers()
        if {"W3", "W4", "W5"} & set(cfg.workloads):
            with system.simulator(cfg.pipeline_time_scale) as url:
                await pipelined(system, cfg, url, results)
        if "W4" in cfg.workloads:
            await rate_limited(system, cfg, results)
        if "W6" in cfg.workloads:
            with system.simulator(cfg.pipeline_time_scale) as url:
                await cached(system, cfg, url, results)
        if "W7" in cfg.workloads:  # last, on a machine the other workloads have left
            results["W7"] = await sandboxcost.w7(
                cfg.out, wheelhouse=cfg.wheelhouse, lookups=cfg.env_lookups,
                runs=cfg.sandbox_runs,
            )  # fmt: skip
    finally:
        await asyncio.to_thread(system.close)
    results["bench_seconds"] = time.perf_counter() - started
    (cfg.out / "bench.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return results


def print_report(results: dict[str, Any], console: Console) -> None:
    """The figures and ratios, with the talk's figure or the target beside each."""
    title = "fixstream bench: environments and sandbox (no LLM)"
    if LLM_WORKLOADS & set(results):
        title = (
            f"fixstream bench: LLM SIMULATOR time scale {results['time_scale']} for W1-W2, "
            f"{results['pipeline_time_scale']} for W3-W6 (test runs are real time)"
        )
    table = Table(title=title)
    for col in ("workload", "figure", "measured", "talk / target"):
        table.add_column(col)
    row = table.add_row
    if w := results.get("W1"):
        row(
            "W1 case study",
            "one call / 16 chunks",
            f"{w['one_call_s']:.2f} s / {w['chunks_16_s']:.2f} s",
            "99.4 s / 6.2 s at scale 1",
        )
        row(
            "",
            "speedup (the model allows)",
            f"{w['speedup']:.1f}x ({w['model_speedup']:.1f}x)",
            "16x",
        )
        row("", "efficiency", f"{w['efficiency']:.3f}", ">= 0.95")
        row("", "16 chunks beyond the model", f"{w['gather_overhead_ms']:.0f} ms", "")
    if w := results.get("W2"):
        for name, speedup in w["speedup"].items():
            label = "W2 Modulo" if name == "one_prompt" else ""
            row(label, name, f"{w['seconds'][name]:.2f} s, {speedup:.1f}x", "15x (600 s / 40 s)")
    if w := results.get("W3"):
        p, m = w["pipeline"], w["monolith"]
        row(
            "W3 pipelining",
            "pipeline: fixed, makespan",
            f"{p['fixed']}/{p['bugs']}, {p['makespan_s']:.1f} s",
            "",
        )
        row(
            "",
            "one at a time: fixed, per bug",
            f"{m['fixed']}/{m['bugs']}, {m['makespan_s'] / max(1, m['bugs']):.2f} s",
            "",
        )
        row("", "throughput ratio", f"{w['throughput_ratio']:.1f}x", "6x")
        row("", "test run p50 (real time)", f"{w['test_run_seconds_p50']:.2f} s", "")
    if w := results.get("W4"):
        row(
            f"W4 rate limit (scale {w['time_scale']})",
            f"TPM {w['tpm']} per {w['window_s']:.1f} s",
            f"{w['limit_used_share']:.0%} used, {w['windows_measured']} windows",
            ">= 90%",
        )
        row("", "429s; fixed", f"{w['rate_limited_429']}; {w['fixed']}", "none failed by 429")
        row("", "makespan / bound", f"{w['makespan_s']:.1f} s / {w['bound_s']:.1f} s", "")
    if w := results.get("W5"):
        row(
            "W5 overhead",
            "per bug p50 / p99",
            f"{w['overhead_ms_p50']:.0f} / {w['overhead_ms_p99']:.0f} ms",
            "p50 < 50 ms",
        )
        row("", "stage hop p50 / p99", f"{w['hop_ms_p50']:.0f} / {w['hop_ms_p99']:.0f} ms", "")
    if w := results.get("W6"):
        cold = w["cold"]
        row(
            "W6 cache",
            "cold batch: fixed, makespan, tokens",
            f"{cold['fixed']}/{cold['bugs']}, {cold['makespan_s']:.1f} s, {cold['tokens_spent']:,}",
            "",
        )
        share = f"{w['near_duplicate_share']:.0%} near-dup"
        for name, label in (("same_batch", "same batch again"), ("near_duplicates", share)):
            r = w[name]
            row(
                "",
                f"{label}: LLM / test hit rate",
                f"{r['llm_hit_rate']:.0%} / {r['test_hit_rate']:.0%} "
                f"({r['semantic_hits']:.0f} semantic)",
                "",
            )
            row(
                "",
                f"{label}: tokens saved, time saved",
                f"{r['tokens_saved']:,.0f} ({r['tokens_saved_share']:.0%}), "
                f"{r['time_saved_s']:.1f} s of {cold['makespan_s']:.1f} s; {r['fixed']} fixed",
                "",
            )
    if w := results.get("W7"):
        w7_rows(w, row)
    console.print(table)
    console.print(f"bench took {results['bench_seconds']:.0f} s")


def w7_rows(w: dict[str, Any], row: Any) -> None:
    """W7's rows: environments cold and warm, the sandbox against bare, where it goes."""
    if env := w.get("environments"):
        source = "wheelhouse, offline" if w["packages_from"].endswith("(offline)") else "index"
        row(
            "W7 environments",
            f"cold build p50 / max ({env['builds']} bugs, {source})",
            f"{env['cold_s_p50']:.2f} / {env['cold_s_max']:.2f} s",
            "",
        )
        row(
            "",
            f"warm lookup p50 / p99 ({env['lookups']})",
            f"{env['warm_ms_p50']:.2f} / {env['warm_ms_p99']:.2f} ms",
            f"p99 <= {env['warm_target_ms']:.0f} ms",
        )
    label = f"W7 sandbox ({w['isolation']})"
    for name, runs in w.get("sandbox", {}).items():
        what = "python -c pass" if name == "trivial" else f"{name} ({w['sandbox_example']})"
        row(
            label,
            f"{what}: bare / sandboxed p50 (p99)",
            f"{runs['bare_ms_p50']:.0f} / {runs['sandboxed_ms_p50']:.0f} ms "
            f"({runs['bare_ms_p99']:.0f} / {runs['sandboxed_ms_p99']:.0f})",
            "",
        )
        row(
            "",
            f"{name}: overhead p50 ({runs['runs']} runs)",
            f"{runs['overhead_ms_p50']:.0f} ms",
            f"p50 <= {runs['target_ms']:.0f} ms",
        )
        label = ""
    if b := w.get("breakdown"):
        phases = sorted(b["phases_ms_p50"].items(), key=lambda kv: -kv[1])
        top = [f"{k.replace('_', ' ')} {v:.1f}" for k, v in phases[:4]]
        rest = sum(v for _, v in phases[4:])
        row(
            label,
            "overhead by phase, ms p50",
            ", ".join([*top, f"other {rest:.1f}"]),
            f"{b['overhead_ms_p50']:.0f} ms in all",
        )
    if w.get("error"):
        row(label, "error", w["error"], "")
