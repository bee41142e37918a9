"""rules.discrepancies: each kind's detection and severity, over plain source records."""

from __future__ import annotations

from typing import Any

import pytest

from rules.discrepancies import SEVERITY_RANK, DiscrepancyKind, Finding, Severity, detect
from rules.evidence import Evidence, Personal

HOME = {"street": "12 Oak St", "unit": None, "city": "Dallas", "state": "TX", "zip": "75201", "quality": "valid"}


def records(orr: dict[str, Any] | None = None, ice: dict[str, Any] | None = None,
            eoir: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """A released child whose three agencies agree, with the given fields changed (eoir None: no case)."""
    base = {"first_name": "Ana", "last_name": "Pérez López", "date_of_birth": "2010-03-04"}
    o = {**base, "release": {"sponsor": {"address": HOME}}, **(orr or {})}
    i = {**base, "field_office": "Dallas", "address_on_file": HOME, "nta": {"status": "filed",
                                                                           "filed_on": "2024-05-01"}, **(ice or {})}
    e = None if eoir is None else {**base, "case_status": "pending", "case_opened_on": "2024-05-02",
                                   "address_of_record": HOME, **eoir}
    return o, i, e


def found(*recs: dict[str, Any] | None) -> dict[DiscrepancyKind, Finding]:
    return {f.kind: f for f in detect(*recs)}


def test_agreeing_records_have_no_discrepancy() -> None:
    assert detect(*records(eoir={})) == []


@pytest.mark.parametrize(("last", "severity"), [
    ("PEREZ-LOPEZ", Severity.LOW),  # accents, case, punctuation
    ("Pérez", Severity.MEDIUM),  # a surname dropped
    ("Peres Lopez", Severity.HIGH),  # spelled differently
])
def test_name_mismatch_severity(last: str, severity: Severity) -> None:
    f = found(*records(ice={"last_name": last}, eoir={}))[DiscrepancyKind.NAME_MISMATCH]
    assert f.severity is severity
    assert [e.source for e in f.evidence] == ["ORR", "ICE", "EOIR"]
    assert all(e.personal is Personal.IDENTITY for e in f.evidence)


@pytest.mark.parametrize(("dob", "severity"), [("2010-04-03", Severity.MEDIUM), ("2009-03-04", Severity.HIGH),
                                               (None, Severity.HIGH)])
def test_dob_mismatch_swapped_day_and_month_is_medium(dob: str | None, severity: Severity) -> None:
    f = found(*records(ice={"date_of_birth": dob}))[DiscrepancyKind.DOB_MISMATCH]
    assert f.severity is severity
    assert f.evidence[1] == Evidence("ICE", "date_of_birth", dob, Personal.IDENTITY)


def test_address_mismatch_is_high_when_the_court_differs_from_the_sponsor() -> None:
    moved = {**HOME, "street": "99 Elm St"}
    assert found(*records(eoir={"address_of_record": moved}))[DiscrepancyKind.ADDRESS_MISMATCH].severity is \
        Severity.HIGH
    only_ice = found(*records(ice={"address_on_file": moved}, eoir={}))[DiscrepancyKind.ADDRESS_MISMATCH]
    assert only_ice.severity is Severity.MEDIUM
    assert only_ice.evidence[1] == Evidence("ICE", "address_on_file", "99 Elm St, Dallas, TX 75201 [valid]",
                                            Personal.CONTACT)
    typed = {**HOME, "street": "12 OAK ST.", "city": "dallas"}  # the same place once folded
    assert DiscrepancyKind.ADDRESS_MISMATCH not in found(*records(eoir={"address_of_record": typed}))


@pytest.mark.parametrize(("change", "severity", "detail"), [
    ({"orr": {"release": {"sponsor": {"address": {**HOME, "quality": "undeliverable"}}}}}, Severity.HIGH,
     "address is undeliverable"),
    ({"orr": {"release": {"sponsor": {"address": {**HOME, "quality": "missing_unit"}}}}}, Severity.MEDIUM,
     "address is missing_unit"),
    ({"ice": {"address_on_file": None}}, Severity.MEDIUM, "address is absent"),  # only ICE lacks it
    ({"orr": {"release": {"sponsor": {}}}}, Severity.HIGH, "address is absent"),
])
def test_missing_address_severity(change: dict[str, Any], severity: Severity, detail: str) -> None:
    f = found(*records(**change))[DiscrepancyKind.MISSING_ADDRESS]
    assert (f.severity, f.detail) == (severity, detail)


def test_nta_filed_without_a_case_and_a_case_without_a_filed_nta() -> None:
    f = found(*records())[DiscrepancyKind.NTA_FILED_NO_CASE]
    assert f.severity is Severity.HIGH
    assert f.evidence == [Evidence("ICE", "nta.status", "filed 2024-05-01"), Evidence("EOIR", "case_status", None)]
    g = found(*records(ice={"nta": {"status": "served", "served_on": "2024-04-01"}}, eoir={}))
    assert g[DiscrepancyKind.CASE_WITHOUT_NTA].severity is Severity.MEDIUM
    assert g[DiscrepancyKind.CASE_WITHOUT_NTA].evidence[1] == Evidence("EOIR", "case_status",
                                                                       "pending, opened 2024-05-02")
    assert DiscrepancyKind.NTA_FILED_NO_CASE not in g


def test_field_office_mismatch_routes_the_sponsor_address() -> None:
    f = found(*records(ice={"field_office": "Houston"}, eoir={}))[DiscrepancyKind.FIELD_OFFICE_MISMATCH]
    assert f.severity is Severity.MEDIUM
    assert f.evidence == [Evidence("ICE", "field_office", "Houston"),
                          Evidence("ORR", "release.sponsor.address → field office", "Dallas", Personal.CONTACT)]
    unroutable = {**HOME, "state": None}
    assert DiscrepancyKind.FIELD_OFFICE_MISMATCH not in found(*records(
        orr={"release": {"sponsor": {"address": unroutable}}}, ice={"field_office": "Houston"}, eoir={}))


def test_findings_come_in_kind_order_and_severities_rank_high_first() -> None:
    recs = records(ice={"field_office": "Houston", "last_name": "X", "date_of_birth": "2001-01-01"})
    assert [f.kind for f in detect(*recs)] == sorted((f.kind for f in detect(*recs)),
                                                     key=list(DiscrepancyKind).index)
    assert sorted(Severity, key=SEVERITY_RANK.__getitem__) == [Severity.HIGH, Severity.MEDIUM, Severity.LOW]


def test_a_source_without_a_record_is_left_out_of_name_and_birth_date_checks() -> None:
    o, i, _ = records()
    assert detect(o, None, None) == []
    assert [f.kind for f in detect(None, i, None)] == [DiscrepancyKind.NTA_FILED_NO_CASE]
