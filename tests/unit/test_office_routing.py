"""rules.office_routing: areas of responsibility, split states by city, and office-name matching."""

from __future__ import annotations

import pytest

from rules.office_routing import (
    FIELD_OFFICES,
    STATE_OFFICE,
    Route,
    RoutingBasis,
    canonical_office,
    office_key,
    route_address,
    same_office,
)


@pytest.mark.parametrize(("city", "state", "route"), [
    ("Dallas", "TX", Route("Dallas", RoutingBasis.CITY)),
    ("Corpus Christi", "TX", Route("Harlingen", RoutingBasis.CITY)),
    ("Odessa", "TX", Route("El Paso", RoutingBasis.CITY)),
    ("Nacogdoches", "TX", Route("Houston", RoutingBasis.STATE)),  # an unlisted Texas city: the state's default
    ("Fresno", "CA", Route("San Francisco", RoutingBasis.CITY)),
    ("El Centro", "CA", Route("San Diego", RoutingBasis.CITY)),
    ("Yreka", "CA", Route("Los Angeles", RoutingBasis.STATE)),
    ("Syracuse", "NY", Route("Buffalo", RoutingBasis.CITY)),
    ("Hempstead", "NY", Route("New York City", RoutingBasis.CITY)),
    ("Boise", "ID", Route("Salt Lake City", RoutingBasis.STATE)),
    ("Dallas", "GA", Route("Atlanta", RoutingBasis.STATE)),  # a split state's city named in another state
    ("San Juan", "PR", Route("Miami", RoutingBasis.STATE)),
])
def test_routes_by_city_in_split_states_and_by_state_elsewhere(city: str, state: str, route: Route) -> None:
    assert route_address({"city": city, "state": state, "zip": "00000"}) == route


def test_state_and_city_are_matched_in_their_folded_forms() -> None:
    assert route_address({"city": "  fort   WORTH ", "state": " tx "}) == Route("Dallas", RoutingBasis.CITY)
    assert route_address({"city": "Corpus-Christi", "state": "TX"}) == Route("Houston", RoutingBasis.STATE)


@pytest.mark.parametrize("address", [None, {}, {"city": "Dallas"}, {"state": ""}, {"state": "ZZ"},
                                      {"state": None, "zip": "75201"}])
def test_an_address_without_a_known_state_is_not_routed_and_zip_is_never_used(address: dict | None) -> None:
    assert route_address(address) == Route(None, RoutingBasis.NO_ADDRESS)


def test_every_state_office_is_listed_and_every_office_but_four_covers_a_state() -> None:
    assert set(STATE_OFFICE.values()) <= set(FIELD_OFFICES)
    # Buffalo, Harlingen, San Antonio and San Diego cover only cities of split states
    assert set(FIELD_OFFICES) - set(STATE_OFFICE.values()) == {"Buffalo", "Harlingen", "San Antonio", "San Diego"}


def test_office_names_match_without_case_dots_or_spacing() -> None:
    assert canonical_office("st paul") == "St. Paul"
    assert canonical_office("  NEW YORK CITY ") == "New York City"
    assert canonical_office(" Gotham ") == "Gotham"  # unknown: as given, trimmed
    assert office_key("St. Paul") == office_key("ST  PAUL") == "st paul"
    assert office_key(None) is None
    assert same_office("St. Paul", "st paul") and same_office("St. Paul", None)
    assert not same_office(None, "St. Paul") and not same_office("Dallas", "Houston")
