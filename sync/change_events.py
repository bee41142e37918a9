"""Events the gateway publishes when a source record changes, and the pub/sub topics they go to."""

from __future__ import annotations

from dataclasses import dataclass

from sources.fetcher import Fetched
from sources.systems import Source

MISSED_HEARING = "MISSED_HEARING"
IN_ABSENTIA_ORDER = "IN_ABSENTIA_ORDER"


def child_topic(a_number: str) -> str:
    """Record changes of one child."""
    return f"child:{a_number}"


def _office_key(field_office: str) -> str:
    return " ".join(field_office.split()).casefold()


def office_topic(field_office: str) -> str:
    """Record changes of children a field office is responsible for (office names compare casefolded)."""
    return f"office:{_office_key(field_office)}"


def child_alert_topic(a_number: str) -> str:
    """New court alerts of one child."""
    return f"alert:child:{a_number}"


def office_alert_topic(field_office: str) -> str:
    """New court alerts of a field office's children."""
    return f"alert:office:{_office_key(field_office)}"


ALL_CHANGES = "changes"
ALL_ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One source reported that one record changed."""

    source: Source
    a_number: str
    seq: int
    source_updated_at: str | None
    fields: tuple[str, ...]
    field_offices: tuple[str, ...]  # responsible office(s); two when the change moved the child
    received_at: float
    via: str  # "poll" or "webhook"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A court event that needs action, found in a changed EOIR record."""

    kind: str  # MISSED_HEARING | IN_ABSENTIA_ORDER
    a_number: str
    field_office: str | None
    hearing_id: str | None
    hearing_starts_at: str | None
    court_name: str | None
    ordered_on: str | None
    evidence: Fetched  # the EOIR record the alert was read from, with its provenance
    detected_at: float
