"""The gateway's exact and semantic caches on the memory backend, with a scripted model."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from pydantic import BaseModel

from fixstream.cache import Cache, CacheStats
from fixstream.cache.backends import MemoryBackend
from fixstream.llm.cache import AnswerCache, request_key
from fixstream.llm.gateway import Gateway, GatewayConfig, response_format
from fixstream.llm.transport import ScriptedTransport
from fixstream.schemas import CallScope


class Summary(BaseModel):
    summary: str


ANSWER = '{"summary": "total() divides by zero on an empty cart"}'
REPORT = (
    "Checkout crashes with ZeroDivisionError in shop/cart.py line 42 when the cart is empty. "
    "Steps: open the shop, remove every item, press checkout. Expected a zero total."
)
NEAR = REPORT.replace("press checkout", "click the checkout button")
OTHER = "The login page shows the wrong avatar after a password reset on mobile browsers only."
SCOPE = CallScope(repo="/repos/shop", version="abc123")


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _gateway(
    answers: int = 5, semantic: dict[str, float] | None = None, temperature: float = 0.0
) -> tuple[Gateway, ScriptedTransport, Cache]:
    transport = ScriptedTransport([ANSWER] * answers)
    cache = Cache(MemoryBackend(), ttl_s=60)
    gateway = Gateway(
        transport,
        GatewayConfig(temperature=temperature),
        cache=AnswerCache(cache, semantic if semantic is not None else {"summary": 0.9}),
    )
    return gateway, transport, cache


async def test_a_repeated_request_is_answered_from_the_cache_with_what_it_saved():
    gateway, transport, cache = _gateway()
    first = await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE)
    second = await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE)
    assert len(transport.requests) == 1
    assert second.value == first.value
    assert not first.record.cache_hit and second.record.cache_hit
    assert second.record.tokens_in == second.record.tokens_out == 0
    assert second.record.tokens_saved == first.record.tokens_in + first.record.tokens_out
    assert second.record.similarity is None
    stats = await cache.stats()
    assert stats.counters["llm"]["hits"] == 1 and stats.counters["llm"]["misses"] == 1
    assert stats.counters["llm"]["tokens_saved"] == second.record.tokens_saved
    assert stats.entries == 1 and stats.bytes > 0


async def test_a_new_commit_or_another_schema_or_parameter_misses():
    gateway, transport, _ = _gateway()
    await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE)
    newer = SCOPE.model_copy(update={"version": "def456"})
    await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=newer)
    await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE, max_tokens=99)
    assert len(transport.requests) == 3


async def test_only_deterministic_requests_are_cached_unless_asked():
    gateway, transport, _ = _gateway(temperature=0.7)
    for _ in range(2):
        await gateway.structured(Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE)
    assert len(transport.requests) == 2
    for _ in range(2):
        await gateway.structured(
            Summary, _ask(REPORT), purpose="reproduce", scope=SCOPE, cache=True
        )
    assert len(transport.requests) == 3


async def test_a_near_duplicate_hits_the_semantic_cache_and_a_different_input_does_not():
    gateway, transport, cache = _gateway()
    await gateway.structured(Summary, _ask(REPORT), purpose="summary", scope=SCOPE)
    near = await gateway.structured(Summary, _ask(NEAR), purpose="summary", scope=SCOPE)
    assert near.record.cache_hit and 0.9 <= near.record.similarity < 1.0
    assert len(transport.requests) == 1
    other = await gateway.structured(Summary, _ask(OTHER), purpose="summary", scope=SCOPE)
    assert not other.record.cache_hit
    assert len(transport.requests) == 2
    # the near-duplicate's prompt is now an exact entry: no embedding needed next time
    embedded = len(transport.embedded)
    again = await gateway.structured(Summary, _ask(NEAR), purpose="summary", scope=SCOPE)
    assert again.record.cache_hit and again.record.similarity is None
    assert len(transport.embedded) == embedded
    stats = await cache.stats()
    assert stats.counters["semantic"]["hits"] == 1 and stats.counters["semantic"]["misses"] == 2


async def test_semantic_lookups_stay_within_one_call_site_and_repository_version():
    gateway, transport, _ = _gateway()
    await gateway.structured(Summary, _ask(REPORT), purpose="summary", scope=SCOPE)
    newer = SCOPE.model_copy(update={"version": "def456"})
    await gateway.structured(Summary, _ask(NEAR), purpose="summary", scope=newer)
    # edit proposals have no semantic cache unless configured
    await gateway.structured(Summary, _ask("fix: " + REPORT), purpose="fix", scope=SCOPE)
    await gateway.structured(Summary, _ask("fix: " + NEAR), purpose="fix", scope=SCOPE)
    assert len(transport.requests) == 4


async def test_an_entry_that_no_longer_validates_is_replaced_by_a_model_answer():
    gateway, transport, cache = _gateway(semantic={})
    request = gateway._request("p", _ask(REPORT), 1024, response_format(Summary))
    stale = {"content": '{"title": "old shape"}', "tokens_in": 1, "tokens_out": 1, "latency_s": 1}
    await cache.put(request_key(request, SCOPE), orjson.dumps(stale), [])
    answer = await gateway.structured(Summary, _ask(REPORT), purpose="p", scope=SCOPE)
    assert not answer.record.cache_hit and len(transport.requests) == 1
    again = await gateway.structured(Summary, _ask(REPORT), purpose="p", scope=SCOPE)
    assert again.record.cache_hit and again.value == answer.value


async def test_clearing_by_bug_or_repository_drops_only_those_entries():
    gateway, transport, cache = _gateway(answers=10, semantic={})
    other = CallScope(repo="/repos/blog", version="1")
    await gateway.structured(Summary, _ask("a"), purpose="p", bug_id="B1", scope=SCOPE)
    await gateway.structured(Summary, _ask("b"), purpose="p", bug_id="B2", scope=SCOPE)
    await gateway.structured(Summary, _ask("c"), purpose="p", bug_id="B3", scope=other)
    assert await cache.clear(bug="B1") == 1
    assert await cache.clear(repo="/repos/blog") == 1
    for text, bug, scope in (("a", "B1", SCOPE), ("b", "B2", SCOPE), ("c", "B3", other)):
        await gateway.structured(Summary, _ask(text), purpose="p", bug_id=bug, scope=scope)
    assert len(transport.requests) == 5  # a and c asked again, b served
    assert await cache.clear() == 3


async def test_memory_backend_is_bounded_by_bytes_least_recently_used_first():
    backend = MemoryBackend(max_bytes=300, ttl_s=60)
    for i in range(3):
        await backend.put(f"k{i}", b"x" * 100, [], 60)
    assert await backend.get("k0") is not None  # k0 is now the most recently used
    await backend.put("k3", b"x" * 100, [], 60)
    assert await backend.get("k1") is None
    assert await backend.get("k0") is not None and await backend.get("k3") is not None
    await backend.put("huge", b"x" * 301, [], 60)
    assert await backend.get("huge") is None


async def test_memory_entries_expire():
    backend = MemoryBackend(ttl_s=0.05)
    await backend.put("k", b"v", [], 0.05)
    assert await backend.get("k") == b"v"
    await asyncio.sleep(0.1)
    assert await backend.get("k") is None


def test_stats_survive_the_round_trip_the_worker_page_makes():
    stats = CacheStats("memory", 3, 120, {"llm": {"hits": 3, "misses": 1}})
    again = CacheStats.from_dict(stats.as_dict())
    assert again == stats and again.hit_rate("llm") == pytest.approx(0.75)
    assert again.hit_rate("tests") == 0.0


async def test_memory_tags_of_evicted_entries_do_not_pile_up():
    backend = MemoryBackend(max_bytes=100, ttl_s=60)
    for i in range(5000):
        await backend.put(f"k{i}", b"x" * 10, [f"bug:{i}"], 60)
    assert len(backend.values) == 10 and len(backend.tags) <= 2 * 10 + 1000
    assert await backend.clear("bug:4999") == 1 and await backend.clear("bug:0") == 0
