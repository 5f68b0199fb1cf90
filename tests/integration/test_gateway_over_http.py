"""The gateway against the simulator over real HTTP: structure, faults, rate limits."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from pydantic import BaseModel, Field

from fixstream.errors import LLMError
from fixstream.llm.gateway import Gateway, GatewayConfig
from fixstream.llm.limits import AdaptiveConcurrency, RateBudget
from fixstream.llm.simulator import FaultRates, SimulatorConfig, run_simulator
from fixstream.llm.transport import OpenAITransport

pytestmark = pytest.mark.integration


class Location(BaseModel):
    path: str
    line: int = Field(ge=1)


class Diagnosis(BaseModel):
    implicated: bool
    score: float = Field(ge=0, le=1)
    locations: list[Location] = Field(min_length=1, max_length=3)
    kind: str = Field(pattern="^(logic|crash|performance)$", default="logic")


ASK = [{"role": "user", "content": "Is this chunk implicated in the crash? def f(): return 1/0"}]


def _gateway(base_url: str, **config) -> Gateway:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0, timeout=30)
    budget = config.pop("budget", None)
    window = config.pop("window", None)
    return Gateway(OpenAITransport(client), GatewayConfig(**config), budget=budget, window=window)


class Verdict(BaseModel):
    implicated: bool
    score: float = Field(ge=0, le=1)
    why: str


async def test_structured_output_from_the_simulator_is_valid():
    async with run_simulator(SimulatorConfig(time_scale=0.01)) as sim:
        answer = await _gateway(sim.base_url).structured(
            Verdict, ASK, purpose="root_cause", bug_id="b", max_tokens=120
        )
    assert isinstance(answer.value, Verdict)
    record = answer.record
    assert record.tokens_in > 10 and record.tokens_out > 0
    assert 0 < record.ttft_s <= record.latency_s
    assert record.attempts == 1 and record.reasks == 0


async def test_hundred_calls_through_thirty_percent_faults_never_answer_wrong():
    faults = FaultRates(rate_limit=0.075, error_5xx=0.075, hang=0.075, malformed=0.075)
    config = SimulatorConfig(time_scale=0.01, faults=faults, hang_seconds=5.0, seed=7)
    async with run_simulator(config) as sim:
        gateway = _gateway(
            sim.base_url,
            timeout_s=0.5,
            max_attempts=8,
            max_reasks=3,
            backoff_base_s=0.02,
            backoff_max_s=0.2,
            window=AdaptiveConcurrency(32),
        )

        async def one(i: int):
            try:
                return await gateway.structured(
                    Verdict,
                    [{"role": "user", "content": f"chunk {i}: x = 1/0"}],
                    purpose="root_cause",
                    bug_id=f"b{i}",
                    max_tokens=120,
                )
            except LLMError as exc:
                return exc

        results = await asyncio.gather(*(one(i) for i in range(100)))
        stats = sim.stats.snapshot()
    answers = [r for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(answers) + len(errors) == 100
    for answer in answers:
        Verdict.model_validate(answer.value.model_dump())  # every answer is schema-valid
    for error in errors:
        assert str(error), "a failure always says why"
    assert len(answers) >= 95
    assert sum(stats["faults"].values()) >= 20, stats["faults"]
    assert set(stats["faults"]) >= {"rate_limit", "error_5xx", "hang", "malformed"}
    assert sum(a.record.attempts for a in answers) > len(answers), "faults were retried"
    assert sum(a.record.reasks for a in answers) > 0, "malformed answers were re-asked"


async def _rate_limited_burst(gateways: list[Gateway], calls: int) -> tuple[list, float]:
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            gateways[i % len(gateways)].structured(
                Verdict,
                [{"role": "user", "content": f"question {i} " * 20}],
                purpose="p",
                max_tokens=100,
            )
            for i in range(calls)
        )
    )
    return results, time.perf_counter() - started


# The simulator's "minute" is 60 * time_scale seconds; the gateway's window matches it.
TPM_PER_WINDOW = 3000
SCALE = 1 / 60  # a one-second minute
PAD = 0.15  # simulator and gateway share one busy event loop here: transit takes ~0.1 s


async def test_tpm_limit_loses_no_call_and_holds_the_rate():
    config = SimulatorConfig(time_scale=SCALE, tpm=TPM_PER_WINDOW)
    async with run_simulator(config) as sim:
        budget = RateBudget(TPM_PER_WINDOW, None, window_seconds=1, pad=PAD)
        gateway = _gateway(sim.base_url, budget=budget, backoff_base_s=0.05)
        results, elapsed = await _rate_limited_burst([gateway], 40)
        stats = sim.stats.snapshot()
    assert len(results) == 40  # no call lost
    charged = sum(r.record.estimated_in + 100 for r in results)
    # one full window may go at once, then the budget paces the rest
    assert charged / elapsed <= TPM_PER_WINDOW * (1 + 1 / max(1.0, elapsed - 1)) * 1.05
    # unpaced, this burst draws about 48 429s; paced, none on a quiet machine, a few when a
    # busy loop delays a call across the server's window boundary
    assert stats["rate_limited"] <= 5, "the gateway paced itself below the server's limit"


async def test_two_workers_share_one_budget_through_redis(redis_url):
    config = SimulatorConfig(time_scale=SCALE, tpm=TPM_PER_WINDOW)
    async with run_simulator(config) as sim:
        workers = [
            _gateway(
                sim.base_url,
                budget=RateBudget(
                    TPM_PER_WINDOW,
                    None,
                    window_seconds=1,
                    pad=PAD,
                    redis_url=redis_url,
                    key="shared-test",
                ),
                backoff_base_s=0.05,
            )
            for _ in range(2)
        ]
        results, _elapsed = await _rate_limited_burst(workers, 40)
        stats = sim.stats.snapshot()
    assert len(results) == 40
    assert stats["rate_limited"] <= 2, "two workers on one Redis budget stay under the limit"


async def test_two_workers_without_shared_budget_overrun_the_server():
    """The control for the test above: separate in-memory budgets double the rate."""
    config = SimulatorConfig(time_scale=SCALE, tpm=TPM_PER_WINDOW)
    async with run_simulator(config) as sim:
        workers = [
            _gateway(
                sim.base_url,
                budget=RateBudget(TPM_PER_WINDOW, None, window_seconds=1, pad=PAD),
                backoff_base_s=0.05,
            )
            for _ in range(2)
        ]
        results, _ = await _rate_limited_burst(workers, 40)
        stats = sim.stats.snapshot()
    assert len(results) == 40  # retries still deliver every call
    assert stats["rate_limited"] > 2
