"""Exact sliding-window RPM/TPM accounting, as an API enforces it.

One algorithm, used three ways: the simulator enforces its limits with ``RateLimiter``; the
gateway paces itself with the same class in one process, or with ``RedisRateLimiter`` (the
same algorithm as one atomic Lua script on Redis's clock) when workers share an account.
Windows are float seconds, so a time-scaled simulator's one-second "minute" works too, and
the log holds one entry per request, not per token.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    retryable: bool = True


class RateLimiter:
    """Sliding-window RPM/TPM accounting in memory; a request's cost is charged when admitted."""

    def __init__(self, rpm: int | None, tpm: int | None, window_seconds: float) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window_seconds
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        events = self._events
        while events and events[0][0] <= cutoff:
            self._tokens -= events.popleft()[1]

    def acquire(self, cost: int, now: float) -> RateDecision:
        """Admit and charge the request, or say how long until enough budget frees."""
        self._prune(now)
        waits: list[tuple[float, str]] = []
        if self.rpm is not None and len(self._events) >= self.rpm:
            oldest_needed = self._events[len(self._events) - self.rpm][0]
            detail = f"requests per min (RPM): Limit {self.rpm}, Used {len(self._events)}"
            waits.append((oldest_needed + self.window - now, detail + ", Requested 1"))
        if self.tpm is not None and self._tokens + cost > self.tpm:
            detail = (
                f"tokens per min (TPM): Limit {self.tpm}, Used {self._tokens}, Requested {cost}"
            )
            if cost > self.tpm:
                return RateDecision(False, self.window, "Request too large: " + detail, False)
            need, freed = self._tokens + cost - self.tpm, 0
            for stamp, tokens in self._events:
                freed += tokens
                if freed >= need:
                    waits.append((stamp + self.window - now, detail))
                    break
        if waits:
            wait, reason = max(waits)
            return RateDecision(False, max(wait, 0.001), reason)
        self._events.append((now, cost))
        self._tokens += cost
        return RateDecision(True)

    def headers(self, now: float) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers describing the current window."""
        self._prune(now)
        reset = (self._events[0][0] + self.window - now) if self._events else 0.0
        out: dict[str, str] = {}
        if self.rpm is not None:
            out["x-ratelimit-limit-requests"] = str(self.rpm)
            out["x-ratelimit-remaining-requests"] = str(max(0, self.rpm - len(self._events)))
            out["x-ratelimit-reset-requests"] = f"{reset:.3f}s"
        if self.tpm is not None:
            out["x-ratelimit-limit-tokens"] = str(self.tpm)
            out["x-ratelimit-remaining-tokens"] = str(max(0, self.tpm - self._tokens))
            out["x-ratelimit-reset-tokens"] = f"{reset:.3f}s"
        return out


_ACQUIRE_LUA = """
local key, window = KEYS[1], tonumber(ARGV[1])
local cost, tpm, rpm, id = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local count = #entries / 2
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':(%d+)$')) end
local wait = 0
if rpm >= 0 and count + 1 > rpm then
  local oldest = tonumber(entries[(count - rpm) * 2 + 2])
  wait = math.max(wait, oldest + window - now)
end
if tpm >= 0 and used + cost > tpm then
  local need, freed = used + cost - tpm, 0
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], ':(%d+)$'))
    if freed >= need then
      wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
      break
    end
  end
end
if wait > 0 then return tostring(math.max(wait, 0.001)) end
redis.call('ZADD', key, now, id .. ':' .. cost)
redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    """``RateLimiter``'s algorithm on Redis, shared by every worker using ``key``."""

    def __init__(
        self, url: str, key: str, rpm: int | None, tpm: int | None, window_seconds: float
    ) -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.key = key
        self.rpm, self.tpm, self.window = rpm, tpm, window_seconds
        self.script = self.client.register_script(_ACQUIRE_LUA)

    async def acquire(self, cost: int) -> RateDecision:
        wait = float(
            await self.script(
                keys=[self.key],
                args=[
                    self.window,
                    cost,
                    -1 if self.tpm is None else self.tpm,
                    -1 if self.rpm is None else self.rpm,
                    uuid.uuid4().hex,
                ],
            )
        )
        return RateDecision(True) if wait == 0 else RateDecision(False, wait, "shared budget")
