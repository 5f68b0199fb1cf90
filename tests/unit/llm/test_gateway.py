"""The gateway's own logic with a scripted model: re-asks, retry policy, accounting."""

from __future__ import annotations

import httpx2
import openai
import pytest
from pydantic import BaseModel

from fixstream.errors import (
    InvalidOutputError,
    PermanentLLMError,
    RateLimitedError,
    RetryBudgetExhaustedError,
    TransientLLMError,
)
from fixstream.llm.accounting import Price, cost_usd
from fixstream.llm.gateway import Gateway, GatewayConfig
from fixstream.llm.transport import ScriptedTransport, translate


class Verdict(BaseModel):
    implicated: bool
    score: float
    why: str


GOOD = '{"implicated": true, "score": 0.9, "why": "divides by quantity"}'
FAST = GatewayConfig(backoff_base_s=0.001, backoff_max_s=0.01, max_attempts=4, max_reasks=2)
ASK = [{"role": "user", "content": "is this chunk implicated?"}]


async def test_valid_answer_is_parsed_and_accounted():
    transport = ScriptedTransport([GOOD])
    gateway = Gateway(transport, GatewayConfig(models={"default": "gpt-4.1"}))
    answer = await gateway.structured(Verdict, ASK, purpose="root_cause", bug_id="b1")
    assert answer.value == Verdict(implicated=True, score=0.9, why="divides by quantity")
    record = answer.record
    assert (record.attempts, record.reasks, record.model) == (1, 0, "gpt-4.1")
    assert record.tokens_in > 0 and record.tokens_out > 0
    assert record.cost_usd == pytest.approx((record.tokens_in * 2 + record.tokens_out * 8) / 1e6)
    fmt = transport.requests[0].response_format
    assert fmt["json_schema"]["schema"]["required"] == ["implicated", "score", "why"]


async def test_invalid_output_is_reasked_with_the_error_then_accepted():
    transport = ScriptedTransport(['{"implicated": "maybe"', '{"implicated": true}', GOOD])
    answer = await Gateway(transport, FAST).structured(Verdict, ASK, purpose="p")
    assert answer.record.reasks == 2
    second, third = transport.requests[1], transport.requests[2]
    assert "not valid JSON" in second.messages[-1]["content"]
    assert second.messages[-2] == {"role": "assistant", "content": '{"implicated": "maybe"'}
    assert "score: Field required" in third.messages[-1]["content"]


async def test_reasks_are_bounded_and_end_in_a_clear_error():
    transport = ScriptedTransport(["nope"] * 3)
    with pytest.raises(InvalidOutputError, match="Verdict: still invalid after 3 answers"):
        await Gateway(transport, FAST).structured(Verdict, ASK, purpose="p")
    assert len(transport.requests) == 3


async def test_fenced_json_is_accepted():
    answer = await Gateway(ScriptedTransport([f"```json\n{GOOD}\n```"]), FAST).structured(
        Verdict, ASK, purpose="p"
    )
    assert answer.value.implicated is True


@pytest.mark.parametrize(
    "error",
    [
        RateLimitedError("429", retry_after=0.001),
        RateLimitedError("429 without header"),
        TransientLLMError("HTTP 503"),
    ],
)
async def test_transient_errors_are_retried(error):
    transport = ScriptedTransport([error, error, GOOD])
    answer = await Gateway(transport, FAST).structured(Verdict, ASK, purpose="p")
    assert answer.record.attempts == 3
    assert answer.record.rate_limited == (2 if isinstance(error, RateLimitedError) else 0)


async def test_permanent_errors_are_not_retried():
    transport = ScriptedTransport([PermanentLLMError("HTTP 400: bad request"), GOOD])
    with pytest.raises(PermanentLLMError):
        await Gateway(transport, FAST).structured(Verdict, ASK, purpose="p")
    assert len(transport.requests) == 1


async def test_retry_budget_exhaustion_names_the_last_error():
    transport = ScriptedTransport([TransientLLMError("HTTP 500")] * 4)
    with pytest.raises(RetryBudgetExhaustedError, match="gave up after 4 attempts.*HTTP 500"):
        await Gateway(transport, FAST).structured(Verdict, ASK, purpose="p")


async def test_retry_after_is_honoured():
    gateway = Gateway(ScriptedTransport([RateLimitedError("429", retry_after=0.3), GOOD]), FAST)
    import time

    started = time.perf_counter()
    await gateway.structured(Verdict, ASK, purpose="p")
    assert time.perf_counter() - started >= 0.3


async def test_a_429_halves_the_concurrency_window():
    gateway = Gateway(ScriptedTransport([RateLimitedError("429", retry_after=0.0), GOOD]), FAST)
    before = gateway.window.limit
    await gateway.structured(Verdict, ASK, purpose="p")
    assert gateway.window.limit < before
    assert gateway.window.cuts == 1


def _status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://sim/v1/chat/completions")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    cls = {
        429: openai.RateLimitError,
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        404: openai.NotFoundError,
        500: openai.InternalServerError,
    }.get(status, openai.APIStatusError)
    return cls("boom", response=response, body=None)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, RateLimitedError),
        (500, TransientLLMError),
        (502, TransientLLMError),
        (503, TransientLLMError),
        (400, PermanentLLMError),
        (401, PermanentLLMError),
        (404, PermanentLLMError),
        (422, PermanentLLMError),
    ],
)
def test_openai_errors_map_to_retryable_or_not(status, expected):
    assert isinstance(translate(_status_error(status)), expected)


def test_retry_after_headers_are_read_in_ms_or_seconds():
    assert translate(_status_error(429, {"retry-after-ms": "1500"})).retry_after == 1.5
    assert translate(_status_error(429, {"retry-after": "2"})).retry_after == 2.0
    assert translate(_status_error(429)).retry_after is None
    request = httpx2.Request("POST", "http://sim/v1")
    assert isinstance(translate(openai.APITimeoutError(request=request)), TransientLLMError)
    assert isinstance(translate(openai.APIConnectionError(request=request)), TransientLLMError)


async def test_ledger_sums_per_bug_and_purpose():
    gateway = Gateway(ScriptedTransport(script=lambda r: GOOD), FAST)
    for bug, purpose in [("a", "fix"), ("a", "root_cause"), ("b", "fix")]:
        await gateway.structured(Verdict, ASK, purpose=purpose, bug_id=bug)
    assert gateway.ledger.totals(bug_id="a").calls == 2
    assert gateway.ledger.totals(purpose="fix").calls == 2
    assert gateway.ledger.totals().tokens_out == 3 * gateway.ledger.records[0].tokens_out
    gateway.ledger.forget("a")
    assert gateway.ledger.totals().calls == 1


def test_cost_uses_the_price_table_and_unknown_models_cost_nothing():
    prices = {"m": Price(input=1.0, output=10.0)}
    assert cost_usd(prices, "m", 1_000_000, 100_000) == pytest.approx(2.0)
    assert cost_usd(prices, "other", 10, 10) == 0.0


async def test_model_per_purpose_falls_back_to_default():
    transport = ScriptedTransport(script=lambda r: GOOD)
    config = GatewayConfig(models={"default": "gpt-4.1", "summary": "gpt-4.1-mini"})
    gateway = Gateway(transport, config)
    await gateway.structured(Verdict, ASK, purpose="summary")
    await gateway.structured(Verdict, ASK, purpose="fix")
    assert [r.model for r in transport.requests] == ["gpt-4.1-mini", "gpt-4.1"]
