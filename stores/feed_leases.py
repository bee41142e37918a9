"""Change-feed leadership across replicas: one lease per source in Redis (`SET NX PX`, renewed by its
holder while it is healthy) and a fencing epoch per source (`INCR`), which every cursor write carries
(stores/feed_cursors.py refuses an older one). A replica that dies stops renewing, and another takes the
lease once it runs out. Keys: `<prefix>feed:lease:<source>` (value: the holder's id) and
`<prefix>feed:epoch:<source>`.
"""

from __future__ import annotations

import redis.asyncio as redis

# take the lease when free (or still ours: a renewal that failed for a moment), and the next epoch, atomically
_ACQUIRE = ("if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
            "if redis.call('get', KEYS[1]) ~= ARGV[1] then return false end "
            "redis.call('pexpire', KEYS[1], ARGV[2]) end "
            "return redis.call('incr', KEYS[2])")
# renew/release only a lease we hold (the value is the holder's id)
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# an epoch counter that lost its value (Redis restarted without persistence) is raised past what was written
_RAISE = ("local v = tonumber(redis.call('get', KEYS[1]) or '0') "
          "if v < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) end return 1")


class RedisLeases:
    """The leases of one holder (this replica) on one Redis."""

    def __init__(self, url: str, prefix: str, holder: str, lease_seconds: float) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.prefix = prefix
        self.holder = holder
        self.lease_ms = max(1, int(lease_seconds * 1000))

    def _lease(self, source: str) -> str:
        return f"{self.prefix}feed:lease:{source}"

    def _epoch(self, source: str) -> str:
        return f"{self.prefix}feed:epoch:{source}"

    async def acquire(self, source: str) -> int | None:
        """Take the source's lease if nobody else holds it: the new fencing epoch; None when another holds it."""
        epoch = await self.client.eval(_ACQUIRE, 2, self._lease(source), self._epoch(source), self.holder,
                                       self.lease_ms)
        return None if epoch is None else int(epoch)

    async def renew(self, source: str) -> bool:
        """Extend our lease by the lease time; False when it is no longer ours (it ran out, another took it)."""
        return bool(await self.client.eval(_RENEW, 1, self._lease(source), self.holder, self.lease_ms))

    async def release(self, source: str) -> None:
        """Give the lease up (at shutdown), so another replica need not wait for it to run out."""
        await self.client.eval(_RELEASE, 1, self._lease(source), self.holder)

    async def raise_epoch(self, source: str, at_least: int) -> None:
        """Make the next epoch larger than `at_least` (an epoch the cursor store has seen)."""
        await self.client.eval(_RAISE, 1, self._epoch(source), at_least)

    async def close(self) -> None:
        await self.client.aclose()
