"""What a worker tells operators and the benchmark: /metrics on its web port, spans on disk."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline import STAGES, _fixes, _reports, _submit

from fixstream.broker import free_port
from fixstream.telemetry import read_spans

pytestmark = pytest.mark.integration


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _cli(*args: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "fixstream", *args], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return orjson.loads(run.stdout)


def test_a_fixed_bug_shows_in_metrics_and_in_spans(settings, start_worker, tmp_path):
    port = free_port()
    trace = tmp_path / "trace"
    start_worker(FIXSTREAM_WEB_PORT=str(port), FIXSTREAM_TRACE_DIR=str(trace))
    before = _scrape(port)
    assert _total(before, "fixstream_stage_seconds_count") == 0
    (report,) = _reports(settings, "observed", ["off_by_one"])
    _submit(settings, [report])
    (fix,) = _fixes(settings, {report.bug_id})
    assert fix.status == "fixed"
    time.sleep(1.5)  # metrics are live; spans are flushed every second

    after = _scrape(port)
    for stage in STAGES:
        assert _total(after, "fixstream_stage_seconds_count", stage=stage) == 1, stage
        assert _total(after, "fixstream_bugs_in_flight", stage=stage) == 0, stage
    assert _total(after, "fixstream_llm_tokens_total", direction="out") > 0
    assert _total(after, "fixstream_llm_calls_total") >= 4
    assert _total(after, "fixstream_test_runs_total", outcome="passed") >= 1
    assert _total(after, "fixstream_test_runs_total", outcome="failed") >= 1  # reproduction
    assert _total(after, "fixstream_cache_lookups_total", result="miss") >= 4
    assert _total(after, "faust_messages_received_total") > 0  # Faust's own, same page
    lag = [k for k in after if k[0] == "fixstream_consumer_lag"]
    assert lag and all(after[k] >= 0 for k in lag)

    # the same bug again: every LLM call and test run from the worker's memory cache
    again = report.model_copy(update={"bug_id": report.bug_id + "-again"})
    _submit(settings, [again])
    assert _fixes(settings, {again.bug_id})[0].status == "fixed"
    repeat = _scrape(port)
    calls = _total(after, "fixstream_llm_calls_total")
    assert _total(repeat, "fixstream_llm_calls_total") == 2 * calls
    assert _total(repeat, "fixstream_cache_lookups_total", cache="llm", result="hit") == calls
    assert _total(repeat, "fixstream_llm_tokens_total") == _total(
        after, "fixstream_llm_tokens_total"
    )
    assert _total(repeat, "fixstream_cache_saved_tokens_total") > 0

    # operators read and clear that cache through the worker's web port
    url = f"http://127.0.0.1:{port}"
    shown = _cli("cache", "stats", "--worker", url, "--json")
    assert shown["backend"] == "memory" and shown["entries"] > 0
    assert shown["counters"]["llm"]["hits"] == calls
    out = subprocess.run(
        [sys.executable, "-m", "fixstream", "cache", "clear", "--bug", report.bug_id,
         "--worker", url], capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "cleared" in out and f"bug {report.bug_id}" in out
    # the repeat made no entries of its own: clearing the bug that made them empties it
    assert _cli("cache", "stats", "--worker", url, "--json")["entries"] == 0

    spans = [s for s in read_spans(trace) if s["bug_id"] == report.bug_id]
    kinds = {(s["kind"], s["stage"]) for s in spans}
    assert {("stage", stage) for stage in STAGES} <= kinds
    assert ("chunk", "root_cause") in kinds and ("test", "validate") in kinds
    assert ("llm", "reproduce") in kinds
    stage_spans = sorted((s for s in spans if s["kind"] == "stage"), key=lambda s: s["start"])
    assert [s["stage"] for s in stage_spans] == STAGES
    for earlier, later in itertools.pairwise(stage_spans):
        assert earlier["end"] <= later["start"] + 0.01, "stages of one bug run in order"
    assert all(s["end"] >= s["start"] for s in spans)
