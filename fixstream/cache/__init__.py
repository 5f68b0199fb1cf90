"""Caches for everything worth not doing twice: LLM answers, test runs, repository searches.

One ``Cache`` per worker over a backend chosen by config (memory for one process, Redis for
many). Keys are content hashes of everything that decides the result, including the
repository version, so a new commit never reads an old entry; entries carry tags
(``bug:ID``, ``repo:R``) for ``fixstream cache clear`` and expire after a TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import orjson

from fixstream import telemetry
from fixstream.cache.backends import Backend, MemoryBackend, RedisBackend
from fixstream.schemas import CallScope

CACHES = ("llm", "semantic", "tests", "search")
"""What ``cache stats`` reports on: exact LLM answers, near-duplicate answers, test runs,
repository searches."""


def key_of(*parts: object) -> str:
    """A stable hash of everything that decides a cached result."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def bug_tag(bug_id: str) -> str:
    return f"bug:{bug_id}"


def repo_tag(repo: str) -> str:
    return f"repo:{repo}"


def tags_of(bug_id: str | None, scope: CallScope | None) -> list[str]:
    """What ``cache clear --bug`` and ``--repo`` find an entry by."""
    tags = [bug_tag(bug_id)] if bug_id else []
    if scope is not None and scope.repo:
        tags.append(repo_tag(scope.repo))
    return tags


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    similarity: float


@dataclass
class CacheStats:
    backend: str
    entries: int
    bytes: int
    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per cache: hits, misses, tokens_saved, seconds_saved."""

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "entries": self.entries, "bytes": self.bytes,
                "counters": self.counters}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> CacheStats:
        return cls(data["backend"], data["entries"], data["bytes"], data["counters"])

    def hit_rate(self, cache: str) -> float:
        c = self.counters.get(cache, {})
        looked = c.get("hits", 0) + c.get("misses", 0)
        return c.get("hits", 0) / looked if looked else 0.0


class Cache:
    def __init__(self, backend: Backend, ttl_s: float, index_limit: int = 2000) -> None:
        self.backend = backend
        self.ttl_s = ttl_s
        self.index_limit = index_limit

    async def get(self, cache: str, key: str) -> bytes | None:
        value = await self.backend.get(key)
        await self.counted(cache, hit=value is not None)
        return value

    async def counted(self, cache: str, *, hit: bool) -> None:
        await self.backend.count(f"{cache}.{'hits' if hit else 'misses'}")
        telemetry.active().cache_lookup(cache, hit)

    async def put(self, key: str, value: bytes, tags: list[str]) -> None:
        await self.backend.put(key, value, tags, self.ttl_s)

    async def saved(self, cache: str, tokens: int, seconds: float) -> None:
        """What a hit spared: the tokens and seconds the original call took."""
        if tokens:
            await self.backend.count(f"{cache}.tokens_saved", tokens)
        if seconds > 0:
            await self.backend.count(f"{cache}.seconds_saved", seconds)
        telemetry.active().cache_saved(cache, tokens, seconds)

    async def nearest(self, index: str, vector: np.ndarray, threshold: float) -> Match | None:
        """The most similar entry in ``index`` at or above ``threshold`` (cosine), if any.

        A brute-force scan of one index, which holds one repository version's entries for one
        call site, bounded by ``index_limit``: small enough that a vector database would buy
        nothing here."""
        items = await self.backend.index_items(index)
        if not items:
            return None
        keys = list(items)
        matrix = np.frombuffer(b"".join(items[k] for k in keys), dtype=np.float32)
        matrix = matrix.reshape(len(keys), -1)
        if matrix.shape[1] != vector.shape[0]:
            return None  # another embedding model wrote this index
        scores = matrix @ vector
        best = int(np.argmax(scores))
        if float(scores[best]) < threshold:
            return None
        return Match(keys[best], float(scores[best]))

    async def remember(self, index: str, key: str, vector: np.ndarray) -> None:
        packed = vector.astype(np.float32).tobytes()
        await self.backend.index_add(index, key, packed, self.index_limit)

    async def forget(self, index: str, key: str) -> None:
        await self.backend.index_drop(index, key)

    async def clear(self, *, bug: str | None = None, repo: str | None = None) -> int:
        """Drop a bug's entries, a repository's, or (neither given) everything."""
        if bug is not None:
            return await self.backend.clear(bug_tag(bug))
        if repo is not None:
            return await self.backend.clear(repo_tag(repo))
        return await self.backend.clear(None)

    async def stats(self) -> CacheStats:
        entries, size = await self.backend.size()
        counters: dict[str, dict[str, float]] = {c: {} for c in CACHES}
        for name, value in (await self.backend.counters()).items():
            cache, _, what = name.partition(".")
            counters.setdefault(cache, {})[what] = value
        return CacheStats(self.backend.name, entries, size, counters)

    async def aclose(self) -> None:
        await self.backend.aclose()


def unit(vector: list[float]) -> np.ndarray:
    """The vector as float32, scaled to length 1, so a dot product is the cosine."""
    arr = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 0 else arr


def build_cache(backend: str, redis_url: str | None, *, ttl_s: float, memory_mb: int,
                prefix: str) -> Cache | None:  # fmt: skip
    """The cache the settings ask for: ``auto`` is Redis when a Redis URL is set."""
    if backend == "off":
        return None
    if backend == "redis" or (backend == "auto" and redis_url):
        if not redis_url:
            raise ValueError("FIXSTREAM_CACHE=redis needs FIXSTREAM_REDIS_URL")
        return Cache(RedisBackend(redis_url, prefix=f"{prefix}:cache"), ttl_s)
    return Cache(MemoryBackend(memory_mb * 1024 * 1024, ttl_s), ttl_s)
