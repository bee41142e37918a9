"""The gateway's long-lived parts, built once per process: clients, cache and fetchers per source,
the safety-concern store, the pub/sub, the change-feed follower and the shared walks of every child."""

from __future__ import annotations

from typing import Any

from sources.change_feed import ChangeFollower
from sources.client import SourceClient
from sources.fetcher import SourceFetcher
from sources.record_cache import Cache, MemoryCache
from sources.settings import Settings
from sources.source_access import SourceAccess
from sources.systems import Source
from sources.tracing import Tracer
from stores.pubsub import MemoryPubSub, PubSub
from stores.safety_concerns import ConcernStore, SqliteConcernStore
from sync.feed_applier import ChangeProcessor
from sync.shared_runs import SharedRuns


class Services:
    """Holds one client and one fetcher per source, sharing one cache."""

    def __init__(self, settings: Settings, cache: Cache | None = None, tracer: Tracer | None = None) -> None:
        self.settings = settings
        self.tracer = tracer  # the process's (gateway/tracing.py); None: tracing off
        retain = {s.value: settings.ttl(s) + max(settings.max_stale_seconds,
                                                  settings.stale_while_revalidate_seconds) for s in Source}
        self.cache: Cache = cache or MemoryCache(
            settings.cache_max_entries, lambda key: retain[key.split(":", 1)[0]]
        )
        access = {s: SourceAccess(s, settings) for s in Source}  # TLS and tokens, shared by client and feed
        self.clients = {s: SourceClient(s, settings, tracer, access[s]) for s in Source}
        self.fetchers = {s: SourceFetcher(self.clients[s], self.cache, settings) for s in Source}
        self.pubsub: PubSub = MemoryPubSub(settings.subscription_queue_size)
        self.changes = ChangeProcessor(settings, self.fetchers, self.pubsub)
        self.follower = ChangeFollower(settings, self.changes, access)
        self.scans: SharedRuns[Any] = SharedRuns(settings.max_concurrent_scans)  # walks of every child
        self._concerns: ConcernStore | None = None

    @property
    def concerns(self) -> ConcernStore:
        """The safety-concern store (opened on first use, or by `start`)."""
        if self._concerns is None:
            self._concerns = SqliteConcernStore(self.settings.concerns_path)
        return self._concerns

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
        """(ready, status): ready while some source is usable; "degraded" while any source is not."""
        usable = [bool(f["usable"]) for f in (self.health() if facts is None else facts)]
        return any(usable), "ok" if all(usable) else "degraded"

    async def start(self) -> None:
        """Open every backend's connection pool and the concern store; start following the change feeds."""
        for client in self.clients.values():
            await client.start()
        _ = self.concerns
        await self.follower.start()

    async def close(self) -> None:
        """Stop following changes, end subscriptions, let background refreshes end, close pools and stores."""
        await self.follower.stop()
        await self.pubsub.close()
        for fetcher in self.fetchers.values():
            await fetcher.aclose()
        for client in self.clients.values():
            await client.close()
        if self._concerns is not None:
            await self._concerns.close()
            self._concerns = None
