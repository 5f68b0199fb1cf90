"""The one gateway for every LLM call: caches, retries, limits, structured output, accounting.

Stages ask for a pydantic model; the gateway asks the model for it with a JSON schema,
validates the answer and re-asks with the validation error a bounded number of times.
Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential
backoff and jitter, honouring Retry-After; a 4xx that retrying cannot fix is raised at once.
A validated answer to a deterministic request is cached (``llm.cache``); a bug with batch
priority has its calls sent through the Batch API instead of streamed.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import orjson
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from fixstream import telemetry
from fixstream.errors import (
    InvalidOutputError,
    RateLimitedError,
    RetryBudgetExhaustedError,
    TransientLLMError,
    describe_validation,
)
from fixstream.llm.accounting import DEFAULT_PRICES, CallRecord, Ledger, Price, cost_usd
from fixstream.llm.cache import AnswerCache, CachedAnswer
from fixstream.llm.limits import AdaptiveConcurrency, RateBudget
from fixstream.llm.transport import ChatReply, ChatRequest, ChatTransport, Message, Transport
from fixstream.schemas import CallScope
from fixstream.tokens import count_prompt_tokens, count_tokens

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass(frozen=True)
class GatewayConfig:
    models: dict[str, str] = field(
        default_factory=lambda: {"default": "gpt-4.1", "embedding": "text-embedding-3-small"}
    )
    """Model per purpose (e.g. a cheap one for summaries); ``default`` for the rest, and
    ``embedding`` for the semantic cache's embeddings."""
    max_attempts: int = 6
    max_reasks: int = 2
    timeout_s: float = 60.0
    batch_timeout_s: float = 86_400.0
    """How long one Batch API call may take (OpenAI's completion window is 24 h)."""
    backoff_base_s: float = 0.25
    backoff_max_s: float = 20.0
    temperature: float = 0.0
    prices: dict[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    value: T
    record: CallRecord


@dataclass
class _CallStats:
    attempts: int = 0
    rate_limited: int = 0


def response_format(schema: type[BaseModel]) -> dict[str, object]:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": schema.__name__,
            "schema": schema.model_json_schema(),
            "strict": False,
        },
    }


def parse_structured(schema: type[T], reply: ChatReply) -> T:
    """The reply as ``schema``, or a ValueError saying what is wrong with it."""
    if reply.finish_reason == "length":
        raise ValueError("the answer was cut off at max_tokens before the JSON ended")
    text = reply.content
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"does not match the schema: {describe_validation(exc, 8)}") from None


class Gateway:
    def __init__(
        self,
        transport: Transport,
        config: GatewayConfig | None = None,
        *,
        budget: RateBudget | None = None,
        window: AdaptiveConcurrency | None = None,
        ledger: Ledger | None = None,
        cache: AnswerCache | None = None,
        batch: ChatTransport | None = None,
    ) -> None:
        self.transport = transport
        self.batch = batch
        """Where batch-priority calls go; None sends them the interactive way."""
        self.cache = cache
        self.config = config or GatewayConfig()
        self.budget = budget or RateBudget(tpm=None, rpm=None)
        self.window = window or AdaptiveConcurrency(64)
        self.ledger = ledger or Ledger()

    def model_for(self, purpose: str) -> str:
        return self.config.models.get(purpose) or self.config.models.get("default", "gpt-4.1")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, self.config.backoff_base_s)
        backoff = wait_random_exponential(
            multiplier=self.config.backoff_base_s, max=self.config.backoff_max_s
        )
        return backoff(state)

    async def _attempt(
        self, request: ChatRequest, estimate: int, stats: _CallStats, batch: bool
    ) -> ChatReply:
        stats.attempts += 1
        if batch and self.batch is not None:
            # the Batch API has its own queue and limits: no TPM budget, no connection slot
            try:
                async with asyncio.timeout(self.config.batch_timeout_s):
                    return await self.batch.chat(request)
            except TimeoutError:
                raise TransientLLMError(
                    f"batch gave no answer in {self.config.batch_timeout_s}s"
                ) from None
        async with self.window.slot():
            # charged when the request really leaves, as the server counts it
            await self.budget.acquire(estimate + request.max_tokens)
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    reply = await self.transport.chat(request)
            except TimeoutError:
                raise TransientLLMError(f"no answer in {self.config.timeout_s}s") from None
            except RateLimitedError:
                stats.rate_limited += 1
                self.window.on_rate_limited()
                raise
        self.window.on_success()
        return reply

    async def _retried(self, model: str, attempt: Callable[..., Awaitable[R]], *args: Any) -> R:
        """One answer, retried on transient errors until the attempt budget runs out."""

        def exhausted(state: RetryCallState) -> R:
            last = state.outcome.exception() if state.outcome else None
            raise RetryBudgetExhaustedError(
                f"{model}: gave up after {state.attempt_number} attempts: "
                f"{type(last).__name__}: {last}"
            ) from last

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((RateLimitedError, TransientLLMError)),
            wait=self._wait,
            stop=stop_after_attempt(self.config.max_attempts),
            retry_error_callback=exhausted,
        )
        return cast(R, await retrying(attempt, *args))

    async def _call(
        self, request: ChatRequest, estimate: int, stats: _CallStats, batch: bool = False
    ) -> ChatReply:
        return await self._retried(request.model, self._attempt, request, estimate, stats, batch)

    async def embed(self, text: str) -> list[float]:
        """One embedding (the semantic cache's), under the same budget and retries as chat."""
        model = self.model_for("embedding")
        tokens = count_tokens(text)

        async def attempt() -> list[float]:
            async with self.window.slot():
                await self.budget.acquire(tokens)
                try:
                    async with asyncio.timeout(self.config.timeout_s):
                        return await self.transport.embed(model, text)
                except TimeoutError:
                    raise TransientLLMError(f"no embedding in {self.config.timeout_s}s") from None

        return await self._retried(model, attempt)

    def _record(
        self,
        *,
        bug_id: str | None,
        purpose: str,
        model: str,
        replies: list[ChatReply],
        estimate: int,
        started: float,
        stats: _CallStats,
    ) -> CallRecord:
        tokens_in = sum(r.input_tokens for r in replies)
        tokens_out = sum(r.output_tokens for r in replies)
        record = CallRecord(
            bug_id=bug_id,
            purpose=purpose,
            model=model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            estimated_in=estimate,
            cost_usd=cost_usd(self.config.prices, model, tokens_in, tokens_out),
            latency_s=time.perf_counter() - started,
            ttft_s=replies[-1].ttft_s if replies else 0.0,
            attempts=stats.attempts,
            reasks=max(0, len(replies) - 1),
            rate_limited=stats.rate_limited,
        )
        self.ledger.record(record)
        telemetry.active().llm_call(record)
        return record

    def _request(
        self, purpose: str, messages: Sequence[Message], max_tokens: int, fmt: dict | None
    ) -> ChatRequest:
        return ChatRequest(
            model=self.model_for(purpose),
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=self.config.temperature,
            response_format=fmt,
        )

    async def text(
        self,
        messages: Sequence[Message],
        *,
        purpose: str,
        bug_id: str | None = None,
        max_tokens: int = 1024,
    ) -> Answer[str]:  # type: ignore[type-var]
        started = time.perf_counter()
        request = self._request(purpose, messages, max_tokens, None)
        estimate = count_prompt_tokens(request.messages)
        stats = _CallStats()
        reply = await self._call(request, estimate, stats)
        record = self._record(
            bug_id=bug_id,
            purpose=purpose,
            model=request.model,
            replies=[reply],
            estimate=estimate,
            started=started,
            stats=stats,
        )
        return Answer(reply.content, record)  # type: ignore[arg-type]

    async def structured(
        self,
        schema: type[T],
        messages: Sequence[Message],
        *,
        purpose: str,
        bug_id: str | None = None,
        max_tokens: int = 1024,
        scope: CallScope | None = None,
        cache: bool | None = None,
    ) -> Answer[T]:
        """A validated ``schema`` instance; re-asks with the error, then InvalidOutputError.

        ``scope`` says which repository version the prompt was built from (part of the cache
        key) and the bug's priority. ``cache``: None caches deterministic requests only
        (temperature 0), True and False force it."""
        started = time.perf_counter()
        conversation = list(messages)
        fmt = response_format(schema)
        first = self._request(purpose, conversation, max_tokens, fmt)
        use_cache = self.cache is not None and (
            cache if cache is not None else first.temperature == 0
        )
        probe = None
        if use_cache:
            assert self.cache is not None
            probe, hit = await self.cache.lookup(first, purpose, scope, bug_id, self.embed)
            if hit is not None:
                try:
                    value = parse_structured(schema, _reply_of(hit))
                except ValueError:
                    pass  # an entry from an older schema: ask the model, then overwrite it
                else:
                    record = await self._hit(hit, purpose, first.model, bug_id, started)
                    return Answer(value, record)
        batch = scope is not None and scope.priority == "batch"
        stats = _CallStats()
        replies: list[ChatReply] = []
        estimate = count_prompt_tokens(messages, fmt)
        problem = ""
        for _ in range(self.config.max_reasks + 1):
            request = self._request(purpose, conversation, max_tokens, fmt)
            reply = await self._call(request, count_prompt_tokens(conversation, fmt), stats, batch)
            replies.append(reply)
            try:
                value = parse_structured(schema, reply)
            except ValueError as exc:
                problem = str(exc)
                conversation += [
                    {"role": "assistant", "content": reply.content},
                    {
                        "role": "user",
                        "content": f"That answer is invalid: {problem}. Answer again with "
                        f"only a JSON object that matches the {schema.__name__} schema.",
                    },
                ]
                continue
            record = self._record(
                bug_id=bug_id,
                purpose=purpose,
                model=request.model,
                replies=replies,
                estimate=estimate,
                started=started,
                stats=stats,
            )
            if probe is not None and self.cache is not None:
                await self.cache.store(
                    probe, reply.content, record.tokens_in, record.tokens_out, record.latency_s
                )
            return Answer(value, record)
        self._record(
            bug_id=bug_id,
            purpose=purpose,
            model=self.model_for(purpose),
            replies=replies,
            estimate=estimate,
            started=started,
            stats=stats,
        )
        raise InvalidOutputError(
            f"{schema.__name__}: still invalid after {len(replies)} answers: {problem}"
        )

    async def _hit(
        self, hit: CachedAnswer, purpose: str, model: str, bug_id: str | None, started: float
    ) -> CallRecord:
        """A cache hit's record: no tokens spent, and what it saved."""
        lookup_s = time.perf_counter() - started
        assert self.cache is not None
        await self.cache.saved(hit, lookup_s)
        record = CallRecord(
            bug_id=bug_id, purpose=purpose, model=model, tokens_in=0, tokens_out=0,
            estimated_in=0, cost_usd=0.0, latency_s=lookup_s, ttft_s=lookup_s, attempts=0,
            reasks=0, rate_limited=0, cache_hit=True, similarity=hit.similarity,
            tokens_saved=hit.tokens_in + hit.tokens_out,
        )  # fmt: skip
        self.ledger.record(record)
        telemetry.active().llm_call(record)
        return record


def _reply_of(hit: CachedAnswer) -> ChatReply:
    return ChatReply(
        content=hit.content, finish_reason="stop", input_tokens=0, output_tokens=0, ttft_s=0.0,
        total_s=0.0,
    )  # fmt: skip
