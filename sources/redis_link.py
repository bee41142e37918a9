"""The one connection a replica keeps to the shared Redis (`UCGW_REDIS_URL`), behind a circuit breaker.

Everything the replicas share in Redis (records, single-flight leases, invalidations, rate-limit buckets,
subscription events) goes through `RedisLink.run`. Redis is a shared dependency, not a source of truth:
when it does not answer, each replica goes on alone (its own caches, single-flight and limits), so a call
must fail fast. Sockets time out after `timeout` seconds, and after `failure_threshold` consecutive
failures the breaker opens: calls then fail at once, with no network wait, until a probe (`watch`, every
`probe_seconds`, or the next call after `reset_seconds`) finds Redis back, and the replicas rejoin on their
own. `RedisUnavailable` is a redis-py `ConnectionError`, so code outside `sources/` catches redis-py's
`RedisError` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sources.breaker import CLOSED, CircuitBreaker

log = logging.getLogger("ucgw.redis")
T = TypeVar("T")


class RedisUnavailable(RedisConnectionError):
    """Redis did not answer, or its breaker is open: go on without it."""


class RedisLink:
    """A redis-py asyncio client with short timeouts, a breaker and counters; keys under `prefix`."""

    def __init__(self, url: str, prefix: str = "ucgw:", *, timeout: float = 0.5, failure_threshold: int = 3,
                 reset_seconds: float = 1.0, probe_seconds: float = 1.0, max_connections: int = 64) -> None:
        self.url = url
        self.prefix = prefix
        self.client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False,
            health_check_interval=0, max_connections=max_connections)
        self.timeout = timeout
        self.breaker = CircuitBreaker("redis", failure_threshold, reset_seconds)
        self.probe_seconds = probe_seconds
        self.calls = 0  # round trips attempted (a pipeline or a script is one)
        self.failures = 0
        self._watch: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        """A key (or channel) under the prefix."""
        return self.prefix + ":".join(parts)

    @property
    def usable(self) -> bool:
        """True while the breaker is closed; once Redis has failed, False until a probe finds it back (the
        replica works alone meanwhile, and /readyz stays "degraded" instead of flapping with each probe)."""
        return self.breaker.state == CLOSED

    async def run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """`op(client)` as one round trip; RedisUnavailable at once while the breaker is open, or when it fails."""
        if not self.breaker.allow():
            raise RedisUnavailable("redis is unavailable (breaker open)")
        self.calls += 1
        try:
            result = await op(self.client)
        except (TimeoutError, RedisError, OSError) as exc:
            self.failures += 1
            self.breaker.record_failure()
            raise RedisUnavailable(f"redis failed: {type(exc).__name__}") from exc
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        self.breaker.record_success()
        return result

    def pubsub(self) -> Any:
        """A new pub/sub connection of the client (each listener owns one)."""
        return self.client.pubsub(ignore_subscribe_messages=True)

    async def start(self) -> None:
        """Probe Redis once (a failure only opens the breaker: the replica starts alone) and keep probing."""
        with contextlib.suppress(RedisError):
            await self.run(lambda r: r.ping())
        if not self.usable:
            log.warning("redis is unreachable: this replica works alone until it answers")
        self._watch = asyncio.create_task(self._probe())

    async def _probe(self) -> None:
        """A PING every `probe_seconds`, so the breaker (and /readyz) follows Redis with no traffic too."""
        was = self.usable
        while True:
            await asyncio.sleep(self.probe_seconds)
            with contextlib.suppress(RedisError):
                await self.run(lambda r: r.ping())
            if self.usable != was:
                was = self.usable
                if was:
                    log.info("redis answers again: shared cache, limits and events rejoined")
                else:
                    log.warning("redis is unreachable: this replica works alone (degraded)")

    def facts(self) -> dict[str, Any]:
        """For the admin /readyz: state and counters (never the URL: it may hold a password)."""
        return {"usable": self.usable, "breaker_state": self.breaker.state, "calls": self.calls,
                "failures": self.failures}

    async def close(self) -> None:
        """Stop probing and close the connections."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        with contextlib.suppress(Exception):
            await self.client.aclose()


async def listen(link: RedisLink, channel: str, on_message: Callable[[bytes], Awaitable[None] | None],
                 stopping: asyncio.Event) -> None:
    """Deliver each message of `channel` to `on_message` until `stopping` is set, resubscribing after any
    failure once Redis is usable again (messages published while disconnected are lost: what they would
    have done, the TTLs bound)."""
    while not stopping.is_set():
        if not link.usable:
            await asyncio.sleep(link.probe_seconds / 2)
            continue
        ps = link.pubsub()
        try:
            await ps.subscribe(channel)
            while not stopping.is_set():
                msg = await ps.get_message(timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                try:
                    outcome = on_message(msg["data"])
                    if outcome is not None:
                        await outcome
                except Exception:  # one bad message must not end the listener
                    log.exception("could not handle a message of %s", channel)
        except (TimeoutError, RedisError, OSError) as exc:
            link.failures += 1
            link.breaker.record_failure()
            log.debug("listener of %s lost redis (%s)", channel, type(exc).__name__)
            await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                await ps.aclose()
