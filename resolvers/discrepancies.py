"""Cross-agency data-quality discrepancies of one child, each with a severity and each source's claim.

Severities rank what a wrong record can do to a child in proceedings: HIGH when notices, service or
the child's age may be wrong, MEDIUM when records disagree but the child can still be reached and
identified, LOW for differences in how a value was typed. The rule of each kind says why.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import strawberry

from resolvers.evidence import Severity, SourceClaim, address_text, claim
from resolvers.field_offices import route_address
from rules.roles import Capability
from rules.roles import place_key as fold_place
from sources.fetcher import Fetched

IDENTITY, CONTACT = Capability.CHILD_IDENTITY, Capability.CHILD_CONTACT
Record = dict[str, Any]
ADDRESS_KEYS = ("street", "unit", "city", "state", "zip")


@strawberry.enum(description="A kind of cross-agency data-quality fault.")
class DiscrepancyKind(enum.Enum):
    NAME_MISMATCH = "NAME_MISMATCH"
    DOB_MISMATCH = "DOB_MISMATCH"
    ADDRESS_MISMATCH = "ADDRESS_MISMATCH"
    MISSING_ADDRESS = "MISSING_ADDRESS"
    NTA_FILED_NO_CASE = "NTA_FILED_NO_CASE"
    CASE_WITHOUT_NTA = "CASE_WITHOUT_NTA"
    FIELD_OFFICE_MISMATCH = "FIELD_OFFICE_MISMATCH"


@strawberry.type(description="Records of different agencies that disagree, or a record that cannot be used.")
class Discrepancy:
    kind: DiscrepancyKind
    severity: Severity
    detail: str = strawberry.field(description="What is wrong, in words (never quotes personal data).")
    claims: list[SourceClaim] = strawberry.field(description="What each source involved says.")


def _fold(text: str) -> str:
    """`text` as names and address parts are compared: as place names are, and hyphens as spaces."""
    return fold_place(text.replace("-", " "))


def name_text(rec: Record) -> str:
    """`first last` as a record holds it."""
    return f"{rec.get('first_name') or ''} {rec.get('last_name') or ''}".strip()


def _name_mismatch(present: list[Fetched]) -> Discrepancy | None:
    """Names differ across agencies.

    LOW: only accents, case or punctuation differ (typing; matching tools usually cope). MEDIUM: the same
    name parts reordered or one agency dropped a part (a second surname, given and family names swapped):
    the same person, but searches by name can miss. HIGH: spellings differ (transliteration, typos), so a
    name search in another agency's system may not find the child at all.
    """
    names = {name_text(f.record) for f in present if f.record}  # type: ignore[union-attr]
    if len(names) < 2:
        return None
    folded = [_fold(n) for n in names]
    if len(set(folded)) == 1:
        severity, detail = Severity.LOW, "names differ only in accents, case or punctuation"
    else:
        parts = [set(f.split()) for f in folded]
        smallest = min(parts, key=len)
        if all(smallest <= p for p in parts):
            severity, detail = Severity.MEDIUM, "name parts reordered or dropped between agencies"
        else:
            severity, detail = Severity.HIGH, "names are spelled differently between agencies"
    return Discrepancy(kind=DiscrepancyKind.NAME_MISMATCH, severity=severity, detail=detail, claims=[
        claim(f, "first_name last_name", name_text(f.record), requires=IDENTITY)  # type: ignore[arg-type]
        for f in present
    ])


def _swapped(a: str, b: str) -> bool:
    ya, ma, da = a.split("-")
    yb, mb, db = b.split("-")
    return ya == yb and ma == db and da == mb


def _dob_mismatch(present: list[Fetched]) -> Discrepancy | None:
    """Dates of birth differ across agencies.

    MEDIUM when day and month are swapped (an entry-format slip; the year, and so roughly the age, agrees).
    HIGH otherwise: the child's age, whether they are still a minor and when they age out are in doubt.
    """
    dobs = sorted({f.record.get("date_of_birth") or "" for f in present if f.record})
    if len(dobs) < 2:
        return None
    known = [d for d in dobs if d]
    swap = len(known) == 2 and len(dobs) == 2 and _swapped(known[0], known[1])
    severity, detail = ((Severity.MEDIUM, "day and month are swapped between agencies") if swap
                        else (Severity.HIGH, "dates of birth differ between agencies"))
    return Discrepancy(kind=DiscrepancyKind.DOB_MISMATCH, severity=severity, detail=detail, claims=[
        claim(f, "date_of_birth", f.record.get("date_of_birth"), requires=IDENTITY)  # type: ignore[union-attr]
        for f in present
    ])


def place_key(raw: Record) -> tuple[str, ...]:
    """An address folded for comparison (case, accents, punctuation and spacing ignored)."""
    return tuple(_fold(str(raw.get(k) or "")) for k in ADDRESS_KEYS)


def _blank(raw: Record | None) -> bool:
    return raw is None or raw.get("quality") == "blank" or not any(raw.get(k) for k in ADDRESS_KEYS)


def sponsor_address(orr: Fetched) -> Record | None:
    """The sponsor's current address as ORR records it; None when ORR records no release."""
    release = (orr.record or {}).get("release") or {}
    return (release.get("sponsor") or {}).get("address")


def agency_addresses(orr: Fetched, ice: Fetched, eoir: Fetched) -> list[tuple[Fetched, str, Record | None]]:
    """(fetched, field, address) for ORR's sponsor address (released children), ICE's address on file
    (when ICE has one or the child was released) and the court's address of record (when a case exists)."""
    out: list[tuple[Fetched, str, Record | None]] = []
    released = (orr.record or {}).get("release") is not None
    if released:
        out.append((orr, "release.sponsor.address", sponsor_address(orr)))
    if ice.record is not None and (released or ice.record.get("address_on_file")):
        out.append((ice, "address_on_file", ice.record.get("address_on_file")))
    if eoir.record is not None:
        out.append((eoir, "address_of_record", eoir.record.get("address_of_record")))
    return out


def _address_mismatch(addrs: list[tuple[Fetched, str, Record | None]]) -> Discrepancy | None:
    """The agencies' non-blank addresses name different places (street, unit, city, state or ZIP).

    HIGH when the court's address of record differs from ORR's current sponsor address: hearing notices go
    to where the child does not live, the path to an in-absentia order. MEDIUM when only ICE's differs:
    NTA service and field visits go astray, but the court can still reach the child.
    """
    usable = [(f, field, a) for f, field, a in addrs if not _blank(a)]
    if len({tuple(str(a.get(k) or "") for k in ADDRESS_KEYS) for _f, _field, a in usable}) < 2:  # type: ignore[union-attr]
        return None  # the same text is the same place: no folding needed (most children)
    keys = [place_key(a) for _f, _field, a in usable]  # type: ignore[arg-type]
    if len(set(keys)) < 2:
        return None
    by_source = {f.source.value: key for (f, _field, _a), key in zip(usable, keys, strict=True)}
    court_vs_sponsor = "EOIR" in by_source and "ORR" in by_source and by_source["EOIR"] != by_source["ORR"]
    severity = Severity.HIGH if court_vs_sponsor else Severity.MEDIUM
    detail = ("the court's address of record differs from the sponsor's current address" if court_vs_sponsor
              else "agencies hold different addresses")
    return Discrepancy(kind=DiscrepancyKind.ADDRESS_MISMATCH, severity=severity, detail=detail, claims=[
        claim(f, field, address_text(a), requires=CONTACT) for f, field, a in usable
    ])


def _missing_address(addrs: list[tuple[Fetched, str, Record | None]]) -> Discrepancy | None:
    """An address is blank, undeliverable or lacks its unit, or ICE has none for a released child.

    HIGH when any is blank or undeliverable: nothing sent there arrives (ORR's ~7% bad release addresses
    are how NTAs and hearing notices get lost). MEDIUM for a missing unit (mail may still arrive) or ICE
    lacking an address the other agencies have.
    """
    faulty = [(f, field, a) for f, field, a in addrs if a is None or (a.get("quality") or "valid") != "valid"]
    if not faulty:
        return None
    worst = any(a is None and f.source.value != "ICE" or a is not None and a.get("quality") in
                ("blank", "undeliverable") for f, _field, a in faulty)
    return Discrepancy(
        kind=DiscrepancyKind.MISSING_ADDRESS, severity=Severity.HIGH if worst else Severity.MEDIUM,
        detail="address is " + ", ".join(sorted({(a or {}).get("quality") or "absent" for _f, _x, a in faulty})),
        claims=[claim(f, field, address_text(a) if a else None, requires=CONTACT) for f, field, a in faulty],
    )


def _nta_status(ice: Fetched) -> str | None:
    return ((ice.record or {}).get("nta") or {}).get("status") if ice.record else None


def _case_claim(eoir: Fetched) -> Any:
    rec = eoir.record
    text = f"{rec.get('case_status')}, opened {rec.get('case_opened_on')}" if rec else None
    return claim(eoir, "case_status", text)


def _nta_claim(ice: Fetched) -> Any:
    nta = (ice.record or {}).get("nta") or {}
    status = _nta_status(ice)
    on = {"issued": "issued_on", "served": "served_on", "filed": "filed_on"}.get(status or "")
    text = f"{status} {nta.get(on)}" if on and nta.get(on) else status
    return claim(ice, "nta.status", text)


def _filed_no_case(ice: Fetched, eoir: Fetched) -> Discrepancy | None:
    """ICE records the NTA as filed with the court, but EOIR has no case.

    HIGH: ICE counts the child as in proceedings while no court will ever schedule a hearing, so the
    child drops out of both the backlog and the court's calendar.
    """
    if _nta_status(ice) != "filed" or eoir.record is not None:
        return None
    return Discrepancy(kind=DiscrepancyKind.NTA_FILED_NO_CASE, severity=Severity.HIGH,
                       detail="ICE says the NTA was filed; the court has no case",
                       claims=[_nta_claim(ice), _case_claim(eoir)])


def _case_without_nta(ice: Fetched, eoir: Fetched) -> Discrepancy | None:
    """EOIR has a case but ICE does not record a filed NTA.

    MEDIUM: proceedings run and the court can notify the child, but ICE's records lag, so ICE counts the
    child in its NTA backlog and may serve or file again.
    """
    if eoir.record is None or _nta_status(ice) == "filed":
        return None
    return Discrepancy(kind=DiscrepancyKind.CASE_WITHOUT_NTA, severity=Severity.MEDIUM,
                       detail="the court has a case; ICE does not record a filed NTA",
                       claims=[_nta_claim(ice), _case_claim(eoir)])


def _field_office_mismatch(orr: Fetched, ice: Fetched) -> Discrepancy | None:
    """ICE's responsible field office is not the one whose area covers the sponsor's current address.

    MEDIUM: the file sits with an office that cannot serve or visit the child, so service and follow-up
    stall until it is transferred; the child's whereabouts are known, so it is not HIGH.
    """
    route = route_address(sponsor_address(orr))
    current = (ice.record or {}).get("field_office")
    if route.office is None or ice.record is None or current == route.office:
        return None
    return Discrepancy(
        kind=DiscrepancyKind.FIELD_OFFICE_MISMATCH, severity=Severity.MEDIUM,
        detail="ICE's responsible field office does not cover the sponsor's current address",
        claims=[claim(ice, "field_office", current),
                claim(orr, "release.sponsor.address → field office", route.office, requires=CONTACT)],
    )


# What knowing that a discrepancy of a kind exists needs (security #3: a derived value needs every capability of
# the values it comes from). FIELD_OFFICE_MISMATCH is derived from the sponsor's address: its existence would
# tell whether the sponsor lives in ICE's office's area. ADDRESS_MISMATCH and MISSING_ADDRESS are the one
# exception, on purpose: their kind and severity stay visible (a child may miss a hearing), their claims do not.
KIND_REQUIRES: dict[DiscrepancyKind, Capability] = {DiscrepancyKind.FIELD_OFFICE_MISMATCH: CONTACT}


def hidden_kinds(principal: Any) -> frozenset[DiscrepancyKind]:
    """The discrepancy kinds whose existence the caller (a `Principal`, or None) may not learn."""
    return frozenset(k for k, needed in KIND_REQUIRES.items() if principal is None or not principal.can(needed))


def detect(orr: Fetched, ice: Fetched, eoir: Fetched) -> list[Discrepancy]:
    """Every discrepancy among one child's three records, in DiscrepancyKind order."""
    present = [f for f in (orr, ice, eoir) if f.record is not None]
    addrs = agency_addresses(orr, ice, eoir)
    checks: list[Callable[[], Discrepancy | None]] = [
        lambda: _name_mismatch(present),
        lambda: _dob_mismatch(present),
        lambda: _address_mismatch(addrs),
        lambda: _missing_address(addrs),
        lambda: _filed_no_case(ice, eoir),
        lambda: _case_without_nta(ice, eoir),
        lambda: _field_office_mismatch(orr, ice),
    ]
    return [d for d in (check() for check in checks) if d is not None]
