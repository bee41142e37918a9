"""Per-client rate limiting: a token bucket per caller, behind a small store interface.

The in-memory default suits one gateway process; several replicas would share buckets through another
`BucketStore` (e.g. Redis with a Lua script) without touching the callers.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from cachetools import LRUCache


class BucketStore(Protocol):
    """Keeps each key's bucket; `take` is atomic per key."""

    async def take(self, key: str, rate: float, burst: float, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be available."""


class MemoryBucketStore:
    """Buckets in process memory, least recently used dropped first beyond `max_keys`."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_keys)

    async def take(self, key: str, rate: float, burst: float, now: float) -> float:
        """Refill by elapsed time × rate (up to `burst`), then take one token if there is one."""
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


class RateLimiter:
    """`UCGW_RATE_LIMIT_RPS` sustained, `UCGW_RATE_LIMIT_BURST` at once, per key; rate 0 disables it."""

    def __init__(self, rate: float, burst: int, store: BucketStore | None = None) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.store: BucketStore = store or MemoryBucketStore()

    async def check(self, key: str) -> float:
        """0.0 when the request may proceed, else the seconds the caller should wait."""
        if self.rate <= 0:
            return 0.0
        return await self.store.take(key, self.rate, self.burst, time.monotonic())


def retry_after(wait: float) -> tuple[int, str]:
    """A refusal's whole seconds to wait (at least 1) and the message that says so."""
    retry = max(1, math.ceil(wait))
    return retry, f"too many requests; retry in {retry} s"
