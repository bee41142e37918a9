"""Source dates and times, and judging a fact dated by day only as of a moment."""

from __future__ import annotations

from datetime import UTC, date, datetime, time


def parse_datetime(raw: str) -> datetime:
    """ISO-8601 timestamp from a source (`Z` or offset; none is taken as UTC)."""
    value = datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_date(raw: str | None) -> date | None:
    """ISO date from a source, or None."""
    return date.fromisoformat(raw) if raw else None


def midnight(day: date | None) -> datetime | None:
    """00:00 UTC of `day` (when a fact dated by day only is taken to have happened), or None."""
    return datetime.combine(day, time(0), UTC) if day else None


def dated_by(day: date | None, as_of: datetime) -> bool:
    """True when a fact dated by day only had happened by `as_of` (from 00:00 UTC of its day; undated: True)."""
    return day is None or datetime.combine(day, time(0), UTC) <= as_of
