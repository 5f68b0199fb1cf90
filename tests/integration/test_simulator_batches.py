"""The simulator's Files and Batch APIs, driven by the unmodified ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import orjson
import pytest
from openai.types import Batch

from fixstream.llm.simulator import FaultRates, RunningSimulator, SimulatorConfig, run_simulator

pytestmark = pytest.mark.integration

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")


@asynccontextmanager
async def _sim(**config: Any) -> AsyncIterator[tuple[RunningSimulator, openai.AsyncOpenAI]]:
    settings = SimulatorConfig(**{"time_scale": 0.01, "batch_window_seconds": 5.0, **config})
    async with (
        run_simulator(settings) as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        yield sim, client


def _line(custom_id: str, text: str = "Explain the bug", **overrides: Any) -> dict[str, Any]:
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body, **overrides}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


async def _submit(client: openai.AsyncOpenAI, data: bytes) -> Batch:
    uploaded = await client.files.create(file=("input.jsonl", data), purpose="batch")
    return await client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )


async def _wait(client: openai.AsyncOpenAI, batch_id: str, timeout: float = 5.0) -> Batch:
    async with asyncio.timeout(timeout):
        while True:
            batch = await client.batches.retrieve(batch_id)
            if batch.status in TERMINAL:
                return batch
            await asyncio.sleep(0.02)


async def _lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [orjson.loads(raw) for raw in content.content.splitlines()]


async def test_batch_answers_every_line_like_a_chat_call() -> None:
    ids = [f"req-{i}" for i in range(6)]
    async with _sim() as (sim, client):
        lines = [_line(custom_id, f"Explain bug {i}") for i, custom_id in enumerate(ids)]
        batch = await _submit(client, _jsonl(lines))
        assert batch.status == "validating" and batch.id.startswith("batch_sim")
        done = await _wait(client, batch.id)
        output = await _lines(client, done.output_file_id)
        output_file = await client.files.retrieve(done.output_file_id or "")
        same = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=[{"role": "user", "content": "Explain bug 3"}]
        )
        listed = await client.batches.list()

    assert done.status == "completed" and done.error_file_id is None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (6, 6)
    assert done.request_counts.failed == 0
    assert None not in (done.in_progress_at, done.finalizing_at, done.completed_at)
    assert done.model == "gpt-4.1-mini" and output_file.purpose == "batch_output"
    assert [line["custom_id"] for line in output] == ids
    for line in output:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    # the same generator as /v1/chat/completions answers each line
    assert output[3]["response"]["body"]["choices"][0]["message"]["content"] == (
        same.choices[0].message.content
    )
    batch_out = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    assert done.usage is not None and done.usage.output_tokens == batch_out
    assert same.usage is not None
    assert sim.stats.output_tokens == batch_out + same.usage.completion_tokens
    assert sim.stats.batches == 1 and sim.stats.batch_requests == 6
    assert [b.id for b in listed.data] == [batch.id] and not listed.has_more


async def test_batch_does_not_complete_before_its_window() -> None:
    async with _sim(batch_window_seconds=80.0) as (_, client):  # 0.8 s at time_scale 0.01
        started = time.perf_counter()
        batch = await _submit(client, _jsonl([_line("a"), _line("b")]))
        await asyncio.sleep(0.3)
        midway = await client.batches.retrieve(batch.id)
        done = await _wait(client, batch.id)
        elapsed = time.perf_counter() - started
    assert midway.status == "in_progress" and midway.completed_at is None
    assert done.status == "completed"
    assert elapsed >= 0.75


async def test_hang_fault_delays_its_line_only() -> None:
    async with _sim(batch_window_seconds=0.0, faults=FaultRates(hang=1.0), hang_seconds=0.5) as (
        sim,
        client,
    ):
        started = time.perf_counter()
        batch = await _submit(client, _jsonl([_line("a"), _line("b")]))
        done = await _wait(client, batch.id)
        elapsed = time.perf_counter() - started
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.completed == 2
    assert elapsed >= 0.45 and sim.stats.faults["hang"] == 2


async def test_batch_lines_are_not_rate_limited() -> None:
    async with _sim(rpm=2) as (sim, client):
        batch = await _submit(client, _jsonl([_line(f"r{i}") for i in range(8)]))
        done = await _wait(client, batch.id)
    assert done.request_counts is not None and done.request_counts.completed == 8
    assert sim.stats.rate_limited == 0 and sim.stats.charged_tokens == 0


async def test_invalid_input_file_fails_the_batch_with_errors() -> None:
    bad = (
        orjson.dumps(_line("ok"))
        + b"\n{not json\n"
        + orjson.dumps(_line("ok"))
        + b"\n"
        + orjson.dumps(_line("get", method="GET"))
        + b"\n"
        + orjson.dumps(_line("url", url="/v1/embeddings"))
        + b"\n"
        + orjson.dumps({"custom_id": "nobody", "method": "POST", "url": ENDPOINT})
        + b"\n"
    )
    mixed = _jsonl([_line("a"), {**_line("b"), "body": {**_line("b")["body"], "model": "gpt-4.1"}}])
    async with _sim() as (sim, client):
        failed = await _wait(client, (await _submit(client, bad)).id)
        mixed_models = await _wait(client, (await _submit(client, mixed)).id)
        uploaded = await client.files.create(
            file=("x.jsonl", _jsonl([_line("a")])), purpose="batch"
        )
        with pytest.raises(openai.BadRequestError) as wrong_endpoint:
            await client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/embeddings",
                completion_window="24h",
            )
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.output_file_id is None and failed.error_file_id is None
    assert failed.errors is not None and failed.errors.data is not None
    found = {(e.code, e.line) for e in failed.errors.data}
    assert found == {
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("invalid_method", 4),
        ("mismatched_endpoint", 5),
        ("missing_required_parameter", 6),
    }
    assert mixed_models.status == "failed" and mixed_models.errors is not None
    assert [e.code for e in mixed_models.errors.data or []] == ["mismatched_model"]
    assert wrong_endpoint.value.status_code == 400
    assert not any(status >= 500 for status in sim.stats.by_status)
    assert sim.stats.batch_requests == 0


async def test_cancel_keeps_finished_lines() -> None:
    async with _sim(batch_window_seconds=1000.0) as (_, client):  # would take 10 s
        batch = await _submit(client, _jsonl([_line("a"), _line("b"), _line("c")]))
        async with asyncio.timeout(3):
            while True:  # the lines answer at once; the window keeps the batch in progress
                counts = (await client.batches.retrieve(batch.id)).request_counts
                if counts is not None and counts.completed == 3:
                    break
                await asyncio.sleep(0.02)
        started = time.perf_counter()
        cancelling = await client.batches.cancel(batch.id)
        cancelled = await _wait(client, batch.id, timeout=2.0)
        took = time.perf_counter() - started
        output = await _lines(client, cancelled.output_file_id)
        failed = await _wait(client, (await _submit(client, b"{oops\n")).id)
        with pytest.raises(openai.ConflictError):
            await client.batches.cancel(failed.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert cancelled.completed_at is None and took < 1.5
    assert failed.status == "failed"
    assert sorted(line["custom_id"] for line in output) == ["a", "b", "c"]


async def test_5xx_faults_land_in_the_error_file() -> None:
    async with _sim(faults=FaultRates(error_5xx=1.0)) as (sim, client):
        batch = await _submit(client, _jsonl([_line(f"r{i}") for i in range(3)]))
        done = await _wait(client, batch.id)
        errors = await _lines(client, done.error_file_id)
    assert done.status == "completed" and done.output_file_id is None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 3)
    assert sorted(line["custom_id"] for line in errors) == ["r0", "r1", "r2"]
    for line in errors:
        assert line["response"]["status_code"] >= 500
        assert line["response"]["body"]["error"]["type"] == "server_error"
    assert sim.stats.faults["error_5xx"] == 3


async def test_files_round_trip_and_unknown_ids_are_404() -> None:
    data = _jsonl([_line("a")])
    async with _sim() as (_, client):
        uploaded = await client.files.create(file=("in.jsonl", data), purpose="batch")
        content = await client.files.content(uploaded.id)
        deleted = await client.files.delete(uploaded.id)
        missing: list[openai.NotFoundError] = []
        for call in (
            lambda: client.files.retrieve(uploaded.id),
            lambda: client.files.content("file-nope"),
            lambda: client.files.delete("file-nope"),
            lambda: client.batches.retrieve("batch_nope"),
            lambda: client.batches.cancel("batch_nope"),
            lambda: client.batches.create(
                input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h"
            ),
        ):
            with pytest.raises(openai.NotFoundError) as err:
                await call()
            missing.append(err.value)
    assert uploaded.id.startswith("file-sim") and uploaded.bytes == len(data)
    assert uploaded.status == "processed" and uploaded.purpose == "batch"
    assert content.content == data
    assert deleted.deleted and deleted.id == uploaded.id
    assert all(e.status_code == 404 and isinstance(e.body, dict) for e in missing)
