"""Per-caller limits every replica counts together: open websockets, running subscriptions, running scans.

Each caller's slots are one sorted set in Redis (`slots:<name>:<caller>`): a member per held slot, scored
with the time it lapses. Taking one (a script: drop the lapsed, count, add) is one round trip; the replica
holding a slot renews it every third of `lease_seconds`, so a replica that dies frees its callers' slots
within `lease_seconds` on its own. While Redis is unreachable `take` says so, and the caller is counted by
its own replica's limit alone (the degraded mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid

from redis.exceptions import RedisError

from stores.redis_shared import SharedRedis

log = logging.getLogger("ucgw.slots")
UNSHARED = ""  # `take`'s answer while Redis is unreachable: count locally only

# drop the lapsed slots (Redis's clock), refuse at the cap, else add ours; 1 granted, 0 refused
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
# push the lapse time of held slots (KEYS[i] holds ARGV[i + 1]) forward, only where they are still held
_RENEW = """
local t = redis.call('TIME')
local lapse = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', lapse, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return #KEYS
"""


class ClusterSlots:
    """At most `cap` slots per caller across every replica sharing the Redis of `link`."""

    def __init__(self, link: SharedRedis, name: str, cap: int, lease_seconds: float = 30.0) -> None:
        self.link = link
        self.name = name
        self.cap = cap
        self.lease_ms = int(lease_seconds * 1000)
        self._take = link.client.register_script(_TAKE)
        self._renew = link.client.register_script(_RENEW)
        self._replica = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self.held: dict[str, str] = {}  # slot id -> its Redis key, for renewal
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, caller: str) -> str:
        return self.link.key("slots", self.name, caller)

    async def take(self, caller: str) -> str | None:
        """A slot id when granted, None when `caller` holds `cap` slots over all replicas, `UNSHARED` when Redis
        cannot say (then the replica's own count decides)."""
        if not self.cap or not self.link.usable:
            return UNSHARED
        slot = f"{self._replica}:{next(self._ids)}"
        key = self._key(caller)
        try:
            granted = await self.link.run(lambda r: self._take(keys=[key], args=[self.cap, self.lease_ms, slot],
                                                               client=r))
        except RedisError:
            return UNSHARED
        if not granted:
            return None
        self.held[slot] = key
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_held())
        return slot

    def give_back(self, slot: str | None) -> None:
        """Free a slot `take` granted (in the background; nothing for None or `UNSHARED`)."""
        key = self.held.pop(slot, None) if slot else None
        if key is None:
            return

        async def remove() -> None:
            with contextlib.suppress(RedisError):
                await self.link.run(lambda r: r.zrem(key, slot))

        task = asyncio.ensure_future(remove())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_held(self) -> None:
        """Keep this replica's slots from lapsing while it lives (a third of the lease at a time)."""
        while self.held:
            await asyncio.sleep(self.lease_ms / 3000)
            held = list(self.held.items())
            if not held:
                break
            try:
                keys, args = [k for _, k in held], [self.lease_ms] + [s for s, _ in held]
                await self.link.run(lambda r, keys=keys, args=args: self._renew(keys=keys, args=args, client=r))
            except RedisError:
                log.debug("could not renew %d %s slot(s): redis unavailable", len(held), self.name)

    async def close(self) -> None:
        """Stop renewing and free what is held (best effort: the leases end them anyway)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for slot in list(self.held):
            self.give_back(slot)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1)
