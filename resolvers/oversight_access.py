"""Access rules shared by the oversight lists: field-office scope, audit of listed children, time arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from strawberry.types import Info

from resolvers.errors import bad_input
from resolvers.permissions import allowed, forbidden, principal_of
from rules.roles import Capability


def in_scope(info: Info[Any, Any], office: str | None) -> bool:
    """True when the caller's field-office scope (if any) covers `office`."""
    principal = principal_of(info)
    return principal is None or principal.covers_office(office)


def require(info: Info[Any, Any], capability: Capability, what: str) -> None:
    """FORBIDDEN unless the caller holds `capability` (for arguments that would reveal restricted data)."""
    if not allowed(info, capability):
        raise forbidden(f"not allowed: {what} needs {capability.value}", capability=capability.value)


def record_listed(info: Info[Any, Any], a_number: str, section: str) -> None:
    """Record in the request's audit reads that a list returned facts about this child."""
    reads = getattr(info.context, "reads", None)
    if reads is not None:
        reads.found(a_number, True)
        reads.child(a_number).returned.add(section)


def section_started(info: Info[Any, Any], a_number: str) -> None:
    """Let denials below this field (e.g. a claim's value) be attributed to the child in the audit trail."""
    reads = getattr(info.context, "reads", None)
    if reads is not None:
        reads.section_started(info, a_number)


EARLIEST, LATEST = datetime(1950, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def as_of_time(value: datetime | None, name: str = "asOf") -> datetime:
    """`asOf` as an aware UTC datetime (a naive one is taken as UTC); wall-clock now when omitted."""
    if value is None:
        return datetime.now(UTC)
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST <= aware <= LATEST:
        raise bad_input(f"{name} must lie between {EARLIEST.year} and {LATEST.year}")
    return aware


def given_time(value: datetime | None, name: str = "asOf") -> str | None:
    """A time argument as the caller gave it, in one form per instant (None when omitted), for binding cursors:
    an omitted `asOf` means now, which moves with every request, so only an explicit one is bound."""
    return None if value is None else as_of_time(value, name).astimezone(UTC).isoformat()


def max_age_arg(value: int | None) -> float | None:
    """`maxAgeSeconds` as seconds; BAD_USER_INPUT when negative."""
    if value is not None and value < 0:
        raise bad_input("maxAgeSeconds must be 0 or more (0 = fetch from the source now)")
    return None if value is None else float(value)


def days_arg(name: str, value: int | None, limit: int = 3650) -> int | None:
    """A day count argument within 0..limit."""
    if value is not None and not 0 <= value <= limit:
        raise bad_input(f"{name} must be between 0 and {limit} (got {value})")
    return value
