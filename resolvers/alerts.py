"""Court alerts (OIG recommendation on automated court-attendance information), each with its evidence.

- MISSED_HEARING: one per hearing EOIR records as failed to appear.
- IN_ABSENTIA_ORDER: EOIR records an in-absentia order.
- NO_HEARING_SCHEDULED: the child is released to a sponsor, proceedings are not over (no case, or a pending
  one) and the next hearing is not on or after `asOf`.
- ADDRESS_OF_RECORD_MISMATCH: the next hearing is within `withinDays` of `asOf` and the court's address of
  record is not the sponsor's current ORR address: the notice may never arrive.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import strawberry

from gateway.fetcher import Fetched
from gateway.roles import Capability
from resolvers import build
from resolvers.discrepancies import place_key, sponsor_address
from resolvers.evidence import SourceClaim, address_text, claim
from resolvers.types import CaseStatus, Hearing, HearingOutcome, LocationStatus

CONTACT = Capability.CHILD_CONTACT
@strawberry.enum(description="A kind of court alert.")
class AlertKind(enum.Enum):
    MISSED_HEARING = "MISSED_HEARING"
    IN_ABSENTIA_ORDER = "IN_ABSENTIA_ORDER"
    NO_HEARING_SCHEDULED = "NO_HEARING_SCHEDULED"
    ADDRESS_OF_RECORD_MISMATCH = "ADDRESS_OF_RECORD_MISMATCH"


@dataclass(frozen=True, slots=True)
class AlertFact:
    """One alert about one child, before it is shown (the list adds the child)."""

    kind: AlertKind
    occurred_at: datetime | None  # when the fact arose; None for a forward-looking alert
    hearing: Hearing | None
    evidence: list[SourceClaim]


def _midnight(day: object) -> datetime | None:
    return datetime.combine(day, time(0), UTC) if day else None  # type: ignore[arg-type]


def _same_place(a: dict[str, object] | None, b: dict[str, object] | None) -> bool:
    if a is None or b is None:
        return False
    return place_key(a) == place_key(b)


def court_alerts(orr: Fetched, ice: Fetched, eoir: Fetched, as_of: datetime, within_days: int) -> list[AlertFact]:
    """The child's court alerts, in AlertKind order (missed hearings oldest first)."""
    status = build.hearing_status(eoir)
    out: list[AlertFact] = []
    for h in status.past_hearings:
        if h.outcome is HearingOutcome.FAILED_TO_APPEAR:
            out.append(AlertFact(AlertKind.MISSED_HEARING, h.starts_at, h, [
                claim(eoir, f"hearings[{h.id}].outcome", f"failed_to_appear at {h.starts_at.isoformat()}"),
            ]))
    order = status.in_absentia_order
    if order is not None:
        out.append(AlertFact(AlertKind.IN_ABSENTIA_ORDER, _midnight(order.ordered_on), None, [
            claim(eoir, "in_absentia_order.ordered_on", order.ordered_on.isoformat() if order.ordered_on else None),
        ]))
    released = build.location(orr, ice).status is LocationStatus.RELEASED_TO_SPONSOR
    upcoming = status.next_hearing if status.next_hearing and status.next_hearing.starts_at >= as_of else None
    if released and upcoming is None and status.case_status in (CaseStatus.NO_CASE, CaseStatus.PENDING):
        release = (orr.record or {}).get("release") or {}
        nta = ((ice.record or {}).get("nta") or {}).get("status")
        out.append(AlertFact(AlertKind.NO_HEARING_SCHEDULED, build.location(orr, ice).since, None, [
            claim(orr, "release.released_at", release.get("released_at")),
            claim(ice, "nta.status", nta),
            claim(eoir, "case_status", status.case_status.value),
        ]))
    soon = upcoming is not None and upcoming.starts_at <= as_of + timedelta(days=within_days)
    if released and soon and eoir.record is not None:
        court_addr = eoir.record.get("address_of_record")
        home = sponsor_address(orr)
        if not _same_place(court_addr, home):
            out.append(AlertFact(AlertKind.ADDRESS_OF_RECORD_MISMATCH, None, upcoming, [
                claim(eoir, "address_of_record", address_text(court_addr), requires=CONTACT),
                claim(orr, "release.sponsor.address", address_text(home), requires=CONTACT),
            ]))
    return out
