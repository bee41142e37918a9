"""The PostgreSQL connection pool the stores share (psycopg 3, async), and whether the server is reachable.

psycopg 3 rather than asyncpg: it is native asyncio, sends a transaction's statements in one pipeline
(`executemany`: a group commit of N rows is one round trip), binds parameters on the server, and its binary
wheel bundles libpq, so a fresh machine needs no compiler or client library (docs/postgresql.md).

`Database` is built by `create_app` when `UCGW_DATABASE_URL` is set and opened by the app's lifespan without
waiting for the server: a replica starts (and answers, degraded) while PostgreSQL is down. Every store reports
what its calls saw (`saw_failure` / `saw_success`); while the server is unreachable a probe asks every second,
so `reachable` turns true again without traffic, and the pool replaces its broken connections by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger("ucgw.database")

PROBE_SECONDS = 1.0
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
        self._probe: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open the pool without waiting for the server (its connections are made in the background)."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        """Stop probing and close every connection."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
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
        if not self.reachable:
            log.info("PostgreSQL is reachable again")
        self.reachable = True

    def saw_failure(self, exc: BaseException) -> None:
        """A call failed for the server: mark it unreachable, drop broken connections, probe until it answers."""
        self.failures += 1
        if self.reachable:
            log.warning("PostgreSQL is unreachable (%s): audited reads and safety changes are refused until it "
                        "returns", type(exc).__name__)
        self.reachable = False
        if self._probe is None or self._probe.done():
            with contextlib.suppress(RuntimeError):  # no running loop (closing): nothing to probe for
                self._probe = asyncio.get_running_loop().create_task(self._wait_for_server(), name="pg-probe")

    async def _wait_for_server(self) -> None:
        while not self.reachable:
            await self.pool.check()  # broken idle connections are replaced
            try:
                async with self.pool.connection(timeout=self.timeout) as conn:
                    await conn.execute("SELECT 1")
            except UNAVAILABLE:
                await asyncio.sleep(PROBE_SECONDS)
                continue
            self.saw_success()

    def facts(self) -> dict[str, object]:
        """For the admin /readyz: reachable, failures seen, the pool's counters."""
        stats = self.pool.get_stats()
        return {"reachable": self.reachable, "failures": self.failures,
                "poolSize": stats.get("pool_size", 0), "poolAvailable": stats.get("pool_available", 0)}
