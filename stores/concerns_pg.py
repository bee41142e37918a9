"""Safety concerns in PostgreSQL (`UCGW_DATABASE_URL`): the `ConcernStore` of stores/safety_concerns.py for
several replicas sharing one database.

Each state change is one conditional UPDATE (`WHERE status IN (allowed)`), its own transaction: when two
replicas acknowledge one concern at once, PostgreSQL makes the second wait for the first and re-check its
condition, so exactly one wins and the other gets CONFLICT, as with the SQLite store. An unreachable server
is `ConcernError("STORE_UNAVAILABLE")`. Nothing here logs free text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from stores.pg import Database, StoreUnavailable
from stores.safety_concerns import (
    ACKNOWLEDGED,
    ALLOWED_FROM,
    OPEN,
    RESOLVED,
    SEVERITIES,
    STORE_UNAVAILABLE,
    Concern,
    ConcernError,
    ConcernPage,
    NewConcern,
    OfficeCounts,
    count_offices,
)

_COLUMNS = ("id", "seq", "a_number", "severity", "category", "description", "field_office", "routed_by", "status",
            "reported_by", "reporter_role", "reporter_client", "reported_at", "acknowledged_by", "acknowledged_at",
            "acknowledgement_note", "resolved_by", "resolved_at", "resolution")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM safety_concern"


def _in(column: str, values: Sequence[str | None], lower: bool = False) -> tuple[str, list[object]]:
    """`column IN values`, where None matches NULL (office names compared case-insensitively)."""
    parts, params = [], []
    named = [v.lower() if lower else v for v in values if v is not None]
    if named:
        parts.append(f"{'lower(' + column + ')' if lower else column} = ANY(%s)")
        params.append(named)
    if any(v is None for v in values):
        parts.append(f"{column} IS NULL")
    return ("(" + " OR ".join(parts) + ")") if parts else "false", params


class PgConcernStore:
    """Concerns in the shared database; every call is one statement in autocommit (its own transaction)."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._clock = clock

    async def _all(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self.database.connection() as conn:
                return await (await conn.execute(text, params)).fetchall()
        except StoreUnavailable as exc:
            raise ConcernError(STORE_UNAVAILABLE, "the safety-concern store is unavailable; try again shortly") \
                from exc

    async def report(self, new: NewConcern) -> Concern:
        """Store a new OPEN concern (committed when this returns)."""
        if new.severity not in SEVERITIES:
            raise ConcernError("BAD_USER_INPUT", f"severity must be one of {', '.join(SEVERITIES)}")
        rows = await self._all(
            "INSERT INTO safety_concern (id, a_number, severity, category, description, field_office, routed_by,"
            " status, reported_by, reporter_role, reporter_client, reported_at)"
            f" VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING {', '.join(_COLUMNS)}",
            (uuid.uuid4().hex, new.a_number, new.severity, new.category, new.description, new.field_office,
             new.routed_by, OPEN, new.reported_by, new.reporter_role, new.reporter_client, float(self._clock())))
        return Concern(*rows[0])

    async def _transition(self, concern_id: str, target: str, by: str, text: str | None) -> Concern:
        allowed = ALLOWED_FROM[target]
        column = {ACKNOWLEDGED: "acknowledged", RESOLVED: "resolved"}[target]
        text_column = {ACKNOWLEDGED: "acknowledgement_note", RESOLVED: "resolution"}[target]
        rows = await self._all(
            f"UPDATE safety_concern SET status = %s, {column}_by = %s, {column}_at = %s, {text_column} = %s"
            f" WHERE id = %s AND status = ANY(%s) RETURNING {', '.join(_COLUMNS)}",
            (target, by, float(self._clock()), text, concern_id, list(allowed)))
        if rows:
            return Concern(*rows[0])
        found = await self.get(concern_id)
        if found is None:
            raise ConcernError("NOT_FOUND", "no safety concern has this id")
        raise ConcernError("CONFLICT", f"cannot move a concern from {found.status} to {target}"
                                       f" (allowed from {' or '.join(allowed)})")

    async def acknowledge(self, concern_id: str, by: str, note: str | None) -> Concern:
        """OPEN → ACKNOWLEDGED, recording who and when."""
        return await self._transition(concern_id, ACKNOWLEDGED, by, note)

    async def resolve(self, concern_id: str, by: str, resolution: str) -> Concern:
        """OPEN or ACKNOWLEDGED → RESOLVED, recording who and when."""
        return await self._transition(concern_id, RESOLVED, by, resolution)

    async def get(self, concern_id: str) -> Concern | None:
        """One concern by id, or None."""
        rows = await self._all(f"{_SELECT} WHERE id = %s", (concern_id,))
        return Concern(*rows[0]) if rows else None

    async def page(self, *, field_offices: Sequence[str | None] | None = None, statuses: Sequence[str] | None = None,
                   a_number: str | None = None, after_seq: int = 0, limit: int = 50) -> ConcernPage:
        """Concerns in report order (oldest first) after `after_seq`."""
        where, params = [], []
        if field_offices is not None:
            cond, p = _in("field_office", field_offices, lower=True)
            where.append(cond)
            params += p
        if statuses is not None:
            cond, p = _in("status", statuses)
            where.append(cond)
            params += p
        if a_number is not None:
            where.append("a_number = %s")
            params.append(a_number)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = (await self._all(f"SELECT count(*) FROM safety_concern{clause}", params))[0][0]
        seq_clause = (" AND " if where else " WHERE ") + "seq > %s"
        rows = await self._all(f"{_SELECT}{clause}{seq_clause} ORDER BY seq LIMIT %s",
                               (*params, after_seq, limit + 1))
        return ConcernPage([Concern(*r) for r in rows[:limit]], len(rows) > limit, int(total))

    async def office_counts(self, field_offices: Sequence[str | None] | None = None) -> list[OfficeCounts]:
        """Unresolved (OPEN + ACKNOWLEDGED) concerns per office, the office with the oldest first."""
        where, params = f"status IN ('{OPEN}', '{ACKNOWLEDGED}')", []
        if field_offices is not None:
            cond, params = _in("field_office", field_offices, lower=True)
            where += " AND " + cond
        rows = await self._all(
            "SELECT min(field_office), status, severity, count(*), min(reported_at) FROM safety_concern"
            f" WHERE {where} GROUP BY lower(field_office), status, severity", params)
        return count_offices(rows)

    async def close(self) -> None:
        """Nothing of its own to release (the pool is the app's)."""
