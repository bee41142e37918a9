"""Per-client rate limiting: a token bucket per caller, behind a small store interface.

The in-memory default suits one gateway process; several replicas share buckets in Redis
(`RedisBucketStore`: one Lua script call per request, on Redis's clock), and fall back on their own
memory buckets while Redis is unreachable.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from cachetools import LRUCache
from redis.exceptions import RedisError

from stores.redis_shared import SharedRedis


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


# refill by elapsed time × rate (Redis's clock: the replicas' clocks differ), take a token if there is one;
# the bucket expires once it would be full again. Returns the seconds to wait ("0" when granted).
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local last = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBucketStore:
    """Buckets every replica shares: `rl:<key>` hashes, taken from atomically by one script call.

    While Redis fails, each replica limits with its own memory buckets (`fallback`), so a caller may get up to
    one burst per replica then; the shared buckets take over again when Redis answers."""

    def __init__(self, link: SharedRedis, fallback: BucketStore | None = None) -> None:
        self.link = link
        self.fallback: BucketStore = fallback or MemoryBucketStore()
        self._take = link.client.register_script(_TAKE)

    async def take(self, key: str, rate: float, burst: float, now: float) -> float:
        """One token from the shared bucket of `key`; from this replica's own while Redis is down."""
        if self.link.usable:
            try:
                wait = await self.link.run(lambda r: self._take(keys=[self.link.key("rl", key)],
                                                                 args=[repr(rate), repr(burst)], client=r))
                return float(wait)
            except RedisError:
                pass
        return await self.fallback.take(key, rate, burst, now)


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
