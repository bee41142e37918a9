"""GraphQL subscriptions (graphql-transport-ws): record changes and new court alerts, per child or office.

Events come from the gateway's pub/sub (`sync.feed_applier` publishes them). The role rules of queries
apply: a subscriber needs `child:status`; a token scoped to field offices hears only about its offices;
the `child` field of an event is the ordinary `Child` type, so its field-level permissions hold, and
each event that returns child data is written to the audit trail before it is sent (`StreamAudit`):
one event per child per delivered event of each operation, as every operation on a websocket has a
context of its own (gateway/http/ws_protocol.py); each event renews that state (deadline, DataLoaders) before
its fields resolve. Arguments are checked by the queries' own checks (`days_arg`, `office_arg`: a blank field
office is BAD_USER_INPUT, an unknown one hears nothing, as `caseload` lists nothing for it). `caseloadChanges`
evaluates the caseload filter on the child's records as they are after the change (a child the change
took out of the filter is not reported).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from resolvers.alerts import AlertKind
from resolvers.anumber import canonical_a_number
from resolvers.audit_reads import AUDIT_UNAVAILABLE, ReadRecorder, settle_offices
from resolvers.caseload import CaseloadFilter
from resolvers.caseload import plan as caseload_plan
from resolvers.child import Child
from resolvers.context import RequestContext
from resolvers.evidence import SourceClaim, claim
from resolvers.field_offices import office_arg
from resolvers.oversight_access import days_arg
from resolvers.permissions import forbidden, office_scope_error, principal_of
from resolvers.scan import Row
from resolvers.types import SourceEnum, parse_datetime
from rules.roles import Capability, Principal
from sources.errors import SourceError
from sources.systems import Source
from sync.change_events import (
    ALL_ALERTS,
    ALL_CHANGES,
    AlertEvent,
    ChangeEvent,
    child_alert_topic,
    child_topic,
    office_alert_topic,
    office_topic,
)


def _dt(raw: str | None) -> datetime | None:
    try:
        return parse_datetime(raw) if raw else None
    except ValueError:
        return None


def _sent_a_number(info: Info[RequestContext, None], a: str) -> strawberry.ID:
    """An event's A-number, recorded as a read of that child (an event telling which child's record changed
    is audited even when it selects nothing else of the child)."""
    info.context.reads.found(a, True)
    return strawberry.ID(a)


@strawberry.type(description="A system of record reported a change to one child's record.")
class ChildStatusChange:
    a: strawberry.Private[str]  # the child's A-number (`aNumber`, audited when sent)
    source: SourceEnum  # type: ignore[valid-type]
    changed_fields: list[str] = strawberry.field(description="Top-level record fields the source says changed.")
    source_updated_at: datetime | None = strawberry.field(description="The record's updated_at after the change.")
    sequence: int = strawberry.field(description="Position of the change in the source's change feed.")
    field_offices: list[str] = strawberry.field(
        description="Responsible field office(s); two when the change moved the child between offices; "
                    "empty when not looked up (nobody subscribed by office) or unknown."
    )
    received_at: datetime = strawberry.field(description="When the gateway learned of the change.")

    @strawberry.field(description="The child's A-number.")
    def a_number(self, info: Info[RequestContext, None]) -> strawberry.ID:
        return _sent_a_number(info, self.a)

    @strawberry.field(description="The child's status now, read through the cache (the changed record was "
                                  "invalidated, so it comes fresh from its source).")
    def child(self, info: Info[RequestContext, None]) -> Child:
        info.context.reads.found(self.a, True)
        return Child(a_number=strawberry.ID(self.a), max_age=None)

    @classmethod
    def of(cls, e: ChangeEvent) -> ChildStatusChange:
        """The GraphQL view of a published change."""
        return cls(a=e.a_number, source=e.source, changed_fields=list(e.fields),
                   source_updated_at=_dt(e.source_updated_at), sequence=e.seq, field_offices=list(e.field_offices),
                   received_at=datetime.fromtimestamp(e.received_at, UTC))


@strawberry.type(description="A new court alert, found as soon as EOIR's change feed reported it.")
class CourtAlertEvent:
    kind: AlertKind
    a: strawberry.Private[str]  # the child's A-number (`aNumber`, audited when sent)
    field_office: str | None
    hearing_id: str | None
    hearing_starts_at: datetime | None
    court_name: str | None
    ordered_on: date | None = strawberry.field(description="Date of the in-absentia order, when there is one.")
    detected_at: datetime
    evidence: list[SourceClaim] = strawberry.field(description="The EOIR record the alert rests on, with "
                                                               "its provenance (re-fetched with max age 0).")

    @strawberry.field(description="The child's A-number.")
    def a_number(self, info: Info[RequestContext, None]) -> strawberry.ID:
        return _sent_a_number(info, self.a)

    @strawberry.field(description="The child's status now, read through the cache.")
    def child(self, info: Info[RequestContext, None]) -> Child:
        info.context.reads.found(self.a, True)
        return Child(a_number=strawberry.ID(self.a), max_age=None)

    @classmethod
    def of(cls, e: AlertEvent) -> CourtAlertEvent:
        """The GraphQL view of a published alert."""
        if e.kind == AlertKind.IN_ABSENTIA_ORDER.value:
            evidence = [claim(e.evidence, "in_absentia_order.ordered_on", e.ordered_on)]
        else:
            evidence = [claim(e.evidence, f"hearings[{e.hearing_id}].outcome",
                              f"failed_to_appear at {e.hearing_starts_at}")]
        try:
            ordered = date.fromisoformat(e.ordered_on) if e.ordered_on else None
        except ValueError:
            ordered = None
        return cls(kind=AlertKind(e.kind), a=e.a_number, field_office=e.field_office,
                   hearing_id=e.hearing_id, hearing_starts_at=_dt(e.hearing_starts_at), court_name=e.court_name,
                   ordered_on=ordered, detected_at=datetime.fromtimestamp(e.detected_at, UTC), evidence=evidence)


# ---------------------------------------------------------------------------------------------- helpers


def _subscriber(info: Info[RequestContext, None]) -> Principal:
    """The connection's caller, when it may hear about children's status."""
    principal = principal_of(info)
    if principal is None:
        raise GraphQLError("authentication required: send a token in the connection_init payload",
                           extensions={"code": "UNAUTHENTICATED"})
    if not principal.can(Capability.CHILD_STATUS):
        raise forbidden("not allowed: subscriptions need child:status (caseworker or partner)")
    return principal


def _in_scope(principal: Principal, offices: tuple[str, ...] | list[str]) -> bool:
    return principal.field_offices is None or any(principal.covers_office(o) for o in offices)


async def _stream(info: Info[RequestContext, None], topics: list[str], accept: Callable[[Any], Awaitable[bool]],
                  view: Callable[[Any], Any]) -> AsyncGenerator[Any, None]:
    """Events of `topics` that pass `accept`, as GraphQL objects, until the client or the app ends it."""
    ctx = info.context
    async with ctx.services.pubsub.subscribe(topics) as sub:
        async for event in sub:
            ctx.renew()
            if await accept(event):
                yield view(event)


def _always(checks: Callable[[Any], bool]) -> Callable[[Any], Awaitable[bool]]:
    async def accept(event: Any) -> bool:
        return checks(event)

    return accept


async def _child_in_scope(info: Info[RequestContext, None], a_number: str) -> None:
    err = await office_scope_error(info, a_number, None)
    if err is not None:
        raise err


# ---------------------------------------------------------------------------------------------- fields


@strawberry.type
class PushSubscription:
    """Live changes and alerts, over graphql-transport-ws on /graphql."""

    @strawberry.subscription(description="Every change a source reports to this child's record.")
    async def child_status_changed(
        self, info: Info[RequestContext, None], a_number: strawberry.ID
    ) -> AsyncGenerator[ChildStatusChange, None]:
        principal = _subscriber(info)
        a = canonical_a_number(str(a_number))
        await _child_in_scope(info, a)

        async def accept(e: ChangeEvent) -> bool:
            if principal.field_offices is None or (e.field_offices and _in_scope(principal, e.field_offices)):
                return True
            # offices not looked up for this event (or none): the one scope rule decides, on ICE's record now
            return not e.field_offices and await office_scope_error(info, e.a_number, None) is None

        return _stream(info, [child_topic(a)], accept, ChildStatusChange.of)

    @strawberry.subscription(description="Changes to records of children this field office is responsible "
                                         "for (the office ICE holds responsible; a child ICE assigns to none is "
                                         "in no office's stream).")
    async def field_office_changes(
        self, info: Info[RequestContext, None], field_office: str
    ) -> AsyncGenerator[ChildStatusChange, None]:
        principal = _subscriber(info)
        office_arg(field_office)  # as the queries check it
        if not principal.covers_office(field_office):
            raise forbidden("not allowed: this field office is outside your scope")
        return _stream(info, [office_topic(field_office)], _always(lambda e: True), ChildStatusChange.of)

    @strawberry.subscription(description="New missed hearings and in-absentia orders, for one child, one field "
                                         "office, or (neither given) every child the caller may see.")
    async def court_alerts(
        self, info: Info[RequestContext, None], a_number: strawberry.ID | None = None,
        field_office: str | None = None,
    ) -> AsyncGenerator[CourtAlertEvent, None]:
        principal = _subscriber(info)
        if a_number is not None and field_office is not None:
            raise GraphQLError("give aNumber or fieldOffice, not both", extensions={"code": "BAD_USER_INPUT"})
        office_arg(field_office)
        if a_number is not None:
            a = canonical_a_number(str(a_number))
            await _child_in_scope(info, a)
            topics = [child_alert_topic(a)]
        elif field_office is not None:
            if not principal.covers_office(field_office):
                raise forbidden("not allowed: this field office is outside your scope")
            topics = [office_alert_topic(field_office)]
        else:
            topics = [ALL_ALERTS]

        def accept(e: AlertEvent) -> bool:
            return principal.field_offices is None or principal.covers_office(e.field_office)

        return _stream(info, topics, _always(accept), CourtAlertEvent.of)

    @strawberry.subscription(description="Changes to records of children who match a caseload filter once the "
                                         "change is applied (the filter is that of `caseload`, asOf = now).")
    async def caseload_changes(
        self, info: Info[RequestContext, None], filter: CaseloadFilter
    ) -> AsyncGenerator[ChildStatusChange, None]:
        _subscriber(info)
        days_arg("hearingWithinDays", filter.hearing_within_days)  # as the `caseload` query checks it
        checks = caseload_plan(info, filter, datetime.now(UTC))  # checks the office as for the query

        async def accept(e: ChangeEvent) -> bool:
            p = checks if filter.hearing_within_days is None else caseload_plan(info, filter, datetime.now(UTC))
            ctx = info.context
            ice = await ctx.fetch(Source.ICE, e.a_number, None)
            if isinstance(ice, SourceError) or ice.record is None:
                return False
            others: dict[str, Any] = {}
            for source in p.sources:
                other = await ctx.fetch(source, e.a_number, None)
                if isinstance(other, SourceError):
                    return False
                others[source.value.lower()] = other
            row = Row(ice=ice, **others)
            try:
                return p.keeps(row)
            except (KeyError, TypeError, ValueError, AttributeError):  # a record of the wrong shape
                return False

        return _stream(info, [ALL_CHANGES], accept, ChildStatusChange.of)


class StreamAudit(SchemaExtension):
    """Writes the child reads of each subscription event to the audit trail before the event is sent.

    When the write fails the event goes out without data (AUDIT_UNAVAILABLE), as for queries.
    """

    async def on_stream_result(self, result: Any) -> AsyncIterator[None]:  # type: ignore[override]
        ctx = self.execution_context.context
        recorder: ReadRecorder | None = getattr(ctx, "reads", None)
        if (self.execution_context.operation_type is OperationType.SUBSCRIPTION
                and recorder is not None and recorder.reads()):
            settle_offices(ctx)
            events = recorder.events(getattr(ctx, "principal", None), getattr(ctx, "purpose", None))
            ctx.reads = ReadRecorder()
            store = getattr(ctx, "audit_store", None)
            try:
                if store is None:
                    raise RuntimeError("no audit store configured")
                await store.append(events)
            except Exception:  # noqa: BLE001 - any failure to record means no data leaves
                if isinstance(result, ExecutionResult):
                    result.data = None
                    result.errors = [GraphQLError("the event could not be recorded in the audit trail; no data "
                                                  "is sent", extensions={"code": AUDIT_UNAVAILABLE})]
        yield
