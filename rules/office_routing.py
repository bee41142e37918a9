"""ERO field offices, their areas of responsibility (AOR), and routing an address to the office that covers it.

Most states belong wholly to one office. Texas, California and New York are split between several
offices by county; for those a table of cities refines the state's default. Routing never guesses from a
ZIP code: undeliverable addresses often carry a wrong one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from rules.places import place_key

FIELD_OFFICES: tuple[str, ...] = (
    "Atlanta", "Baltimore", "Boston", "Buffalo", "Chicago", "Dallas", "Denver", "Detroit", "El Paso",
    "Harlingen", "Houston", "Los Angeles", "Miami", "New Orleans", "New York City", "Newark", "Philadelphia",
    "Phoenix", "Salt Lake City", "San Antonio", "San Diego", "San Francisco", "Seattle", "St. Paul",
    "Washington",
)

_AOR: dict[str, tuple[str, ...]] = {
    "Atlanta": ("GA", "NC", "SC"),
    "Baltimore": ("MD",),
    "Boston": ("CT", "MA", "ME", "NH", "RI", "VT"),
    "Chicago": ("IL", "IN", "KS", "KY", "MO", "WI"),
    "Dallas": ("OK",),
    "Denver": ("CO", "WY"),
    "Detroit": ("MI", "OH"),
    "El Paso": ("NM",),
    "Houston": ("TX",),  # default for Texas cities not in the table below
    "Los Angeles": ("CA",),  # default for California cities not in the table below
    "Miami": ("FL", "PR", "VI"),
    "New Orleans": ("AL", "AR", "LA", "MS", "TN"),
    "New York City": ("NY",),  # default for New York cities not in the table below
    "Newark": ("NJ",),
    "Philadelphia": ("DE", "PA", "WV"),
    "Phoenix": ("AZ",),
    "Salt Lake City": ("ID", "MT", "NV", "UT"),
    "San Francisco": ("GU", "HI", "MP"),
    "Seattle": ("AK", "OR", "WA"),
    "St. Paul": ("IA", "MN", "ND", "NE", "SD"),
    "Washington": ("DC", "VA"),
}
STATE_OFFICE: dict[str, str] = {state: office for office, states in _AOR.items() for state in states}

# Cities of the split states, by the county-based AORs (North, Southeast, Central-South, West Texas and
# the Rio Grande Valley; Southern, Central-Coast and Northern California; New York City area and upstate).
_CITIES: dict[str, dict[str, tuple[str, ...]]] = {
    "TX": {
        "Dallas": ("Dallas", "Fort Worth", "Arlington", "Plano", "Irving", "Garland", "Grand Prairie", "Mesquite",
                   "Denton", "McKinney", "Frisco", "Carrollton", "Richardson", "Lewisville", "Tyler", "Amarillo",
                   "Lubbock", "Wichita Falls", "Abilene", "Longview", "Sherman"),
        "Houston": ("Houston", "Pasadena", "Pearland", "Sugar Land", "Baytown", "Conroe", "Beaumont",
                    "Port Arthur", "Galveston", "League City", "Katy", "Bryan", "College Station", "Huntsville"),
        "San Antonio": ("San Antonio", "Austin", "Round Rock", "San Marcos", "New Braunfels", "Waco", "Killeen",
                        "Temple", "Laredo", "Del Rio", "Eagle Pass", "Uvalde", "Seguin", "Georgetown"),
        "Harlingen": ("Harlingen", "McAllen", "Brownsville", "Edinburg", "Mission", "Pharr", "Weslaco",
                      "San Benito", "Rio Grande City", "Raymondville", "Corpus Christi"),
        "El Paso": ("El Paso", "Midland", "Odessa", "Socorro", "Alpine", "Pecos", "Fort Stockton"),
    },
    "CA": {
        "Los Angeles": ("Los Angeles", "Long Beach", "Santa Ana", "Anaheim", "Irvine", "Riverside",
                        "San Bernardino", "Ontario", "Pomona", "Glendale", "Pasadena", "Torrance", "Santa Clarita",
                        "Lancaster", "Palmdale", "Fontana", "Moreno Valley", "Oxnard", "Ventura", "Santa Barbara",
                        "San Luis Obispo", "Santa Maria", "Compton", "Inglewood", "Garden Grove", "Adelanto"),
        "San Diego": ("San Diego", "Chula Vista", "Oceanside", "Escondido", "El Cajon", "Carlsbad",
                      "National City", "San Ysidro", "El Centro", "Calexico", "Imperial", "Otay Mesa"),
        "San Francisco": ("San Francisco", "Oakland", "San Jose", "Sacramento", "Fresno", "Bakersfield",
                          "Stockton", "Modesto", "Fremont", "Hayward", "Richmond", "Santa Rosa", "Salinas",
                          "Redwood City", "San Mateo", "Concord", "Berkeley", "Merced", "Visalia", "Redding",
                          "Eureka", "Chico", "Watsonville"),
    },
    "NY": {
        "New York City": ("New York", "Manhattan", "Brooklyn", "Bronx", "Queens", "Staten Island", "Yonkers",
                          "White Plains", "New Rochelle", "Mount Vernon", "Hempstead", "Brentwood",
                          "Central Islip", "Freeport", "Huntington Station", "Riverhead", "Newburgh",
                          "Poughkeepsie", "Kingston", "Middletown", "Spring Valley", "Peekskill", "Ossining",
                          "Port Chester", "Monticello", "Carmel"),
        "Buffalo": ("Buffalo", "Rochester", "Syracuse", "Albany", "Batavia", "Utica", "Schenectady", "Troy",
                    "Binghamton", "Ithaca", "Niagara Falls", "Jamestown", "Watertown", "Plattsburgh",
                    "Saratoga Springs", "Elmira"),
    },
}


CITY_OFFICE: dict[tuple[str, str], str] = {
    (state, place_key(city)): office
    for state, offices in _CITIES.items() for office, cities in offices.items() for city in cities
}


_BY_FOLDED = {place_key(o): o for o in FIELD_OFFICES}


def canonical_office(name: str) -> str:
    """The listed spelling of an office name given in any case or spacing (unknown names as given)."""
    return _BY_FOLDED.get(place_key(name), name.strip())


def office_key(name: str | None) -> str | None:
    """The form office names are compared in: letter case, accents, dots and spacing ignored (None: none)."""
    return None if name is None else place_key(name)


def same_office(recorded: str | None, wanted: str | None) -> bool:
    """True when `wanted` is None (no filter) or names the same office as the `recorded` one."""
    return wanted is None or (recorded is not None and place_key(recorded) == place_key(wanted))


class RoutingBasis(enum.Enum):
    """What the routing decision rests on."""

    CITY = "city"  # the city is listed for a state split between offices
    STATE = "state"  # the whole state (or the split state's default office)
    NO_ADDRESS = "no_address"  # no usable state: the case cannot be routed


@dataclass(frozen=True, slots=True)
class Route:
    """The office an address routes to (None when it cannot be routed) and why."""

    office: str | None
    basis: RoutingBasis


def route_address(address: dict[str, Any] | None) -> Route:
    """The ERO field office whose area of responsibility covers a source address record."""
    state = ((address or {}).get("state") or "").strip().upper()
    if state not in STATE_OFFICE:
        return Route(None, RoutingBasis.NO_ADDRESS)
    city = (address or {}).get("city")
    if city:
        office = CITY_OFFICE.get((state, place_key(city)))
        if office is not None:
            return Route(office, RoutingBasis.CITY)
    return Route(STATE_OFFICE[state], RoutingBasis.STATE)
