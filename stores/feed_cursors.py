"""Where each source's change feed was left: the cursor after the last batch the gateway applied, so a
restarted (or newly elected) follower resumes there instead of at the feed's current end, and the changes
made while nobody followed are still applied.

Every write carries the writer's fencing epoch (sync/feed_leadership.py: from Redis's INCR when replicas
share the feed, 0 otherwise). `claim` records a new leader's epoch and returns the cursor it resumes from;
`save` and `claim` raise `FencedOut` when a newer epoch has written, so a leader that was paused past its
lease and has been replaced cannot move the cursor back or apply a batch after its successor.
SQLite (embedded, one process) and PostgreSQL (`UCGW_DATABASE_URL`, shared by replicas).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from stores.pg import Database


class FencedOut(Exception):
    """A newer leader (epoch `newest`) has written this source's cursor."""

    def __init__(self, source: str, epoch: int, newest: int) -> None:
        super().__init__(f"{source} feed cursor: epoch {epoch} is fenced out by epoch {newest}")
        self.source, self.epoch, self.newest = source, epoch, newest


class FeedCursorStore(Protocol):
    """Cursors per source name, each with the epoch of its last writer."""

    async def load(self, source: str) -> str | None:
        """The stored cursor (None: none yet)."""

    async def claim(self, source: str, epoch: int) -> str | None:
        """Record `epoch` as the source's newest writer and return its cursor; FencedOut if a newer one wrote."""

    async def save(self, source: str, cursor: str, epoch: int) -> None:
        """Store `cursor` under `epoch`; FencedOut when a newer epoch has written."""

    async def close(self) -> None:
        """Release the store."""


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_cursor (source TEXT PRIMARY KEY, cursor TEXT, epoch INTEGER NOT NULL,
                                        updated_at REAL NOT NULL);
"""


class SqliteFeedCursorStore:
    """The embedded default: one small SQLite file (WAL, synchronous=FULL) under the data directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SQLITE_SCHEMA)

    def _write(self, source: str, cursor: str | None, epoch: int, keep_cursor: bool) -> str | None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT cursor, epoch FROM feed_cursor WHERE source = ?", (source,)).fetchone()
                if row is not None and row[1] > epoch:
                    raise FencedOut(source, epoch, row[1])
                value = row[0] if keep_cursor and row is not None else cursor
                self._db.execute("INSERT INTO feed_cursor (source, cursor, epoch, updated_at) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, epoch = excluded.epoch,"
                                 " updated_at = excluded.updated_at", (source, value, epoch, time.time()))
                self._db.execute("COMMIT")
                return value
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def load(self, source: str) -> str | None:
        def read() -> str | None:
            with self._lock:
                row = self._db.execute("SELECT cursor FROM feed_cursor WHERE source = ?", (source,)).fetchone()
            return row[0] if row else None

        return await asyncio.to_thread(read)

    async def claim(self, source: str, epoch: int) -> str | None:
        return await asyncio.to_thread(self._write, source, None, epoch, True)

    async def save(self, source: str, cursor: str, epoch: int) -> None:
        await asyncio.to_thread(self._write, source, cursor, epoch, False)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class PgFeedCursorStore:
    """Cursors in the shared database: each write one conditional upsert (`WHERE epoch <= ours`)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def _upsert(self, source: str, cursor: str | None, epoch: int, keep_cursor: bool) -> str | None:
        new_cursor = "f.cursor" if keep_cursor else "excluded.cursor"
        async with self.database.connection() as conn:
            row = await (await conn.execute(
                "INSERT INTO feed_cursor AS f (source, cursor, epoch) VALUES (%s, %s, %s) ON CONFLICT (source) "
                f"DO UPDATE SET cursor = {new_cursor}, epoch = excluded.epoch, "
                "updated_at = now() WHERE f.epoch <= excluded.epoch RETURNING cursor",
                (source, cursor, epoch))).fetchone()
            if row is None:
                newest = await (await conn.execute("SELECT epoch FROM feed_cursor WHERE source = %s",
                                                   (source,))).fetchone()
                raise FencedOut(source, epoch, newest[0] if newest else epoch)
        return row[0]

    async def load(self, source: str) -> str | None:
        async with self.database.connection() as conn:
            row = await (await conn.execute("SELECT cursor FROM feed_cursor WHERE source = %s", (source,))).fetchone()
        return row[0] if row else None

    async def claim(self, source: str, epoch: int) -> str | None:
        return await self._upsert(source, None, epoch, True)

    async def save(self, source: str, cursor: str, epoch: int) -> None:
        await self._upsert(source, cursor, epoch, False)

    async def close(self) -> None:
        """Nothing of its own (the pool is the app's)."""
