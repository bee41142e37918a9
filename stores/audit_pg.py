"""The audit trail in PostgreSQL (`UCGW_DATABASE_URL`), for many gateway replicas writing one trail.

The same events, chains and HMACs as the SQLite store (`stores/audit_trail.py`, whose chain code this
uses): each store instance is one writer with its own hash chain, so no replica waits on another's lock,
and the table's identity `id` puts every replica's events in one order. Group commit: the appends made
while a commit is in flight (and those of the turn that starts one) go out together in the next
transaction, one multi-row INSERT (one round trip); each caller returns once its rows are committed.

A failed transaction reports its error to each caller, whose answer is then withheld (AUDIT_UNAVAILABLE);
since a commit whose connection broke may or may not have landed, the writer starts a new chain after any
failure, so a chain never holds a gap or a repeated seq (verify sees the old chain end where it ended).
The runtime role may only INSERT and SELECT this table (stores/migrations/0001_stores.sql).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from stores.audit_trail import (
    ALL_COLUMNS,
    GENESIS,
    MAX_QUERY_ROWS,
    MIN_HMAC_KEY_BYTES,
    AuditEvent,
    AuditFilter,
    AuditStoreClosed,
    chain_rows,
    event_rows,
    mac_base,
    new_writer_id,
    settle_all,
    stored_event,
)
from stores.pg import Database, StoreUnavailable

_INSERT = (f"INSERT INTO audit_event ({', '.join(ALL_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(ALL_COLUMNS))})")
_SELECT = f"SELECT id, {', '.join(ALL_COLUMNS)} FROM audit_event"
# A group of at most this many rows is one INSERT statement (PostgreSQL binds at most 65,535 parameters);
# larger ones are one transaction of pipelined INSERTs.
ROWS_PER_STATEMENT = 1000


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    row = f"({', '.join(['%s'] * len(ALL_COLUMNS))})"
    return f"INSERT INTO audit_event ({', '.join(ALL_COLUMNS)}) VALUES {', '.join([row] * count)}"


_Row = tuple[Any, ...]


def _ignore(seconds: float) -> None:
    pass


class PgAuditStore:
    """Append-only audit events in PostgreSQL, one hash chain per instance (a replica process)."""

    def __init__(self, database: Database, hmac_key: bytes | None = None) -> None:
        self.database = database
        self._mac = mac_base(hmac_key if hmac_key else secrets.token_bytes(MIN_HMAC_KEY_BYTES))
        self._new_chain()
        self._outbox: list[tuple[list[_Row], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.rows_written = 0
        self.failed_commits = 0
        self.chains = 1
        self.observe_commit: Callable[[float], None] = _ignore  # `create_app` sets the metrics' observer

    def _new_chain(self) -> None:
        self.writer_id = new_writer_id()
        self._seq, self._head = 0, GENESIS

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Committed in PostgreSQL when this returns (with the other appends waiting by then); raises
        `StoreUnavailable` when the server cannot be reached. A caller cancelled while waiting may still
        have its rows committed."""
        if self._closed:
            raise AuditStoreClosed("the audit trail is closed")
        rows = event_rows(events)
        if not rows:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((rows, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="audit-pg-commit")
        await future

    async def _flush(self) -> None:
        """Commit everything waiting, one transaction at a time, until nothing waits."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                outcomes = await self._commit_calls([rows for rows, _ in batch])
            except BaseException as exc:  # cancelled at close: nobody is left waiting for ever
                outcomes = [AuditStoreClosed(f"the audit commit was interrupted ({type(exc).__name__})")] * len(batch)
                if not isinstance(exc, Exception):
                    _settle(batch, outcomes)
                    raise
            _settle(batch, outcomes)

    async def _commit_calls(self, groups: list[list[_Row]]) -> list[BaseException | None]:
        """One transaction for every call; if it fails for one call's rows, each call in its own."""
        try:
            await self._commit(groups)
        except StoreUnavailable as exc:
            return [exc] * len(groups)
        except Exception as exc:  # noqa: BLE001 - a row the server refused: find whose
            if len(groups) == 1:
                return [exc]
            out: list[BaseException | None] = []
            for rows in groups:
                try:
                    await self._commit([rows])
                    out.append(None)
                except Exception as one:  # noqa: BLE001 - returned to its caller
                    out.append(one)
            return out
        return [None] * len(groups)

    async def _commit(self, groups: list[list[_Row]]) -> None:
        """Link the rows into this writer's chain and commit them in one transaction (pipelined INSERTs).
        After a failure the chain's head is unknown (the commit may have landed): a new chain begins."""
        chained, seq, head = chain_rows(self.writer_id, self._mac, self._seq, self._head, groups)
        started = time.monotonic()
        try:
            async with self.database.connection() as conn:
                if len(chained) <= ROWS_PER_STATEMENT:  # one statement, its own transaction: one round trip
                    await conn.execute(_insert_rows(len(chained)), [v for row in chained for v in row])
                else:
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(_INSERT, chained)  # pipelined
        except BaseException:
            self.failed_commits += 1
            self.chains += 1
            self._new_chain()
            raise
        self._seq, self._head = seq, head
        self.commits += 1
        self.rows_written += len(chained)
        self.observe_commit(time.monotonic() - started)

    async def query(self, where: AuditFilter) -> list[AuditEvent]:
        """Matching events, oldest (smallest id) first, at most `where.limit` (capped)."""
        text, args = _query(where)
        async with self.database.connection() as conn:
            rows = await (await conn.execute(text, args)).fetchall()
        return [stored_event(row) for row in rows]

    def facts(self) -> dict[str, int]:
        """Committed transactions, their rows, failed ones, and the chains this replica has begun."""
        return {"commits": self.commits, "rowsWritten": self.rows_written, "failedCommits": self.failed_commits,
                "chains": self.chains}

    def close(self) -> None:
        """Refuse further appends (the lifespan awaits in-flight ones first; the pool is the app's)."""
        self._closed = True


def _settle(batch: list[tuple[list[_Row], asyncio.Future[None]]], outcomes: Sequence[BaseException | None]) -> None:
    settle_all([(future, error) for (_, future), error in zip(batch, outcomes, strict=True)])


def _query(where: AuditFilter) -> tuple[str, list[Any]]:
    """The SELECT of `where`'s events, and its parameters."""
    clauses, args = [], []
    for column, op, value in (("a_number", "=", where.a_number), ("subject", "=", where.subject),
                              ("time", ">=", where.since), ("time", "<", where.until), ("id", ">", where.after_id)):
        if value is not None:
            clauses.append(f"{column} {op} %s")
            args.append(value)
    if where.offices is not None:
        clauses.append("office = ANY(%s)")
        args.append(sorted(where.offices))
    text = _SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id LIMIT %s"
    args.append(max(0, min(where.limit, MAX_QUERY_ROWS)))
    return text, args


def query_sync(url: str, where: AuditFilter) -> list[AuditEvent]:
    """`PgAuditStore.query` for tools (`ucgw audit`): blocking, on a connection of its own."""
    text, args = _query(where)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return [stored_event(row) for row in conn.execute(text, args).fetchall()]


def read_rows(url: str, batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
    """Every event row of the trail at `url`, by id ((id, *ALL_COLUMNS)), for `verify_rows` / `heads_of`;
    read in pages so a long trail is never held in memory at once."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        last = 0
        while True:
            rows = conn.execute(f"{_SELECT} WHERE id > %s ORDER BY id LIMIT %s", (last, batch)).fetchall()
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1][0]
