"""What a worker tells operators and the benchmark: /metrics on its web port, spans on disk."""

from __future__ import annotations

import itertools
import time
import urllib.request

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
