"""Where cached values live: one process's memory, or Redis shared by every worker.

Both hold opaque bytes under string keys with a TTL, a tag index for invalidation
(``bug:ID``, ``repo:R``), small vector indexes for the semantic cache, and counters for
``fixstream cache stats``. Values are never trusted to still be there: an index entry whose
value expired or was cleared is a miss, and is dropped when seen.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Protocol

from cachetools import TTLCache


class Backend(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes, tags: list[str], ttl_s: float) -> None: ...
    async def clear(self, tag: str | None = None) -> int:
        """Drop every entry with ``tag`` (all entries when None); returns how many."""
        ...

    async def index_add(self, index: str, key: str, vector: bytes, limit: int) -> None: ...
    async def index_items(self, index: str) -> dict[str, bytes]: ...
    async def index_drop(self, index: str, key: str) -> None: ...
    async def count(self, field: str, amount: float = 1) -> None: ...
    async def counters(self) -> dict[str, float]: ...
    async def size(self) -> tuple[int, int]:
        """(entries, bytes) of cached values."""
        ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """Bounded by bytes, least recently used first out, and every entry expires (cachetools)."""

    name = "memory"

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, ttl_s: float = 7 * 86400) -> None:
        self.values: TTLCache[str, bytes] = TTLCache(maxsize=max_bytes, ttl=ttl_s, getsizeof=len)
        self.tags: dict[str, set[str]] = {}
        self.indexes: dict[str, OrderedDict[str, bytes]] = {}
        self.stats: Counter[str] = Counter()

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def put(self, key: str, value: bytes, tags: list[str], ttl_s: float) -> None:
        # one TTL per cache (cachetools): ``ttl_s`` is the Redis backend's per-entry knob
        if len(value) > self.values.maxsize:
            return
        self.values[key] = value
        for tag in tags:
            self.tags.setdefault(tag, set()).add(key)
        if len(self.tags) > 2 * len(self.values) + 1000:  # tags of evicted entries
            live = {tag: keys & self.values.keys() for tag, keys in self.tags.items()}
            self.tags = {tag: keys for tag, keys in live.items() if keys}

    async def clear(self, tag: str | None = None) -> int:
        if tag is None:
            dropped = len(self.values)
            self.values.clear()
            self.tags.clear()
            self.indexes.clear()
            return dropped
        keys = self.tags.pop(tag, set())
        dropped = sum(1 for k in keys if self.values.pop(k, None) is not None)
        for index in self.indexes.values():
            for k in keys:
                index.pop(k, None)
        return dropped

    async def index_add(self, index: str, key: str, vector: bytes, limit: int) -> None:
        entries = self.indexes.setdefault(index, OrderedDict())
        entries[key] = vector
        entries.move_to_end(key)
        while len(entries) > limit:
            entries.popitem(last=False)

    async def index_items(self, index: str) -> dict[str, bytes]:
        return dict(self.indexes.get(index, {}))

    async def index_drop(self, index: str, key: str) -> None:
        self.indexes.get(index, {}).pop(key, None)

    async def count(self, field: str, amount: float = 1) -> None:
        self.stats[field] += amount

    async def counters(self) -> dict[str, float]:
        return dict(self.stats)

    async def size(self) -> tuple[int, int]:
        return len(self.values), int(self.values.currsize)

    async def aclose(self) -> None:
        return None


class RedisBackend:
    """Every worker sees the same entries. Keys: ``PREFIX:v:KEY`` values (SET with EX),
    ``PREFIX:t:TAG`` sets of keys, ``PREFIX:i:INDEX`` hashes of vectors, ``PREFIX:stats``."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "fixstream:cache") -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.prefix = prefix

    def _k(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(self._k("v", key))

    async def put(self, key: str, value: bytes, tags: list[str], ttl_s: float) -> None:
        ttl = max(1, int(ttl_s))
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self._k("v", key), value, ex=ttl)
            for tag in tags:
                pipe.sadd(self._k("t", tag), key)
                pipe.expire(self._k("t", tag), ttl)
            await pipe.execute()

    async def _keys(self, pattern: str) -> list[bytes]:
        return [k async for k in self.client.scan_iter(match=pattern, count=1000)]

    async def clear(self, tag: str | None = None) -> int:
        if tag is None:
            values = await self._keys(self._k("v", "*"))
            rest = [
                *(await self._keys(self._k("t", "*"))),
                *(await self._keys(self._k("i", "*"))),
            ]
            for batch in _batches([*values, *rest], 500):
                await self.client.delete(*batch)
            return len(values)
        tag_key = self._k("t", tag)
        members = [m.decode() for m in await self.client.smembers(tag_key)]
        dropped = 0
        for batch in _batches(members, 500):
            dropped += await self.client.delete(*(self._k("v", m) for m in batch))
        await self.client.delete(tag_key)
        return dropped  # index entries of dropped values are pruned when next seen

    async def index_add(self, index: str, key: str, vector: bytes, limit: int) -> None:
        name = self._k("i", index)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(name, key, vector)
            pipe.hlen(name)
            _, length = await pipe.execute()
        if length > limit:  # no order in a hash: drop arbitrary others to stay bounded
            others = [k for k in await self.client.hkeys(name) if k.decode() != key]
            await self.client.hdel(name, *others[: length - limit])

    async def index_items(self, index: str) -> dict[str, bytes]:
        raw = await self.client.hgetall(self._k("i", index))
        return {k.decode(): v for k, v in raw.items()}

    async def index_drop(self, index: str, key: str) -> None:
        await self.client.hdel(self._k("i", index), key)

    async def count(self, field: str, amount: float = 1) -> None:
        await self.client.hincrbyfloat(self._k("stats", "all"), field, amount)

    async def counters(self) -> dict[str, float]:
        raw = await self.client.hgetall(self._k("stats", "all"))
        return {k.decode(): float(v) for k, v in raw.items()}

    async def size(self) -> tuple[int, int]:
        keys = await self._keys(self._k("v", "*"))
        total = 0
        for batch in _batches(keys, 500):
            async with self.client.pipeline(transaction=False) as pipe:
                for k in batch:
                    pipe.strlen(k)
                total += sum(await pipe.execute())
        return len(keys), total

    async def aclose(self) -> None:
        await self.client.aclose()


def _batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
