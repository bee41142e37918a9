"""The PostgreSQL connection pool the stores share (psycopg 3, async), and whether the server is reachable.

psycopg 3 rather than asyncpg: it is native asyncio, sends a transaction's statements in one pipeline
(`executemany`: a group commit of N rows is one round trip), binds parameters on the server, and its binary
wheel bundles libpq, so a fresh machine needs no compiler or client library (docs/postgresql.md).

`Database` is built by `create_app` when `UCGW_DATABASE_URL` is set and opened by the app's lifespan without
waiting for the server: a replica starts (and answers, degraded) while PostgreSQL is down. Every call through
`connection` reports what it saw; besides, a watcher asks the server (`SELECT 1`) when no call has succeeded
for `WATCH_SECONDS` while it is reachable, and every `PROBE_SECONDS` while it is not, so `reachable` (the
public /readyz's "degraded") follows the server without traffic; the pool replaces broken connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger("ucgw.database")

PROBE_SECONDS = 1.0  # how often an unreachable server is asked again
WATCH_SECONDS = 5.0  # how long a reachable server may go without a successful call before it is asked
# what an unreachable or restarting server raises: the call's outcome is unknown, the store is unavailable
UNAVAILABLE = (psycopg.OperationalError, PoolTimeout, psycopg.errors.AdminShutdown, psycopg.InterfaceError)


class StoreUnavailable(RuntimeError):
    """PostgreSQL could not be reached (or went away during the call)."""


class Database:
    """One pool per process, shared by the audit trail, the concern store and the feed cursors."""

    def __init__(self, url: str, *, size: int = 10, timeout: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout
        self.pool = AsyncConnectionPool(url, min_size=1, max_size=max(1, size), open=False, timeout=timeout,
                                        kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
                                        reconnect_timeout=0, name="ucgw")
        self.reachable = True
        self.failures = 0
        self._succeeded_at = 0.0  # monotonic time of the last successful call
        self._woken = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the pool without waiting for the server (its connections are made in the background), and
        start watching it."""
        await self.pool.open(wait=False)
        self._watcher = asyncio.create_task(self._watch(), name="pg-watch")

    async def close(self) -> None:
        """Stop watching and close every connection."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit); `StoreUnavailable` when the server cannot be reached."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except UNAVAILABLE as exc:
            self.saw_failure(exc)
            raise StoreUnavailable(f"PostgreSQL is unavailable ({type(exc).__name__})") from exc
        self.saw_success()

    def saw_success(self) -> None:
        self._succeeded_at = time.monotonic()
        if not self.reachable:
            log.info("PostgreSQL is reachable again")
        self.reachable = True

    def saw_failure(self, exc: BaseException) -> None:
        """A call failed for the server: mark it unreachable; the watcher asks it every second from now on."""
        self.failures += 1
        if self.reachable:
            log.warning("PostgreSQL is unreachable (%s): audited reads and safety changes are refused until it "
                        "returns", type(exc).__name__)
        self.reachable = False
        self._woken.set()

    async def _watch(self) -> None:
        while True:
            wait = WATCH_SECONDS if self.reachable else PROBE_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), wait)
            self._woken.clear()
            if self.reachable and time.monotonic() - self._succeeded_at < WATCH_SECONDS:
                continue  # calls are succeeding: nothing to ask
            if not self.reachable:
                await self.pool.check()  # broken idle connections are replaced
            try:
                async with self.pool.connection(timeout=self.timeout) as conn:
                    await conn.execute("SELECT 1")
            except UNAVAILABLE as exc:
                if self.reachable:
                    self.saw_failure(exc)
                self._woken.clear()
                continue
            self.saw_success()

    def facts(self) -> dict[str, object]:
        """For the admin /readyz: reachable, failures seen, the pool's counters."""
        stats = self.pool.get_stats()
        return {"reachable": self.reachable, "failures": self.failures,
                "poolSize": stats.get("pool_size", 0), "poolAvailable": stats.get("pool_available", 0)}
