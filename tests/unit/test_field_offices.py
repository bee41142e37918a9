"""Field-office routing table (resolvers/field_offices.py) and the pure discrepancy rules."""

from __future__ import annotations

import time
from typing import Any

import pytest

from resolvers.discrepancies import DiscrepancyKind, detect
from resolvers.evidence import Severity
from resolvers.field_offices import FIELD_OFFICES, STATE_OFFICE, RoutingBasis, route_address
from sources.fetcher import MISS, Fetched
from sources.systems import Source


def addr(city: str | None, state: str | None, **extra: Any) -> dict[str, Any]:
    return {"street": "1 Main St", "unit": None, "city": city, "state": state, "zip": "00000", "quality": "valid",
            **extra}


@pytest.mark.parametrize(("city", "state", "office", "basis"), [
    ("Houston", "TX", "Houston", RoutingBasis.CITY),
    ("Fort Worth", "TX", "Dallas", RoutingBasis.CITY),
    ("Austin", "TX", "San Antonio", RoutingBasis.CITY),
    ("McAllen", "TX", "Harlingen", RoutingBasis.CITY),
    ("El Paso", "TX", "El Paso", RoutingBasis.CITY),
    ("Oakland", "CA", "San Francisco", RoutingBasis.CITY),
    ("Santa Ana", "CA", "Los Angeles", RoutingBasis.CITY),
    ("chula  vista", "ca", "San Diego", RoutingBasis.CITY),
    ("Rochester", "NY", "Buffalo", RoutingBasis.CITY),
    ("Brentwood", "NY", "New York City", RoutingBasis.CITY),
    ("Albuquerque", "NM", "El Paso", RoutingBasis.STATE),
    ("Alexandria", "VA", "Washington", RoutingBasis.STATE),
    ("Omaha", "NE", "St. Paul", RoutingBasis.STATE),
    ("Nowhere", "ZZ", None, RoutingBasis.NO_ADDRESS),
    (None, None, None, RoutingBasis.NO_ADDRESS),
])
def test_route_address(city: str | None, state: str | None, office: str | None, basis: RoutingBasis) -> None:
    route = route_address(addr(city, state))
    assert (route.office, route.basis) == (office, basis)


def test_every_state_routes_to_a_known_office() -> None:
    assert set(STATE_OFFICE.values()) <= set(FIELD_OFFICES)
    assert len([s for s in STATE_OFFICE if len(s) == 2]) >= 51  # 50 states + DC (+ territories)


def test_table_agrees_with_the_synthetic_worlds_sponsor_cities() -> None:
    """The mocks place sponsors in these cities; the gateway's own table must route them the same way."""
    from mocks import refdata

    for city, state, _zip, office, _weight in refdata.CITIES:
        assert route_address(addr(city, state)).office == office, (city, state)


def fetched(source: Source, record: dict[str, Any] | None) -> Fetched:
    return Fetched(source, record, time.time(), MISS)


def person(first: str, last: str, dob: str, **extra: Any) -> dict[str, Any]:
    return {"a_number": "A000000001", "updated_at": "2026-01-01T00:00:00Z", "first_name": first,
            "last_name": last, "date_of_birth": dob, **extra}


def kinds(orr: Any, ice: Any, eoir: Any) -> dict[DiscrepancyKind, Severity]:
    return {d.kind: d.severity for d in detect(fetched(Source.ORR, orr), fetched(Source.ICE, ice),
                                               fetched(Source.EOIR, eoir))}


def test_name_and_dob_severities() -> None:
    nta = {"status": "not_issued"}
    base = dict(field_office="Houston", nta=nta, address_on_file=None)
    assert kinds(person("José", "García", "2010-03-04"), person("Jose", "GARCIA", "2010-03-04", **base), None) \
        == {DiscrepancyKind.NAME_MISMATCH: Severity.LOW}
    assert kinds(person("Ana", "López Pérez", "2010-03-04"), person("Ana", "López", "2010-04-03", **base), None) \
        == {DiscrepancyKind.NAME_MISMATCH: Severity.MEDIUM, DiscrepancyKind.DOB_MISMATCH: Severity.MEDIUM}
    assert kinds(person("Yesenia", "Cruz", "2010-03-04"), person("Yessenia", "Cruz", "2011-03-04", **base), None) \
        == {DiscrepancyKind.NAME_MISMATCH: Severity.HIGH, DiscrepancyKind.DOB_MISMATCH: Severity.HIGH}


def test_address_nta_and_office_rules() -> None:
    home = addr("Houston", "TX")
    orr = person("A", "B", "2010-01-01", release={"released_at": "2025-01-01T00:00:00Z",
                                                  "sponsor": {"name": "x", "address": home}})
    ice = person("A", "B", "2010-01-01", field_office="Harlingen", nta={"status": "filed"}, address_on_file=None)
    found = kinds(orr, ice, None)
    assert found == {DiscrepancyKind.MISSING_ADDRESS: Severity.MEDIUM, DiscrepancyKind.NTA_FILED_NO_CASE: Severity.HIGH,
                     DiscrepancyKind.FIELD_OFFICE_MISMATCH: Severity.MEDIUM}
    eoir = person("A", "B", "2010-01-01", case_status="pending", case_opened_on="2025-02-01",
                  address_of_record=addr("Dallas", "TX"))
    ice2 = {**ice, "field_office": "Houston", "nta": {"status": "served"}, "address_on_file": {**home}}
    found = kinds(orr, ice2, eoir)
    assert found == {DiscrepancyKind.ADDRESS_MISMATCH: Severity.HIGH, DiscrepancyKind.CASE_WITHOUT_NTA: Severity.MEDIUM}
    blank = {"street": None, "unit": None, "city": None, "state": None, "zip": None, "quality": "blank"}
    orr_blank = {**orr, "release": {"released_at": "2025-01-01T00:00:00Z", "sponsor": {"name": "x", "address": blank}}}
    assert kinds(orr_blank, {**ice2, "nta": {"status": "not_issued"}}, None) == {
        DiscrepancyKind.MISSING_ADDRESS: Severity.HIGH}
