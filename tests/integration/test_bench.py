"""``fixstream bench`` as a user runs it, small: every figure is produced from real runs."""

from __future__ import annotations

import pstats
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_bench_runs_the_workloads_and_writes_figures_pictures_and_profiles(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.run(
        [
            sys.executable, "-m", "fixstream", "bench", "--only", "W1,W3,W5,W6",
            "--bugs", "4", "--monolith-bugs", "3", "--time-scale", "0.02",
            "--pipeline-time-scale", "0.05", "--out", str(out), "--profile",
        ],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "LLM SIMULATOR" in run.stdout and "W3 pipelining" in run.stdout
    figures = orjson.loads((out / "bench.json").read_bytes())

    w1 = figures["W1"]
    assert w1["tokens_in"] > 90_000 and w1["tokens_out_16"] > 5_000
    assert 1 < w1["speedup"] <= w1["model_speedup"] * 1.05  # never faster than the model

    w3 = figures["W3"]
    assert w3["pipeline"]["fixed"] == 4 and w3["monolith"]["fixed"] == 3
    assert w3["throughput_ratio"] > 1, "four bugs in flight beat one at a time"
    assert w3["pictures"] and all(Path(p).stat().st_size > 1000 for p in w3["pictures"])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "w3-pipeline-timeline.png" in pngs and "w3-monolith-throughput.png" in pngs
    assert "W4" not in figures  # --only is honoured (W4's arithmetic: test_bench_figures.py)

    w5 = figures["W5"]
    assert 0 < w5["overhead_ms_p50"] <= w5["overhead_ms_p99"]
    assert w5["hop_ms_p50"] > 0

    w6 = figures["W6"]
    cold, again, near = w6["cold"], w6["same_batch"], w6["near_duplicates"]
    assert cold["fixed"] == again["fixed"] == near["fixed"] == 4
    assert cold["tokens_spent"] > 0 and cold["llm_hit_rate"] < 0.5
    assert again["llm_hit_rate"] == 1.0 and again["test_hit_rate"] == 1.0
    assert again["tokens_spent"] == 0 and again["tokens_saved"] > 0
    assert near["semantic_hits"] >= 1  # round(30% of 4) near-duplicate reports
    assert 0 < near["tokens_spent"] < cold["tokens_spent"]

    profiles = sorted(out.glob("*.prof"))
    assert {p.name for p in profiles} >= {"bench.prof", "worker-w3-0.prof"}
    stats = pstats.Stats(str(out / "worker-w3-0.prof"))
    assert any("fixstream" in fn[0] for fn in stats.stats), "the worker's own code was profiled"
