"""GraphQL object types and enums of the child status schema (no fetching here)."""

from __future__ import annotations

import enum
import time
from datetime import UTC, date, datetime
from typing import Any

import strawberry
from graphql.pyutils import Path
from strawberry.types import Info

from resolvers.answer_recording import AGE, CACHE_STATUS
from resolvers.permissions import restricted_field
from resolvers.upstream.execution_context import computed_inline
from rules.dates import parse_date as parse_date  # re-exported: build.py reads source dates through here
from rules.dates import parse_datetime
from rules.roles import Capability
from sources.fetcher import STALE, Fetched
from sources.systems import Source

IDENTITY, CONTACT = Capability.CHILD_IDENTITY, Capability.CHILD_CONTACT

SourceEnum = strawberry.enum(Source, name="Source", description="A system of record.")


@strawberry.enum(description="Where a section's data came from relative to the gateway's cache.")
class CacheStatus(enum.Enum):
    MISS = "MISS"
    HIT = "HIT"
    STALE = "STALE"


def member_of(enum_cls: Any, raw: Any) -> Any:
    """The enum member for a value, by the enum's value map (what `enum_cls(raw)` finds, without its
    Python-level call); a value it lacks goes through `enum_cls(raw)`, which raises ValueError."""
    member = enum_cls._value2member_map_.get(raw)
    return member if member is not None else enum_cls(raw)


def _open_value(context: Any, path: Path, kind: str, fetched_at: float) -> None:
    """Tell a request whose answer may be stored that this value depends on the moment of the answer."""
    recording = getattr(context, "answer", None)
    if recording is not None:
        recording.open_value(path, kind, fetched_at)


def provenance_age(root: Provenance, context: Any, path: Path) -> float:
    """`Provenance.ageSeconds`: seconds from `fetchedAt` to now (an open value of a stored answer)."""
    _open_value(context, path, AGE, root.fetched_epoch)
    return round(max(0.0, time.time() - root.fetched_epoch), 3)


def provenance_cache_status(root: Provenance, context: Any, path: Path) -> CacheStatus:
    """`Provenance.cacheStatus` (an open value of a stored answer: HIT when repeated)."""
    _open_value(context, path, CACHE_STATUS, root.fetched_epoch)
    return member_of(CacheStatus, root.status)  # type: ignore[no-any-return]


def _age_seconds(root: Provenance, info: Info[Any, None]) -> float:
    return provenance_age(root, info.context, info.path)


def _cache_status(root: Provenance, info: Info[Any, None]) -> CacheStatus:
    return provenance_cache_status(root, info.context, info.path)


@strawberry.type(description="Where one section's facts came from and how fresh they are.")
class Provenance:
    source: SourceEnum  # type: ignore[valid-type]
    fetched_at: datetime = strawberry.field(description="When the gateway got the record from the source.")
    source_updated_at: datetime | None = strawberry.field(
        description="The source record's own updated_at; null when the source has no record."
    )
    age_seconds: float = strawberry.field(resolver=_age_seconds, metadata=computed_inline(provenance_age),
                                          description="Response time minus fetchedAt.")
    cache_status: CacheStatus = strawberry.field(resolver=_cache_status,
                                                 metadata=computed_inline(provenance_cache_status))
    stale: bool = strawberry.field(description="True when the value is past its TTL and served anyway.")
    record_found: bool = strawberry.field(description="False when the source answered that it has no record.")
    fetched_epoch: strawberry.Private[float] = 0.0
    status: strawberry.Private[str] = "MISS"

    @classmethod
    def of(cls, fetched: Fetched) -> Provenance:
        """Provenance of one fetched record (aged when the answer is written). The sections built from one
        record share one (they are never changed; `_RECENT` holds the latest few thousand by content)."""
        updated = fetched.record.get("updated_at") if fetched.record else None
        key = (fetched.source, fetched.fetched_at, fetched.cache_status, updated, fetched.record is not None)
        found = _RECENT.get(key)
        if found is None:
            if len(_RECENT) >= RECENT_PROVENANCES:
                _RECENT.clear()
            found = _RECENT[key] = cls(
                source=fetched.source,
                fetched_at=datetime.fromtimestamp(fetched.fetched_at, UTC),
                source_updated_at=parse_datetime(updated) if updated else None,
                stale=fetched.cache_status == STALE,
                record_found=fetched.record is not None,
                fetched_epoch=fetched.fetched_at,
                status=fetched.cache_status,
            )
        return found


RECENT_PROVENANCES = 4096
_RECENT: dict[tuple[Any, ...], Provenance] = {}


@strawberry.enum
class LocationStatus(enum.Enum):
    IN_DHS_CUSTODY = "in_dhs_custody"
    IN_ORR_CARE = "in_orr_care"
    RELEASED_TO_SPONSOR = "released_to_sponsor"
    OTHER_DISCHARGE = "other_discharge"
    UNKNOWN = "unknown"


@strawberry.enum
class FacilityType(enum.Enum):
    SHELTER = "shelter"
    STAFF_SECURE = "staff_secure"
    SECURE = "secure"
    TRANSITIONAL_FOSTER_CARE = "transitional_foster_care"
    LONG_TERM_FOSTER_CARE = "long_term_foster_care"
    RESIDENTIAL_TREATMENT_CENTER = "residential_treatment_center"
    THERAPEUTIC_GROUP_HOME = "therapeutic_group_home"
    INFLUX_CARE_FACILITY = "influx_care_facility"
    EMERGENCY_INTAKE_SITE = "emergency_intake_site"


@strawberry.enum
class DischargeType(enum.Enum):
    AGED_OUT = "aged_out"
    REPATRIATED = "repatriated"
    UNAUTHORIZED_DEPARTURE = "unauthorized_departure"
    REMOVED = "removed"


@strawberry.enum
class IceCustodyStatus(enum.Enum):
    IN_DHS_CUSTODY = "in_dhs_custody"
    TRANSFERRED_TO_ORR = "transferred_to_orr"
    IN_ICE_CUSTODY = "in_ice_custody"
    REMOVED = "removed"


@strawberry.enum
class AddressQuality(enum.Enum):
    VALID = "valid"
    BLANK = "blank"
    UNDELIVERABLE = "undeliverable"
    MISSING_UNIT = "missing_unit"


@strawberry.enum
class AddressSource(enum.Enum):
    ORR_RELEASE = "orr_release"
    CHANGE_OF_ADDRESS = "change_of_address"
    FIELD_VISIT = "field_visit"
    TIP = "tip"


@strawberry.enum
class PostReleaseServices(enum.Enum):
    NONE = "none"
    VIRTUAL_CHECK_INS = "virtual_check_ins"
    CASE_MANAGEMENT = "case_management"
    INTENSIVE = "intensive"


@strawberry.enum
class FollowUpOutcome(enum.Enum):
    REACHED = "reached"
    SPONSOR_ONLY = "sponsor_only"
    NOT_RESIDING = "not_residing"
    NO_CONTACT = "no_contact"
    NOT_ATTEMPTED = "not_attempted"


@strawberry.enum
class NtaStatus(enum.Enum):
    NOT_ISSUED = "not_issued"
    ISSUED = "issued"
    SERVED = "served"
    FILED_WITH_COURT = "filed"


@strawberry.enum
class ServiceMethod(enum.Enum):
    PERSONAL = "personal"
    MAIL = "mail"


@strawberry.enum
class CaseStatus(enum.Enum):
    NO_CASE = "no_case"
    PENDING = "pending"
    DECIDED = "decided"
    ADMINISTRATIVELY_CLOSED = "administratively_closed"
    TERMINATED = "terminated"


@strawberry.enum
class HearingType(enum.Enum):
    MASTER_CALENDAR = "master_calendar"
    INDIVIDUAL = "individual"


@strawberry.enum
class HearingMedium(enum.Enum):
    IN_PERSON = "in_person"
    VIDEO = "video"
    TELEPHONE = "telephone"


@strawberry.enum
class HearingOutcome(enum.Enum):
    HELD = "held"
    ADJOURNED = "adjourned"
    FAILED_TO_APPEAR = "failed_to_appear"


@strawberry.enum
class DecisionType(enum.Enum):
    REMOVAL_ORDER = "removal_order"
    REMOVAL_IN_ABSENTIA = "removal_in_absentia"
    VOLUNTARY_DEPARTURE = "voluntary_departure"
    TERMINATED = "terminated"
    DISMISSED = "dismissed"
    ADMINISTRATIVELY_CLOSED = "administratively_closed"
    CHANGE_OF_VENUE = "change_of_venue"


@strawberry.enum
class AddressKind(enum.Enum):
    SPONSOR_RELEASE_ADDRESS = "sponsor_release_address"
    ICE_ADDRESS_ON_FILE = "ice_address_on_file"
    COURT_ADDRESS_OF_RECORD = "court_address_of_record"


@strawberry.type(description="A postal address as one agency holds it, with its known faults.")
class Address:
    street: str | None
    unit: str | None
    city: str | None
    state: str | None
    zip: str | None
    quality: AddressQuality


@strawberry.type(description="Name and birth data as the identity system (ICE) holds them.")
class Identity:
    first_name: str | None = restricted_field(IDENTITY)
    last_name: str | None = restricted_field(IDENTITY)
    date_of_birth: date | None = restricted_field(IDENTITY)
    country_of_birth: str | None = restricted_field(IDENTITY)
    orr_case_id: str | None = restricted_field(IDENTITY, "ORR's case number.")
    provenance: list[Provenance]


@strawberry.type(description="A care provider placement in ORR custody.")
class Facility:
    name: str | None
    type: FacilityType | None
    city: str | None
    state: str | None
    admitted_at: datetime | None
    discharged_at: datetime | None


@strawberry.type(description="Where the child is now, derived from ORR and ICE.")
class Location:
    status: LocationStatus
    since: datetime | None
    facility: Facility | None = strawberry.field(description="Current ORR placement when in care.")
    address: Address | None = restricted_field(CONTACT, "Sponsor's address when released.")
    discharge_type: DischargeType | None
    ice_custody_status: IceCustodyStatus | None
    provenance: list[Provenance]


@strawberry.type(description="The sponsor the child was released to (ORR).")
class Sponsor:
    name: str | None = restricted_field(CONTACT)
    relationship: str | None = restricted_field(CONTACT, "The sponsor's relationship to the child.")
    category: str | None = restricted_field(CONTACT, "ORR sponsor category: 1, 2A, 2B or 3 (derived from the "
                                                     "relationship, so it needs what the relationship needs).")
    phone: str | None = restricted_field(CONTACT)
    address: Address | None = restricted_field(CONTACT)
    released_at: datetime | None
    post_release_services: PostReleaseServices | None
    provenance: list[Provenance]


@strawberry.type(description="ORR's safety and well-being call about 30 days after release.")
class FollowUpCall:
    due_on: date | None
    called_at: datetime | None
    outcome: FollowUpOutcome | None
    residing_with_sponsor: bool | None
    enrolled_in_school: bool | None
    aware_of_court_date: bool | None
    safety_concern: bool | None
    provenance: list[Provenance]


@strawberry.type(description="An address with the agency that holds it.")
class AgencyAddress:
    source: SourceEnum  # type: ignore[valid-type]
    kind: AddressKind
    address: Address
    as_of: date | None
    origin: AddressSource | None = strawberry.field(description="How ICE learned the address (ICE only).")
    provenance: list[Provenance]


@strawberry.type(description="The Notice to Appear (Form I-862) as ICE records it.")
class NoticeToAppear:
    status: NtaStatus
    issued_on: date | None
    served_on: date | None
    service_method: ServiceMethod | None
    filed_on: date | None
    field_office: str | None = strawberry.field(description="ERO field office responsible for the case.")
    address_on_file: AgencyAddress | None = restricted_field(CONTACT, "The child's address as ICE holds it.")
    provenance: list[Provenance]


@strawberry.type(description="One immigration-court hearing.")
class Hearing:
    id: strawberry.ID
    type: HearingType | None
    starts_at: datetime
    judge: str | None
    court_name: str | None
    court_address: Address | None
    medium: HearingMedium | None
    outcome: HearingOutcome | None


@strawberry.type
class InAbsentiaOrder:
    ordered_on: date | None
    judge: str | None


@strawberry.type
class Decision:
    type: DecisionType
    decided_on: date | None


@strawberry.type(description="The immigration-court case (EOIR); caseStatus NO_CASE when the court has none.")
class HearingStatus:
    case_status: CaseStatus
    next_hearing: Hearing | None = strawberry.field(
        description="The earliest hearing still ahead (its start not yet passed) with no outcome recorded.")
    past_hearings: list[Hearing] = strawberry.field(
        description="Hearings whose start has passed or that have an outcome, oldest first (outcome null: EOIR "
                    "recorded none).")
    missed_hearing_count: int
    in_absentia_order: InAbsentiaOrder | None
    decision: Decision | None
    address_of_record: Address | None = restricted_field(CONTACT, "The address the court sends notices to.")
    change_of_address_filed_on: date | None
    provenance: list[Provenance]
