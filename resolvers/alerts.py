"""Court alerts (OIG recommendation on automated court-attendance information), each with its evidence.

- MISSED_HEARING: one per hearing EOIR records as failed to appear, held at or before `asOf`.
- IN_ABSENTIA_ORDER: EOIR records an in-absentia order dated on or before `asOf`.
- NO_HEARING_SCHEDULED: the child was released to a sponsor at or before `asOf`, proceedings were not over
  then (no case, or a pending one) and no hearing was set for `asOf` or later.
- ADDRESS_OF_RECORD_MISMATCH: the child was released by `asOf`, the next hearing is within `withinDays` of
  `asOf` and the court's address of record is not the sponsor's ORR address: the notice may never arrive.

Every rule is judged as of `asOf` and never counts a fact dated after it: the court case as of `asOf` has
not opened when `case_opened_on` is later (a date counts from 00:00 UTC of its day), is still pending when
the decision is dated later, and a hearing starting after `asOf` had no outcome yet (it was still to come).
What the records do not date is taken as it is now: EOIR does not date when a hearing was set, so one
starting on or after `asOf` counts as already set then; neither agency dates the address it replaced, so
addresses are compared as they are now; and the evidence quotes the records as they are now.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import strawberry

from resolvers import sections as build
from resolvers.backlog import dated_by, released_as_of
from resolvers.discrepancies import place_key, sponsor_address
from resolvers.evidence import SourceClaim, address_text, claim
from resolvers.types import CaseStatus, Hearing, HearingOutcome, InAbsentiaOrder, parse_date
from rules.roles import Capability
from sources.fetcher import Fetched

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


@dataclass(frozen=True, slots=True)
class CourtAsOf:
    """The court case as it stood at a time: status, missed hearings, the next hearing, the order."""

    case_status: CaseStatus
    missed: list[Hearing]  # failures to appear at or before the time, oldest first
    next_hearing: Hearing | None  # the earliest hearing without an outcome then (before the time if it is ahead)
    in_absentia_order: InAbsentiaOrder | None


def court_as_of(eoir: Fetched, as_of: datetime) -> CourtAsOf:
    """EOIR's case as of `as_of`: nothing the record dates after it is counted (see the module docstring)."""
    if eoir.record is not None and not dated_by(parse_date(eoir.record.get("case_opened_on")), as_of):
        return CourtAsOf(CaseStatus.NO_CASE, [], None, None)
    status = build.hearing_status(eoir)
    missed = [h for h in status.past_hearings if h.outcome is HearingOutcome.FAILED_TO_APPEAR and h.starts_at <= as_of]
    nxt = status.next_hearing
    later = next((h for h in status.past_hearings if h.starts_at > as_of), None)  # its outcome came after as_of
    if later is not None and (nxt is None or later.starts_at < nxt.starts_at):
        nxt = dataclasses.replace(later, outcome=None)
    case_status = status.case_status
    if status.decision is not None and not dated_by(status.decision.decided_on, as_of):
        case_status = CaseStatus.PENDING
    order = status.in_absentia_order
    if order is not None and not dated_by(order.ordered_on, as_of):
        order = None
    return CourtAsOf(case_status, missed, nxt, order)


def _midnight(day: object) -> datetime | None:
    return datetime.combine(day, time(0), UTC) if day else None  # type: ignore[arg-type]


def _same_place(a: dict[str, object] | None, b: dict[str, object] | None) -> bool:
    if a is None or b is None:
        return False
    return place_key(a) == place_key(b)


def court_alerts(orr: Fetched, ice: Fetched, eoir: Fetched, as_of: datetime, within_days: int) -> list[AlertFact]:
    """The child's court alerts as of `as_of`, in AlertKind order (missed hearings oldest first)."""
    court = court_as_of(eoir, as_of)
    out: list[AlertFact] = []
    for h in court.missed:
        out.append(AlertFact(AlertKind.MISSED_HEARING, h.starts_at, h, [
            claim(eoir, f"hearings[{h.id}].outcome", f"failed_to_appear at {h.starts_at.isoformat()}"),
        ]))
    order = court.in_absentia_order
    if order is not None:
        out.append(AlertFact(AlertKind.IN_ABSENTIA_ORDER, _midnight(order.ordered_on), None, [
            claim(eoir, "in_absentia_order.ordered_on", order.ordered_on.isoformat() if order.ordered_on else None),
        ]))
    upcoming = court.next_hearing if court.next_hearing and court.next_hearing.starts_at >= as_of else None
    unscheduled = upcoming is None and court.case_status in (CaseStatus.NO_CASE, CaseStatus.PENDING)
    soon = upcoming is not None and upcoming.starts_at <= as_of + timedelta(days=within_days)
    # the two alerts below concern released children only: the location is built when one of them may apply
    released = released_as_of(orr, ice, as_of) if unscheduled or (soon and eoir.record is not None) else None
    if released is not None and unscheduled:
        release = (orr.record or {}).get("release") or {}
        nta = ((ice.record or {}).get("nta") or {}).get("status")
        out.append(AlertFact(AlertKind.NO_HEARING_SCHEDULED, released.since, None, [
            claim(orr, "release.released_at", release.get("released_at")),
            claim(ice, "nta.status", nta),
            claim(eoir, "case_status", eoir.record["case_status"] if eoir.record else CaseStatus.NO_CASE.value),
        ]))
    if released is not None and soon and eoir.record is not None:
        court_addr = eoir.record.get("address_of_record")
        home = sponsor_address(orr)
        if not _same_place(court_addr, home):
            out.append(AlertFact(AlertKind.ADDRESS_OF_RECORD_MISMATCH, None, upcoming, [
                claim(eoir, "address_of_record", address_text(court_addr), requires=CONTACT),
                claim(orr, "release.sponsor.address", address_text(home), requires=CONTACT),
            ]))
    return out
