"""Safety-concern escalation: report, acknowledge, resolve, and the lists of open concerns by office.

Reporting, acknowledging and resolving need the caseworker role; the lists need it too (a concern names
a child and carries free text); the per-office counts hold no child data and are also open to auditors.
A token scoped to field offices sees and acts on only its offices' concerns. Every change is committed
to the concern store and appended to the audit trail before the answer is sent. Descriptions, notes and
resolutions are never logged.

For the oversight summary (PART A): `open_concern_counts(info, field_offices)` returns the unresolved
counts per office with the oldest concern's age, already limited to what the caller may see, and
`OfficeSafetyConcerns` is the GraphQL type to embed.
"""

from __future__ import annotations

import enum
import logging
import time
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from resolvers.anumber import canonical_a_number
from resolvers.audit_reads import AUDIT_UNAVAILABLE
from resolvers.context import RequestContext
from resolvers.errors import bad_input
from resolvers.field_offices import canonical_office, office_arg, route_address
from resolvers.permissions import capability_field, forbidden, office_scope_error
from rules.roles import Capability, Principal, place_key
from sources.errors import SourceError
from sources.systems import Source
from stores import safety_concerns as store
from stores.audit_trail import OK, AuditEvent, utc_timestamp
from stores.safety_concerns import Concern, ConcernError, NewConcern, OfficeCounts

log = logging.getLogger("ucgw.safety")

MAX_TEXT = 10_000
MAX_FIRST = 100


@strawberry.enum(description="How urgently a concern needs action.")
class ConcernSeverity(enum.Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


@strawberry.enum(description="Where a concern is in its handling: OPEN → ACKNOWLEDGED → RESOLVED.")
class ConcernStatus(enum.Enum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"


@strawberry.enum(description="What the concern is about (details go in the description).")
class ConcernCategory(enum.Enum):
    NOT_RESIDING_WITH_SPONSOR = "NOT_RESIDING_WITH_SPONSOR"
    SPONSOR_SUITABILITY = "SPONSOR_SUITABILITY"
    ABUSE_OR_NEGLECT = "ABUSE_OR_NEGLECT"
    LABOR_EXPLOITATION = "LABOR_EXPLOITATION"
    TRAFFICKING_INDICATORS = "TRAFFICKING_INDICATORS"
    WHEREABOUTS_UNKNOWN = "WHEREABOUTS_UNKNOWN"
    NOT_ENROLLED_IN_SCHOOL = "NOT_ENROLLED_IN_SCHOOL"
    HEALTH = "HEALTH"
    OTHER = "OTHER"


@strawberry.enum(description="What the field-office routing rests on.")
class ConcernRouting(enum.Enum):
    ICE_RECORD = "ICE_RECORD"  # ICE's responsible field office
    SPONSOR_ADDRESS = "SPONSOR_ADDRESS"  # no ICE office: the office covering the sponsor's address
    UNROUTED = "UNROUTED"  # neither is known (or the sources were unavailable)


@strawberry.input(description="A safety concern about a child or sponsor.")
class ReportSafetyConcernInput:
    a_number: strawberry.ID
    severity: ConcernSeverity
    category: ConcernCategory
    description: str = strawberry.field(description="Free text; may hold personal details (never logged).")


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@strawberry.type(description="A safety concern, its routing and its handling, with who did what and when.")
class SafetyConcern:
    id: strawberry.ID
    a_number: strawberry.ID
    severity: ConcernSeverity
    category: ConcernCategory
    description: str
    status: ConcernStatus
    field_office: str | None = strawberry.field(description="The ERO field office responsible for it.")
    routed_by: ConcernRouting
    reported_by: str = strawberry.field(description="Subject of the caseworker who reported it.")
    reported_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    age_seconds: float = strawberry.field(
        description="Seconds since it was reported (for a resolved concern: until it was resolved)."
    )

    @classmethod
    def of(cls, c: Concern, now: float | None = None) -> SafetyConcern:
        """The GraphQL view of a stored concern."""
        return cls(
            id=strawberry.ID(c.id), a_number=strawberry.ID(c.a_number), severity=ConcernSeverity(c.severity),
            category=_category(c.category), description=c.description, status=ConcernStatus(c.status),
            field_office=c.field_office, routed_by=ConcernRouting(c.routed_by), reported_by=c.reported_by,
            reported_at=_dt(c.reported_at), acknowledged_by=c.acknowledged_by,  # type: ignore[arg-type]
            acknowledged_at=_dt(c.acknowledged_at), acknowledgement_note=c.acknowledgement_note,
            resolved_by=c.resolved_by, resolved_at=_dt(c.resolved_at), resolution=c.resolution,
            age_seconds=round(c.age_seconds(time.time() if now is None else now), 3),
        )


def _category(raw: str) -> ConcernCategory:
    try:
        return ConcernCategory(raw)
    except ValueError:
        return ConcernCategory.OTHER


@strawberry.type(description="Unresolved safety concerns of one field office.")
class OfficeSafetyConcerns:
    field_office: str | None = strawberry.field(description="Null for concerns that could not be routed.")
    open: int = strawberry.field(description="Reported, not yet acknowledged.")
    acknowledged: int = strawberry.field(description="Acknowledged, not yet resolved.")
    unresolved: int = strawberry.field(description="open + acknowledged.")
    critical: int
    high: int
    medium: int
    low: int
    oldest_reported_at: datetime
    oldest_age_seconds: float = strawberry.field(description="Age of the office's oldest unresolved concern.")

    @classmethod
    def of(cls, c: OfficeCounts, now: float | None = None) -> OfficeSafetyConcerns:
        """The GraphQL view of one office's counts."""
        now = time.time() if now is None else now
        sev = c.by_severity
        return cls(field_office=c.field_office, open=c.open, acknowledged=c.acknowledged, unresolved=c.unresolved,
                   critical=sev.get("CRITICAL", 0), high=sev.get("HIGH", 0), medium=sev.get("MEDIUM", 0),
                   low=sev.get("LOW", 0), oldest_reported_at=_dt(c.oldest_reported_at),  # type: ignore[arg-type]
                   oldest_age_seconds=round(max(0.0, now - c.oldest_reported_at), 3))


@strawberry.type(description="Where a page of concerns ends and whether another follows.")
class SafetyConcernPageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class SafetyConcernEdge:
    cursor: str
    node: SafetyConcern


@strawberry.type(description="One page of safety concerns, oldest report first.")
class SafetyConcernConnection:
    edges: list[SafetyConcernEdge]
    page_info: SafetyConcernPageInfo
    total_count: int = strawberry.field(description="How many concerns match the filters.")


# ---------------------------------------------------------------------------------------------- access


def _caller(info: Info[RequestContext, None]) -> Principal:
    principal = info.context.principal
    if principal is None:
        raise GraphQLError("authentication required", extensions={"code": "UNAUTHENTICATED"})
    return principal  # type: ignore[no-any-return]


def require_caseworker(info: Info[RequestContext, None]) -> Principal:
    """The caller, when their role may handle safety concerns; FORBIDDEN otherwise."""
    principal = _caller(info)
    if not principal.can(Capability.CHILD_WELFARE):
        raise forbidden("safety concerns need the caseworker role")
    return principal


def _office_filter(principal: Principal, asked: str | None) -> list[str | None] | None:
    """Offices a list may show, as the store spells them (`canonical_office`; it compares without letter
    case): the one asked for (within the caller's scope), else the caller's scope."""
    if asked is not None:
        if not principal.covers_office(asked):
            raise forbidden("this field office is outside your token's field_offices")
        return [canonical_office(asked)]
    if principal.field_offices is None:
        return None
    return sorted(canonical_office(key) for key in principal.field_offices)


def _check_scope(principal: Principal, concern: Concern) -> None:
    if not principal.covers_office(concern.field_office):
        raise forbidden("this concern belongs to a field office outside your token's field_offices")


def _error(exc: ConcernError) -> GraphQLError:
    return GraphQLError(exc.message, extensions={"code": exc.code})


_LINE_BREAKS = frozenset("\n\r\t")


def _text(name: str, value: str | None, required: bool) -> str | None:
    """A caseworker's free text, stripped: None when absent (or blank and optional); BAD_USER_INPUT when
    blank and required, too long, holding a control character other than line breaks and tabs, or
    nothing visible (e.g. only zero-width characters)."""
    if value is None or not value.strip():
        if required:
            raise bad_input(f"{name} must not be empty")
        return None
    if len(value) > MAX_TEXT:
        raise bad_input(f"{name} must be at most {MAX_TEXT} characters (got {len(value)})")
    if any(unicodedata.category(ch) == "Cc" and ch not in _LINE_BREAKS for ch in value):
        raise bad_input(f"{name} must not hold control characters (other than line breaks and tabs)")
    if not any(ch.isprintable() and not ch.isspace() for ch in value):
        raise bad_input(f"{name} must hold some visible text")
    return value.strip()


# ---------------------------------------------------------------------------------------------- routing


def sponsor_office(orr_record: dict[str, Any] | None) -> str | None:
    """The field office covering the sponsor's address in an ORR record (None when it cannot be routed)."""
    release = (orr_record or {}).get("release")
    sponsor = release.get("sponsor") if isinstance(release, dict) else None
    address = sponsor.get("address") if isinstance(sponsor, dict) else None
    return route_address(address if isinstance(address, dict) else None).office


async def route_child(info: Info[RequestContext, None], a_number: str) -> tuple[str | None, str]:
    """Responsible field office and what it rests on: ICE's record, else the sponsor's address.

    Both sources answering "no record" is a BAD_USER_INPUT (probably a mistyped A-number); a source
    outage leaves the concern UNROUTED rather than refusing a safety report.
    """
    ctx = info.context
    ice = await ctx.fetch(Source.ICE, a_number, None)
    if not isinstance(ice, SourceError) and ice.record and isinstance(ice.record.get("field_office"), str):
        return ice.record["field_office"], ConcernRouting.ICE_RECORD.value
    orr = await ctx.fetch(Source.ORR, a_number, None)
    if not isinstance(orr, SourceError) and orr.record:
        office = sponsor_office(orr.record)
        if office is not None:
            return office, ConcernRouting.SPONSOR_ADDRESS.value
    if not isinstance(ice, SourceError) and not isinstance(orr, SourceError) and not ice.record and not orr.record:
        raise bad_input("neither ICE nor ORR knows this A-number; check it and report again")
    return None, ConcernRouting.UNROUTED.value


# ---------------------------------------------------------------------------------------------- audit


async def _audit(info: Info[RequestContext, None], principal: Principal, action: str, concern: Concern) -> None:
    """Append one audit event for a change to `concern`, after it is committed and before the answer.

    The event names the child, the caller and `safetyConcern.<action>:<id>` as the section touched. If the
    trail cannot be written the caller gets AUDIT_UNAVAILABLE instead of the concern (the change itself,
    with who and when, is already stored in the concern record).
    """
    ctx = info.context
    event = AuditEvent(time=utc_timestamp(), request_id=ctx.reads.request_id, subject=principal.subject,
                       role=principal.role, client=principal.client, a_number=concern.a_number, outcome=OK,
                       sections_returned=(f"safetyConcern.{action}:{concern.id}",), purpose=ctx.purpose)
    try:
        if ctx.audit_store is None:
            raise RuntimeError("no audit store configured")
        await ctx.audit_store.append([event])
    except Exception as exc:  # noqa: BLE001 - fail closed, whatever went wrong
        log.error("audit trail write failed for a safety-concern %s (%s)", action, type(exc).__name__)
        raise GraphQLError("the change was saved but could not be recorded in the audit trail; no data is "
                           "returned", extensions={"code": AUDIT_UNAVAILABLE}) from None


def _note_reads(info: Info[RequestContext, None], concerns: Sequence[Concern]) -> None:
    """Listing concerns reads children's records: the request's audit events say so."""
    for c in concerns:
        read = info.context.reads.child(c.a_number)
        read.found = True
        read.returned.add("safetyConcerns")


# ---------------------------------------------------------------------------------------------- fields


def _store(info: Info[RequestContext, None]) -> store.ConcernStore:
    return info.context.services.concerns  # type: ignore[no-any-return]


async def open_concern_counts(info: Info[RequestContext, None],
                              field_offices: Sequence[str] | None = None) -> list[OfficeSafetyConcerns]:
    """Unresolved concerns per field office with the oldest one's age, limited to the caller's scope.

    `field_offices` narrows further (None = every office the caller may see). For the oversight summary.
    """
    principal = _caller(info)
    if not (principal.can(Capability.CHILD_WELFARE) or principal.can(Capability.AUDIT_READ)):
        raise forbidden("safety-concern counts need the caseworker or auditor role")
    scope = None if principal.field_offices is None else list(principal.field_offices)
    if field_offices is not None:
        asked = [o for o in field_offices if principal.covers_office(o)]
        scope = asked
    counts = await _store(info).office_counts()
    now = time.time()
    if scope is not None:
        wanted = {place_key(o) for o in scope}
        counts = [c for c in counts if c.field_office is not None and place_key(c.field_office) in wanted]
    return [OfficeSafetyConcerns.of(c, now) for c in counts]


@strawberry.type
class SafetyQuery:
    """Lists of safety concerns."""

    @strawberry.field(**capability_field("Safety concerns, oldest report first, filtered by office, status "
                                         "and child.", Capability.CHILD_WELFARE))
    async def safety_concerns(
        self,
        info: Info[RequestContext, None],
        field_office: str | None = None,
        status: ConcernStatus | None = None,
        a_number: strawberry.ID | None = None,
        first: int = 20,
        after: str | None = None,
    ) -> SafetyConcernConnection | None:
        principal = require_caseworker(info)
        if not 1 <= first <= MAX_FIRST:
            raise bad_input(f"first must be between 1 and {MAX_FIRST} (got {first})")
        try:
            after_seq = store.decode_cursor(after) if after else 0
        except ConcernError as exc:
            raise _error(exc) from None
        offices = _office_filter(principal, office_arg(field_office))
        page = await _store(info).page(
            field_offices=offices, statuses=[status.value] if status else None,
            a_number=canonical_a_number(str(a_number)) if a_number else None, after_seq=after_seq, limit=first,
        )
        _note_reads(info, page.items)
        now = time.time()
        edges = [SafetyConcernEdge(cursor=store.encode_cursor(c.seq), node=SafetyConcern.of(c, now))
                 for c in page.items]
        return SafetyConcernConnection(
            edges=edges,
            page_info=SafetyConcernPageInfo(has_next_page=page.has_next,
                                            end_cursor=edges[-1].cursor if edges else after),
            total_count=page.total,
        )

    @strawberry.field(**capability_field("One safety concern by id; null when there is none.",
                                         Capability.CHILD_WELFARE))
    async def safety_concern(self, info: Info[RequestContext, None], id: strawberry.ID) -> SafetyConcern | None:
        principal = require_caseworker(info)
        concern = await _store(info).get(str(id))
        if concern is None:
            return None
        _check_scope(principal, concern)
        _note_reads(info, [concern])
        return SafetyConcern.of(concern)

    @strawberry.field(description="Unresolved safety concerns per field office, the office with the oldest first. "
                                  "Requires child:welfare (caseworker) or audit:read (auditor).")
    async def open_safety_concerns_by_office(
        self, info: Info[RequestContext, None], field_office: str | None = None
    ) -> list[OfficeSafetyConcerns] | None:
        office = office_arg(field_office)
        return await open_concern_counts(info, [office] if office is not None else None)


@strawberry.type
class SafetyMutation:
    """Report a safety concern and move it through acknowledgement to resolution."""

    @strawberry.mutation(**capability_field("Record a safety concern and route it to the responsible field "
                                            "office.", Capability.CHILD_WELFARE))
    async def report_safety_concern(
        self, info: Info[RequestContext, None], input: ReportSafetyConcernInput
    ) -> SafetyConcern | None:
        principal = require_caseworker(info)
        a_number = canonical_a_number(str(input.a_number))
        description = _text("description", input.description, required=True)
        if principal.field_offices is not None:  # the one scope rule; unknown and out of scope answer alike
            denied = await office_scope_error(info, a_number, None)
            if denied is not None:
                raise denied
        office, routed_by = await route_child(info, a_number)
        try:
            concern = await _store(info).report(NewConcern(
                a_number=a_number, severity=input.severity.value, category=input.category.value,
                description=description or "", reported_by=principal.subject, reporter_role=principal.role,
                field_office=office, routed_by=routed_by, reporter_client=principal.client,
            ))
        except ConcernError as exc:
            raise _error(exc) from None
        await _audit(info, principal, "report", concern)
        return SafetyConcern.of(concern)

    @strawberry.mutation(**capability_field("Acknowledge an OPEN concern (CONFLICT when it is not OPEN).",
                                            Capability.CHILD_WELFARE))
    async def acknowledge_safety_concern(
        self, info: Info[RequestContext, None], id: strawberry.ID, note: str | None = None
    ) -> SafetyConcern | None:
        principal = require_caseworker(info)
        text = _text("note", note, required=False)
        await _scoped(info, principal, str(id))
        try:
            concern = await _store(info).acknowledge(str(id), principal.subject, text)
        except ConcernError as exc:
            raise _error(exc) from None
        await _audit(info, principal, "acknowledge", concern)
        return SafetyConcern.of(concern)

    @strawberry.mutation(**capability_field("Resolve an OPEN or ACKNOWLEDGED concern (CONFLICT when already "
                                            "resolved).", Capability.CHILD_WELFARE))
    async def resolve_safety_concern(
        self, info: Info[RequestContext, None], id: strawberry.ID, resolution: str
    ) -> SafetyConcern | None:
        principal = require_caseworker(info)
        text = _text("resolution", resolution, required=True)
        await _scoped(info, principal, str(id))
        try:
            concern = await _store(info).resolve(str(id), principal.subject, text or "")
        except ConcernError as exc:
            raise _error(exc) from None
        await _audit(info, principal, "resolve", concern)
        return SafetyConcern.of(concern)


async def _scoped(info: Info[RequestContext, None], principal: Principal, concern_id: str) -> None:
    """NOT_FOUND for an unknown id; FORBIDDEN when the concern's office is outside the caller's scope."""
    if principal.field_offices is None:
        return
    concern = await _store(info).get(concern_id)
    if concern is None:
        raise GraphQLError("no safety concern has this id", extensions={"code": "NOT_FOUND"})
    _check_scope(principal, concern)
