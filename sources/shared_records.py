"""The record cache the replicas share in Redis, behind each one's in-process cache, and its leases.

Keys (under the link's prefix): `rec:<SOURCE>:<A-number>` holds one backend answer as JSON with the time it
was fetched (so its age counts from the first fetch, on every replica), expiring after the same retain time
as the in-process cache; `lease:<key>` (SET NX PX) says which replica is fetching it now: the others wait
for the value instead of calling the backend, at most until the lease expires (a replica that dies holding
one blocks nobody longer); `inv:<key>` is when the record last changed: a fetch that began before that is
not stored (it may hold the record as it was), as the in-process cache refuses an invalidated call's
answer. A change is announced on the channel `invalidate`, so every replica drops its own copy (and with it
the stored answers built on it) at once.

Every method is one round trip (MGET, a pipeline or a script) whatever the batch size, and raises
redis-py's `RedisError` when Redis fails; the fetcher then goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from sources.record_cache import CacheEntry
from sources.redis_link import RedisLink, listen

log = logging.getLogger("ucgw.shared_cache")

# per key: its value when fetched at ARGV[2] or later, else 1 when we took its lease, else 0 (another replica
# is fetching it)
_CLAIM = """
local n = #KEYS / 2
local oldest = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if v and tonumber(string.sub(v, 1, string.find(v, ' ', 1, true) - 1)) >= oldest then
    out[i] = v
  elseif redis.call('SET', KEYS[n + i], '1', 'NX', 'PX', ARGV[1]) then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
# store each fetched value unless its record changed after the fetch began; free the leases either way
_STORE = """
local started = tonumber(ARGV[1])
local n = #KEYS / 3
for i = 1, n do
  local changed = tonumber(redis.call('GET', KEYS[n + i]) or '0')
  if changed < started then
    redis.call('SET', KEYS[i], ARGV[1 + 2 * i - 1], 'PX', ARGV[1 + 2 * i])
  end
  redis.call('DEL', KEYS[2 * n + i])
end
return n
"""


def encode(entry: CacheEntry) -> bytes:
    """One cache entry as stored: when it was fetched (first, for the scripts to compare), a space, the record."""
    return repr(entry.fetched_at).encode() + b" " + orjson.dumps(entry.record)


def decode(raw: bytes) -> CacheEntry:
    """A stored value back as a cache entry."""
    at, _, record = raw.partition(b" ")
    return CacheEntry(orjson.loads(record), float(at))


class SharedRecords:
    """The shared cache and single-flight leases of every source's records (one per process)."""

    def __init__(self, link: RedisLink, retain_seconds: Callable[[str], float], lease_seconds: float,
                 change_window_seconds: float = 600.0) -> None:
        self.link = link
        self.retain = retain_seconds
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.change_window_ms = int(change_window_seconds * 1000)  # how long a change refuses older fetches
        self.channel = link.key("invalidate")
        self._claim = link.client.register_script(_CLAIM)
        self._store = link.client.register_script(_STORE)
        self._stopping = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self.invalidations_received = 0

    @property
    def usable(self) -> bool:
        """False while Redis is down (the fetcher does not even try)."""
        return self.link.usable

    def _rec(self, key: str) -> str:
        return self.link.key("rec", key)

    def _lease(self, key: str) -> str:
        return self.link.key("lease", key)

    def _inv(self, key: str) -> str:
        return self.link.key("inv", key)

    async def claim(self, keys: Sequence[str], oldest: float) -> tuple[dict[str, CacheEntry], list[str]]:
        """For each key: its entry if Redis holds one fetched at `oldest` or later, else a lease on it if no
        replica holds one (one script call). Returns (entries, keys now leased to us); a key with neither is
        being fetched by another replica."""
        raw = await self.link.run(lambda r: self._claim(
            keys=[self._rec(k) for k in keys] + [self._lease(k) for k in keys],
            args=[self.lease_ms, repr(oldest)], client=r))
        entries: dict[str, CacheEntry] = {}
        leased: list[str] = []
        for k, v in zip(keys, raw, strict=True):
            if isinstance(v, bytes):
                entries[k] = decode(v)
            elif v == 1:
                leased.append(k)
        return entries, leased

    async def store(self, entries: dict[str, CacheEntry], started: float) -> None:
        """Store what a leased fetch begun at `started` got (refused per key when the record changed since) and
        free the leases (one script call)."""
        if not entries:
            return
        keys = list(entries)
        args: list[Any] = [repr(started)]
        for k in keys:
            args += [encode(entries[k]), max(1, int(self.retain(k) * 1000))]
        await self.link.run(lambda r: self._store(
            keys=[self._rec(k) for k in keys] + [self._inv(k) for k in keys] + [self._lease(k) for k in keys],
            args=args, client=r))

    async def release(self, keys: Sequence[str]) -> None:
        """Free leases whose fetch failed, so the waiting replicas try themselves."""
        if keys:
            await self.link.run(lambda r: r.delete(*(self._lease(k) for k in keys)))

    async def invalidate(self, keys: Sequence[str]) -> None:
        """The records changed: drop them from Redis, refuse fetches begun before now, tell every replica."""
        if not keys:
            return
        now = repr(time.time())

        async def op(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.set(self._inv(k), now, px=self.change_window_ms)
            pipe.delete(*(self._rec(k) for k in keys))
            pipe.publish(self.channel, orjson.dumps(list(keys)))
            return await pipe.execute()

        await self.link.run(op)

    def follow(self, on_invalidate: Callable[[str], None]) -> None:
        """Call `on_invalidate(key)` for every key any replica invalidates (a background listener)."""
        def received(data: bytes) -> None:
            keys = orjson.loads(data)
            self.invalidations_received += len(keys)
            for key in keys:
                on_invalidate(str(key))

        self._listener = asyncio.create_task(listen(self.link, self.channel, received, self._stopping))

    async def close(self) -> None:
        """Stop listening."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
