"""What the oversight lists should say, computed straight from the mocks' own records (test side only).

Deliberately written without the gateway's resolvers: each rule is restated from its documentation in
plain code over the raw records read from the mocks' listing endpoints.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from testing.gateway import http

Rec = dict[str, Any]
PATHS = {"orr": "children", "ice": "subjects", "eoir": "cases"}
ADDRESS_KEYS = ("street", "unit", "city", "state", "zip")


def listing(base_url: str, collection: str, **filters: str) -> list[Rec]:
    """Every record of one mock's listing, page by page."""
    out: list[Rec] = []
    cursor: str | None = None
    while True:
        query = "&".join(["limit=500", *(f"{k}={v}" for k, v in filters.items()),
                          *([f"cursor={cursor}"] if cursor else [])])
        status, _, body = http("GET", f"{base_url}/v1/{collection}?{query}")
        assert status == 200, (collection, status, body[:200])
        page = json.loads(body)
        out.extend(page["records"])
        cursor = page.get("next_cursor")
        if not cursor:
            return out


class World:
    """The three mocks' records by A-number."""

    def __init__(self, mock_services: Any) -> None:
        self.orr = {r["a_number"]: r for r in listing(mock_services.orr, "children")}
        self.ice = {r["a_number"]: r for r in listing(mock_services.ice, "subjects")}
        self.eoir = {r["a_number"]: r for r in listing(mock_services.eoir, "cases")}

    def children(self) -> list[tuple[str, Rec | None, Rec, Rec | None]]:
        """(A-number, ORR, ICE, EOIR) of every child with an ICE subject, by A-number."""
        return [(a, self.orr.get(a), self.ice[a], self.eoir.get(a)) for a in sorted(self.ice)]


def ts(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def location(orr: Rec | None, ice: Rec | None) -> str:
    custody = ice["custody_status"] if ice else None
    status = orr["status"] if orr else None
    if custody == "removed":
        return "OTHER_DISCHARGE"
    if custody == "in_ice_custody":
        return "IN_DHS_CUSTODY"
    if status == "referred":
        return "IN_DHS_CUSTODY"
    if status == "in_care":
        return "IN_ORR_CARE"
    if status == "released":
        return "RELEASED_TO_SPONSOR"
    if status in ("aged_out", "repatriated", "unauthorized_departure"):
        return "OTHER_DISCHARGE"
    if custody == "in_dhs_custody":
        return "IN_DHS_CUSTODY"
    return "UNKNOWN"


def by_day(day: str | None, as_of: datetime) -> bool:
    """A fact dated by day only had happened by `as_of` (from 00:00 UTC of that day); an undated one counts."""
    return day is None or ts(day + "T00:00:00Z") <= as_of


def case_as_of(eoir: Rec | None, as_of: datetime) -> Rec | None:
    """The EOIR case as it stood at `as_of` (None: not yet opened)."""
    if eoir is None:
        return None
    if not by_day(eoir["case_opened_on"], as_of):
        return None
    hearings = [h if ts(h["starts_at"]) <= as_of else {**h, "outcome": None} for h in eoir["hearings"]]
    decided = eoir["decision"] is not None and by_day(eoir["decision"]["decided_on"], as_of)
    order = eoir["in_absentia_order"]
    return {**eoir, "hearings": hearings, "case_status": eoir["case_status"] if decided else "pending",
            "in_absentia_order": order if order and by_day(order["ordered_on"], as_of) else None}


def released_by(orr: Rec | None, ice: Rec | None, as_of: datetime) -> bool:
    """Released to a sponsor (per `location`) at or before `as_of`."""
    return location(orr, ice) == "RELEASED_TO_SPONSOR" and ts(orr["release"]["released_at"]) <= as_of  # type: ignore[index]


def nta_as_of(ice: Rec, as_of: datetime) -> str:
    """ICE's NTA status at `as_of`: the last step dated on or before it."""
    nta = ice["nta"]
    for status, day in (("filed", "filed_on"), ("served", "served_on"), ("issued", "issued_on")):
        if nta[day] is not None and by_day(nta[day], as_of):
            return status
    return "not_issued"


def next_hearing(eoir: Rec | None) -> Rec | None:
    pending = [h for h in (eoir or {}).get("hearings", []) if h["outcome"] is None]
    return min(pending, key=lambda h: ts(h["starts_at"])) if pending else None


def missed(eoir: Rec | None) -> list[Rec]:
    return [h for h in (eoir or {}).get("hearings", []) if h["outcome"] == "failed_to_appear"]


def sponsor_address(orr: Rec | None) -> Rec | None:
    release = (orr or {}).get("release")
    return release["sponsor"]["address"] if release else None


def same_place(a: Rec | None, b: Rec | None) -> bool:
    return a is not None and b is not None and all(
        " ".join(str(a.get(k) or "").casefold().split()) == " ".join(str(b.get(k) or "").casefold().split())
        for k in ADDRESS_KEYS)


def bucket(days: int) -> str:
    return "DAYS_0_30" if days <= 30 else "DAYS_31_90" if days <= 90 else "DAYS_91_365" if days <= 365 else "OVER_365"


def backlog(world: World, as_of: datetime) -> dict[str, tuple[str, str | None, str]]:
    """A-number → (stage, field office, age bucket) of every child backlogged as of `as_of`."""
    return {a: (stage, office, bucket(days)) for a, (stage, office, days) in backlog_days(world, as_of).items()}


def backlog_days(world: World, as_of: datetime) -> dict[str, tuple[str, str | None, int]]:
    """A-number → (stage, field office, days since release) of every child backlogged as of `as_of`."""
    out = {}
    for a, orr, ice, _eoir in world.children():
        if not released_by(orr, ice, as_of) or nta_as_of(ice, as_of) == "filed":
            continue
        days = (as_of - ts(orr["release"]["released_at"])).days  # type: ignore[index]
        assert days >= 0
        out[a] = (nta_as_of(ice, as_of).upper(), ice["field_office"], days)
    return out


def alerts(world: World, as_of: datetime, within_days: int) -> set[tuple[str, str, str | None]]:
    """(A-number, kind, hearing id) of every court alert as of `as_of`."""
    out: set[tuple[str, str, str | None]] = set()
    for a, orr, ice, recorded in world.children():
        eoir = case_as_of(recorded, as_of)
        for h in missed(eoir):
            out.add((a, "MISSED_HEARING", h["id"]))
        if eoir and eoir["in_absentia_order"]:
            out.add((a, "IN_ABSENTIA_ORDER", None))
        released = released_by(orr, ice, as_of)
        nxt = next_hearing(eoir)
        upcoming = nxt if nxt and ts(nxt["starts_at"]) >= as_of else None
        if released and upcoming is None and (eoir is None or eoir["case_status"] == "pending"):
            out.add((a, "NO_HEARING_SCHEDULED", None))
        if (released and upcoming and ts(upcoming["starts_at"]) <= as_of + timedelta(days=within_days)
                and not same_place(eoir["address_of_record"], sponsor_address(orr))):  # type: ignore[index]
            out.add((a, "ADDRESS_OF_RECORD_MISMATCH", upcoming["id"]))
    return out


def _blank(addr: Rec | None) -> bool:
    return addr is None or addr["quality"] == "blank" or not any(addr.get(k) for k in ADDRESS_KEYS)


def discrepancies(world: World, route: Any) -> set[tuple[str, str]]:
    """(A-number, kind) of every discrepancy; `route(address)` is the field-office routing under test."""
    out: set[tuple[str, str]] = set()
    for a, orr, ice, eoir in world.children():
        people = [r for r in (orr, ice, eoir) if r is not None]
        if len({(r["first_name"], r["last_name"]) for r in people}) > 1:
            out.add((a, "NAME_MISMATCH"))
        if len({r["date_of_birth"] for r in people}) > 1:
            out.add((a, "DOB_MISMATCH"))
        released = bool(orr and orr.get("release"))
        addrs: list[Rec | None] = []
        if released:
            addrs.append(sponsor_address(orr))
        if released or ice.get("address_on_file"):
            addrs.append(ice.get("address_on_file"))
        if eoir is not None:
            addrs.append(eoir["address_of_record"])
        usable = [x for x in addrs if not _blank(x)]
        if any(not same_place(usable[0], x) for x in usable[1:]):
            out.add((a, "ADDRESS_MISMATCH"))
        if any(x is None or x["quality"] != "valid" for x in addrs):
            out.add((a, "MISSING_ADDRESS"))
        filed = ice["nta"]["status"] == "filed"
        if filed and eoir is None:
            out.add((a, "NTA_FILED_NO_CASE"))
        if eoir is not None and not filed:
            out.add((a, "CASE_WITHOUT_NTA"))
        office = route(sponsor_address(orr)) if released else None
        if office is not None and office != ice["field_office"]:
            out.add((a, "FIELD_OFFICE_MISMATCH"))
    return out


def caseload(world: World, as_of: datetime, *, field_office: str | None = None, location_status: str | None = None,
             nta_status: str | None = None, hearing_within_days: int | None = None,
             missed_hearing: bool | None = None, sponsor_state: str | None = None) -> list[str]:
    """A-numbers matching a caseload filter, in order."""
    out = []
    for a, orr, ice, recorded in world.children():
        eoir = case_as_of(recorded, as_of)  # hearing rules are judged as of `as_of`, the others on the records
        if field_office is not None and ice["field_office"].casefold() != field_office.casefold():
            continue
        if location_status is not None and location(orr, ice) != location_status:
            continue
        if nta_status is not None and ice["nta"]["status"] != nta_status:
            continue
        if missed_hearing is not None and bool(missed(eoir)) != missed_hearing:
            continue
        if hearing_within_days is not None:
            nxt = next_hearing(eoir)
            if nxt is None or not as_of <= ts(nxt["starts_at"]) <= as_of + timedelta(days=hearing_within_days):
                continue
        if sponsor_state is not None and (sponsor_address(orr) or {}).get("state") != sponsor_state:
            continue
        out.append(a)
    return out


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
