"""The gateway's answer cache: exact by request, and semantic (opt-in per call site).

Exact: the key is the model, the messages, the answer schema, the sampling parameters and
the repository version the prompt was built from. Only deterministic requests are cached.

Semantic: a call site with a threshold also looks for an earlier answer whose prompt's
embedding is that similar (cosine), among calls of the same site, model, schema and
repository version. It is for inputs where a near-identical text should give the same
answer (a duplicate report summarised again); edit proposals are never on by default.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import orjson

from fixstream.cache import Cache, key_of, tags_of, unit
from fixstream.llm.transport import ChatRequest
from fixstream.schemas import CallScope

DEFAULT_SEMANTIC = {"summary": 0.92}
"""Call sites (purposes) with a semantic cache, and their thresholds: report summaries."""
EMBED_CHARS = 8000
"""The prompt text embedded for a semantic lookup: its start and end, this long in all."""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    """What the original call took: what a hit saves."""
    similarity: float | None = None
    """None for an exact hit; the cosine similarity for a semantic one."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What a lookup learnt, kept for storing the answer after a miss."""

    key: str
    tags: list[str]
    index: str | None = None
    vector: np.ndarray | None = None


def request_key(request: ChatRequest, scope: CallScope | None) -> str:
    return key_of(
        "llm", request.model, list(request.messages), request.response_format,
        request.temperature, request.max_tokens, scope.repo if scope else "",
        scope.version if scope else "",
    )  # fmt: skip


def semantic_text(request: ChatRequest, limit: int = EMBED_CHARS) -> str:
    """The prompt as the embedding sees it: user and system text, bounded."""
    text = "\n".join(m.get("content", "") for m in request.messages)
    if len(text) <= limit:
        return text
    return text[: limit // 2] + "\n" + text[-limit // 2 :]


class AnswerCache:
    def __init__(self, cache: Cache, semantic: dict[str, float] | None = None) -> None:
        self.cache = cache
        self.semantic = dict(DEFAULT_SEMANTIC if semantic is None else semantic)

    async def lookup(
        self,
        request: ChatRequest,
        purpose: str,
        scope: CallScope | None,
        bug_id: str | None,
        embed: Callable[[str], Awaitable[list[float]]],
    ) -> tuple[Probe, CachedAnswer | None]:
        key = request_key(request, scope)
        tags = tags_of(bug_id, scope)
        raw = await self.cache.get("llm", key)
        if raw is not None:
            return Probe(key, tags), self._answer(raw)
        threshold = self.semantic.get(purpose)
        if threshold is None:
            return Probe(key, tags), None
        index = key_of(
            "semantic", purpose, request.model, request.response_format,
            scope.repo if scope else "", scope.version if scope else "",
        )  # fmt: skip
        vector = unit(await embed(semantic_text(request)))
        probe = Probe(key, tags, index, vector)
        match = await self.cache.nearest(index, vector, threshold)
        if match is None:
            await self.cache.counted("semantic", hit=False)
            return probe, None
        raw = await self.cache.get("semantic", match.key)
        if raw is None:  # the answer expired or was cleared: the index entry goes too
            await self.cache.forget(index, match.key)
            return probe, None
        answer = self._answer(raw)
        await self.cache.put(key, raw, tags)  # an exact repeat of this prompt now hits directly
        return probe, CachedAnswer(
            answer.content, answer.tokens_in, answer.tokens_out, answer.latency_s,
            similarity=match.similarity,
        )  # fmt: skip

    async def store(
        self, probe: Probe, content: str, tokens_in: int, tokens_out: int, latency_s: float
    ) -> None:
        value = orjson.dumps(
            {"content": content, "tokens_in": tokens_in, "tokens_out": tokens_out,
             "latency_s": latency_s, "stored_at": time.time()}
        )  # fmt: skip
        await self.cache.put(probe.key, value, probe.tags)
        if probe.index is not None and probe.vector is not None:
            await self.cache.remember(probe.index, probe.key, probe.vector)

    async def saved(self, answer: CachedAnswer, lookup_s: float) -> None:
        cache = "llm" if answer.similarity is None else "semantic"
        await self.cache.saved(
            cache, answer.tokens_in + answer.tokens_out, answer.latency_s - lookup_s
        )

    @staticmethod
    def _answer(raw: bytes) -> CachedAnswer:
        data = orjson.loads(raw)
        return CachedAnswer(
            data["content"], data["tokens_in"], data["tokens_out"], data["latency_s"]
        )
