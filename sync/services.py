"""The gateway's long-lived parts, built once per process: clients, cache and fetchers per source,
the safety-concern store, the pub/sub, the change-feed follower with its leadership and cursors, and the
shared walks of every child. With a `Database` (UCGW_DATABASE_URL) the concern store and the feed cursors
are PostgreSQL's, else SQLite files under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from sources.change_feed import ChangeFollower
from sources.client import SourceClient
from sources.fetcher import SourceFetcher
from sources.record_cache import Cache, MemoryCache
from sources.redis_link import RedisLink, listen
from sources.settings import Settings
from sources.shared_records import SharedRecords
from sources.source_access import SourceAccess
from sources.systems import Source
from sources.tracing import Tracer
from stores.concerns_pg import PgConcernStore
from stores.feed_cursors import PgFeedCursorStore, SqliteFeedCursorStore
from stores.feed_leases import RedisLeases
from stores.pg import Database
from stores.pubsub import MemoryPubSub, PubSub
from stores.redis_pubsub import RedisPubSub
from stores.redis_slots import ClusterSlots
from stores.safety_concerns import ConcernStore, SqliteConcernStore
from sync.change_events import event_from_wire, event_wire
from sync.feed_applier import ChangeProcessor
from sync.feed_leadership import FeedLeadership
from sync.shared_runs import SharedRuns


class Services:
    """Holds one client and one fetcher per source, sharing one cache."""

    def __init__(self, settings: Settings, cache: Cache | None = None, tracer: Tracer | None = None,
                 database: Database | None = None) -> None:
        self.settings = settings
        self.database = database  # PostgreSQL (opened by the app's lifespan); None: SQLite files
        self.tracer = tracer  # the process's (gateway/tracing.py); None: tracing off
        retain = {s.value: settings.ttl(s) + max(settings.max_stale_seconds,
                                                  settings.stale_while_revalidate_seconds) for s in Source}
        self.cache: Cache = cache or MemoryCache(
            settings.cache_max_entries, lambda key: retain[key.split(":", 1)[0]]
        )
        access = {s: SourceAccess(s, settings) for s in Source}  # TLS and tokens, shared by client and feed
        self.clients = {s: SourceClient(s, settings, tracer, access[s]) for s in Source}
        # with UCGW_REDIS_URL: the replicas' shared cache, leases, invalidations and events (docs/redis.md)
        self.redis = RedisLink(settings.redis_url, settings.redis_prefix) if settings.redis_url else None
        self.shared = None if self.redis is None else SharedRecords(
            self.redis, lambda key: retain[key.split(":", 1)[0]], lease_seconds=1.5 * settings.source_timeout_seconds)
        self.fetchers = {s: SourceFetcher(self.clients[s], self.cache, settings, self.shared) for s in Source}
        local = MemoryPubSub(settings.subscription_queue_size)
        self.pubsub: PubSub = local if self.redis is None else RedisPubSub(self.redis, local, event_wire,
                                                                           event_from_wire)
        self._stopping = asyncio.Event()
        self._listeners: list[asyncio.Task[None]] = []
        self.changes = ChangeProcessor(settings, self.fetchers, self.pubsub)
        self.follower = ChangeFollower(settings, self.changes, access=access)
        # per-caller limits every replica counts together (with Redis; None: each replica's own count alone)
        self.socket_slots = self._slots("ws", settings.websockets_per_client)
        self.operation_slots = self._slots("ops", settings.subscriptions_per_client)
        scan_slots = self._slots("scan", 1)  # one walk of every child of its own per caller
        self.scans: SharedRuns[Any] = SharedRuns(settings.max_concurrent_scans, scan_slots)  # walks of every child
        self._concerns: ConcernStore | None = None
        self.leadership: FeedLeadership | None = None  # built by `start` when the feeds are followed

    @property
    def concerns(self) -> ConcernStore:
        """The safety-concern store (opened on first use, or by `start`)."""
        if self._concerns is None:
            self._concerns = (PgConcernStore(self.database) if self.database is not None
                              else SqliteConcernStore(self.settings.concerns_path))
        return self._concerns

    def _leadership(self) -> FeedLeadership:
        """Feed leadership: a Redis lease per source when replicas share Redis; cursors in PostgreSQL or SQLite."""
        settings = self.settings
        cursors = (PgFeedCursorStore(self.database) if self.database is not None
                   else SqliteFeedCursorStore(Path(settings.data_dir) / "feed_cursors.sqlite3"))
        replica = settings.replica_id or f"{socket.gethostname()}:{os.getpid()}"
        leases = (RedisLeases(settings.redis_url, settings.redis_prefix, f"{replica}/{secrets.token_hex(6)}",
                              settings.feed_leader_lease_seconds) if settings.redis_url else None)
        return FeedLeadership(cursors, leases, settings.feed_leader_lease_seconds, replica)

    def health(self) -> list[dict[str, object]]:
        """Plain facts per source (breaker, last success and error, latency), for /readyz and GraphQL."""
        facts = []
        for source in Source:
            client = self.clients[source]
            state, h = client.breaker.state, client.health
            facts.append({
                "source": source.value, "breaker_state": state, "usable": state != "OPEN",
                "last_success_at": h.last_success_at, "last_error_at": h.last_error_at,
                "last_error": h.last_error, "latency_p50_ms": h.latency_ms(0.5),
                "latency_p95_ms": h.latency_ms(0.95), "calls": h.calls, "retries": h.retries,
            })
        return facts

    def readiness(self, facts: list[dict[str, object]] | None = None) -> tuple[bool, str]:
        """(ready, status): ready while some source is usable; "degraded" while any source is not, or while
        the shared Redis is unreachable (still ready: the replica answers alone)."""
        usable = [bool(f["usable"]) for f in (self.health() if facts is None else facts)]
        # a shared store's outage: degraded, not 503 (the replica still answers, or refuses audited reads itself)
        shared_ok = (self.database is None or self.database.reachable) and not self.redis_down()
        return any(usable), "ok" if all(usable) and shared_ok else "degraded"

    def _slots(self, name: str, cap: int) -> ClusterSlots | None:
        return None if self.redis is None or not cap else ClusterSlots(self.redis, name, cap)

    def redis_down(self) -> bool:
        """True while this replica has a shared Redis and cannot reach it (it works alone meanwhile)."""
        return self.redis is not None and not self.redis.usable

    def _drop(self, key: str) -> None:
        """Another replica (or this one) announced a change: forget this replica's copy of the record."""
        source, _, a_number = key.partition(":")
        fetcher = self.fetchers.get(Source(source)) if source in Source.__members__ else None
        if fetcher is not None:
            fetcher.invalidate(a_number)

    async def start(self) -> None:
        """Open every backend's connection pool and the concern store; start following the change feeds."""
        for client in self.clients.values():
            await client.start()
        if self.redis is not None and self.shared is not None:
            await self.redis.start()
            self.shared.follow(self._drop)
            if isinstance(self.pubsub, RedisPubSub):
                self._listeners.append(asyncio.create_task(
                    listen(self.redis, self.pubsub.channel, self.pubsub.deliver, self._stopping)))
        _ = self.concerns
        if self.follower.enabled and self.leadership is None:
            self.leadership = self.follower.positions = self._leadership()
        await self.follower.start()

    async def close(self) -> None:
        """Stop following changes, end subscriptions, let background refreshes end, close pools and stores."""
        await self.follower.stop()
        if self.leadership is not None:
            await self.leadership.close()
            self.leadership = None
        self._stopping.set()
        for task in self._listeners:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pubsub.close()
        for fetcher in self.fetchers.values():
            await fetcher.aclose()
        for client in self.clients.values():
            await client.close()
        for slots in (self.socket_slots, self.operation_slots, self.scans.owner_slots):
            if slots is not None:
                await slots.close()
        if self.shared is not None:
            await self.shared.close()
        if self.redis is not None:
            await self.redis.close()
        if self._concerns is not None:
            await self._concerns.close()
            self._concerns = None
