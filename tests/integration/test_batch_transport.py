"""BatchTransport against the simulator's Batch API, alone and under the real Gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from fixstream.errors import PermanentLLMError, TransientLLMError
from fixstream.llm.batch import BatchTransport
from fixstream.llm.gateway import Gateway, GatewayConfig, response_format
from fixstream.llm.simulator import FaultRates, RunningSimulator, SimulatorConfig, run_simulator
from fixstream.llm.transport import ChatRequest

pytestmark = pytest.mark.integration


@asynccontextmanager
async def _batching(
    transport_options: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[tuple[RunningSimulator, openai.AsyncOpenAI, BatchTransport]]:
    settings = SimulatorConfig(**{"time_scale": 0.01, "batch_window_seconds": 10.0, **config})
    options = {"flush_s": 0.05, "poll_s": 0.02, **(transport_options or {})}
    async with (
        run_simulator(settings) as sim,
        openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
    ):
        transport = BatchTransport(client, **options)
        try:
            yield sim, client, transport
        finally:
            await transport.aclose()


def _request(text: str, model: str = "gpt-4.1-mini", **options: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], **options)


async def test_concurrent_calls_share_one_batch() -> None:
    async with _batching() as (sim, _, transport):
        replies = await asyncio.gather(
            *(transport.chat(_request(f"Explain bug {i}", max_tokens=80)) for i in range(10))
        )
    assert transport.batches_submitted == 1
    assert sim.stats.batches == 1 and sim.stats.batch_requests == 10
    assert len({r.content for r in replies}) == 10  # each caller got its own line
    for reply in replies:
        assert reply.content and reply.finish_reason in ("stop", "length")
        assert reply.input_tokens > 0 and 0 < reply.output_tokens <= 80
        assert reply.usage_reported
        assert reply.ttft_s == reply.total_s >= 0.09  # no stream; the 0.1 s window holds
    assert sum(r.output_tokens for r in replies) == sim.stats.output_tokens


async def test_batches_split_by_model_and_size() -> None:
    async with _batching({"max_requests": 3}) as (sim, _, transport):
        requests = [_request(f"mini {i}") for i in range(4)]
        requests += [_request(f"full {i}", model="gpt-4.1") for i in range(2)]
        replies = await asyncio.gather(*(transport.chat(r) for r in requests))
    # mini: 3 + 1 (max_requests), full: 2 (OpenAI wants one model per batch)
    assert transport.batches_submitted == 3 and sim.stats.batches == 3
    assert all(r.content for r in replies)


async def test_cancelled_caller_is_left_out_of_the_batch() -> None:
    async with _batching({"flush_s": 0.2}) as (sim, _, transport):
        dropped = asyncio.create_task(transport.chat(_request("never mind")))
        kept = asyncio.create_task(transport.chat(_request("still wanted")))
        await asyncio.sleep(0.05)
        dropped.cancel()
        reply = await kept
    assert reply.content and dropped.cancelled()
    assert sim.stats.batch_requests == 1


class Verdict(BaseModel):
    severity: Literal["low", "medium", "high"]
    files: list[str] = Field(min_length=1, max_length=3)
    summary: str


async def test_gateway_structured_call_through_batches() -> None:
    prompt = "Judge this KeyError in parse_config"
    async with _batching() as (sim, _, transport):
        gateway = Gateway(transport, GatewayConfig(max_attempts=1))
        answer = await gateway.structured(
            Verdict, [{"role": "user", "content": prompt}], purpose="triage", max_tokens=300
        )
        raw = await transport.chat(
            _request(prompt, model=answer.record.model, max_tokens=300,
                     response_format=response_format(Verdict))
        )  # fmt: skip
    assert isinstance(answer.value, Verdict)
    assert answer.record.tokens_out > 0 and answer.record.attempts == 1
    assert Verdict.model_validate_json(raw.content) == answer.value  # same line, same answer
    assert transport.batches_submitted == 2 and sim.stats.batches == 2


async def test_5xx_line_is_transient() -> None:
    async with _batching(faults=FaultRates(error_5xx=1.0)) as (_, _, transport):
        with pytest.raises(TransientLLMError, match=r"HTTP 50[023]"):
            await transport.chat(_request("fails"))
    assert transport.batches_submitted == 1


async def test_4xx_line_is_permanent() -> None:
    async with _batching() as (_, _, transport):
        with pytest.raises(PermanentLLMError, match=r"HTTP 404: The model `gpt-9`"):
            await transport.chat(_request("who?", model="gpt-9"))


async def test_rejected_batch_create_is_translated() -> None:
    async with _batching({"completion_window": "48h"}) as (sim, _, transport):
        with pytest.raises(PermanentLLMError, match="completion_window"):
            await transport.chat(_request("soon"))
    assert transport.batches_submitted == 0 and sim.stats.batches == 0


async def test_cancelled_batch_fails_its_unanswered_callers() -> None:
    # every line hangs for 5 s, so nothing is answered when the batch is cancelled
    async with _batching(faults=FaultRates(hang=1.0), hang_seconds=5.0) as (_, client, transport):
        call = asyncio.create_task(transport.chat(_request("slow")))
        async with asyncio.timeout(3):
            while True:
                listed = (await client.batches.list()).data
                if listed:
                    break
                await asyncio.sleep(0.02)
        await client.batches.cancel(listed[0].id)
        with pytest.raises(TransientLLMError, match="ended cancelled"):
            await asyncio.wait_for(call, 3)


async def test_aclose_fails_waiting_callers() -> None:
    async with _batching(batch_window_seconds=100.0) as (_, _, transport):
        submitted = asyncio.create_task(transport.chat(_request("submitted")))
        await asyncio.sleep(0.2)  # flushed and submitted; the 1 s window is still open
        pending = asyncio.create_task(transport.chat(_request("pending")))
        await asyncio.sleep(0)
        await transport.aclose()
        assert transport.batches_submitted == 1
        for task in (submitted, pending):
            with pytest.raises(TransientLLMError, match="closed"):
                await task
        with pytest.raises(TransientLLMError, match="closed"):
            await transport.chat(_request("late"))
