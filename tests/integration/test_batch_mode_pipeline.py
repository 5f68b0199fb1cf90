"""A bug with batch priority is fixed end to end with every LLM call going through the
simulator's Batch API (files + /v1/batches), while interactive bugs keep streaming."""

from __future__ import annotations

import urllib.request

import orjson
import pytest
from test_pipeline import _fixes, _reports, _submit

pytestmark = pytest.mark.integration


def _sim_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/simulator/stats", timeout=5) as response:
        return orjson.loads(response.read())


def test_a_batch_priority_bug_is_fixed_through_the_batch_api(settings, start_worker, llm_sim):
    start_worker(
        FIXSTREAM_CACHE="off",  # every call must reach the model
        FIXSTREAM_LLM_BATCH_FLUSH_S="0.05",
        FIXSTREAM_LLM_BATCH_POLL_S="0.05",
    )
    (report,) = _reports(settings, "batch", ["wrong_operator"])
    before = _sim_stats(llm_sim)
    _submit(settings, [report.model_copy(update={"priority": "batch"})])
    (fix,) = _fixes(settings, {report.bug_id})
    middle = _sim_stats(llm_sim)
    assert fix.status == "fixed", fix.reason
    batched = middle["batch_requests"] - before["batch_requests"]
    # summary, reproduce, one verdict per chunk, one proposal per suspect
    assert batched >= 4 and middle["batches"] > before["batches"]
    assert sum(s.tokens_in for s in fix.stages) > 0

    (interactive,) = _reports(settings, "interactive", ["wrong_operator"])
    _submit(settings, [interactive])
    (fix,) = _fixes(settings, {interactive.bug_id})
    after = _sim_stats(llm_sim)
    assert fix.status == "fixed"
    assert after["batch_requests"] == middle["batch_requests"], "an interactive bug was batched"
