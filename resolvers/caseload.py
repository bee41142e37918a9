"""`caseload`: children by field office, location, NTA status, hearing and sponsor state, a page at a time.

A page reads one ICE listing page (filters the ICE listing supports are pushed down to it), batch-reads
ORR and EOIR for that page only when a filter needs them, filters, and emits at most `first` children.
`endCursor` is the scan position, so the next page never rescans children the filters dropped. The
children's sections are then resolved through the same per-request DataLoaders, so a page costs one
listing call and at most one batch call per other source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import strawberry
from strawberry.types import Info

from resolvers import sections
from resolvers.alerts import court_as_of
from resolvers.child import Child
from resolvers.context import RequestContext
from resolvers.field_offices import canonical_office, office_arg, office_key, same_office
from resolvers.item_pages import count_only, page_selected
from resolvers.oversight_access import in_scope, record_listed, require
from resolvers.pagination import Connection, Edge, PageInfo, Position, list_kind
from resolvers.scan import SCAN_PAGE, Row, full_scan, in_turns, read_page
from resolvers.types import LocationStatus, NtaStatus
from rules.roles import Capability
from sources.systems import Source

KIND = "caseload"
# Caseload filters the ICE listing answers itself: filter attribute → listing query parameter.
ICE_PUSHDOWN: dict[str, str] = {"field_office": "field_office", "nta_status": "nta_status"}


@strawberry.input(description="Which children to list; every given condition must hold. `hearingWithinDays` "
                              "and `missedHearing` are judged as of `asOf`; the others are the records' "
                              "current values.")
class CaseloadFilter:
    field_office: str | None = strawberry.field(
        default=None, description="ICE's responsible field office, e.g. \"San Antonio\" (letter case, accents, "
                                  "dots and spacing ignored; not blank)."
    )
    location_status: LocationStatus | None = None
    nta_status: NtaStatus | None = None
    hearing_within_days: int | None = strawberry.field(
        default=None, description="The next hearing as of `asOf` starts within this many days after it (a "
                                  "hearing starting after `asOf` had no outcome yet; EOIR does not date when a "
                                  "hearing was set, so one starting then or later counts as set by then)."
    )
    missed_hearing: bool | None = strawberry.field(
        default=None, description="true: EOIR records a failure to appear at a hearing held on or before `asOf`; "
                                  "false: it records none by then."
    )
    sponsor_state: str | None = strawberry.field(
        default=None, description="State of the sponsor's current ORR address (needs child:contact)."
    )


@dataclass(frozen=True)
class Plan:
    """How a filter is evaluated: what the ICE listing does, which sources rows need, the row tests."""

    pushdown: dict[str, str]
    sources: tuple[Source, ...]
    tests: tuple[Callable[[Row], bool], ...]
    drops: bool  # some test may drop a child the listing returned

    def keeps(self, row: Row) -> bool:
        """True when the row passes every test."""
        return all(test(row) for test in self.tests)


def _hearings(row: Row, as_of: datetime) -> tuple[bool, datetime | None]:
    """(missed any hearing by `as_of`, start of the next hearing as of then) from EOIR (see resolvers.alerts)."""
    court = court_as_of(row.eoir, as_of)  # type: ignore[arg-type]
    return bool(court.missed), court.next_hearing.starts_at if court.next_hearing else None


def plan(info: Info[RequestContext, None], f: CaseloadFilter | None, as_of: datetime) -> Plan:
    """Split the filter into what the ICE listing evaluates and the row tests the gateway applies."""
    f = f or CaseloadFilter()
    pushdown: dict[str, str] = {}
    tests: list[Callable[[Row], bool]] = []
    sources: set[Source] = set()
    drops = False
    office = office_arg(f.field_office, "filter.fieldOffice")
    if office is not None:
        if "field_office" in ICE_PUSHDOWN:
            pushdown[ICE_PUSHDOWN["field_office"]] = canonical_office(office)
        drops |= "field_office" not in ICE_PUSHDOWN
        tests.append(lambda r: same_office(r.field_office, office))
    if f.nta_status is not None:
        wanted = f.nta_status
        if "nta_status" in ICE_PUSHDOWN:
            pushdown[ICE_PUSHDOWN["nta_status"]] = wanted.value
        drops |= "nta_status" not in ICE_PUSHDOWN
        tests.append(lambda r: _nta_status(r) is wanted)
    if f.location_status is not None:
        where = f.location_status
        sources.add(Source.ORR)
        tests.append(lambda r: sections.location(r.orr, r.ice).status is where)  # type: ignore[arg-type]
    if f.sponsor_state is not None:
        require(info, Capability.CHILD_CONTACT, "filtering by sponsor state")
        state = f.sponsor_state.strip().upper()
        sources.add(Source.ORR)
        tests.append(lambda r: _sponsor_state(r) == state)
    if f.missed_hearing is not None:
        flag = f.missed_hearing
        sources.add(Source.EOIR)
        tests.append(lambda r: _hearings(r, as_of)[0] is flag)
    if f.hearing_within_days is not None:
        end = as_of + timedelta(days=f.hearing_within_days)
        sources.add(Source.EOIR)

        def soon(r: Row) -> bool:
            nxt = _hearings(r, as_of)[1]
            return nxt is not None and as_of <= nxt <= end
        tests.append(soon)
    principal = info.context.principal
    if principal is not None and principal.field_offices is not None:
        drops = True
        tests.append(lambda r: in_scope(info, r.field_office))
    drops |= bool(sources)
    return Plan(pushdown, tuple(sorted(sources, key=lambda s: s.value)), tuple(tests), drops)


def _nta_status(row: Row) -> NtaStatus | None:
    nta = sections.nta(row.ice)
    return nta.status if nta is not None else None


def _sponsor_state(row: Row) -> str | None:
    sponsor = sections.sponsor(row.orr)  # type: ignore[arg-type]
    return sponsor.address.state if sponsor is not None and sponsor.address is not None else None


def shape(f: CaseloadFilter | None, as_of_given: str | None) -> tuple[object, ...]:
    """What a caseload cursor is bound to: the filter in canonical form and `asOf` as given (None: omitted)."""
    f = f or CaseloadFilter()
    state = f.sponsor_state.strip().upper() if f.sponsor_state is not None else None
    return (office_key(f.field_office), f.location_status, f.nta_status, f.hearing_within_days, f.missed_hearing,
            state, as_of_given)


async def caseload_page(info: Info[RequestContext, None], f: CaseloadFilter | None, first: int,
                        after: str | None, as_of: datetime, max_age: float | None,
                        as_of_given: str | None = None) -> Connection[Child]:
    """One page of the caseload: one ICE listing page, filtered, at most `first` children
    (`as_of_given`: the `asOf` argument as given, which the cursors are bound to)."""
    p = plan(info, f, as_of)
    kind = list_kind(KIND, shape(f, as_of_given), sorted(p.pushdown.items()))  # the source's cursor needs its filters
    pos = info.context.cursors.decode(kind, after)
    if not page_selected(info):
        return count_only(lambda: _count(info, p, max_age))
    # When the gateway's own tests may drop children, read a full listing page to fill ours.
    limit = SCAN_PAGE if p.drops else first
    cursor = pos.listing if pos else None
    rows, next_cursor = await read_page(info.context, cursor, limit, max_age, p.sources, p.pushdown)
    if pos is not None:
        rows = [r for r in rows if not pos.passed(r.a_number)]
    edges: list[Edge[Child]] = []
    end: Position | None = pos
    more = next_cursor is not None
    for i, row in enumerate(rows):
        if len(edges) == first:
            if any(p.keeps(r) for r in rows[i:]):  # stop inside this listing page; the next re-reads it
                more = True
                break
        if p.keeps(row):
            record_listed(info, row.a_number, "caseload")
            edges.append(Edge(cursor=info.context.cursors.encode(kind, Position(row.a_number, -1, cursor)),
                              node=Child(a_number=strawberry.ID(row.a_number), max_age=max_age)))
        end = Position(row.a_number, -1, cursor)
    else:
        if rows:  # the whole listing page was read: resume on the next one (or stay at the end)
            end = Position(rows[-1].a_number, -1, next_cursor if next_cursor is not None else cursor)
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=more, end_cursor=info.context.cursors.encode(kind, end) if end else None),
        count_all=lambda: _count(info, p, max_age),
    )


async def _count(info: Info[RequestContext, None], p: Plan, max_age: float | None) -> int:
    """How many children the whole caseload holds (over the request's full scan)."""
    return sum([1 async for row in in_turns(await full_scan(info.context, max_age)) if p.keeps(row)])
