"""Which replica follows each source's change feed, and where it resumes: the `FeedPositions` the feed
follower (sources/change_feed.py) asks.

With Redis (`UCGW_REDIS_URL`), a replica leads a source while it holds that source's lease
(stores/feed_leases.py), renewed every third of the lease time. It counts as leading only until the lease
time has passed since its last renewal was *sent*, by its own clock, so a replica paused past its lease
(GC, SIGSTOP, a slow disk) stops before applying anything once it wakes up; and the cursor store refuses its
writes once a newer leader's epoch has written (stores/feed_cursors.py), so it cannot move the cursor back
either. Without Redis this process leads every source (embedded, or PostgreSQL alone: one replica).
Each change of role is logged, and `roles()` feeds the admin /readyz and the `ucgw_feed_leader` metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sources.change_feed import Lead
from sources.systems import Source
from stores.feed_cursors import FeedCursorStore, FencedOut
from stores.feed_leases import RedisLeases

log = logging.getLogger("ucgw.leadership")

LEADER, FOLLOWER = "leader", "follower"


class FeedLeadership:
    """This replica's leadership of each source's feed, and the cursor store behind it."""

    def __init__(self, cursors: FeedCursorStore, leases: RedisLeases | None = None, lease_seconds: float = 10.0,
                 replica: str = "") -> None:
        self.cursors = cursors
        self.leases = leases
        self.lease_seconds = lease_seconds
        self.replica = replica
        self.retry_seconds = min(1.0, lease_seconds / 5) if leases is not None else 1.0
        self._epochs: dict[Source, int] = {}
        self._renewed: dict[Source, float] = {}  # monotonic time the last successful renewal was sent
        self._roles: dict[Source, str] = {}
        self._renewer: asyncio.Task[None] | None = None
        self.takeovers = 0
        self.fenced = 0

    def _role(self, source: Source, role: str, why: str = "") -> None:
        if self._roles.get(source) != role:
            log.info("%s change feed: this replica (%s) is the %s%s", source.value, self.replica or "-", role,
                     f" ({why})" if why else "")
        self._roles[source] = role

    def roles(self) -> dict[str, str]:
        """Per source: "leader" or "follower" (absent: not decided yet)."""
        return {s.value: role for s, role in self._roles.items()}

    def epochs(self) -> dict[str, int]:
        return {s.value: e for s, e in self._epochs.items()}

    async def take(self, source: Source) -> Lead | None:
        """Take the source's lease (with Redis) and record the epoch with the cursor store; the cursor to
        resume from. None while another replica leads, or Redis or the cursor store cannot be reached."""
        epoch = 0
        if self.leases is not None:
            sent = time.monotonic()
            try:
                got = await self.leases.acquire(source.value)
            except Exception as exc:  # noqa: BLE001 - Redis down: nobody can be elected; ask again later
                self._lose(source, f"Redis unreachable: {type(exc).__name__}")
                return None
            if got is None:
                self._lose(source, "another replica holds the lease")
                return None
            epoch, self._renewed[source] = got, sent
        try:
            cursor = await self.cursors.claim(source.value, epoch)
        except FencedOut as exc:  # Redis's counter is behind what was written (Redis lost its data)
            await self._give_up(source, exc.newest)
            return None
        except Exception as exc:  # noqa: BLE001 - cannot know where to resume: do not lead yet
            log.warning("%s change feed: cannot read the stored cursor (%s)", source.value, type(exc).__name__)
            await self._give_up(source)
            return None
        self._epochs[source] = epoch
        self.takeovers += 1
        self._role(source, LEADER, f"epoch {epoch}" if self.leases is not None else "no Redis: the only one")
        if self.leases is not None and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew_forever(), name="feed-lease-renewal")
        return Lead(cursor)

    async def _give_up(self, source: Source, seen_epoch: int | None = None) -> None:
        self._lose(source, "cursor store refused the epoch" if seen_epoch is not None else "cursor store unreachable")
        if self.leases is None:
            return
        with contextlib.suppress(Exception):
            if seen_epoch is not None:
                await self.leases.raise_epoch(source.value, seen_epoch)
            await self.leases.release(source.value)

    def _lose(self, source: Source, why: str) -> None:
        self._epochs.pop(source, None)
        self._renewed.pop(source, None)
        self._role(source, FOLLOWER, why)

    def leading(self, source: Source) -> bool:
        """Leading, and (with Redis) the lease renewed less than the lease time ago."""
        if source not in self._epochs:
            return False
        if self.leases is None:
            return True
        return time.monotonic() < self._renewed.get(source, 0.0) + self.lease_seconds

    async def keep(self, source: Source, cursor: str) -> bool:
        """Store the cursor under this leader's epoch; False (and no longer leading) when fenced out."""
        epoch = self._epochs.get(source)
        if epoch is None:
            return False
        try:
            await self.cursors.save(source.value, cursor, epoch)
        except FencedOut:
            self.fenced += 1
            self._lose(source, f"fenced out: a newer leader wrote the cursor after epoch {epoch}")
            return False
        return True

    async def _renew_forever(self) -> None:
        every = self.lease_seconds / 3
        assert self.leases is not None
        while self._epochs:
            await asyncio.sleep(every)
            for source in list(self._epochs):
                sent = time.monotonic()
                try:
                    ok = await self.leases.renew(source.value)
                except Exception as exc:  # noqa: BLE001 - leading() ends by itself when the lease time passes
                    log.warning("%s change feed: lease renewal failed (%s)", source.value, type(exc).__name__)
                    continue
                if ok:
                    self._renewed[source] = sent
                else:
                    self._lose(source, "the lease ran out and another replica may hold it")

    async def close(self) -> None:
        """Stop renewing and hand the leases back, so another replica takes over at once."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self.leases is not None:
            for source in list(self._epochs):
                with contextlib.suppress(Exception):
                    await self.leases.release(source.value)
            await self.leases.close()
        self._epochs.clear()
        await self.cursors.close()
