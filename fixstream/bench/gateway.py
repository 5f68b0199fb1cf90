"""Gateway throughput: output tokens/s at 1, 4, 16, 64 concurrent calls, and our overhead.

Overhead per call is the measured latency minus what the simulator's latency model says the
call should take (prefill + decode): HTTP, JSON, the openai client and the gateway itself.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import openai
from pydantic import BaseModel

from fixstream.bench import percentile
from fixstream.llm.gateway import Gateway, GatewayConfig
from fixstream.llm.limits import AdaptiveConcurrency
from fixstream.llm.simulator import builtin_profiles
from fixstream.llm.simulator.latency import total_seconds
from fixstream.llm.simulator.process import simulator_process
from fixstream.llm.transport import OpenAITransport

PROMPT = "Explain what this function does and whether it can divide by zero. " * 30


class LevelResult(BaseModel):
    concurrency: int
    calls: int
    wall_s: float
    output_tokens: int
    output_tps: float
    output_tps_unscaled: float
    speedup: float
    overhead_ms_p50: float
    overhead_ms_p99: float


async def _level(
    base_url: str, concurrency: int, calls: int, model: str, scale: float, max_tokens: int
) -> tuple[float, list]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0, timeout=120)
    gateway = Gateway(
        OpenAITransport(client),
        GatewayConfig(models={"default": model}),
        window=AdaptiveConcurrency(concurrency),
    )
    messages = [{"role": "user", "content": PROMPT}]
    await gateway.text(messages, purpose="warm-up", max_tokens=8)  # imports, connection

    async def worker() -> list:
        # a closed loop: each slot calls again when its answer is in, so no call queues
        return [
            (await gateway.text(messages, purpose="bench", max_tokens=max_tokens)).record
            for _ in range(calls // concurrency)
        ]

    started = time.perf_counter()
    per_worker = await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    await client.close()
    return wall, [record for records in per_worker for record in records]


async def _run(
    base_url: str, levels: list[int], calls_per_slot: int, model: str, scale: float, max_tokens: int
) -> list[LevelResult]:
    profile = builtin_profiles()[model]
    results: list[LevelResult] = []
    base_tps = 0.0
    for concurrency in levels:
        calls = concurrency * calls_per_slot
        wall, records = await _level(base_url, concurrency, calls, model, scale, max_tokens)
        tokens = sum(r.tokens_out for r in records)
        tps = tokens / wall
        base_tps = base_tps or tps
        overheads = [
            (r.latency_s - total_seconds(profile, r.tokens_in, r.tokens_out, scale)) * 1000
            for r in records
        ]
        results.append(
            LevelResult(
                concurrency=concurrency,
                calls=calls,
                wall_s=round(wall, 3),
                output_tokens=tokens,
                output_tps=round(tps, 1),
                output_tps_unscaled=round(tps * scale, 1),
                speedup=round(tps / base_tps, 2),
                overhead_ms_p50=round(statistics.median(overheads), 2),
                overhead_ms_p99=round(percentile(overheads, 0.99), 2),
            )
        )
    return results


def run_gateway_bench(
    levels: list[int], calls_per_slot: int, model: str, scale: float, max_tokens: int
) -> list[LevelResult]:
    with simulator_process("--time-scale", str(scale)) as base_url:
        return asyncio.run(_run(base_url, levels, calls_per_slot, model, scale, max_tokens))
