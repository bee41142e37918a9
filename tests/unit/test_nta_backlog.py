"""rules.nta_backlog: who is in the backlog as of a time, at which stage, and for how long."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from rules.dates import dated_by
from rules.nta_backlog import (
    AgeBucket,
    BacklogEntry,
    BacklogStage,
    Release,
    age_bucket,
    backlog_entry,
    nta_status_as_of,
    release_as_of,
)

AS_OF = datetime(2025, 1, 10, 12, 0, tzinfo=UTC)


def orr(status: str = "released", released_at: str | None = "2024-12-01T09:00:00Z") -> dict[str, Any]:
    return {"status": status, "release": {"released_at": released_at} if status == "released" else None}


def ice(nta: dict[str, Any] | None = None, custody: str | None = "transferred_to_orr",
        office: str | None = "Dallas") -> dict[str, Any]:
    return {"custody_status": custody, "field_office": office, "nta": nta or {"status": "not_issued"}}


@pytest.mark.parametrize(("days", "bucket"), [
    (-3, AgeBucket.DAYS_0_30), (0, AgeBucket.DAYS_0_30), (30, AgeBucket.DAYS_0_30), (31, AgeBucket.DAYS_31_90),
    (90, AgeBucket.DAYS_31_90), (91, AgeBucket.DAYS_91_365), (365, AgeBucket.DAYS_91_365),
    (366, AgeBucket.OVER_365),
])
def test_age_buckets_have_inclusive_upper_edges(days: int, bucket: AgeBucket) -> None:
    assert age_bucket(days) is bucket


def test_a_day_counts_from_midnight_utc_and_undated_facts_count() -> None:
    assert dated_by(date(2025, 1, 10), AS_OF)
    assert not dated_by(date(2025, 1, 11), AS_OF)
    assert dated_by(date(2025, 1, 11), datetime(2025, 1, 11, tzinfo=UTC))
    assert dated_by(None, AS_OF)


def test_nta_steps_dated_after_as_of_are_undone_one_by_one() -> None:
    nta = {"status": "filed", "issued_on": "2025-01-02", "served_on": "2025-01-10", "filed_on": "2025-01-11"}
    assert nta_status_as_of(ice(nta), AS_OF) == "served"
    assert nta_status_as_of(ice(nta), datetime(2025, 1, 9, tzinfo=UTC)) == "issued"
    assert nta_status_as_of(ice(nta), datetime(2025, 1, 1, tzinfo=UTC)) == "not_issued"
    assert nta_status_as_of(ice(nta), datetime(2025, 1, 11, tzinfo=UTC)) == "filed"
    undated = {"status": "served", "issued_on": "2025-03-01"}  # served without a date: taken as done
    assert nta_status_as_of(ice(undated), AS_OF) == "served"
    assert nta_status_as_of(None, AS_OF) == "not_issued"


def test_the_entry_has_stage_age_bucket_and_office() -> None:
    entry = backlog_entry(orr(), ice({"status": "issued", "issued_on": "2024-12-15"}), AS_OF)
    assert entry == BacklogEntry(BacklogStage.ISSUED, datetime(2024, 12, 1, 9, tzinfo=UTC), 40, AgeBucket.DAYS_31_90,
                                 "Dallas")


def test_an_undated_release_counts_without_an_age() -> None:
    entry = backlog_entry(orr(released_at=None), ice(), AS_OF)
    assert entry == BacklogEntry(BacklogStage.NOT_ISSUED, None, None, None, "Dallas")


@pytest.mark.parametrize(("orr_rec", "ice_rec"), [
    (orr(released_at="2025-01-10T12:00:01Z"), ice()),  # released after as_of
    (orr(status="in_care"), ice()),
    (orr(), ice(custody="in_ice_custody")),  # ICE holds the child now
    (orr(), ice(custody="removed")),
    (orr(), ice({"status": "filed", "filed_on": "2025-01-10"})),  # with the court by then
    (orr(), None),  # ICE has no record
])
def test_children_not_in_the_backlog(orr_rec: dict[str, Any], ice_rec: dict[str, Any] | None) -> None:
    assert backlog_entry(orr_rec, ice_rec, AS_OF) is None


def test_release_as_of_ignores_ice_custody_before_orr() -> None:
    assert release_as_of(orr(), ice(custody="in_dhs_custody"), AS_OF) == Release(datetime(2024, 12, 1, 9, tzinfo=UTC))
    assert release_as_of(orr(), None, AS_OF) == Release(datetime(2024, 12, 1, 9, tzinfo=UTC))
    assert release_as_of(None, ice(), AS_OF) is None


def test_unknown_status_values_are_refused_where_they_decide() -> None:
    with pytest.raises(ValueError):
        release_as_of(orr(status="V2_RELEASED"), ice(), AS_OF)
    with pytest.raises(ValueError):
        release_as_of(orr(), ice(custody="V2_REMOVED"), AS_OF)
    with pytest.raises(ValueError):
        nta_status_as_of(ice({"status": "V2_FILED"}), AS_OF)
    with pytest.raises(KeyError):
        nta_status_as_of({"field_office": "Dallas"}, AS_OF)
    # ICE's custody decides the location first: ORR's status is then not judged
    assert release_as_of(orr(status="V2_RELEASED"), ice(custody="in_dhs_custody"), AS_OF) is None
    assert release_as_of(orr(status="V2_RELEASED"), ice(custody="removed"), AS_OF) is None
