"""The gateway for a worker's settings: OPENAI_BASE_URL/OPENAI_API_KEY or fixstream's own."""

from __future__ import annotations

import openai

from fixstream.cache import Cache, build_cache
from fixstream.config import Settings
from fixstream.llm.batch import BatchTransport
from fixstream.llm.cache import AnswerCache
from fixstream.llm.gateway import Gateway, GatewayConfig
from fixstream.llm.limits import AdaptiveConcurrency, RateBudget
from fixstream.llm.transport import OpenAITransport


class NoLLMConfiguredError(RuntimeError):
    pass


def cache_for(settings: Settings) -> Cache | None:
    """The cache the settings choose, shared by the gateway and the tool calls of a worker."""
    return build_cache(
        settings.cache, settings.redis_url, ttl_s=settings.cache_ttl_s,
        memory_mb=settings.cache_memory_mb, prefix=settings.app_id,
    )  # fmt: skip


def build_gateway(settings: Settings, cache: Cache | None = None) -> Gateway:
    """The gateway for these settings: OPENAI_BASE_URL/OPENAI_API_KEY or fixstream's own."""
    if not settings.llm_base_url and not settings.llm_api_key:
        raise NoLLMConfiguredError(
            "no LLM endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY) for a real model, or run "
            "`fixstream sim` and set FIXSTREAM_LLM_BASE_URL (`up` and `demo` do this for you)"
        )
    client = openai.AsyncOpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else "simulator",
        max_retries=0,  # the gateway retries, once, with its own policy
        timeout=settings.llm_timeout,
    )
    return Gateway(
        OpenAITransport(client),
        GatewayConfig(
            models=settings.llm_models,
            max_attempts=settings.llm_max_attempts,
            max_reasks=settings.llm_max_reasks,
            timeout_s=settings.llm_timeout,
            batch_timeout_s=settings.llm_batch_timeout,
            prices=settings.llm_prices,
        ),
        budget=RateBudget(
            settings.llm_tpm,
            settings.llm_rpm,
            window_seconds=settings.llm_rate_window_seconds,
            pad=settings.llm_rate_window_pad,
            redis_url=settings.redis_url,
            key=f"{settings.app_id}:llm",
        ),
        window=AdaptiveConcurrency(settings.llm_max_concurrency),
        cache=AnswerCache(cache, settings.cache_semantic) if cache is not None else None,
        batch=BatchTransport(
            client, flush_s=settings.llm_batch_flush_s, poll_s=settings.llm_batch_poll_s
        ),
    )
