"""The audit trail: who read which child's record, which sections, why, and with what outcome.

One small interface (`AuditStore`) with a durable SQLite default: WAL journal, synchronous=FULL, every
append committed and flushed to the disk before it returns, so an event the gateway wrote before answering
survives a kill -9 and a power cut alike. `synchronous="normal"` (setting `audit_sync`) commits without the
flush: an event then survives the gateway being killed, not a crash of the machine.

Group commit: the appends made in one turn of the event loop are committed together at the end of that
turn, in one transaction and one fsync, on the event loop's own thread, before any of those callers
returns (as Redis does with `appendfsync always`: the loop waits for the disk once per turn, not once per
request). Crossing to a thread and back costs more than the flush: on this project's 2-vCPU VM a warm
request at concurrency 16 spent longer waiting for the audit thread to be scheduled than for the disk.
When the connection is busy elsewhere (a query, `append_sync`), or a commit on the loop was slow (a slow
disk, `SLOW_COMMIT_SECONDS`), the turn's appends go to one writer thread instead, which commits every group
waiting by then in one transaction. If a transaction fails,
each call's rows are retried in a transaction of their own, so only the call at fault gets the error.
The table is append-only (triggers refuse UPDATE and DELETE). Nothing here logs event contents.

Tamper evidence: each store instance is one writer (`writer`: a random id, plus host and pid for humans)
with its own hash chain. Every event carries its writer, its number in that writer's chain (`seq`, from 1),
the previous event's hash (`prev_hash`) and `mac`, an HMAC-SHA256 under a key kept outside the database
(`UCGW_AUDIT_HMAC_KEY`) of its own hash, which covers its canonical content and `prev_hash`. The links are
made in `_commit`, under the connection's lock, where the order of the rows is fixed, and the chain's head
moves only once they are committed (rows that fail leave no gap). `verify` checks every chain and HMAC;
`heads` gives each chain's last link, to keep elsewhere: only against such a checkpoint is a chain cut
short at its end visible.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import itertools
import json
import logging
import os
import queue
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import jwt
import orjson

log = logging.getLogger("ucgw.audit")

OK, PARTIAL, NOT_FOUND, FORBIDDEN, ERROR = "ok", "partial", "not_found", "forbidden", "error"
UNAUTHENTICATED = "unauthenticated"  # a request refused for its credentials (HTTP 401)
OUTCOMES = (OK, PARTIAL, NOT_FOUND, FORBIDDEN, ERROR, UNAUTHENTICATED)
MIN_HMAC_KEY_BYTES = 32
GENESIS = "0" * 64  # the `prev_hash` of a chain's first event
MAX_SUBJECT_CHARS = 256  # an unverified subject is kept to this many printable characters
MAX_QUERY_ROWS = 10_000
SYNC_MODES = ("full", "normal")  # SQLite `synchronous` levels the store accepts
# A new trail's page size. A one-row commit writes a WAL frame per page it touches (the table and its
# three indexes); at 1 KiB instead of SQLite's 4 KiB default such a commit took 0.42 -> 0.34 ms on this
# project's VM (scratch benchmark, fsync included). An existing file keeps the size it was made with.
PAGE_SIZE = 1024
# A commit made on the event loop that takes this long (a slow or failing disk) stalls every request the
# gateway serves meanwhile: the turns after it go to the writer thread for SLOW_DISK_SECONDS, then the loop
# tries again. A commit with its flush takes 0.2-1.5 ms on this project's VM.
SLOW_COMMIT_SECONDS = 0.025
SLOW_DISK_SECONDS = 5.0


_ID_PREFIX = secrets.token_hex(8)  # this process's; the counter makes each id unique within it
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A unique id for one request: 32 hex digits, like a UUID's, without asking the OS for randomness each
    time (on this project's VMs `os.urandom` took tens of microseconds per call under load)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


_SECOND: tuple[int, str] = (-1, "")  # the latest whole second `utc_timestamp` formatted, and its text


def utc_timestamp(when: datetime | None = None) -> str:
    """A sortable UTC timestamp: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (of now when `when` is None)."""
    global _SECOND
    if when is None:  # every answer's audit event needs one: the second's text is formatted once
        now = time.time()
        second = int(now)
        cached = _SECOND
        if cached[0] != second:
            cached = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(raw: str) -> str:
    """A user-given date or ISO datetime (naive means UTC) in the stored timestamp form."""
    text = raw.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return utc_timestamp(datetime(d.year, d.month, d.day, tzinfo=UTC))
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO date or datetime (e.g. 2025-01-31 or 2025-01-31T14:00:00Z)") \
            from None
    return utc_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))


@dataclass(frozen=True)
class AuditEvent:
    """One read of one child's record by one request."""

    time: str
    request_id: str
    subject: str
    role: str
    client: str
    a_number: str
    outcome: str
    sections_returned: tuple[str, ...] = ()
    sections_denied: tuple[str, ...] = ()
    sections_failed: tuple[str, ...] = ()
    purpose: str | None = None
    office: str | None = None  # the child's scope office (`place_key` form); None: in no office's scope
    id: int | None = field(default=None, compare=False)
    # the chain's fields, as read back from the store (the store makes them; an appended event has none)
    writer: str | None = field(default=None, compare=False)
    seq: int | None = field(default=None, compare=False)
    prev_hash: str | None = field(default=None, compare=False)
    mac: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples)."""
        out = asdict(self)
        for key in ("sections_returned", "sections_denied", "sections_failed"):
            out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class AuditFilter:
    """Which events to read; every given criterion must match. `since` inclusive, `until` exclusive."""

    a_number: str | None = None
    subject: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 1000
    after_id: int | None = None  # only events with a larger id (paging)
    offices: frozenset[str] | None = None  # only events about children of these offices (`place_key`s)


def _ignore(seconds: float) -> None:
    pass


class AuditStore(Protocol):
    """Append-only storage of audit events."""

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Durably store `events` (all or none) before returning."""

    async def query(self, where: AuditFilter) -> list[AuditEvent]:
        """Matching events, oldest first."""

    def facts(self) -> dict[str, int]:
        """Counters, for /readyz."""

    def close(self) -> None:
        """Release the store."""


# `id` is the rowid: each new row gets the largest id plus one, and since no row can be deleted (the
# triggers below) ids only grow, which `after_id` paging relies on. AUTOINCREMENT would promise the same
# through a sqlite_sequence row that every commit rewrites (one more WAL frame of the few a one-row
# commit writes); trails made with it keep it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_event (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    request_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    client TEXT NOT NULL,
    a_number TEXT NOT NULL,
    outcome TEXT NOT NULL,
    sections_returned TEXT NOT NULL,
    sections_denied TEXT NOT NULL,
    sections_failed TEXT NOT NULL,
    purpose TEXT,
    office TEXT,
    writer TEXT,
    seq INTEGER,
    prev_hash TEXT,
    mac TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_a_number ON audit_event (a_number, time);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit_event (subject, time);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_event (time);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_event
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_event
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
_COLUMNS = ("time", "request_id", "subject", "role", "client", "a_number", "outcome",
            "sections_returned", "sections_denied", "sections_failed", "purpose", "office")
_CHAIN = ("writer", "seq", "prev_hash", "mac")  # added to each row by `_commit`
_ALL = _COLUMNS + _CHAIN
ALL_COLUMNS = _ALL  # a stored event's columns after its id, in the order every store reads and writes them


class AuditStoreClosed(RuntimeError):
    """The store was closed; nothing more can be appended."""


_Row = tuple[Any, ...]


@dataclass(eq=False)
class _Pending:
    """One `append` call waiting for its commit: its rows and where to report the outcome."""

    rows: list[_Row]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


_STOP = object()  # queued by close(): the writer finishes what is ahead of it, then exits
# A commit of at most this many rows is one INSERT statement, its own transaction (the connection is in
# autocommit mode): atomic like BEGIN … COMMIT, and one call into SQLite instead of 2 + rows. Each call
# gives the GIL back while SQLite works and must take it again after; on a thread competing with a busy
# event loop each taking waits up to the interpreter's switch interval (5 ms). Scratch benchmark on this
# VM, 7 rows, a busy Python thread alongside: 43.5 -> 6.3 ms median per commit; 383 -> 357 us without.
ROWS_PER_STATEMENT = 500


@functools.lru_cache(maxsize=64)
def _insert_rows(count: int) -> str:
    """One INSERT statement of `count` rows (`_COLUMNS` order, parameters row after row)."""
    row = f"({', '.join('?' * len(_ALL))})"
    return f"INSERT INTO audit_event ({', '.join(_ALL)}) VALUES {', '.join([row] * count)}"


_INSERT = _insert_rows(1)  # one row, for `executemany`


@functools.lru_cache(maxsize=4096)
def _json_list(names: tuple[str, ...]) -> str:
    """A JSON array of section names (the same few lists recur: encoded once each)."""
    return json.dumps(list(names))


def _rows(events: Iterable[AuditEvent]) -> list[_Row]:
    return [(e.time, e.request_id, e.subject, e.role, e.client, e.a_number, e.outcome,
             _json_list(e.sections_returned), _json_list(e.sections_denied), _json_list(e.sections_failed),
             e.purpose, e.office) for e in events]


def link_hash(writer: str, seq: int, prev_hash: str, row: Sequence[Any]) -> bytes:
    """The hash of one event: SHA-256 of its canonical content (a JSON array of the writer, seq, the previous
    event's hash and the stored columns in `_COLUMNS` order)."""
    return hashlib.sha256(orjson.dumps([writer, seq, prev_hash, *row])).digest()


def mac_base(key: bytes) -> Any:
    """An HMAC-SHA256 under `key` with nothing fed yet, copied for each event (cheaper than keying anew)."""
    return hmac.new(key, digestmod="sha256")


def link_mac(base: Any, digest: bytes) -> str:
    """The HMAC (of `mac_base`'s key) of an event's hash, as stored (hex)."""
    mac = base.copy()
    mac.update(digest)
    return mac.hexdigest()


def chain_rows(writer: str, base: Any, seq: int, head: str,
               groups: Sequence[list[_Row]]) -> tuple[list[_Row], int, str]:
    """`groups`' rows, in order, each linked into `writer`'s chain after (`seq`, `head`) and signed with
    `base` (`mac_base`); and the chain's seq and head after them. Every store's writer links its rows so."""
    out = []
    for rows in groups:
        for row in rows:
            seq += 1
            digest = link_hash(writer, seq, head, row)
            out.append((*row, writer, seq, head, link_mac(base, digest)))
            head = digest.hex()
    return out, seq, head


def hmac_key_problem(key: str) -> str | None:
    """Why `key` cannot be the audit HMAC key (None when it can)."""
    if not key:
        return ("UCGW_AUDIT_HMAC_KEY is not set: the audit trail's events must be signed with a key kept "
                "outside its database (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    if len(key.encode()) < MIN_HMAC_KEY_BYTES:
        return f"UCGW_AUDIT_HMAC_KEY must be at least {MIN_HMAC_KEY_BYTES} bytes"
    return None


def new_writer_id() -> str:
    """A writer id: random (unique to one store instance), then host and pid for people reading the trail."""
    return f"{secrets.token_hex(8)}@{socket.gethostname()[:64]}:{os.getpid()}"


def presented_subject(authorization: str) -> str | None:
    """The `sub` of a Bearer JWT read without verifying it (None when there is none to read); never the
    token. Printable characters only, at most `MAX_SUBJECT_CHARS`."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2 or len(token) > 16_384:
        return None
    try:
        sub = jwt.decode(token.strip(), options={"verify_signature": False}).get("sub")
    except Exception:  # noqa: BLE001 - any token we cannot read has no subject to record
        return None
    if not isinstance(sub, str):
        return None
    text = "".join(c for c in sub if c.isprintable())[:MAX_SUBJECT_CHARS]
    return text or None


def unauthenticated_event(subject: str | None, purpose: str | None, request_id: str | None = None) -> AuditEvent:
    """The event of a request refused for its credentials: the subject it presented, marked unverified."""
    return AuditEvent(time=utc_timestamp(), request_id=request_id or new_request_id(),
                      subject=f"unverified:{subject}" if subject else "anonymous", role="none",
                      client="unverified", a_number="", outcome=UNAUTHENTICATED,
                      sections_denied=("authentication",), purpose=purpose)


def settle_all(settled: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    """Runs on the callers' loop: report each outcome unless that caller has stopped waiting."""
    for future, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class SQLiteAuditStore:
    """The default store: one SQLite file, one connection guarded by a lock; group commits on the event
    loop at the end of each turn, or by one writer thread when the connection is busy.

    `may_block`, when given, tells whether the caller is alone (gateway/http/admission.py `InFlight.may_block`). An
    `append` made then, with nothing else waiting, commits at once (inline), without waiting for the end
    of the loop turn.

    `commits` counts committed write transactions and `rows_written` the rows they held (all paths);
    `inline_commits` those a lone `append` made at once, `turn_commits` those made at the end of a loop turn
    for the appends of that turn; the rest were the writer thread's or `append_sync`'s.
    """

    def __init__(self, path: str | Path, *, create: bool = True,
                 may_block: Callable[[], bool] | None = None, synchronous: str = "full",
                 slow_commit_seconds: float = SLOW_COMMIT_SECONDS, hmac_key: bytes | None = None) -> None:
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNC_MODES)}, not {synchronous!r}")
        self.path = Path(path)
        self.may_block = may_block
        self.synchronous = synchronous
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(f"no audit trail at {self.path}")
        self._lock = threading.Lock()  # the connection: writer thread, append_sync, query_sync, close
        self._state = threading.Lock()  # _closed, _writer, _outbox and waiting
        self._closed = False
        self._writer: threading.Thread | None = None
        self._queue: queue.SimpleQueue[list[_Pending] | object] = queue.SimpleQueue()
        self._outbox: list[_Pending] = []  # appends of the current event-loop turn, not yet committed
        self.waiting = 0  # appends handed to the writer and not yet taken by it
        self.commits = 0
        self.rows_written = 0
        self.inline_commits = 0
        self.turn_commits = 0
        self.slow_commits = 0  # commits on the loop that took `slow_commit_seconds` or longer
        self.slow_commit_seconds = slow_commit_seconds
        # each committed transaction's seconds; `create_app` sets the metrics' histogram observer
        self.observe_commit: Callable[[float], None] = _ignore
        self._writer_until = 0.0  # monotonic time until which turns go to the writer (a slow loop commit was seen)
        # this instance's hash chain; without a key, one made up for it (its HMACs then cannot be verified)
        self.writer_id = new_writer_id()
        self._mac = mac_base(hmac_key if hmac_key else secrets.token_bytes(MIN_HMAC_KEY_BYTES))
        self._seq = 0
        self._head = GENESIS
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # no effect unless the file is new
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        if create:
            self._db.executescript(_SCHEMA)
        _upgrade(self._db)

    def append_sync(self, events: Iterable[AuditEvent]) -> None:
        """Insert `events` in one committed transaction (blocking; safe alongside the writer thread)."""
        rows = _rows(events)
        if self._closed:
            raise AuditStoreClosed(f"the audit trail at {self.path} is closed")
        if rows:
            with self._lock:
                self._commit([rows])

    def _commit(self, groups: Sequence[list[_Row]]) -> None:
        """All `groups` in one transaction, or none of them (raises). Hold `self._lock`.

        Up to `ROWS_PER_STATEMENT` rows (fewer when SQLite's parameter limit says so): one INSERT statement;
        more: `BEGIN IMMEDIATE`, the rows, `COMMIT`."""
        count = sum(len(rows) for rows in groups)
        if not count:
            return
        started = time.monotonic()
        # SQLite builds before 3.32 take at most 999 parameters a statement (later ones 32,766 or more)
        most = min(ROWS_PER_STATEMENT, self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_ALL))
        chained, seq, head = self._chain(groups)
        try:
            if count <= most:
                self._db.execute(_insert_rows(count), [value for row in chained for value in row])
            else:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(_INSERT, chained)
                self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._seq, self._head = seq, head  # the chain moves on only with rows that were committed
        self.commits += 1
        self.rows_written += count
        self.observe_commit(time.monotonic() - started)

    def _chain(self, groups: Sequence[list[_Row]]) -> tuple[list[_Row], int, str]:
        """`groups`' rows, in order, each with its chain fields; and the chain's seq and head after them."""
        return chain_rows(self.writer_id, self._mac, self._seq, self._head, groups)

    def query_sync(self, where: AuditFilter) -> list[AuditEvent]:
        """Matching events, oldest first, at most `where.limit` (capped)."""
        clauses, args = [], []
        for column, op, value in (("a_number", "=", where.a_number), ("subject", "=", where.subject),
                                  ("time", ">=", where.since), ("time", "<", where.until),
                                  ("id", ">", where.after_id)):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        sql = f"SELECT id, {', '.join(_ALL)} FROM audit_event"
        if where.offices is not None:
            clauses.append(f"office IN ({', '.join('?' * len(where.offices))})")
            args.extend(sorted(where.offices))
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id LIMIT ?"
        args.append(max(0, min(where.limit, MAX_QUERY_ROWS)))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_event(row) for row in rows]

    async def append(self, events: Sequence[AuditEvent]) -> None:
        """Durably store `events` (all or none) before returning; raises what made the write fail.

        The rows are committed with the other appends of this loop turn, at its end (a lone caller's at
        once, see `may_block`). If the caller is cancelled while waiting, the rows may still be committed.
        """
        rows = _rows(events)
        if self._commit_inline(rows):
            return
        loop = asyncio.get_running_loop()
        pending = _Pending(rows, loop, loop.create_future())
        with self._state:
            if self._closed:
                raise AuditStoreClosed(f"the audit trail at {self.path} is closed")
            if not rows:
                return
            self._outbox.append(pending)
            if len(self._outbox) == 1:  # the appends of this loop turn are committed together, right after it
                loop.call_soon(self._commit_turn)
        await pending.future

    def _commit_inline(self, rows: list[_Row]) -> bool:
        """Commit `rows` now when the caller is alone and nothing else waits; False to wait for the turn's end."""
        if not rows or self.may_block is None or not self.may_block():
            return False
        with self._state:
            if self._closed or self._outbox or not self._take_for_loop():
                return False
        started = time.monotonic()
        try:
            self._commit([rows])
        finally:
            self._lock.release()
        self.inline_commits += 1
        self._timed(started)
        return True

    def _take_for_loop(self) -> bool:
        """True, holding the connection's lock, when a commit may be made on the event loop now: nothing is
        queued for the writer, no slow loop commit was seen lately, and the connection is free. Hold
        `self._state`."""
        return not self.waiting and time.monotonic() >= self._writer_until and self._lock.acquire(blocking=False)

    def _timed(self, started: float) -> None:
        """After a commit on the event loop that began at `started`: a slow one sends the next turns to the
        writer thread for `SLOW_DISK_SECONDS`."""
        finished = time.monotonic()
        if finished - started >= self.slow_commit_seconds:
            self.slow_commits += 1
            self._writer_until = finished + SLOW_DISK_SECONDS

    def _commit_turn(self) -> None:
        """On the event loop, after the turn's callbacks: commit every append of the turn in one transaction
        and report each outcome. While the connection is busy elsewhere, or earlier appends are still queued
        for the writer thread, the turn's appends go to the writer too, behind those (not past them); so do
        they for `SLOW_DISK_SECONDS` after a commit on the loop took `slow_commit_seconds` or longer."""
        with self._state:
            batch, self._outbox = self._outbox, []
            if not batch:
                return
            if not self._take_for_loop():
                self._to_writer(batch)
                return
        started = time.monotonic()
        try:
            outcomes = self._commit_calls(batch)
        except BaseException:  # e.g. KeyboardInterrupt inside SQLite: no caller is left waiting for ever
            settle_all([(p.future, AuditStoreClosed("the audit commit was interrupted")) for p in batch])
            raise
        finally:
            self._lock.release()
        self.turn_commits += 1
        self._timed(started)
        settle_all([(p.future, error) for p, error in zip(batch, outcomes, strict=True)])

    def _to_writer(self, batch: list[_Pending]) -> None:
        """Queue `batch` for the writer thread, started on first use. Hold `self._state`."""
        self.waiting += len(batch)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, name="audit-writer", daemon=True)
            self._writer.start()
        self._queue.put(batch)

    def _write_forever(self) -> None:
        """The writer thread: take the first waiting append, drain every other one already queued, commit."""
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending = [p for item in batch if item is not _STOP for p in item]  # type: ignore[union-attr]
            with self._state:
                self.waiting -= len(pending)
            if pending:
                self._write_batch(pending)
            if any(item is _STOP for item in batch):  # close() lets nothing in after its stop
                return

    def _write_batch(self, batch: list[_Pending]) -> None:
        """The writer thread's commit of `batch`; each outcome reported on its caller's loop."""
        outcomes: list[BaseException | None]
        try:
            with self._lock:
                outcomes = self._commit_calls(batch)
        except BaseException as exc:  # noqa: BLE001 - e.g. the lock or connection is gone; fail, don't hang
            outcomes = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for p, error in zip(batch, outcomes, strict=True):
            by_loop.setdefault(p.loop, []).append((p.future, error))
        for loop, settled in by_loop.items():  # one wake-up per event loop, not one per caller
            try:
                loop.call_soon_threadsafe(settle_all, settled)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
                pass

    def _commit_calls(self, batch: list[_Pending]) -> list[BaseException | None]:
        """One transaction for every call in `batch`; if it fails, each call's rows in a transaction of
        their own. Each call's outcome: None, or what made its rows fail. Hold `self._lock`."""
        try:
            self._commit([p.rows for p in batch])
        except Exception as exc:  # noqa: BLE001 - reported to the caller(s), never swallowed
            if len(batch) == 1:
                return [exc]
            return [self._try_commit(p.rows) for p in batch]
        return [None] * len(batch)

    def _try_commit(self, rows: list[_Row]) -> BaseException | None:
        """Commit `rows` on their own; the error instead of raising it. Hold `self._lock`."""
        try:
            self._commit([rows])
        except Exception as exc:  # noqa: BLE001 - returned to the writer, which hands it to the caller
            return exc
        return None

    async def query(self, where: AuditFilter) -> list[AuditEvent]:
        """Matching events, oldest first."""
        return await asyncio.to_thread(self.query_sync, where)

    def facts(self) -> dict[str, int]:
        """Committed transactions, the rows they held, how many a lone append made at once, how many were
        made at the end of a loop turn, and how many of those two kinds were slow (a slow disk)."""
        return {"commits": self.commits, "rowsWritten": self.rows_written, "inlineCommits": self.inline_commits,
                "turnCommits": self.turn_commits, "slowCommits": self.slow_commits}

    def close(self) -> None:
        """Commit every append still waiting (by the writer thread), then close the connection.

        Appends after this raise `AuditStoreClosed`; closing twice is harmless.
        """
        with self._state:
            if self._closed:
                return
            self._closed = True
            if self._outbox:  # appends of this loop turn not committed yet: the writer commits them first
                batch, self._outbox = self._outbox, []
                self._to_writer(batch)
            writer = self._writer
            if writer is not None:
                self._queue.put(_STOP)
        if writer is not None:
            writer.join()
        with self._lock:
            self._db.close()  # the WAL is checkpointed by SQLite


def _event(row: tuple[Any, ...]) -> AuditEvent:
    (id_, time, request_id, subject, role, client, a_number, outcome, returned, denied, failed, purpose, office,
     writer, seq, prev_hash, mac) = row
    return AuditEvent(
        id=id_, time=time, request_id=request_id, subject=subject, role=role, client=client, a_number=a_number,
        outcome=outcome, sections_returned=tuple(json.loads(returned)), sections_denied=tuple(json.loads(denied)),
        sections_failed=tuple(json.loads(failed)), purpose=purpose, office=office, writer=writer, seq=seq,
        prev_hash=prev_hash, mac=mac,
    )


event_rows = _rows  # events as stored rows (`_COLUMNS`), for every store
stored_event = _event  # a stored row ((id, *ALL_COLUMNS)) as an event, for every store


def _upgrade(db: sqlite3.Connection) -> None:
    """Add the columns a trail made before field-office scoping and chaining lacks (its old rows stay
    unchained: `verify` reports them)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(audit_event)")}
    for column, kind in (("office", "TEXT"), ("writer", "TEXT"), ("seq", "INTEGER"), ("prev_hash", "TEXT"),
                         ("mac", "TEXT")):
        if have and column not in have:
            db.execute(f"ALTER TABLE audit_event ADD COLUMN {column} {kind}")


# ------------------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class Head:
    """A chain's last link: its writer, that event's seq and id, and its hash (hex)."""

    writer: str
    seq: int
    id: int
    hash: str


@dataclass(frozen=True)
class Break:
    """The first broken link of one chain: whose, at which event (None: at the chain's end), what is wrong."""

    writer: str
    event_id: int | None
    problem: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "end of chain"
        return f"writer {self.writer}: {where}: {self.problem}"


@dataclass
class Verdict:
    """What `verify` found: events and chains read, and the first break of each broken chain."""

    events: int = 0
    chains: int = 0
    breaks: list[Break] = field(default_factory=list)
    previous_key_chains: int = 0  # chains signed with a key other than the first given (a rotation's earlier ones)


_UNCHAINED = "(none)"  # the writer name reported for rows that carry no chain


def _read_rows(path: Path) -> Iterable[tuple[Any, ...]]:
    """Every row of the trail at `path`, by id, read through a read-only connection: (id, *_ALL)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield from db.execute(f"SELECT id, {', '.join(_ALL)} FROM audit_event ORDER BY id")
    finally:
        db.close()


def read_trail(path: str | Path) -> Iterable[tuple[Any, ...]]:
    """Every row of the SQLite trail at `path`, by id ((id, *ALL_COLUMNS)), for `verify_rows` / `heads_of`."""
    return _read_rows(Path(path))


def heads(path: str | Path) -> dict[str, Head]:
    """Each chain's last link, by writer (rows without a chain are left out)."""
    return heads_of(_read_rows(Path(path)))


def heads_of(rows: Iterable[tuple[Any, ...]]) -> dict[str, Head]:
    """Each chain's last link among `rows` ((id, *_ALL) by id, from any store)."""
    last: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        if row[1 + len(_COLUMNS)] is not None:
            last[row[1 + len(_COLUMNS)]] = row
    out = {}
    for writer, row in last.items():
        content, (_, seq, prev, _) = row[1:1 + len(_COLUMNS)], row[1 + len(_COLUMNS):]
        out[writer] = Head(writer, seq, row[0], link_hash(writer, seq, prev, content).hex())
    return out


def verify(path: str | Path, key: bytes | Sequence[bytes], checkpoint: dict[str, Head] | None = None) -> Verdict:
    """Check every chain of the trail at `path`: each event follows the one before it in its writer's chain
    (seq one more, `prev_hash` that event's hash), and its HMAC under `key` matches. With a `checkpoint`
    (`heads` taken earlier), every chain it names must still reach its head, with the same hash.

    `key` may be several keys (the current one first, then those of a rotation's earlier chains): each chain
    is checked under the one key its first event was signed with, so a chain cannot change keys midway."""
    return verify_rows(_read_rows(Path(path)), key, checkpoint)


def verify_rows(rows: Iterable[tuple[Any, ...]], key: bytes | Sequence[bytes],
                checkpoint: dict[str, Head] | None = None) -> Verdict:
    """`verify` of `rows` ((id, *_ALL) by id, from any store)."""
    keys = [key] if isinstance(key, bytes) else list(key)
    verdict, bases = Verdict(), [mac_base(k) for k in keys]
    chain_key: dict[str, Any] = {}  # writer -> the base of the key its chain is signed with
    state: dict[str, tuple[int, str, int]] = {}  # writer -> (seq, hash, id) of its latest good event
    broken: dict[str, Break] = {}
    reached: dict[str, str] = {}  # writer -> hash of its event at the checkpoint's seq
    for row in rows:
        verdict.events += 1
        id_, content, (writer, seq, prev, mac) = row[0], row[1:1 + len(_COLUMNS)], row[1 + len(_COLUMNS):]
        name = writer if writer is not None else _UNCHAINED
        if name in broken:
            continue
        if writer is None or not isinstance(seq, int) or prev is None or mac is None:
            broken[name] = Break(name, id_, "the event carries no chain (no writer, seq, prev_hash or HMAC)")
            continue
        last_seq, last_hash, last_id = state.get(writer, (0, GENESIS, None))
        if seq != last_seq + 1:
            missing = (f"events {last_seq + 1}..{seq - 1} of this chain are missing" if seq > last_seq + 1
                       else f"seq {seq} repeats or goes back (the event before it has seq {last_seq})")
            broken[name] = Break(name, id_, f"seq {seq} where {last_seq + 1} was expected: {missing}")
            continue
        if prev != last_hash:
            before = f"event {last_id}" if last_id is not None else "the chain's start"
            broken[name] = Break(name, id_, f"prev_hash does not match the hash of {before}: "
                                            "an event before it was changed or removed")
            continue
        digest = link_hash(writer, seq, prev, content)
        base = chain_key.get(writer)
        if base is None:  # the chain's first event: the key it verifies under is the chain's
            base = next((b for b in bases if hmac.compare_digest(mac, link_mac(b, digest))), None)
            if base is None:
                broken[name] = Break(name, id_, f"HMAC does not match under any of the {len(bases)} key(s) given: "
                                                "the event was edited, or signed with a key not given")
                continue
            chain_key[writer] = base
            if base is not bases[0]:
                verdict.previous_key_chains += 1
        elif not hmac.compare_digest(mac, link_mac(base, digest)):
            broken[name] = Break(name, id_, "HMAC does not match: the event was edited (or signed with another key)")
            continue
        state[writer] = (seq, digest.hex(), id_)
        if checkpoint is not None and writer in checkpoint and checkpoint[writer].seq == seq:
            reached[writer] = digest.hex()
    for writer, head in (checkpoint or {}).items():
        if writer in broken:
            continue
        if writer not in state:
            broken[writer] = Break(writer, None, f"no event of this chain remains; the checkpoint's head is "
                                                 f"seq {head.seq} (event {head.id})")
        elif writer not in reached:
            seq, _, id_ = state[writer]
            broken[writer] = Break(writer, None, f"the chain ends at seq {seq} (event {id_}) but the checkpoint's "
                                                 f"head is seq {head.seq} (event {head.id}): events were removed")
        elif reached[writer] != head.hash:
            broken[writer] = Break(writer, None, f"the event at the checkpoint's head, seq {head.seq}, has another "
                                                 "hash than the checkpoint: the chain was rewritten")
    verdict.chains = len(set(state) | set(broken))
    verdict.breaks = sorted(broken.values(), key=lambda b: (b.event_id is None, b.event_id or 0, b.writer))
    return verdict
