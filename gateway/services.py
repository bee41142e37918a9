"""The gateway's long-lived parts, built once per process: clients, cache and fetchers per source."""

from __future__ import annotations

from gateway.cache import Cache, MemoryCache
from gateway.client import SourceClient
from gateway.config import Settings
from gateway.fetcher import SourceFetcher
from gateway.sources import Source


class Services:
    """Holds one client and one fetcher per source, sharing one cache."""

    def __init__(self, settings: Settings, cache: Cache | None = None) -> None:
        self.settings = settings
        retain = {s.value: settings.ttl(s) + max(settings.max_stale_seconds,
                                                  settings.stale_while_revalidate_seconds) for s in Source}
        self.cache: Cache = cache or MemoryCache(
            settings.cache_max_entries, lambda key: retain[key.split(":", 1)[0]]
        )
        self.clients = {s: SourceClient(s, settings) for s in Source}
        self.fetchers = {s: SourceFetcher(self.clients[s], self.cache, settings) for s in Source}

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

    async def start(self) -> None:
        """Open every backend's connection pool."""
        for client in self.clients.values():
            await client.start()

    async def close(self) -> None:
        """Let background refreshes end, then close the connection pools."""
        for fetcher in self.fetchers.values():
            await fetcher.aclose()
        for client in self.clients.values():
            await client.close()
