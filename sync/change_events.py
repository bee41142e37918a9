"""Events the gateway publishes when a source record changes, and the pub/sub topics they go to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def event_wire(event: ChangeEvent | AlertEvent) -> tuple[str, dict[str, Any]]:
    """An event as the replicas send it to each other (stores/redis_pubsub.py): its id, the same on every
    replica that reads the same change, and a JSON-able body."""
    if isinstance(event, ChangeEvent):
        fields = ",".join(event.fields)
        ident = f"C:{event.source.value}:{event.a_number}:{event.seq}:{event.source_updated_at}:{fields}"
        return ident, {"kind": "change", "source": event.source.value, "a_number": event.a_number, "seq": event.seq,
                       "source_updated_at": event.source_updated_at, "fields": list(event.fields),
                       "field_offices": list(event.field_offices), "received_at": event.received_at,
                       "via": event.via}
    ev = event.evidence
    ident = f"A:{event.kind}:{event.a_number}:{event.hearing_id}:{event.ordered_on}"
    return ident, {"kind": "alert", "alert": event.kind, "a_number": event.a_number,
                   "field_office": event.field_office, "hearing_id": event.hearing_id,
                   "hearing_starts_at": event.hearing_starts_at, "court_name": event.court_name,
                   "ordered_on": event.ordered_on, "detected_at": event.detected_at,
                   "evidence": {"source": ev.source.value, "record": ev.record, "fetched_at": ev.fetched_at,
                                "cache_status": ev.cache_status}}


def event_from_wire(body: dict[str, Any]) -> ChangeEvent | AlertEvent:
    """The event `event_wire` sent."""
    if body["kind"] == "change":
        return ChangeEvent(Source(body["source"]), body["a_number"], int(body["seq"]), body["source_updated_at"],
                           tuple(body["fields"]), tuple(body["field_offices"]), float(body["received_at"]),
                           body["via"])
    ev = body["evidence"]
    evidence = Fetched(Source(ev["source"]), ev["record"], float(ev["fetched_at"]), ev["cache_status"])
    return AlertEvent(body["alert"], body["a_number"], body["field_office"], body["hearing_id"],
                      body["hearing_starts_at"], body["court_name"], body["ordered_on"], evidence,
                      float(body["detected_at"]))
