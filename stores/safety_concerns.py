"""Safety concerns: a small storage interface and its durable SQLite default.

A concern moves OPEN → ACKNOWLEDGED → RESOLVED (an OPEN one may also be resolved directly). Each
change is committed (WAL, synchronous=FULL) before the call returns, so a concern the API confirmed
survives a kill -9. Descriptions, notes and resolutions are free text that may hold PII: nothing
here logs them.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rules.digits import ascii_int

OPEN, ACKNOWLEDGED, RESOLVED = "OPEN", "ACKNOWLEDGED", "RESOLVED"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# status a concern must be in for each action
ALLOWED_FROM = {ACKNOWLEDGED: (OPEN,), RESOLVED: (OPEN, ACKNOWLEDGED)}
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"  # the code of a shared store that cannot be reached (HTTP 503)


class ConcernError(Exception):
    """A request the store refuses; `code` is the GraphQL error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class NewConcern:
    """What a reporter supplies, plus the routing the gateway worked out."""

    a_number: str
    severity: str
    category: str
    description: str
    reported_by: str
    reporter_role: str
    field_office: str | None
    routed_by: str  # ICE_RECORD | SPONSOR_ADDRESS | UNROUTED
    reporter_client: str | None = None


@dataclass(frozen=True, slots=True)
class Concern:
    """One stored safety concern."""

    id: str
    seq: int
    a_number: str
    severity: str
    category: str
    description: str
    field_office: str | None
    routed_by: str
    status: str
    reported_by: str
    reporter_role: str
    reporter_client: str | None
    reported_at: float
    acknowledged_by: str | None
    acknowledged_at: float | None
    acknowledgement_note: str | None
    resolved_by: str | None
    resolved_at: float | None
    resolution: str | None

    def age_seconds(self, now: float) -> float:
        """Seconds since it was reported; a resolved concern's age stops at its resolution."""
        end = self.resolved_at if self.resolved_at is not None else now
        return max(0.0, end - self.reported_at)


@dataclass(frozen=True, slots=True)
class OfficeCounts:
    """Unresolved concerns of one field office (None = not routed to any office)."""

    field_office: str | None
    open: int
    acknowledged: int
    by_severity: dict[str, int]
    oldest_reported_at: float

    @property
    def unresolved(self) -> int:
        """OPEN + ACKNOWLEDGED."""
        return self.open + self.acknowledged


@dataclass(frozen=True, slots=True)
class ConcernPage:
    """A page of concerns in report order, with the cursor of the last one."""

    items: list[Concern]
    has_next: bool
    total: int


class ConcernStore(Protocol):
    """What the gateway needs of a concern store."""

    async def report(self, new: NewConcern) -> Concern:
        """Store a new OPEN concern."""

    async def acknowledge(self, concern_id: str, by: str, note: str | None) -> Concern:
        """OPEN → ACKNOWLEDGED; ConcernError NOT_FOUND or CONFLICT otherwise."""

    async def resolve(self, concern_id: str, by: str, resolution: str) -> Concern:
        """OPEN or ACKNOWLEDGED → RESOLVED; ConcernError NOT_FOUND or CONFLICT otherwise."""

    async def get(self, concern_id: str) -> Concern | None:
        """One concern by id."""

    async def page(self, *, field_offices: Sequence[str | None] | None = None, statuses: Sequence[str] | None = None,
                   a_number: str | None = None, after_seq: int = 0, limit: int = 50) -> ConcernPage:
        """Concerns in report order after `after_seq`, filtered (None = no filter on that column)."""

    async def office_counts(self, field_offices: Sequence[str | None] | None = None) -> list[OfficeCounts]:
        """Unresolved counts per field office, offices with the oldest concern first."""

    async def close(self) -> None:
        """Release the store's resources."""


def encode_cursor(seq: int) -> str:
    """Opaque pagination cursor for a concern's position."""
    return base64.urlsafe_b64encode(f"concern:{seq}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The position a cursor names; ConcernError BAD_USER_INPUT when it is not one of ours."""
    try:
        kind, _, raw = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        seq = ascii_int(raw)
        if kind != "concern" or seq is None:
            raise ValueError(cursor)
        return seq
    except (ValueError, UnicodeError) as exc:
        raise ConcernError("BAD_USER_INPUT", "after: not a cursor returned by this list") from exc


_SCHEMA = """
CREATE TABLE IF NOT EXISTS concerns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    a_number TEXT NOT NULL,
    severity TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    field_office TEXT COLLATE NOCASE,  -- office names compare case-insensitively
    routed_by TEXT NOT NULL,
    status TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reporter_role TEXT NOT NULL,
    reporter_client TEXT,
    reported_at REAL NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    acknowledgement_note TEXT,
    resolved_by TEXT,
    resolved_at REAL,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS concerns_office_status ON concerns (field_office, status, seq);
CREATE INDEX IF NOT EXISTS concerns_a_number ON concerns (a_number, seq);
"""

_COLUMNS = ("id", "seq", "a_number", "severity", "category", "description", "field_office", "routed_by", "status",
            "reported_by", "reporter_role", "reporter_client", "reported_at", "acknowledged_by", "acknowledged_at",
            "acknowledgement_note", "resolved_by", "resolved_at", "resolution")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM concerns"


def _row(row: Sequence[object]) -> Concern:
    return Concern(*row)  # type: ignore[arg-type]


def _in(column: str, values: Sequence[str | None]) -> tuple[str, list[object]]:
    """SQL condition `column IN values`, where None matches NULL."""
    parts, params = [], []
    named = [v for v in values if v is not None]
    if named:
        parts.append(f"{column} IN ({', '.join('?' * len(named))})")
        params.extend(named)
    if any(v is None for v in values):
        parts.append(f"{column} IS NULL")
    return ("(" + " OR ".join(parts) + ")") if parts else "0", params


class SqliteConcernStore:
    """Concerns in one SQLite file (WAL); calls run in a worker thread, serialised by a lock."""

    def __init__(self, path: str | Path, clock: object = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    async def _run(self, fn: object, *args: object) -> object:
        def call() -> object:
            with self._lock:
                return fn(*args)  # type: ignore[operator]

        return await asyncio.to_thread(call)

    # -- writes ------------------------------------------------------------------------------

    def _report(self, new: NewConcern) -> Concern:
        if new.severity not in SEVERITIES:
            raise ConcernError("BAD_USER_INPUT", f"severity must be one of {', '.join(SEVERITIES)}")
        cid = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO concerns (id, a_number, severity, category, description, field_office, routed_by, status,"
            " reported_by, reporter_role, reporter_client, reported_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, new.a_number, new.severity, new.category, new.description, new.field_office, new.routed_by,
             OPEN, new.reported_by, new.reporter_role, new.reporter_client, self._now()),
        )
        found = self._get(cid)
        assert found is not None
        return found

    def _transition(self, concern_id: str, target: str, by: str, text: str | None) -> Concern:
        allowed = ALLOWED_FROM[target]
        column = {ACKNOWLEDGED: "acknowledged", RESOLVED: "resolved"}[target]
        text_column = {ACKNOWLEDGED: "acknowledgement_note", RESOLVED: "resolution"}[target]
        cur = self._db.execute(
            f"UPDATE concerns SET status = ?, {column}_by = ?, {column}_at = ?, {text_column} = ?"
            f" WHERE id = ? AND status IN ({', '.join('?' * len(allowed))})",
            (target, by, self._now(), text, concern_id, *allowed),
        )
        found = self._get(concern_id)
        if found is None:
            raise ConcernError("NOT_FOUND", "no safety concern has this id")
        if cur.rowcount != 1:
            raise ConcernError("CONFLICT", f"cannot move a concern from {found.status} to {target}"
                                           f" (allowed from {' or '.join(allowed)})")
        return found

    async def report(self, new: NewConcern) -> Concern:
        """Store a new OPEN concern (committed when this returns)."""
        return await self._run(self._report, new)  # type: ignore[return-value]

    async def acknowledge(self, concern_id: str, by: str, note: str | None) -> Concern:
        """OPEN → ACKNOWLEDGED, recording who and when."""
        return await self._run(self._transition, concern_id, ACKNOWLEDGED, by, note)  # type: ignore[return-value]

    async def resolve(self, concern_id: str, by: str, resolution: str) -> Concern:
        """OPEN or ACKNOWLEDGED → RESOLVED, recording who and when."""
        return await self._run(self._transition, concern_id, RESOLVED, by, resolution)  # type: ignore[return-value]

    # -- reads -------------------------------------------------------------------------------

    def _get(self, concern_id: str) -> Concern | None:
        row = self._db.execute(f"{_SELECT} WHERE id = ?", (concern_id,)).fetchone()
        return _row(row) if row else None

    async def get(self, concern_id: str) -> Concern | None:
        """One concern by id, or None."""
        return await self._run(self._get, concern_id)  # type: ignore[return-value]

    def _page(self, field_offices: Sequence[str | None] | None, statuses: Sequence[str] | None,
              a_number: str | None, after_seq: int, limit: int) -> ConcernPage:
        where, params = [], []
        if field_offices is not None:
            cond, p = _in("field_office", field_offices)
            where.append(cond)
            params += p
        if statuses is not None:
            cond, p = _in("status", statuses)
            where.append(cond)
            params += p
        if a_number is not None:
            where.append("a_number = ?")
            params.append(a_number)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = self._db.execute(f"SELECT COUNT(*) FROM concerns{clause}", params).fetchone()[0]
        seq_clause = (" AND " if where else " WHERE ") + "seq > ?"
        rows = self._db.execute(f"{_SELECT}{clause}{seq_clause} ORDER BY seq LIMIT ?",
                                (*params, after_seq, limit + 1)).fetchall()
        return ConcernPage([_row(r) for r in rows[:limit]], len(rows) > limit, int(total))

    async def page(self, *, field_offices: Sequence[str | None] | None = None, statuses: Sequence[str] | None = None,
                   a_number: str | None = None, after_seq: int = 0, limit: int = 50) -> ConcernPage:
        """Concerns in report order (oldest first) after `after_seq`."""
        return await self._run(self._page, field_offices, statuses, a_number, after_seq, limit)  # type: ignore

    def _office_counts(self, field_offices: Sequence[str | None] | None) -> list[OfficeCounts]:
        where, params = f"status IN ('{OPEN}', '{ACKNOWLEDGED}')", []
        if field_offices is not None:
            cond, params = _in("field_office", field_offices)
            where += " AND " + cond
        rows = self._db.execute(
            f"SELECT field_office, status, severity, COUNT(*), MIN(reported_at) FROM concerns WHERE {where}"
            " GROUP BY field_office, status, severity", params,
        ).fetchall()
        return count_offices(rows)

    async def office_counts(self, field_offices: Sequence[str | None] | None = None) -> list[OfficeCounts]:
        """Unresolved (OPEN + ACKNOWLEDGED) concerns per office, the office with the oldest first."""
        return await self._run(self._office_counts, field_offices)  # type: ignore[return-value]

    async def close(self) -> None:
        """Close the database (everything is already committed)."""
        with self._lock:
            self._db.close()


def count_offices(rows: Sequence[Sequence[Any]]) -> list[OfficeCounts]:
    """Per-office counts from (office, status, severity, count, oldest reported_at) rows, oldest office first
    (every store's `office_counts`)."""
    acc: dict[str | None, dict[str, object]] = {}
    for office, status, severity, count, oldest in rows:
        a = acc.setdefault(office, {"open": 0, "ack": 0, "sev": dict.fromkeys(SEVERITIES, 0), "oldest": oldest})
        a["open" if status == OPEN else "ack"] += count  # type: ignore[operator]
        a["sev"][severity] = a["sev"].get(severity, 0) + count  # type: ignore[index,union-attr]
        a["oldest"] = min(a["oldest"], oldest)  # type: ignore[type-var]
    out = [OfficeCounts(office, a["open"], a["ack"], a["sev"], a["oldest"])  # type: ignore[arg-type]
           for office, a in acc.items()]
    out.sort(key=lambda c: (c.oldest_reported_at, c.field_office or ""))
    return out
