"""The simulator as a real HTTP server, driven by the unmodified ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import openai
import orjson
import pytest
from pydantic import BaseModel, Field

from fixstream.llm.simulator import (
    FaultRates,
    RunningSimulator,
    SimulatorConfig,
    builtin_profiles,
    run_simulator,
)
from fixstream.llm.simulator.content import cosine
from fixstream.llm.simulator.latency import decode_seconds, ttft_seconds

pytestmark = pytest.mark.integration

USER = "user"


def _messages(text: str) -> list[dict[str, Any]]:
    return [{"role": USER, "content": text}]


@asynccontextmanager
async def _sim_and_client(
    config: SimulatorConfig, **client_options: Any
) -> AsyncIterator[tuple[RunningSimulator, openai.AsyncOpenAI]]:
    async with (
        run_simulator(config) as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", **client_options) as client,
    ):
        yield sim, client


def _within(measured: float, predicted: float) -> bool:
    """Generous timing tolerance: +-35 % plus 50 ms of scheduling and HTTP overhead."""
    return abs(measured - predicted) <= 0.35 * predicted + 0.05


# --------------------------------------------------------------------------- (1) structured output


class Fix(BaseModel):
    file: str = Field(max_length=80)
    patch: str


class Finding(BaseModel):
    severity: Literal["low", "medium", "high"]
    line: int = Field(ge=1, le=10_000)
    tags: list[str] = Field(min_length=1, max_length=4)


class Analysis(BaseModel):
    summary: str
    findings: list[Finding]
    confidence: float = Field(ge=0, le=1)
    fix: Fix | None


async def test_structured_output_parses_into_pydantic_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="fixstream.llm.simulator"):
        async with _sim_and_client(SimulatorConfig(time_scale=0.01)) as (sim, client):
            completion = await client.chat.completions.parse(
                model="gpt-4.1",
                messages=_messages("Analyse this KeyError in parse_config"),
                response_format=Analysis,
            )
            again = await client.chat.completions.parse(
                model="gpt-4.1",
                messages=_messages("Analyse this KeyError in parse_config"),
                response_format=Analysis,
            )
    assert "SIMULATOR listening" in caplog.text and "not a real model" in caplog.text
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Analysis)
    assert completion.choices[0].finish_reason == "stop"
    assert again.choices[0].message.parsed == parsed  # deterministic per prompt
    assert completion.usage is not None and completion.usage.completion_tokens > 50
    assert sim.stats.by_status[200] == 2 and sim.stats.output_tokens > 100


async def test_models_listing_and_unknown_model() -> None:
    async with _sim_and_client(SimulatorConfig(time_scale=0.01)) as (_, client):
        raw = await client.models.with_raw_response.list()
        assert raw.headers["x-fixstream-simulator"] == "1"
        models = raw.parse()
        assert {m.id for m in models.data} >= {"gpt-4.1", "gpt-4.1-mini", "modulo-50tps"}
        assert {m.owned_by for m in models.data} == {"fixstream-simulator"}
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(model="gpt-9", messages=_messages("hi"))
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "gpt-4.1-mini" in body["message"]


# --------------------------------------------------------------------------- (2) streaming


async def test_streaming_yields_deltas_and_usage() -> None:
    async with _sim_and_client(SimulatorConfig(time_scale=0.01)) as (_, client):
        stream = await client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=_messages("Explain the bug"),
            max_tokens=120,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        full = await client.chat.completions.create(
            model="gpt-4.1-mini", messages=_messages("Explain the bug"), max_tokens=120
        )
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(content_chunks) > 10
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert full.usage is not None and usage.completion_tokens == full.usage.completion_tokens


# --------------------------------------------------------------------------- (3) timing model


async def _measure_stream(
    client: openai.AsyncOpenAI, model: str, text: str, max_tokens: int
) -> tuple[float, float, int, int]:
    """(ttft, total, prompt_tokens, completion_tokens) of one streamed request."""
    started = time.perf_counter()
    first: float | None = None
    stream = await client.chat.completions.create(
        model=model,
        messages=_messages(text),
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        usage = chunk.usage or usage
    assert first is not None and usage is not None
    return first, time.perf_counter() - started, usage.prompt_tokens, usage.completion_tokens


async def test_timings_follow_the_latency_model() -> None:
    scale = 0.05
    profile = builtin_profiles()["gpt-4.1"]
    slow = builtin_profiles()["modulo-50tps"]
    async with _sim_and_client(SimulatorConfig(time_scale=scale)) as (_, client):
        await _measure_stream(client, "gpt-4.1", "warm up", 5)
        small = await _measure_stream(client, "gpt-4.1", "word " * 190, 5)
        large = await _measure_stream(client, "gpt-4.1", "word " * 20_000, 5)
        short = await _measure_stream(client, "modulo-50tps", "hi", 20)
        long = await _measure_stream(client, "modulo-50tps", "hi", 400)

    assert large[2] > 19_000 > 250 > small[2]
    for ttft, _, prompt_tokens, _ in (small, large):
        assert _within(ttft, ttft_seconds(profile, prompt_tokens, scale))
    assert large[0] > small[0] + 0.1

    for ttft, total, prompt_tokens, completion_tokens in (short, long):
        predicted = ttft_seconds(slow, prompt_tokens, scale) + decode_seconds(
            slow, completion_tokens, scale
        )
        assert _within(total, predicted)
        assert _within(total - ttft, decode_seconds(slow, completion_tokens, scale))
    assert long[3] > 300 and long[1] > short[1] + 0.2


async def test_many_concurrent_streams_are_cheap() -> None:
    scale = 0.1
    slow = builtin_profiles()["modulo-50tps"]
    async with _sim_and_client(SimulatorConfig(time_scale=scale)) as (_, client):
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_measure_stream(client, "modulo-50tps", f"request {i}", 100) for i in range(64))
        )
        wall = time.perf_counter() - started
    one = max(ttft_seconds(slow, r[2], scale) + decode_seconds(slow, r[3], scale) for r in results)
    assert wall < 2 * one + 0.5  # all 64 overlap instead of queueing behind each other


# --------------------------------------------------------------------------- (4) rate limits


async def test_rpm_burst_gets_429_with_retry_after() -> None:
    config = SimulatorConfig(time_scale=0.05, rpm=3)
    async with _sim_and_client(config, max_retries=0) as (sim, client):
        ok = await client.chat.completions.with_raw_response.create(
            model="gpt-4.1-mini", messages=_messages("first"), max_tokens=5
        )
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == "2"
        results = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="gpt-4.1-mini", messages=_messages(f"burst {i}"), max_tokens=5
                )
                for i in range(5)
            ),
            return_exceptions=True,
        )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 3 and all(isinstance(e, openai.RateLimitError) for e in errors)
    err = errors[0]
    assert isinstance(err, openai.RateLimitError)
    retry_after = float(err.response.headers["retry-after"])
    assert 0 < retry_after <= 60 * config.time_scale
    assert int(err.response.headers["retry-after-ms"]) >= 1
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert isinstance(err.body, dict) and err.body["type"] == "rate_limit_exceeded"
    assert err.code == "rate_limit_exceeded"
    assert sim.stats.rate_limited == 3 and sim.stats.by_status[429] == 3


async def test_tpm_limit_and_client_retry_honours_retry_after() -> None:
    config = SimulatorConfig(time_scale=0.02, tpm=600)
    async with _sim_and_client(config, max_retries=0) as (_, client):
        await client.chat.completions.create(
            model="gpt-4.1-mini", messages=_messages("one"), max_tokens=400
        )
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(
                model="gpt-4.1-mini", messages=_messages("two"), max_tokens=400
            )
        assert err.value.response.headers["x-ratelimit-limit-tokens"] == "600"
        assert 0 < float(err.value.response.headers["retry-after"]) <= 1.2
        started = time.perf_counter()
        retried = await client.with_options(max_retries=3).chat.completions.create(
            model="gpt-4.1-mini", messages=_messages("three"), max_tokens=400
        )
        assert retried.choices[0].message.content
        assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------- (5) faults


def _faulty(kind: str) -> SimulatorConfig:
    return SimulatorConfig(
        time_scale=0.01,
        faults=FaultRates.model_validate({kind: 1.0}),
        hang_seconds=3.0,
        spurious_retry_after_seconds=5.0,
    )


async def _json_request(client: openai.AsyncOpenAI) -> Any:
    return await client.chat.completions.create(
        model="gpt-4.1-mini",
        messages=_messages("Return JSON"),
        response_format={"type": "json_object"},
        max_tokens=100,
    )


async def test_fault_error_5xx() -> None:
    async with _sim_and_client(_faulty("error_5xx"), max_retries=0) as (sim, client):
        with pytest.raises(openai.InternalServerError) as err:
            await _json_request(client)
    assert err.value.status_code in (500, 502, 503)
    assert sim.stats.faults["error_5xx"] == 1


async def test_fault_hang_exceeds_client_timeout() -> None:
    started = time.perf_counter()
    async with _sim_and_client(_faulty("hang"), max_retries=0, timeout=0.3) as (sim, client):
        with pytest.raises(openai.APITimeoutError):
            await _json_request(client)
    assert sim.stats.faults["hang"] == 1
    assert time.perf_counter() - started < 2.5  # shutdown does not wait for the hung handler


async def test_fault_malformed_json() -> None:
    async with _sim_and_client(_faulty("malformed"), max_retries=0) as (sim, client):
        completion = await _json_request(client)
    content = completion.choices[0].message.content
    assert content
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(content)
    assert sim.stats.faults["malformed"] == 1


async def test_fault_truncated() -> None:
    async with _sim_and_client(_faulty("truncated"), max_retries=0) as (sim, client):
        completion = await _json_request(client)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens < 60
    assert sim.stats.faults["truncated"] == 1


async def test_fault_spurious_rate_limit() -> None:
    async with _sim_and_client(_faulty("rate_limit"), max_retries=0) as (sim, client):
        with pytest.raises(openai.RateLimitError) as err:
            await _json_request(client)
    assert math.isclose(float(err.value.response.headers["retry-after"]), 0.05)
    assert sim.stats.faults["rate_limit"] == 1 and sim.stats.rate_limited == 1


# --------------------------------------------------------------------------- (6) embeddings


async def test_embeddings_near_duplicates_are_closer() -> None:
    texts = [
        "KeyError: 'user_id' raised in handlers/session.py when the cookie is missing",
        "KeyError 'user_id' raised in handlers/session.py if the cookie is missing",
        "Upgrade the CI runner image to get a newer version of the Rust toolchain",
    ]
    async with _sim_and_client(SimulatorConfig(time_scale=0.01)) as (_, client):
        result = await client.embeddings.create(model="text-embedding-3-small", input=texts)
        floats = await client.embeddings.create(
            model="text-embedding-3-small", input=texts[0], encoding_format="float"
        )
    vectors = [d.embedding for d in sorted(result.data, key=lambda d: d.index)]
    assert len(vectors) == 3 and all(len(v) == 256 for v in vectors)
    near, far = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert near > 0.9 and far < 0.5
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    assert result.usage.prompt_tokens > 20


def _first_lines_of_sim(*args: str, until: str, timeout: float = 20.0) -> str:
    """What ``fixstream sim ARGS`` logs at start, up to the line containing ``until``."""
    import subprocess
    import sys

    from fixstream.broker import free_port

    process = subprocess.Popen(
        [sys.executable, "-m", "fixstream", "sim", "--port", str(free_port()), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.stderr is not None:
            line = process.stderr.readline()
            seen.append(line)
            if until in line or not line:
                break
    finally:
        process.kill()
        process.wait()
    return "".join(seen)


def test_the_simulator_says_at_start_that_it_answers_only_its_scenarios():
    from fixstream.config import EXAMPLES
    from fixstream.scenarios import scenario_files

    bundled = _first_lines_of_sim("--examples", until="answers only")
    assert "not a real model" in bundled
    assert f"from {len(scenario_files(EXAMPLES))} files" in bundled
    bare = _first_lines_of_sim(until="no scenario")
    assert "no scenario: every answer is arbitrary" in bare and "--examples" in bare
