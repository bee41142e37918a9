"""The `auditEvents` query: the audit trail as the auditor role reads it.

A caller scoped to field offices reads only events about children of those offices (an event's office is
the child's scope office when it was written; events with none, and events about no child, only unscoped
callers read). Each call is itself an event of the trail."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.types import Info

from resolvers.anumber import canonical_a_number
from resolvers.errors import bad_input
from resolvers.field_offices import canonical_office
from resolvers.permissions import documented, requires
from rules.digits import ascii_int
from rules.roles import Capability
from stores import audit_trail as audit
from stores.audit_trail import AuditEvent, AuditFilter, utc_timestamp

MAX_FIRST = 1000


@strawberry.enum(description="How a read of a child's record ended.")
class AuditOutcome(enum.Enum):
    OK = audit.OK
    PARTIAL = audit.PARTIAL
    NOT_FOUND = audit.NOT_FOUND
    FORBIDDEN = audit.FORBIDDEN
    ERROR = audit.ERROR
    UNAUTHENTICATED = audit.UNAUTHENTICATED


@strawberry.type(name="AuditEvent", description="One request's read of one child's record; or, with no A-number, "
                                                "what a request did that concerns no child (a denied list or "
                                                "field, a refused credential, a read of the audit trail).")
class AuditEventType:
    id: strawberry.ID
    time: datetime
    request_id: str = strawberry.field(description="Events of one request share it.")
    subject: str = strawberry.field(description="Who read: the token's subject or the API key's client; for a "
                                                "refused credential `unverified:<sub>` (the subject the token "
                                                "named, never checked) or `anonymous`.")
    role: str
    client: str = strawberry.field(description="The application the request came through.")
    a_number: strawberry.ID | None = strawberry.field(description="The child; null for an event about no child.")
    field_office: str | None = strawberry.field(
        description="The child's scope office (ICE's responsible field office) when the event was written; null "
                    "when ICE assigned none or it was not known."
    )
    outcome: AuditOutcome
    sections_returned: list[str]
    sections_denied: list[str] = strawberry.field(
        description="Sections or fields (`section.field`) the caller asked for and was refused."
    )
    sections_failed: list[str] = strawberry.field(description="Sections no source could answer.")
    purpose: str | None = strawberry.field(description="The reason the caller gave (`X-Purpose` header).")

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventType:
        """The GraphQL view of a stored event."""
        return cls(
            id=strawberry.ID(str(event.id)), time=datetime.fromisoformat(event.time.replace("Z", "+00:00")),
            request_id=event.request_id, subject=event.subject, role=event.role, client=event.client,
            a_number=strawberry.ID(event.a_number) if event.a_number else None,
            field_office=canonical_office(event.office) if event.office else None,
            outcome=AuditOutcome(event.outcome),
            sections_returned=list(event.sections_returned), sections_denied=list(event.sections_denied),
            sections_failed=list(event.sections_failed), purpose=event.purpose,
        )


async def audit_events(
    info: Info,
    a_number: strawberry.ID | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    first: int = 100,
    after: strawberry.ID | None = None,
) -> list[AuditEventType] | None:
    """Matching events, oldest first; `since` inclusive, `until` exclusive; `after` an event id."""
    if not 0 <= first <= MAX_FIRST:
        raise bad_input(f"first must be between 0 and {MAX_FIRST}")
    after_id = ascii_int(str(after)) if after is not None else None
    if after is not None and after_id is None:
        raise bad_input("after must be an event id (the id of an event this query returned)")
    store = info.context.audit_store
    if store is None:
        return []
    principal = info.context.principal
    where = AuditFilter(
        a_number=canonical_a_number(str(a_number)) if a_number is not None else None, subject=subject,
        since=utc_timestamp(since) if since else None, until=utc_timestamp(until) if until else None,
        limit=first, after_id=after_id, offices=principal.field_offices if principal is not None else None,
    )
    info.context.reads.audit_read()
    return [AuditEventType.of(e) for e in await store.query(where)]



@strawberry.type
class AuditQuery:
    """The audit trail (auditor role)."""

    audit_events: list[AuditEventType] | None = strawberry.field(
        resolver=audit_events, extensions=requires(Capability.AUDIT_READ),
        description=documented("Reads of child records, oldest first; every given filter must match.",
                               Capability.AUDIT_READ),
    )
