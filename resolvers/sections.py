"""Turn source records into schema objects: the joins and derivations across ORR, ICE and EOIR."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from resolvers.types import (
    Address,
    AddressKind,
    AddressQuality,
    AddressSource,
    AgencyAddress,
    CaseStatus,
    Decision,
    DecisionType,
    DischargeType,
    Facility,
    FacilityType,
    FollowUpCall,
    FollowUpOutcome,
    Hearing,
    HearingMedium,
    HearingOutcome,
    HearingStatus,
    HearingType,
    IceCustodyStatus,
    Identity,
    InAbsentiaOrder,
    Location,
    LocationStatus,
    NoticeToAppear,
    NtaStatus,
    PostReleaseServices,
    Provenance,
    ServiceMethod,
    Sponsor,
    member_of,
    parse_date,
    parse_datetime,
)
from sources.fetcher import Fetched
from sources.systems import Source

Record = dict[str, Any]


def _opt(enum_cls: type, raw: str | None) -> Any:
    """Enum member for a source value, None for None; an unknown value raises ValueError."""
    return None if raw is None else member_of(enum_cls, raw)


def _dt(raw: str | None) -> Any:
    return parse_datetime(raw) if raw else None


def address(raw: Record | None) -> Address | None:
    """An Address from a source's address object."""
    if raw is None:
        return None
    return Address(
        street=raw.get("street"), unit=raw.get("unit"), city=raw.get("city"), state=raw.get("state"),
        zip=raw.get("zip"), quality=member_of(AddressQuality, raw.get("quality") or "valid"),
    )


def identity(ice: Fetched, orr: Fetched) -> Identity | None:
    """Identity as ICE records it (ORR's when ICE has no record), with ORR's case id."""
    primary = ice.record or orr.record
    if primary is None:
        return None
    return Identity(
        first_name=primary.get("first_name"), last_name=primary.get("last_name"),
        date_of_birth=parse_date(primary.get("date_of_birth")),
        country_of_birth=primary.get("country_of_birth"),
        orr_case_id=(orr.record or {}).get("orr_case_id"),
        provenance=[Provenance.of(ice), Provenance.of(orr)],
    )


def _facility(episode: Record) -> Facility:
    return Facility(
        name=episode.get("facility_name"), type=_opt(FacilityType, episode.get("facility_type")),
        city=episode.get("city"), state=episode.get("state"),
        admitted_at=_dt(episode.get("admitted_at")), discharged_at=_dt(episode.get("discharged_at")),
    )


def location(orr: Fetched, ice: Fetched) -> Location:
    o, i = orr.record, ice.record
    ice_status = _opt(IceCustodyStatus, i.get("custody_status")) if i else None
    status, since, facility, addr, discharge = LocationStatus.UNKNOWN, None, None, None, None
    orr_status = o.get("status") if o else None
    if ice_status is IceCustodyStatus.REMOVED:
        status, discharge = LocationStatus.OTHER_DISCHARGE, DischargeType.REMOVED
    elif ice_status is IceCustodyStatus.IN_ICE_CUSTODY:
        status = LocationStatus.IN_DHS_CUSTODY
    elif orr_status == "referred":  # referred to ORR, not yet placed: still held by DHS
        status = LocationStatus.IN_DHS_CUSTODY
        since = _dt(((i or {}).get("apprehension") or {}).get("apprehended_at"))
    elif orr_status == "in_care":
        status = LocationStatus.IN_ORR_CARE
        episodes = o.get("custody_episodes") or []
        if episodes:
            facility = _facility(episodes[-1])
            since = facility.admitted_at
    elif orr_status == "released":
        status = LocationStatus.RELEASED_TO_SPONSOR
        release = o.get("release") or {}
        since = _dt(release.get("released_at"))
        addr = address((release.get("sponsor") or {}).get("address"))
    elif orr_status in ("aged_out", "repatriated", "unauthorized_departure"):
        status, discharge = LocationStatus.OTHER_DISCHARGE, member_of(DischargeType, orr_status)
        since = _dt((o.get("discharge") or {}).get("discharged_at"))
    elif ice_status is IceCustodyStatus.IN_DHS_CUSTODY:
        status = LocationStatus.IN_DHS_CUSTODY
        since = _dt((i.get("apprehension") or {}).get("apprehended_at"))
    elif orr_status is not None:
        raise ValueError(f"unknown ORR status {orr_status!r}")
    return Location(
        status=status, since=since, facility=facility, address=addr, discharge_type=discharge,
        ice_custody_status=ice_status, provenance=[Provenance.of(orr), Provenance.of(ice)],
    )


def sponsor(orr: Fetched) -> Sponsor | None:
    """The sponsor of a released child; None when ORR records no release."""
    release = (orr.record or {}).get("release")
    if not release:
        return None
    sp = release.get("sponsor") or {}
    return Sponsor(
        name=sp.get("name"), relationship=sp.get("relationship"), category=sp.get("category"),
        phone=sp.get("phone"), address=address(sp.get("address")),
        released_at=_dt(release.get("released_at")),
        post_release_services=_opt(PostReleaseServices, release.get("post_release_services")),
        provenance=[Provenance.of(orr)],
    )


def follow_up(orr: Fetched) -> FollowUpCall | None:
    """ORR's 30-day follow-up call; None before one is scheduled."""
    call = (orr.record or {}).get("follow_up_call")
    if not call:
        return None
    return FollowUpCall(
        due_on=parse_date(call.get("due_on")), called_at=_dt(call.get("called_at")),
        outcome=_opt(FollowUpOutcome, call.get("outcome")),
        residing_with_sponsor=call.get("residing_with_sponsor"),
        enrolled_in_school=call.get("enrolled_in_school"),
        aware_of_court_date=call.get("aware_of_court_date"), safety_concern=call.get("safety_concern"),
        provenance=[Provenance.of(orr)],
    )


def _ice_address(ice: Fetched) -> AgencyAddress | None:
    raw = (ice.record or {}).get("address_on_file")
    if not raw:
        return None
    return AgencyAddress(
        source=Source.ICE, kind=AddressKind.ICE_ADDRESS_ON_FILE, address=address(raw),  # type: ignore[arg-type]
        as_of=parse_date(raw.get("as_of")), origin=_opt(AddressSource, raw.get("source")),
        provenance=[Provenance.of(ice)],
    )


def nta(ice: Fetched) -> NoticeToAppear | None:
    """The NTA as ICE records it; None when ICE has no record of the child."""
    if ice.record is None:
        return None
    raw = ice.record["nta"]  # every ICE subject has one; its absence is a malformed record
    return NoticeToAppear(
        status=member_of(NtaStatus, raw["status"]), issued_on=parse_date(raw.get("issued_on")),
        served_on=parse_date(raw.get("served_on")), service_method=_opt(ServiceMethod, raw.get("service_method")),
        filed_on=parse_date(raw.get("filed_on")), field_office=ice.record.get("field_office"),
        address_on_file=_ice_address(ice), provenance=[Provenance.of(ice)],
    )


def hearing(raw: Record) -> Hearing:
    """A Hearing from one EOIR hearing record."""
    return Hearing(
        id=raw["id"], type=_opt(HearingType, raw.get("type")), starts_at=parse_datetime(raw["starts_at"]),
        judge=raw.get("judge"), court_name=raw.get("court_name"), court_address=address(raw.get("court_address")),
        medium=_opt(HearingMedium, raw.get("medium")), outcome=_opt(HearingOutcome, raw.get("outcome")),
    )


def changes_at(section: object) -> float | None:
    """When `section`, built again from the same records, would come out otherwise by time alone (epoch
    seconds; None: never): a hearing status at its next hearing's start, when that hearing becomes past."""
    if isinstance(section, HearingStatus) and section.next_hearing is not None:
        return section.next_hearing.starts_at.timestamp()
    return None


def hearing_status(eoir: Fetched) -> HearingStatus:
    """The court case; `NO_CASE` when EOIR has none (no NTA filed, so no proceedings).

    The next hearing is the earliest one still ahead (not started) with no outcome; a hearing whose time
    has passed is past, with its outcome null when EOIR recorded none (EOIR's portal lists a hearing as
    next until someone records what happened, which a caseworker must not read as a date to come).
    """
    case = eoir.record
    if case is None:
        return HearingStatus(
            case_status=CaseStatus.NO_CASE, next_hearing=None, past_hearings=[], missed_hearing_count=0,
            in_absentia_order=None, decision=None, address_of_record=None, change_of_address_filed_on=None,
            provenance=[Provenance.of(eoir)],
        )
    hearings = sorted((hearing(h) for h in case.get("hearings") or []), key=lambda h: h.starts_at)
    now = datetime.now(UTC)
    upcoming = [h for h in hearings if h.outcome is None and h.starts_at >= now]
    past = [h for h in hearings if h.outcome is not None or h.starts_at < now]
    order = case.get("in_absentia_order")
    decision = case.get("decision")
    return HearingStatus(
        case_status=member_of(CaseStatus, case["case_status"]),
        next_hearing=upcoming[0] if upcoming else None,
        past_hearings=past,
        missed_hearing_count=sum(1 for h in past if h.outcome is HearingOutcome.FAILED_TO_APPEAR),
        in_absentia_order=InAbsentiaOrder(ordered_on=parse_date(order.get("ordered_on")), judge=order.get("judge"))
        if order else None,
        decision=Decision(type=member_of(DecisionType, decision["type"]),
                          decided_on=parse_date(decision.get("decided_on"))) if decision else None,
        address_of_record=address(case.get("address_of_record")),
        change_of_address_filed_on=parse_date(case.get("change_of_address_filed_on")),
        provenance=[Provenance.of(eoir)],
    )


def addresses_on_file(orr: Fetched, ice: Fetched, eoir: Fetched) -> list[AgencyAddress]:
    """The address each agency holds: ORR's sponsor address, ICE's address on file, the court's of record."""
    out: list[AgencyAddress] = []
    sp = sponsor(orr)
    if sp is not None and sp.address is not None:
        out.append(AgencyAddress(
            source=Source.ORR, kind=AddressKind.SPONSOR_RELEASE_ADDRESS, address=sp.address,
            as_of=sp.released_at.date() if sp.released_at else None, origin=None, provenance=sp.provenance,
        ))
    ice_addr = _ice_address(ice)
    if ice_addr is not None:
        out.append(ice_addr)
    case = eoir.record or {}
    if case.get("address_of_record"):
        out.append(AgencyAddress(
            source=Source.EOIR, kind=AddressKind.COURT_ADDRESS_OF_RECORD,
            address=address(case["address_of_record"]),  # type: ignore[arg-type]
            as_of=parse_date(case.get("change_of_address_filed_on")), origin=None,
            provenance=[Provenance.of(eoir)],
        ))
    return out
