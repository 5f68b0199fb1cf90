"""How fast we may call the model: TPM/RPM budgets and a concurrency window.

The budget is the server's own algorithm (``ratewindow``): an exact sliding window, in
memory for one process or on Redis when several workers share one account. Its window is
padded a little beyond the server's: we count a request when it leaves, the server when it
arrives, and without the pad every window boundary would meet 429s.

The concurrency window adapts like TCP (AIMD): halve on a 429, grow by one call per window
of successes, so we back off when the server pushes back and creep up again when it stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fixstream.llm.ratewindow import RateDecision, RateLimiter, RedisRateLimiter


class RateBudget:
    """Tokens and requests per window, shared by everyone on the same Redis key."""

    def __init__(
        self,
        tpm: int | None,
        rpm: int | None,
        *,
        window_seconds: float = 60.0,
        pad: float = 0.05,
        redis_url: str | None = None,
        key: str = "fixstream-llm",
    ) -> None:
        self.tpm, self.rpm = tpm, rpm
        window = window_seconds * (1 + pad)
        self.shared = RedisRateLimiter(redis_url, key, rpm, tpm, window) if redis_url else None
        self.local = RateLimiter(rpm, tpm, window)
        self.waited_s = 0.0

    @property
    def active(self) -> bool:
        return self.tpm is not None or self.rpm is not None

    async def _try(self, tokens: int) -> RateDecision:
        if self.shared is not None:
            return await self.shared.acquire(tokens)
        return self.local.acquire(tokens, time.monotonic())

    async def acquire(self, tokens: int) -> float:
        """Wait until ``tokens`` and one request fit in the window; returns seconds waited."""
        if not self.active:
            return 0.0
        if self.tpm is not None:
            tokens = min(tokens, self.tpm)  # a lone huge call may still go; the server decides
        started = time.monotonic()
        while not (decision := await self._try(tokens)).allowed:  # noqa: ASYNC110 - shared store
            await asyncio.sleep(decision.retry_after)
        waited = time.monotonic() - started
        self.waited_s += waited
        return waited


class AdaptiveConcurrency:
    """A semaphore whose size halves on a 429 and grows by one per window of successes."""

    def __init__(self, maximum: int, minimum: int = 1) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.limit = float(maximum)
        self.in_flight = 0
        self.cuts = 0
        self._cond = asyncio.Condition()
        self._last_cut = 0.0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    def on_success(self) -> None:
        self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))

    def on_rate_limited(self, cooldown: float = 0.5) -> None:
        """Halve the window, at most once per ``cooldown`` (a burst of 429s is one signal)."""
        now = time.monotonic()
        if now - self._last_cut >= cooldown:
            self.limit = max(float(self.minimum), self.limit / 2)
            self._last_cut = now
            self.cuts += 1
