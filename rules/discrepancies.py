"""Cross-agency data-quality discrepancies of one child, each with a severity and each source's evidence.

Severities rank what a wrong record can do to a child in proceedings: HIGH when notices, service or
the child's age may be wrong, MEDIUM when records disagree but the child can still be reached and
identified, LOW for differences in how a value was typed. The rule of each kind says why.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

from rules.evidence import Evidence, Personal, address_text
from rules.office_routing import route_address
from rules.places import ADDRESS_KEYS, address_key, fold_text, sponsor_address

IDENTITY, CONTACT = Personal.IDENTITY, Personal.CONTACT
Record = dict[str, Any]
Sourced = tuple[str, Record]  # a source's name ("ORR", "ICE", "EOIR") and its record
AgencyAddress = tuple[str, str, Record | None]  # source name, record field, the address there


class Severity(enum.Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


class DiscrepancyKind(enum.Enum):
    NAME_MISMATCH = "NAME_MISMATCH"
    DOB_MISMATCH = "DOB_MISMATCH"
    ADDRESS_MISMATCH = "ADDRESS_MISMATCH"
    MISSING_ADDRESS = "MISSING_ADDRESS"
    NTA_FILED_NO_CASE = "NTA_FILED_NO_CASE"
    CASE_WITHOUT_NTA = "CASE_WITHOUT_NTA"
    FIELD_OFFICE_MISMATCH = "FIELD_OFFICE_MISMATCH"


class Finding(NamedTuple):
    """Records of different agencies that disagree, or a record that cannot be used (a tuple, as Evidence)."""

    kind: DiscrepancyKind
    severity: Severity
    detail: str  # what is wrong, in words (never quotes personal data)
    evidence: list[Evidence]  # what each source involved says


def name_text(rec: Record) -> str:
    """`first last` as a record holds it."""
    return f"{rec.get('first_name') or ''} {rec.get('last_name') or ''}".strip()


def _name_mismatch(present: list[Sourced]) -> Finding | None:
    """Names differ across agencies.

    LOW: only accents, case or punctuation differ (typing; matching tools usually cope). MEDIUM: the same
    name parts reordered or one agency dropped a part (a second surname, given and family names swapped):
    the same person, but searches by name can miss. HIGH: spellings differ (transliteration, typos), so a
    name search in another agency's system may not find the child at all.
    """
    names = {name_text(rec) for _s, rec in present if rec}
    if len(names) < 2:
        return None
    folded = [fold_text(n) for n in names]
    if len(set(folded)) == 1:
        severity, detail = Severity.LOW, "names differ only in accents, case or punctuation"
    else:
        parts = [set(f.split()) for f in folded]
        smallest = min(parts, key=len)
        if all(smallest <= p for p in parts):
            severity, detail = Severity.MEDIUM, "name parts reordered or dropped between agencies"
        else:
            severity, detail = Severity.HIGH, "names are spelled differently between agencies"
    return Finding(DiscrepancyKind.NAME_MISMATCH, severity, detail, [
        Evidence(source, "first_name last_name", name_text(rec), IDENTITY) for source, rec in present
    ])


def _swapped(a: str, b: str) -> bool:
    ya, ma, da = a.split("-")
    yb, mb, db = b.split("-")
    return ya == yb and ma == db and da == mb


def _dob_mismatch(present: list[Sourced]) -> Finding | None:
    """Dates of birth differ across agencies.

    MEDIUM when day and month are swapped (an entry-format slip; the year, and so roughly the age, agrees).
    HIGH otherwise: the child's age, whether they are still a minor and when they age out are in doubt.
    """
    dobs = sorted({rec.get("date_of_birth") or "" for _s, rec in present if rec})
    if len(dobs) < 2:
        return None
    known = [d for d in dobs if d]
    swap = len(known) == 2 and len(dobs) == 2 and _swapped(known[0], known[1])
    severity, detail = ((Severity.MEDIUM, "day and month are swapped between agencies") if swap
                        else (Severity.HIGH, "dates of birth differ between agencies"))
    return Finding(DiscrepancyKind.DOB_MISMATCH, severity, detail, [
        Evidence(source, "date_of_birth", rec.get("date_of_birth"), IDENTITY) for source, rec in present
    ])


def _blank(raw: Record | None) -> bool:
    return raw is None or raw.get("quality") == "blank" or not any(raw.get(k) for k in ADDRESS_KEYS)


def agency_addresses(orr: Record | None, ice: Record | None, eoir: Record | None) -> list[AgencyAddress]:
    """(source, field, address) for ORR's sponsor address (released children), ICE's address on file
    (when ICE has one or the child was released) and the court's address of record (when a case exists)."""
    out: list[AgencyAddress] = []
    released = (orr or {}).get("release") is not None
    if released:
        out.append(("ORR", "release.sponsor.address", sponsor_address(orr)))
    if ice is not None and (released or ice.get("address_on_file")):
        out.append(("ICE", "address_on_file", ice.get("address_on_file")))
    if eoir is not None:
        out.append(("EOIR", "address_of_record", eoir.get("address_of_record")))
    return out


def _address_mismatch(addrs: list[AgencyAddress]) -> Finding | None:
    """The agencies' non-blank addresses name different places (street, unit, city, state or ZIP).

    HIGH when the court's address of record differs from ORR's current sponsor address: hearing notices go
    to where the child does not live, the path to an in-absentia order. MEDIUM when only ICE's differs:
    NTA service and field visits go astray, but the court can still reach the child.
    """
    usable = [(s, field, a) for s, field, a in addrs if not _blank(a)]
    if len({tuple(str(a.get(k) or "") for k in ADDRESS_KEYS) for _s, _field, a in usable}) < 2:  # type: ignore[union-attr]
        return None  # the same text is the same place: no folding needed (most children)
    keys = [address_key(a) for _s, _field, a in usable]  # type: ignore[arg-type]
    if len(set(keys)) < 2:
        return None
    by_source = {s: key for (s, _field, _a), key in zip(usable, keys, strict=True)}
    court_vs_sponsor = "EOIR" in by_source and "ORR" in by_source and by_source["EOIR"] != by_source["ORR"]
    severity = Severity.HIGH if court_vs_sponsor else Severity.MEDIUM
    detail = ("the court's address of record differs from the sponsor's current address" if court_vs_sponsor
              else "agencies hold different addresses")
    return Finding(DiscrepancyKind.ADDRESS_MISMATCH, severity, detail, [
        Evidence(s, field, address_text(a), CONTACT) for s, field, a in usable
    ])


def _missing_address(addrs: list[AgencyAddress]) -> Finding | None:
    """An address is blank, undeliverable or lacks its unit, or ICE has none for a released child.

    HIGH when any is blank or undeliverable: nothing sent there arrives (ORR's ~7% bad release addresses
    are how NTAs and hearing notices get lost). MEDIUM for a missing unit (mail may still arrive) or ICE
    lacking an address the other agencies have.
    """
    faulty = [(s, field, a) for s, field, a in addrs if a is None or (a.get("quality") or "valid") != "valid"]
    if not faulty:
        return None
    worst = any(a is None and s != "ICE" or a is not None and a.get("quality") in ("blank", "undeliverable")
                for s, _field, a in faulty)
    return Finding(
        DiscrepancyKind.MISSING_ADDRESS, Severity.HIGH if worst else Severity.MEDIUM,
        "address is " + ", ".join(sorted({(a or {}).get("quality") or "absent" for _s, _x, a in faulty})),
        [Evidence(s, field, address_text(a) if a else None, CONTACT) for s, field, a in faulty],
    )


def _nta_status(ice: Record | None) -> str | None:
    return (ice.get("nta") or {}).get("status") if ice else None


def _case_evidence(eoir: Record | None) -> Evidence:
    text = f"{eoir.get('case_status')}, opened {eoir.get('case_opened_on')}" if eoir else None
    return Evidence("EOIR", "case_status", text)


def _nta_evidence(ice: Record | None) -> Evidence:
    nta = (ice or {}).get("nta") or {}
    status = _nta_status(ice)
    on = {"issued": "issued_on", "served": "served_on", "filed": "filed_on"}.get(status or "")
    text = f"{status} {nta.get(on)}" if on and nta.get(on) else status
    return Evidence("ICE", "nta.status", text)


def _filed_no_case(ice: Record | None, eoir: Record | None) -> Finding | None:
    """ICE records the NTA as filed with the court, but EOIR has no case.

    HIGH: ICE counts the child as in proceedings while no court will ever schedule a hearing, so the
    child drops out of both the backlog and the court's calendar.
    """
    if _nta_status(ice) != "filed" or eoir is not None:
        return None
    return Finding(DiscrepancyKind.NTA_FILED_NO_CASE, Severity.HIGH,
                   "ICE says the NTA was filed; the court has no case", [_nta_evidence(ice), _case_evidence(eoir)])


def _case_without_nta(ice: Record | None, eoir: Record | None) -> Finding | None:
    """EOIR has a case but ICE does not record a filed NTA.

    MEDIUM: proceedings run and the court can notify the child, but ICE's records lag, so ICE counts the
    child in its NTA backlog and may serve or file again.
    """
    if eoir is None or _nta_status(ice) == "filed":
        return None
    return Finding(DiscrepancyKind.CASE_WITHOUT_NTA, Severity.MEDIUM,
                   "the court has a case; ICE does not record a filed NTA", [_nta_evidence(ice), _case_evidence(eoir)])


def _field_office_mismatch(orr: Record | None, ice: Record | None) -> Finding | None:
    """ICE's responsible field office is not the one whose area covers the sponsor's current address.

    MEDIUM: the file sits with an office that cannot serve or visit the child, so service and follow-up
    stall until it is transferred; the child's whereabouts are known, so it is not HIGH.
    """
    route = route_address(sponsor_address(orr))
    current = (ice or {}).get("field_office")
    if route.office is None or ice is None or current == route.office:
        return None
    return Finding(
        DiscrepancyKind.FIELD_OFFICE_MISMATCH, Severity.MEDIUM,
        "ICE's responsible field office does not cover the sponsor's current address",
        [Evidence("ICE", "field_office", current),
         Evidence("ORR", "release.sponsor.address → field office", route.office, CONTACT)],
    )


def detect(orr: Record | None, ice: Record | None, eoir: Record | None) -> list[Finding]:
    """Every discrepancy among one child's three records (None: the source has none), in DiscrepancyKind order."""
    present = [(s, r) for s, r in (("ORR", orr), ("ICE", ice), ("EOIR", eoir)) if r is not None]
    addrs = agency_addresses(orr, ice, eoir)
    checks: list[Callable[[], Finding | None]] = [
        lambda: _name_mismatch(present),  # type: ignore[arg-type]
        lambda: _dob_mismatch(present),  # type: ignore[arg-type]
        lambda: _address_mismatch(addrs),
        lambda: _missing_address(addrs),
        lambda: _filed_no_case(ice, eoir),
        lambda: _case_without_nta(ice, eoir),
        lambda: _field_office_mismatch(orr, ice),
    ]
    return [d for d in (check() for check in checks) if d is not None]
