"""Court alerts (OIG recommendation on automated court-attendance information), each with its evidence.

- MISSED_HEARING: one per hearing EOIR records as failed to appear, held at or before `as_of`.
- IN_ABSENTIA_ORDER: EOIR records an in-absentia order dated on or before `as_of`.
- NO_HEARING_SCHEDULED: the child was released to a sponsor at or before `as_of`, proceedings were not over
  then (no case, or a pending one) and no hearing was set for `as_of` or later.
- ADDRESS_OF_RECORD_MISMATCH: the child was released by `as_of`, the next hearing is within `within_days` of
  `as_of` and the court's address of record is not the sponsor's ORR address: the notice may never arrive.

Every rule is judged as of `as_of` and never counts a fact dated after it: the court case as of `as_of` has
not opened when `case_opened_on` is later (a date counts from 00:00 UTC of its day), is still pending when
the decision is dated later, and a hearing starting after `as_of` had no outcome yet (it was still to come).
What the records do not date is taken as it is now: EOIR does not date when a hearing was set, so one
starting on or after `as_of` counts as already set then; neither agency dates the address it replaced, so
addresses are compared as they are now; and the evidence quotes the records as they are now.

`now` is the moment "as it is now" means (the live path passes the wall clock): a hearing without an
outcome that starts before it is past, not next, as the child's hearing section shows it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from rules.dates import dated_by, midnight, parse_date, parse_datetime
from rules.evidence import Evidence, Personal, address_text
from rules.nta_backlog import release_as_of
from rules.places import same_address, sponsor_address

Record = dict[str, Any]

NO_CASE, PENDING, FAILED_TO_APPEAR = "no_case", "pending", "failed_to_appear"
CASE_STATUSES = frozenset({NO_CASE, PENDING, "decided", "administratively_closed", "terminated"})  # EOIR's values
HEARING_OUTCOMES = frozenset({"held", "adjourned", FAILED_TO_APPEAR})


class AlertKind(enum.Enum):
    MISSED_HEARING = "MISSED_HEARING"
    IN_ABSENTIA_ORDER = "IN_ABSENTIA_ORDER"
    NO_HEARING_SCHEDULED = "NO_HEARING_SCHEDULED"
    ADDRESS_OF_RECORD_MISMATCH = "ADDRESS_OF_RECORD_MISMATCH"


@dataclass(frozen=True, slots=True)
class HearingAsOf:
    """One EOIR hearing record with its start, and its outcome as known at the time judged (None: none yet)."""

    record: Record
    starts_at: datetime
    outcome: str | None

    @property
    def id(self) -> str:
        """EOIR's hearing id."""
        return str(self.record["id"])


@dataclass(frozen=True, slots=True)
class CourtAsOf:
    """The court case as it stood at a time: status, missed hearings, the next hearing, the order."""

    case_status: str  # an EOIR case status value, `no_case` when there was none
    missed: list[HearingAsOf]  # failures to appear at or before the time, oldest first
    next_hearing: HearingAsOf | None  # the earliest hearing without an outcome then (before the time if ahead)
    in_absentia_order: bool
    in_absentia_ordered_on: date | None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert about one child."""

    kind: AlertKind
    occurred_at: datetime | None  # when the fact arose; None for a forward-looking alert
    hearing: HearingAsOf | None
    evidence: list[Evidence]



def _hearing(raw: Record) -> HearingAsOf:
    outcome = raw.get("outcome")
    if outcome is not None and outcome not in HEARING_OUTCOMES:
        raise ValueError(f"unknown hearing outcome {outcome!r}")
    raw["id"]  # noqa: B018  every hearing has an id; its absence is a malformed record
    return HearingAsOf(raw, parse_datetime(raw["starts_at"]), outcome)


def court_as_of(case: Record | None, as_of: datetime, now: datetime) -> CourtAsOf:
    """EOIR's case as of `as_of`: nothing the record dates after it is counted (see the module docstring)."""
    if case is None or not dated_by(parse_date(case.get("case_opened_on")), as_of):
        return CourtAsOf(NO_CASE, [], None, False, None)
    status = case["case_status"]
    if status not in CASE_STATUSES:
        raise ValueError(f"unknown case status {status!r}")
    hearings = sorted((_hearing(h) for h in case.get("hearings") or []), key=lambda h: h.starts_at)
    missed = [h for h in hearings if h.outcome == FAILED_TO_APPEAR and h.starts_at <= as_of]
    # as now: the next hearing is the earliest still ahead with no outcome; the others are past
    nxt = next((h for h in hearings if h.outcome is None and h.starts_at >= now), None)
    later = next((h for h in hearings if (h.outcome is not None or h.starts_at < now) and h.starts_at > as_of), None)
    if later is not None and (nxt is None or later.starts_at < nxt.starts_at):
        nxt = HearingAsOf(later.record, later.starts_at, None)  # its outcome came after as_of
    decision = case.get("decision")
    if decision and not dated_by(parse_date(decision.get("decided_on")), as_of):
        status = PENDING
    order = case.get("in_absentia_order")
    ordered_on = parse_date(order.get("ordered_on")) if order else None
    has_order = bool(order) and dated_by(ordered_on, as_of)
    return CourtAsOf(status, missed, nxt, has_order, ordered_on if has_order else None)


def court_alerts(orr: Record | None, ice: Record | None, eoir: Record | None, as_of: datetime, within_days: int,
                 now: datetime) -> list[Alert]:
    """The child's court alerts as of `as_of`, in AlertKind order (missed hearings oldest first)."""
    court = court_as_of(eoir, as_of, now)
    out: list[Alert] = []
    for h in court.missed:
        out.append(Alert(AlertKind.MISSED_HEARING, h.starts_at, h, [
            Evidence("EOIR", f"hearings[{h.id}].outcome", f"failed_to_appear at {h.starts_at.isoformat()}"),
        ]))
    if court.in_absentia_order:
        on = court.in_absentia_ordered_on
        out.append(Alert(AlertKind.IN_ABSENTIA_ORDER, midnight(on), None, [
            Evidence("EOIR", "in_absentia_order.ordered_on", on.isoformat() if on else None),
        ]))
    upcoming = court.next_hearing if court.next_hearing and court.next_hearing.starts_at >= as_of else None
    unscheduled = upcoming is None and court.case_status in (NO_CASE, PENDING)
    soon = upcoming is not None and upcoming.starts_at <= as_of + timedelta(days=within_days)
    # the two alerts below concern released children only: the release is judged when one of them may apply
    released = release_as_of(orr, ice, as_of) if unscheduled or (soon and eoir is not None) else None
    if released is not None and unscheduled:
        release = (orr or {}).get("release") or {}
        nta = ((ice or {}).get("nta") or {}).get("status")
        out.append(Alert(AlertKind.NO_HEARING_SCHEDULED, released.at, None, [
            Evidence("ORR", "release.released_at", release.get("released_at")),
            Evidence("ICE", "nta.status", nta),
            Evidence("EOIR", "case_status", eoir["case_status"] if eoir else NO_CASE),
        ]))
    if released is not None and soon and eoir is not None:
        court_addr = eoir.get("address_of_record")
        home = sponsor_address(orr)
        if not same_address(court_addr, home):
            out.append(Alert(AlertKind.ADDRESS_OF_RECORD_MISMATCH, None, upcoming, [
                Evidence("EOIR", "address_of_record", address_text(court_addr), Personal.CONTACT),
                Evidence("ORR", "release.sponsor.address", address_text(home), Personal.CONTACT),
            ]))
    return out
