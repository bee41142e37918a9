"""rules.court_alerts: the court case and the four alert kinds, judged as of a date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from rules.court_alerts import AlertKind, court_alerts, court_as_of
from rules.evidence import Evidence, Personal

AS_OF = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, tzinfo=UTC)  # the records as they are now: later than AS_OF
HOME = {"street": "12 Oak St", "unit": None, "city": "Dallas", "state": "TX", "zip": "75201", "quality": "valid"}


def hearing(hid: str, starts_at: str, outcome: str | None = None) -> dict[str, Any]:
    return {"id": hid, "type": "master_calendar", "starts_at": starts_at, "outcome": outcome}


def case(*hearings: dict[str, Any], status: str = "pending", opened: str | None = "2024-06-01",
         **extra: Any) -> dict[str, Any]:
    return {"case_status": status, "case_opened_on": opened, "hearings": list(hearings),
            "address_of_record": HOME, **extra}


ORR = {"status": "released", "release": {"released_at": "2024-12-01T09:00:00Z", "sponsor": {"address": HOME}}}
ICE = {"custody_status": "transferred_to_orr", "field_office": "Dallas", "nta": {"status": "served"}}


def kinds(alerts: list[Any]) -> list[AlertKind]:
    return [a.kind for a in alerts]


def test_missed_hearings_count_only_up_to_as_of_oldest_first() -> None:
    eoir = case(hearing("h3", "2025-01-20T15:00:00Z", "failed_to_appear"),
                hearing("h1", "2024-08-01T15:00:00Z", "failed_to_appear"),
                hearing("h2", "2024-10-01T15:00:00Z", "held"))
    court = court_as_of(eoir, AS_OF, NOW)
    assert [h.id for h in court.missed] == ["h1"]
    alerts = court_alerts(ORR, ICE, eoir, AS_OF, 30, NOW)
    assert kinds(alerts)[0] is AlertKind.MISSED_HEARING
    assert alerts[0].occurred_at == datetime(2024, 8, 1, 15, tzinfo=UTC)
    assert alerts[0].evidence == [
        Evidence("EOIR", "hearings[h1].outcome", "failed_to_appear at 2024-08-01T15:00:00+00:00")]


def test_a_hearing_after_as_of_had_no_outcome_yet_and_is_next() -> None:
    eoir = case(hearing("h1", "2025-01-20T15:00:00Z", "failed_to_appear"), hearing("h2", "2025-04-01T15:00:00Z"))
    court = court_as_of(eoir, AS_OF, NOW)
    assert court.missed == [] and court.next_hearing is not None
    assert (court.next_hearing.id, court.next_hearing.outcome) == ("h1", None)
    # as of now, h1 is past (it has an outcome) and h2 is next
    assert court_as_of(eoir, NOW, NOW).next_hearing.id == "h2"  # type: ignore[union-attr]


def test_an_unrecorded_hearing_before_now_is_past_not_next() -> None:
    eoir = case(hearing("h1", "2025-02-01T15:00:00Z"))  # after AS_OF, before NOW, no outcome recorded
    assert court_as_of(eoir, AS_OF, NOW).next_hearing.id == "h1"  # type: ignore[union-attr]
    assert court_as_of(eoir, datetime(2025, 2, 2, tzinfo=UTC), NOW).next_hearing is None


def test_a_case_opened_after_as_of_is_no_case_and_a_later_decision_leaves_it_pending() -> None:
    assert court_as_of(case(opened="2025-01-11"), AS_OF, NOW).case_status == "no_case"
    assert court_as_of(case(opened="2025-01-10"), AS_OF, NOW).case_status == "pending"
    decided = case(status="decided", decision={"type": "terminated", "decided_on": "2025-02-01"})
    assert court_as_of(decided, AS_OF, NOW).case_status == "pending"
    assert court_as_of(decided, NOW, NOW).case_status == "decided"
    assert court_as_of(None, AS_OF, NOW).case_status == "no_case"


def test_in_absentia_order_counts_from_its_date() -> None:
    eoir = case(status="decided", decision={"type": "removal_in_absentia", "decided_on": "2025-01-05"},
                in_absentia_order={"ordered_on": "2025-01-05", "judge": "J"})
    alerts = court_alerts(ORR, ICE, eoir, AS_OF, 30, NOW)
    assert kinds(alerts) == [AlertKind.IN_ABSENTIA_ORDER]
    assert alerts[0].occurred_at == datetime(2025, 1, 5, tzinfo=UTC)
    assert alerts[0].evidence == [Evidence("EOIR", "in_absentia_order.ordered_on", "2025-01-05")]
    before = court_alerts(ORR, ICE, eoir, datetime(2025, 1, 4, tzinfo=UTC), 30, NOW)
    assert kinds(before) == [AlertKind.NO_HEARING_SCHEDULED]  # the case was still pending then, with no hearing
    court = court_as_of(eoir, AS_OF, NOW)
    assert (court.in_absentia_order, court.in_absentia_ordered_on) == (True, date(2025, 1, 5))


def test_no_hearing_scheduled_for_a_released_child_without_a_case() -> None:
    alerts = court_alerts(ORR, ICE, None, AS_OF, 30, NOW)
    assert kinds(alerts) == [AlertKind.NO_HEARING_SCHEDULED]
    assert alerts[0].occurred_at == datetime(2024, 12, 1, 9, tzinfo=UTC)
    assert alerts[0].evidence == [Evidence("ORR", "release.released_at", "2024-12-01T09:00:00Z"),
                                  Evidence("ICE", "nta.status", "served"), Evidence("EOIR", "case_status", "no_case")]
    # released after as_of, or not released: no alert
    assert court_alerts(ORR, ICE, None, datetime(2024, 11, 30, tzinfo=UTC), 30, NOW) == []
    assert court_alerts({"status": "in_care"}, ICE, None, AS_OF, 30, NOW) == []
    # a decided case needs no hearing
    assert court_alerts(ORR, ICE, case(status="terminated"), AS_OF, 30, NOW) == []


def test_address_mismatch_only_for_a_hearing_within_the_window() -> None:
    elsewhere = {**HOME, "street": "99 Elm St"}
    eoir = case(hearing("h1", "2025-02-01T15:00:00Z"), address_of_record=elsewhere)
    alerts = court_alerts(ORR, ICE, eoir, AS_OF, 30, NOW)
    assert kinds(alerts) == [AlertKind.ADDRESS_OF_RECORD_MISMATCH]
    assert alerts[0].occurred_at is None and alerts[0].hearing.id == "h1"  # type: ignore[union-attr]
    assert [(e.source, e.personal) for e in alerts[0].evidence] == [("EOIR", Personal.CONTACT),
                                                                    ("ORR", Personal.CONTACT)]
    assert court_alerts(ORR, ICE, eoir, AS_OF, 21, NOW) == []  # the hearing is 22 days ahead
    same = case(hearing("h1", "2025-02-01T15:00:00Z"), address_of_record={**HOME, "street": "12 OAK ST."})
    assert court_alerts(ORR, ICE, same, AS_OF, 30, NOW) == []  # the same place once folded


@pytest.mark.parametrize("eoir", [
    case(status="V2_PENDING"),
    case(hearing("h1", "2024-08-01T15:00:00Z", "V2_HELD")),
    case({"starts_at": "2024-08-01T15:00:00Z"}),  # no id
    case(hearing("h1", "not a time")),
])
def test_records_of_the_wrong_shape_raise(eoir: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError)):
        court_as_of(eoir, AS_OF, NOW)


def test_a_case_not_yet_opened_is_not_judged_at_all() -> None:
    assert court_as_of(case(status="V2_PENDING", opened="2025-06-01"), AS_OF, NOW).case_status == "no_case"
