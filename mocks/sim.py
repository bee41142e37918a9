"""The life of one child as timed steps, shared by world generation and the running simulation clock.

A step is `step(child, rng, t, arg, sched)`: it changes the child's ORR / ICE / EOIR records as of time
`t` (epoch seconds) and may `sched(ts, kind, arg)` later steps. Generation runs every step up to the
simulation start; later ones stay queued and the clock applies them. Steps stamp `updated_at` with the
integer step time; the world turns it into ISO-8601 when it stores the record. Steps check their preconditions, so a
record staged by a tester through the admin API never breaks them: a step that no longer applies is a no-op.
"""

from __future__ import annotations

import math
import unicodedata
from bisect import bisect
from collections.abc import Callable
from functools import lru_cache
from itertools import accumulate
from random import Random
from typing import Any

from mocks import refdata as rd
from mocks.util import DAY, HOUR, date_of, iso, parse_iso

Record = dict[str, Any]
Sched = Callable[[int, str, Any], None]

# Overall rates of the modelled data-quality faults (documented in mocks/README.md).
P_NTA_ISSUED = 0.64
P_NTA_SERVED = 0.60
P_NTA_FILED = 0.90
P_FILED_NO_CASE = 0.015      # ICE says filed, EOIR has no case
P_CASE_ICE_LAG = 0.03        # EOIR has the case, ICE never recorded the filing
P_BLANK_ADDR = 0.03
P_UNDELIVERABLE = 0.025
P_MISSING_UNIT = 0.02
P_ICE_NAME_VARIANT = 0.07
P_ICE_DOB_SWAP = 0.025
P_EOIR_NAME_VARIANT = 0.03
P_ICE_NO_COUNTRY = 0.02
P_ORR_NO_COUNTRY = 0.01


class Child:
    """The three records of one child while steps run (None where that agency has no record)."""

    __slots__ = ("a", "idx", "orr", "ice", "eoir")

    def __init__(self, a: str, idx: int, orr: Record | None = None, ice: Record | None = None,
                 eoir: Record | None = None) -> None:
        self.a = a
        self.idx = idx
        self.orr = orr
        self.ice = ice
        self.eoir = eoir


class Picker:
    """Weighted choice with precomputed cumulative weights (faster than Random.choices)."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, pairs: list[tuple[Any, float]]) -> None:
        self.items = [p[0] for p in pairs]
        self.cum = list(accumulate(p[1] for p in pairs))
        self.total = self.cum[-1]

    def __call__(self, rng: Random) -> Any:
        return self.items[bisect(self.cum, rng.random() * self.total)]


COUNTRY = Picker(rd.COUNTRIES)
PLACE = Picker([(p, p[4]) for p in rd.APPREHENSION_PLACES])
CITY = Picker([(c, c[4]) for c in rd.CITIES])
FIRST_FACILITY = Picker([(f, f[5]) for f in rd.FACILITIES if f[1] in ("shelter", "transitional_foster_care",
                                                                       "staff_secure", "secure")])
FACILITY_BY_TYPE = {t: Picker([(f, f[5]) for f in rd.FACILITIES if f[1] == t])
                    for t in {f[1] for f in rd.FACILITIES}}
MOVE_TYPE = Picker([("long_term_foster_care", 3), ("staff_secure", 2), ("transitional_foster_care", 3),
                    ("residential_treatment_center", 1), ("secure", 0.5), ("shelter", 2)])
AGE = Picker([(a, w) for a, w in [(1, 1), (3, 1.5), (5, 1.5), (7, 2), (9, 3), (11, 4), (12, 5), (13, 7),
                                  (14, 10), (15, 18), (16, 22), (17, 25)]])
RELATIONSHIP = Picker([("parent", 40), ("legal_guardian", 2), ("sibling", 12), ("aunt_uncle", 22),
                       ("grandparent", 4), ("cousin", 8), ("family_friend", 10), ("other", 2)])
SERVICES = Picker([("none", 55), ("virtual_check_ins", 20), ("case_management", 18), ("intensive", 7)])
MEDIUM = Picker([("in_person", 70), ("video", 20), ("telephone", 10)])
FOLLOW_UP = Picker([("reached", 70), ("sponsor_only", 12), ("not_residing", 4), ("no_contact", 12),
                    ("not_attempted", 2)])

# Fiscal-year windows (start, end, weight) for the moment of the unaccompanied-child determination.
def _fy(y: int) -> int:
    return parse_iso(f"{y - 1}-10-01T00:00:00Z")


FY_WEIGHTS = [(2019, 14.0), (2020, 5.0), (2021, 20.0), (2022, 21.0), (2023, 19.0), (2024, 11.0), (2025, 4.0),
              (2026, 3.0), (2027, 2.5)]


@lru_cache(maxsize=8)
def _windows(now: int) -> tuple[list[tuple[int, int, float]], float]:
    wins = [(_fy(y), min(_fy(y + 1), now - 2 * HOUR), w) for y, w in FY_WEIGHTS if _fy(y) < now - 2 * HOUR]
    if not wins:
        wins = [(now - 365 * DAY, now - 2 * HOUR, 1.0)]
    return wins, sum(w for _lo, _hi, w in wins)


# How far generation spreads the dates it writes around the start (World.generate's start bounds follow).
# Before: arrivals reach back a year (starts before FY2019), birth dates up to 18 years more (AGE <= 17,
# plus a fraction), and a day for rounding. After: an 18th birthday (AGE >= 1) about 17 years on, a day for
# leap years and one for rounding; later hearings (about 2.5 years on) and follow-up calls stay inside that.
SPREAD_BEFORE = 365 * DAY + int(18 * 365.25 * DAY) + DAY
SPREAD_AFTER = int(17 * 365.25 * DAY) + 2 * DAY


def arrival_time(rng: Random, now: int) -> int:
    """Determination time: FY2019 up to two hours before `now`, with a share of very recent arrivals."""
    if rng.random() < 0.012:
        return now - 2 * HOUR - int(rng.random() * 5 * DAY)
    wins, total = _windows(now)
    r = rng.random() * total
    for lo, hi, w in wins:
        if r < w:
            return lo + int(rng.random() * (hi - lo))
        r -= w
    lo, hi, _w = wins[-1]
    return lo + int(rng.random() * (hi - lo))


def _u(rng: Random, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def _strip_accents(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", s) if unicodedata.category(ch) != "Mn")


def _name(rng: Random, country: str) -> tuple[str, str, str]:
    """(first_name, last_name, primary surname)."""
    female = rng.random() < 0.38
    if country in rd.OTHER_NAMES:
        males, females, surnames = rd.OTHER_NAMES[country]
        first = (females if female else males)[int(rng.random() * len(females if female else males))]
        last = surnames[int(rng.random() * len(surnames))]
        return first, last, last
    pool = rd.HISPANIC_FIRST_F if female else rd.HISPANIC_FIRST_M
    first = pool[int(rng.random() * len(pool))]
    if rng.random() < 0.3:
        second = pool[int(rng.random() * len(pool))]
        if second != first:
            first = f"{first} {second}"
    s1 = rd.HISPANIC_SURNAMES[int(rng.random() * len(rd.HISPANIC_SURNAMES))]
    if rng.random() < 0.7:
        s2 = rd.HISPANIC_SURNAMES[int(rng.random() * len(rd.HISPANIC_SURNAMES))]
        return first, f"{s1} {s2}", s1
    return first, s1, s1


def name_variant(rng: Random, first: str, last: str) -> tuple[str, str]:
    """A plausible other spelling of a name as another agency might have typed it."""
    options: list[tuple[str, str]] = []
    if " " in last:
        options.append((first, last.split(" ")[0]))
        a, b = last.split(" ", 1)
        options.append((first, f"{b} {a}"))
    plain = (_strip_accents(first), _strip_accents(last))
    if plain != (first, last):
        options.append(plain)
    for word in first.split(" "):
        if word in rd.TRANSLITERATIONS:
            options.append((first.replace(word, rd.TRANSLITERATIONS[word]), last))
    for word in last.split(" "):
        if word in rd.TRANSLITERATIONS:
            options.append((first, last.replace(word, rd.TRANSLITERATIONS[word])))
    options.append((last, first))  # given and family names swapped
    return options[int(rng.random() * len(options))]


def dob_variant(dob: str) -> str:
    """Day and month swapped when that gives another valid date, else the birth year off by one."""
    y, m, d = dob.split("-")
    if int(d) <= 12 and d != m:
        return f"{y}-{d}-{m}"
    return f"{int(y) + 1:04d}-{m}-{d}"


def make_address(rng: Random, city: tuple[str, str, str, str, float] | None = None,
                 quality: str | None = None) -> Record:
    """A sponsor-style address; quality drawn at the modelled fault rates unless given."""
    if quality is None:
        r = rng.random()
        if r < P_BLANK_ADDR:
            quality = "blank"
        elif r < P_BLANK_ADDR + P_UNDELIVERABLE:
            quality = "undeliverable"
        elif r < P_BLANK_ADDR + P_UNDELIVERABLE + P_MISSING_UNIT:
            quality = "missing_unit"
        else:
            quality = "valid"
    if quality == "blank":
        return {"street": None, "unit": None, "city": None, "state": None, "zip": None, "quality": "blank"}
    c = city or CITY(rng)
    street = (f"{100 + int(rng.random() * 9800)} {rd.STREET_NAMES[int(rng.random() * len(rd.STREET_NAMES))]} "
              f"{rd.STREET_SUFFIXES[int(rng.random() * len(rd.STREET_SUFFIXES))]}")
    unit = f"Apt {1 + int(rng.random() * 30)}{'ABCD'[int(rng.random() * 4)]}" if rng.random() < 0.35 else None
    zip_prefix = c[2]
    if quality == "undeliverable":
        zip_prefix = CITY(rng)[2] if rng.random() < 0.5 else "000"
        if zip_prefix == c[2]:
            zip_prefix = "000"
    elif quality == "missing_unit":
        unit = None
    return {"street": street, "unit": unit, "city": c[0], "state": c[1],
            "zip": f"{zip_prefix}{int(rng.random() * 100):02d}", "quality": quality}


def same_place(a: Record | None, b: Record | None) -> bool:
    """True when two addresses name the same street, unit, city, state and ZIP."""
    if a is None or b is None:
        return False
    return all(a.get(k) == b.get(k) for k in ("street", "unit", "city", "state", "zip"))


def plain_address(addr: Record) -> Record:
    """An Address object (drops ICE's source/as_of)."""
    return {k: addr.get(k) for k in ("street", "unit", "city", "state", "zip", "quality")}


def court_day(rng: Random, t: float) -> int:
    """A weekday court slot (13:00-20:30 UTC, on the half hour) on or after the day of t."""
    day = int(t) // DAY
    wd = (day + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    if wd >= 5:
        day += 7 - wd
    return day * DAY + (13 + int(rng.random() * 8)) * HOUR + (1800 if rng.random() < 0.5 else 0)


def _birthday18(dob: str) -> int:
    y, m, d = dob.split("-")
    if m == "02" and d == "29":
        m, d = "03", "01"
    return parse_iso(f"{int(y) + 18:04d}-{m}-{d}")


# --------------------------------------------------------------------------------------------- steps


def s_apprehend(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Unaccompanied-child determination at t: the ICE subject exists from here on."""
    country = COUNTRY(rng)
    first, last, _s1 = _name(rng, country)
    age = AGE(rng)
    dob = date_of(t - int((age + rng.random()) * 365.25 * DAY))
    place = PLACE(rng)
    apprehended = t - int(_u(rng, 1, 12) * HOUR)
    ice_first, ice_last, ice_dob = first, last, dob
    if rng.random() < P_ICE_NAME_VARIANT:
        ice_first, ice_last = name_variant(rng, first, last)
    if rng.random() < P_ICE_DOB_SWAP:
        ice_dob = dob_variant(dob)
    c.ice = {
        "a_number": c.a,
        "first_name": ice_first,
        "last_name": ice_last,
        "date_of_birth": ice_dob,
        "country_of_birth": None if rng.random() < P_ICE_NO_COUNTRY else country,
        "apprehension": {"apprehended_at": iso(apprehended), "place": place[0], "component": place[2]},
        "uc_determined_at": iso(t),
        "transferred_to_orr_at": None,
        "transfer_late": False,
        "custody_status": "in_dhs_custody",
        "nta": {"status": "not_issued", "issued_on": None, "served_on": None, "service_method": None,
                "filed_on": None},
        "address_on_file": None,
        "field_office": place[3],
        "updated_at": t,
    }
    refer = t + int(_u(rng, 1, 18) * HOUR)
    transfer = t + int((_u(rng, 18, 71) if rng.random() < 0.8 else _u(rng, 73, 240)) * HOUR)
    orr_country = None if rng.random() < P_ORR_NO_COUNTRY else country
    case_id = f"UC-{date_of(refer)[2:4]}-{c.idx + 1:06d}"
    sched(refer, "refer", [first, last, dob, orr_country, case_id])
    sched(max(transfer, refer + HOUR), "transfer", None)
    if rng.random() < P_NTA_ISSUED:
        delay = _u(rng, 0, 2) if rng.random() < 0.4 else _u(rng, 20, 900)
        sched(t + int(delay * DAY), "nta_issue", None)


def s_refer(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """DHS refers the child to ORR: the ORR case opens (status referred)."""
    if c.orr is not None:
        return
    first, last, dob, country, case_id = arg
    c.orr = {
        "a_number": c.a,
        "orr_case_id": case_id,
        "first_name": first,
        "last_name": last,
        "date_of_birth": dob,
        "country_of_birth": country,
        "status": "referred",
        "custody_episodes": [],
        "release": None,
        "follow_up_call": None,
        "discharge": None,
        "background_check": None,
        "updated_at": t,
    }


def _open_episode(c: Child, rng: Random, t: int, facility: tuple[str, str, str, str, str, float]) -> None:
    assert c.orr is not None
    c.orr["custody_episodes"].append({
        "facility_name": facility[0], "facility_type": facility[1], "city": facility[2], "state": facility[3],
        "admitted_at": iso(t), "discharged_at": None,
    })


def _close_episode(c: Child, t: int) -> None:
    assert c.orr is not None
    eps = c.orr["custody_episodes"]
    if eps and eps[-1]["discharged_at"] is None:
        eps[-1]["discharged_at"] = iso(t)


def s_transfer(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Physical transfer from DHS to an ORR care provider; plans the stay and how it ends."""
    if c.ice is not None and c.ice["custody_status"] == "in_dhs_custody":
        c.ice["transferred_to_orr_at"] = iso(t)
        c.ice["transfer_late"] = t - parse_iso(c.ice["uc_determined_at"]) > 72 * HOUR
        c.ice["custody_status"] = "transferred_to_orr"
        c.ice["updated_at"] = t
    if c.orr is None or c.orr["status"] != "referred":
        return
    facility = FIRST_FACILITY(rng)
    c.orr["status"] = "in_care"
    c.orr["background_check"] = "pending"
    c.orr["updated_at"] = t
    _open_episode(c, rng, t, facility)
    los = min(max(math.exp(rng.gauss(math.log(32), 0.75)), 3.0), 700.0)
    if facility[1] == "transitional_foster_care":
        los *= 1.5
    end = t + int(los * DAY)
    bday = _birthday18(c.orr["date_of_birth"])
    if bday <= end:
        sched(max(bday, t + HOUR), "age_out", None)
    else:
        r = rng.random()
        sched(end, "release" if r < 0.925 else "abscond" if r < 0.96 else "repatriate", None)
    if rng.random() < 0.15:
        sched(t + int(los * _u(rng, 0.2, 0.7) * DAY), "move", MOVE_TYPE(rng))


def s_move(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Transfer between care providers."""
    if c.orr is None or c.orr["status"] != "in_care":
        return
    _close_episode(c, t)
    _open_episode(c, rng, t, FACILITY_BY_TYPE[arg](rng))
    c.orr["updated_at"] = t


def _category(rng: Random, relationship: str) -> str:
    if relationship in ("parent", "legal_guardian"):
        return "1"
    if relationship in ("sibling", "aunt_uncle", "grandparent"):
        return "2A" if rng.random() < 0.3 else "2B"
    return "3"


def s_release(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Release to a sponsor; schedules the 30-day call, ICE learning the address, later moves."""
    if c.orr is None or c.orr["status"] != "in_care":
        return
    _close_episode(c, t)
    rel = RELATIONSHIP(rng)
    country = c.orr["country_of_birth"] or "Guatemala"
    sp_first, sp_last, _s1 = _name(rng, country)
    if rel in ("parent", "sibling", "grandparent") or (rel == "aunt_uncle" and rng.random() < 0.5):
        sp_last = c.orr["last_name"].split(" ")[0] + (" " + sp_last.split(" ")[0] if rng.random() < 0.5 else "")
    sp_first = sp_first.split(" ")[0]
    address = make_address(rng)
    phone = None if rng.random() < 0.03 else (
        f"+1-{200 + int(rng.random() * 780)}-555-{int(rng.random() * 10000):04d}")
    c.orr["status"] = "released"
    c.orr["release"] = {
        "released_at": iso(t),
        "sponsor": {"name": f"{sp_first} {sp_last}", "relationship": rel, "category": _category(rng, rel),
                    "phone": phone, "address": address},
        "post_release_services": SERVICES(rng),
    }
    c.orr["background_check"] = "cleared" if rng.random() < 0.97 else "pending"
    c.orr["follow_up_call"] = {
        "due_on": date_of(t + 30 * DAY), "called_at": None, "outcome": "not_attempted",
        "residing_with_sponsor": None, "enrolled_in_school": None, "aware_of_court_date": None,
        "safety_concern": False,
    }
    c.orr["updated_at"] = t
    if rng.random() < 0.93:
        sched(t + int(_u(rng, 29, 37) * DAY), "follow_up", None)
    r = rng.random()
    if r < 0.95:
        lag = _u(rng, 1, 21) if r < 0.6 else _u(rng, 21, 120)
        sched(t + int(lag * DAY), "ice_address",
              {"address": address, "source": "orr_release", "reassign": rng.random() < 0.97})
    if rng.random() < 0.14:
        same_state = rng.random() < 0.6
        city = CITY(rng)
        if same_state and address["state"]:
            options = [ct for ct in rd.CITIES if ct[1] == address["state"]]
            city = options[int(rng.random() * len(options))]
        sched(t + int(_u(rng, 45, 1000) * DAY), "sponsor_move", make_address(rng, city, "valid"))
    elif rng.random() < 0.03:
        sched(t + int(_u(rng, 60, 400) * DAY), "field_visit", None)


def s_follow_up(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """The safety and well-being call about 30 days after release."""
    if c.orr is None or c.orr["follow_up_call"] is None or c.orr["follow_up_call"]["called_at"] is not None:
        return
    outcome = FOLLOW_UP(rng)
    call = c.orr["follow_up_call"]
    call["outcome"] = outcome
    call["called_at"] = None if outcome == "not_attempted" else iso(t)
    if outcome in ("reached", "sponsor_only"):
        served = c.ice is not None and c.ice["nta"]["status"] in ("served", "filed")
        call["residing_with_sponsor"] = rng.random() < 0.98
        call["enrolled_in_school"] = (rng.random() < 0.8) if outcome == "reached" else None
        call["aware_of_court_date"] = (served and rng.random() < 0.9) if outcome == "reached" else None
        call["safety_concern"] = rng.random() < 0.03
    elif outcome == "not_residing":
        call["residing_with_sponsor"] = False
        call["safety_concern"] = rng.random() < 0.3
    c.orr["updated_at"] = t


def s_abscond(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Unauthorized departure from care (ICE is not told)."""
    _discharge(c, t, "unauthorized_departure")


def s_repatriate(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Voluntary repatriation; ICE records the removal a little later, most of the time."""
    if _discharge(c, t, "repatriated") and rng.random() < 0.8:
        sched(t + int(_u(rng, 1, 20) * DAY), "ice_custody", "removed")


def s_age_out(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """The child turns 18 in care and leaves ORR; about half go to ICE custody."""
    if _discharge(c, t, "aged_out") and rng.random() < 0.5:
        sched(t + int(_u(rng, 0.1, 1) * DAY), "ice_custody", "in_ice_custody")


def _discharge(c: Child, t: int, kind: str) -> bool:
    if c.orr is None or c.orr["status"] not in ("in_care", "referred"):
        return False
    _close_episode(c, t)
    c.orr["status"] = kind
    c.orr["discharge"] = {"type": kind, "discharged_at": iso(t)}
    c.orr["updated_at"] = t
    return True


def s_ice_custody(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """ICE custody status change (removal, or an aged-out child taken into ICE custody)."""
    if c.ice is None or c.ice["custody_status"] == arg:
        return
    c.ice["custody_status"] = arg
    c.ice["updated_at"] = t


def s_ice_address(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """ICE records an address (from ORR's release notice, a change of address or a field visit)."""
    if c.ice is None:
        return
    addr = arg["address"]
    c.ice["address_on_file"] = {**plain_address(addr), "source": arg["source"], "as_of": date_of(t)}
    office = rd.office_for(addr.get("city"), addr.get("state"))
    if office and arg.get("reassign", True):
        c.ice["field_office"] = office
    c.ice["updated_at"] = t


def s_field_visit(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """An ERO field visit confirms the sponsor's current address."""
    if c.orr is None or c.orr["release"] is None:
        return
    addr = c.orr["release"]["sponsor"]["address"]
    if addr["quality"] == "blank":
        return
    s_ice_address(c, rng, t, {"address": {**addr, "quality": "valid"}, "source": "field_visit"}, sched)


def s_sponsor_move(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """The sponsor moves: ORR updates its file; ICE and the court hear of it only sometimes."""
    if c.orr is None or c.orr["status"] != "released" or c.orr["release"] is None:
        return
    c.orr["release"]["sponsor"]["address"] = dict(arg)
    c.orr["updated_at"] = t
    if rng.random() < 0.3:
        sched(t + int(_u(rng, 10, 150) * DAY), "ice_address", {"address": arg, "source": "change_of_address"})
    if rng.random() < 0.35:
        sched(t + int(_u(rng, 2, 45) * DAY), "court_address", arg)


def s_court_address(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """Form EOIR-33 change of address, known only to the court."""
    if c.eoir is None or c.eoir["case_status"] != "pending":
        return
    c.eoir["address_of_record"] = plain_address(arg)
    c.eoir["change_of_address_filed_on"] = date_of(t)
    c.eoir["updated_at"] = t


def s_nta_issue(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """ICE issues the Notice to Appear."""
    if c.ice is None or c.ice["nta"]["status"] != "not_issued":
        return
    c.ice["nta"]["status"] = "issued"
    c.ice["nta"]["issued_on"] = date_of(t)
    c.ice["updated_at"] = t
    if rng.random() < P_NTA_SERVED:
        delay = _u(rng, 3, 60) if rng.random() < 0.35 else _u(rng, 60, 700)
        sched(t + int(delay * DAY), "nta_serve", None)


def s_nta_serve(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """The NTA is served, in person (to the custodian while in care) or by mail."""
    if c.ice is None or c.ice["nta"]["status"] != "issued":
        return
    in_care = c.orr is not None and c.orr["status"] in ("referred", "in_care")
    c.ice["nta"]["status"] = "served"
    c.ice["nta"]["served_on"] = date_of(t)
    c.ice["nta"]["service_method"] = "personal" if in_care or rng.random() < 0.5 else "mail"
    c.ice["updated_at"] = t
    if rng.random() < P_NTA_FILED:
        r = rng.random()
        mode = "no_case" if r < P_FILED_NO_CASE else "ice_lag" if r < P_FILED_NO_CASE + P_CASE_ICE_LAG else "ok"
        sched(t + int(_u(rng, 3, 120) * DAY), "nta_file", mode)


def s_nta_file(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """The served NTA is filed with the court: removal proceedings (an EOIR case) begin."""
    if c.ice is None or c.ice["nta"]["status"] != "served":
        return
    if arg != "ice_lag":
        c.ice["nta"]["status"] = "filed"
        c.ice["nta"]["filed_on"] = date_of(t)
        c.ice["updated_at"] = t
    if arg != "no_case" and c.eoir is None:
        _open_case(c, rng, t, sched)


def _court(office: str) -> tuple[str, Record, list[str]]:
    name, street, city, state, zip_code = rd.COURTS[office]
    parts = street.split(", ", 1)
    addr = {"street": parts[0], "unit": parts[1] if len(parts) > 1 else None, "city": city, "state": state,
            "zip": zip_code, "quality": "valid"}
    k = rd.FIELD_OFFICES.index(office)
    judges = [rd.JUDGE_NAMES[(k * 3 + j) % len(rd.JUDGE_NAMES)] for j in range(4)]
    return name, addr, judges


def _open_case(c: Child, rng: Random, t: int, sched: Sched) -> None:
    assert c.ice is not None
    addr: Record
    if c.ice["address_on_file"] is not None:
        addr = plain_address(c.ice["address_on_file"])
    elif c.orr is not None and c.orr["release"] is not None:
        addr = plain_address(c.orr["release"]["sponsor"]["address"])
    elif c.orr is not None and c.orr["custody_episodes"]:
        ep = c.orr["custody_episodes"][-1]
        fac = next((f for f in rd.FACILITIES if f[0] == ep["facility_name"]), None)
        addr = {"street": f"c/o {ep['facility_name']}", "unit": None, "city": ep["city"], "state": ep["state"],
                "zip": fac[4] if fac else None, "quality": "valid"}
    else:
        addr = {"street": None, "unit": None, "city": None, "state": None, "zip": None, "quality": "blank"}
    office = rd.office_for(addr["city"], addr["state"]) or c.ice["field_office"]
    if office not in rd.COURTS:
        office = "Houston"
    first, last = c.ice["first_name"], c.ice["last_name"]
    if rng.random() < P_EOIR_NAME_VARIANT:
        first, last = name_variant(rng, first, last)
    served = parse_iso(c.ice["nta"]["served_on"]) if c.ice["nta"]["served_on"] else t
    first_at = court_day(rng, max(t + _u(rng, 21, 240) * DAY, served + 10 * DAY))
    c.eoir = {
        "a_number": c.a,
        "first_name": first,
        "last_name": last,
        "date_of_birth": c.ice["date_of_birth"],
        "case_opened_on": date_of(t),
        "case_status": "pending",
        "hearings": [],
        "in_absentia_order": None,
        "decision": None,
        "address_of_record": addr,
        "change_of_address_filed_on": None,
        "updated_at": t,
    }
    court_name, court_addr, judges = _court(office)
    _add_hearing(c, rng, first_at, "master_calendar", court_name, court_addr,
                 judges[int(rng.random() * len(judges))], sched)


def _add_hearing(c: Child, rng: Random, at: int, kind: str, court_name: str, court_addr: Record, judge: str,
                 sched: Sched) -> None:
    assert c.eoir is not None
    hid = f"{c.a}-H{len(c.eoir['hearings']) + 1}"
    c.eoir["hearings"].append({
        "id": hid, "type": kind, "starts_at": iso(at), "judge": judge, "court_name": court_name,
        "court_address": dict(court_addr), "medium": MEDIUM(rng), "outcome": None,
    })
    sched(at, "hearing", hid)


def _decide(c: Child, t: int, kind: str) -> None:
    assert c.eoir is not None
    c.eoir["decision"] = {"type": kind, "decided_on": date_of(t)}
    c.eoir["case_status"] = {"terminated": "terminated", "administratively_closed": "administratively_closed"
                             }.get(kind, "decided")


def s_hearing(c: Child, rng: Random, t: int, arg: Any, sched: Sched) -> None:
    """A scheduled hearing takes place: held, adjourned or failed to appear (maybe an in-absentia order)."""
    e = c.eoir
    if e is None or e["case_status"] != "pending":
        return
    h = next((h for h in e["hearings"] if h["id"] == arg), None)
    if h is None or h["outcome"] is not None or parse_iso(h["starts_at"]) > t:
        return
    p_fta = 0.11
    orr = c.orr
    addr = e["address_of_record"]
    if orr is not None and orr["status"] == "unauthorized_departure":
        p_fta = 0.75
    elif addr["quality"] != "valid":
        p_fta = 0.6
    elif orr is not None and orr["release"] is not None and not same_place(addr,
                                                                          orr["release"]["sponsor"]["address"]):
        p_fta = 0.3
    court, court_addr, judge = h["court_name"], h["court_address"], h["judge"]
    e["updated_at"] = t
    nxt: tuple[float, str] | None = None
    if rng.random() < p_fta:
        h["outcome"] = "failed_to_appear"
        if rng.random() < 0.5:
            e["in_absentia_order"] = {"ordered_on": date_of(t), "judge": judge}
            _decide(c, t, "removal_in_absentia")
        else:
            nxt = (_u(rng, 30, 120), "master_calendar")
    elif rng.random() < 0.25:
        h["outcome"] = "adjourned"
        nxt = (_u(rng, 60, 300), h["type"])
    else:
        h["outcome"] = "held"
        r = rng.random()
        if h["type"] == "master_calendar":
            if r < 0.55:
                nxt = (_u(rng, 180, 900), "individual")
            elif r < 0.85:
                nxt = (_u(rng, 90, 360), "master_calendar")
            else:
                _decide(c, t, "administratively_closed" if r < 0.95 else "terminated")  # 15% of held MCH
        else:
            if r < 0.5:
                kinds = ("removal_order", "voluntary_departure", "terminated", "dismissed")
                cum = (0.1, 0.2, 0.35, 0.5)
                _decide(c, t, kinds[bisect(cum, r)])
            else:
                nxt = (_u(rng, 90, 400), "individual")
    if nxt is not None:
        if rng.random() > 0.7:
            judge = rd.JUDGE_NAMES[int(rng.random() * len(rd.JUDGE_NAMES))]
        _add_hearing(c, rng, court_day(rng, t + nxt[0] * DAY), nxt[1], court, court_addr, judge, sched)


STEPS: dict[str, Callable[[Child, Random, int, Any, Sched], None]] = {
    "apprehend": s_apprehend,
    "refer": s_refer,
    "transfer": s_transfer,
    "move": s_move,
    "release": s_release,
    "follow_up": s_follow_up,
    "abscond": s_abscond,
    "repatriate": s_repatriate,
    "age_out": s_age_out,
    "ice_custody": s_ice_custody,
    "ice_address": s_ice_address,
    "field_visit": s_field_visit,
    "sponsor_move": s_sponsor_move,
    "court_address": s_court_address,
    "nta_issue": s_nta_issue,
    "nta_serve": s_nta_serve,
    "nta_file": s_nta_file,
    "hearing": s_hearing,
}
