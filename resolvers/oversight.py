"""Oversight root fields: caseload, NTA backlog, court alerts, discrepancies, routing and the summary.

Every list needs child-status access (partners see statuses and counts; the `value` of a claim that
quotes a name, birth date or address needs the matching capability; auditors see none of it). A token
scoped to field offices sees only children whose ICE office is in scope, in lists and counts alike.
Each child a list returns is recorded in the request's audit reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import strawberry
from strawberry.types import Info

from resolvers.alerts import AlertFact, AlertKind, court_alerts
from resolvers.anumber import canonical_a_number
from resolvers.backlog import AgeBucket, BacklogEntry, BacklogStage, backlog_entry
from resolvers.caseload import CaseloadFilter, caseload_page
from resolvers.child import Child
from resolvers.context import RequestContext
from resolvers.counts import AlertCount, BacklogCounts, DiscrepancyCount, Tally
from resolvers.discrepancies import Discrepancy, DiscrepancyKind, detect, hidden_kinds
from resolvers.errors import source_error
from resolvers.evidence import SEVERITY_RANK, Severity, SourceClaim
from resolvers.field_offices import office_arg, office_key, same_office
from resolvers.item_pages import item_page, scoped_items, warn_shape
from resolvers.oversight_access import (
    as_of_time,
    days_arg,
    given_time,
    max_age_arg,
    record_listed,
    section_started,
)
from resolvers.pagination import Connection, check_first, list_kind
from resolvers.permissions import not_in_scope, office_scope_error, requires, scoped
from resolvers.routing import FieldOfficeRouting, routing
from resolvers.safety import OfficeSafetyConcerns, open_concern_counts
from resolvers.scan import Row, Scan, extend_deadline, in_turns, request_scan, shared_result
from resolvers.types import Hearing, Provenance
from rules.roles import Capability, Principal
from sources.errors import SourceError
from sources.systems import Source

STATUS = Capability.CHILD_STATUS
DEFAULT_WITHIN_DAYS = 30
OFFICE_FILTER = ("ICE's responsible field office, e.g. \"San Antonio\" (letter case, accents, dots and spacing "
                 "ignored; not blank).")


# ------------------------------------------------------------------------------------------- backlog


@strawberry.input(description="Which backlog entries to list.")
class BacklogFilter:
    field_office: str | None = strawberry.field(default=None, description=OFFICE_FILTER)
    stage: BacklogStage | None = None
    age_bucket: AgeBucket | None = None


@strawberry.type(description="A released child whose NTA is not yet filed with the court.")
class BacklogItem:
    a_number: strawberry.ID
    field_office: str | None = strawberry.field(description="ICE's responsible field office.")
    stage: BacklogStage = strawberry.field(description="How far the NTA had got as of `asOf` (from ICE's "
                                                        "issued, served and filed dates).")
    released_at: datetime | None = strawberry.field(description="ORR's release time (never after `asOf`); null "
                                                                "when ORR does not date the release.")
    days_since_release: int | None = strawberry.field(description="Whole days from the release to `asOf`; null "
                                                                  "when the release is undated.")
    age_bucket: AgeBucket | None
    provenance: list[Provenance]
    max_age: strawberry.Private[float | None] = None

    @strawberry.field(description="The child's full status (each section subject to the caller's role).")
    def child(self) -> Child:
        return Child(a_number=self.a_number, max_age=self.max_age)


def _backlog_of(as_of: datetime) -> Callable[[Row], list[BacklogEntry]]:
    def derive(row: Row) -> list[BacklogEntry]:
        entry = backlog_entry(row.orr, row.ice, as_of)  # type: ignore[arg-type]
        return [entry] if entry is not None else []
    return derive


@strawberry.type(description="Children released by `asOf` whose NTA was then not issued, not served or not "
                             "filed (each step judged from ICE's date for it; a step ICE records without a date "
                             "counts as done): counts by stage, age since release and field office, and the list "
                             "behind them. Location and field office are the records' current ones (ICE does not "
                             "date custody changes or reassignments).")
class NtaBacklog:
    as_of: datetime
    max_age: strawberry.Private[float | None]
    as_of_given: strawberry.Private[str | None] = None  # `asOf` as given (None: omitted), for binding cursors

    async def _tally(self, info: Info[RequestContext, None]) -> dict[str | None, Tally]:
        """Counts per office, computed once per walk, time and scope (`totals` and `byFieldOffice` share them,
        and so do requests sharing the walk with the same explicit `asOf`)."""
        scan = await request_scan(info.context, self.max_age)
        counts = await _counts_over(info, scan, ("backlog", self.as_of),
                                    lambda principal: _backlog_counts(scan.rows, principal, self.as_of))
        return counts.offices

    @strawberry.field(description="Counts over every office.")
    async def totals(self, info: Info[RequestContext, None]) -> BacklogCounts:
        merged = Tally()
        for t in (await self._tally(info)).values():
            merged.stages.update(t.stages)
            merged.buckets.update(t.buckets)
        return merged.backlog(None)

    @strawberry.field(description="Counts per ICE field office (offices with a backlog, by name).")
    async def by_field_office(self, info: Info[RequestContext, None]) -> list[BacklogCounts]:
        tallies = await self._tally(info)
        return [tallies[o].backlog(o) for o in sorted(tallies, key=lambda o: (o is None, o or ""))]

    @strawberry.field(description="The entries behind the counts, by A-number.")
    async def items(self, info: Info[RequestContext, None], filter: BacklogFilter | None = None,
                    first: int = 50, after: str | None = None) -> Connection[BacklogItem]:
        f = filter or BacklogFilter()
        check_first(first)
        office = office_arg(f.field_office, "filter.fieldOffice")
        kind = list_kind("ntaBacklog", office_key(office), f.stage, f.age_bucket, self.as_of_given)
        base = _backlog_of(self.as_of)

        def derive(row: Row) -> list[BacklogEntry]:
            return [e for e in base(row) if same_office(e.field_office, office)
                    and (f.stage is None or e.stage is f.stage) and (f.age_bucket is None or e.bucket is f.age_bucket)]

        def node(row: Row, e: BacklogEntry) -> BacklogItem:
            record_listed(info, row.a_number, "ntaBacklog")
            return BacklogItem(
                a_number=strawberry.ID(row.a_number), field_office=e.field_office, stage=e.stage,
                released_at=e.released_at, days_since_release=e.days_since_release, age_bucket=e.bucket,
                provenance=[Provenance.of(row.orr), Provenance.of(row.ice)],  # type: ignore[arg-type]
                max_age=self.max_age,
            )

        return await item_page(info, kind, first, after, self.max_age, derive, node)


# ------------------------------------------------------------------------------------------- alerts


@strawberry.input(description="Which court alerts to list.")
class CourtAlertFilter:
    kinds: list[AlertKind] | None = None
    field_office: str | None = strawberry.field(default=None, description=OFFICE_FILTER)
    occurred_since: datetime | None = strawberry.field(
        default=None, description="Only alerts whose fact arose at or after this time (forward-looking "
                                  "alerts, with no such time, are left out)."
    )


@strawberry.type(description="A court alert about one child, with the evidence for it.")
class CourtAlert:
    kind: AlertKind
    a_number: strawberry.ID
    field_office: str | None = strawberry.field(description="ICE's responsible field office.")
    occurred_at: datetime | None = strawberry.field(
        description="When the fact arose (the missed hearing, the order's date, the release), never after `asOf`; "
                    "null when forward-looking."
    )
    hearing: Hearing | None = strawberry.field(description="The hearing concerned, if any.")
    claims: strawberry.Private[list[SourceClaim]]
    max_age: strawberry.Private[float | None] = None

    @strawberry.field(description="What each source says that raises the alert.")
    def evidence(self, info: Info[RequestContext, None]) -> list[SourceClaim]:
        section_started(info, str(self.a_number))
        return self.claims

    @strawberry.field(description="The child's full status (each section subject to the caller's role).")
    def child(self) -> Child:
        return Child(a_number=self.a_number, max_age=self.max_age)


def _alerts_of(as_of: datetime, within_days: int) -> Callable[[Row], list[AlertFact]]:
    def derive(row: Row) -> list[AlertFact]:
        return court_alerts(row.orr, row.ice, row.eoir, as_of, within_days)  # type: ignore[arg-type]
    return derive


# ------------------------------------------------------------------------------------------- discrepancies


@strawberry.input(description="Which discrepancies to list.")
class DiscrepancyFilter:
    kinds: list[DiscrepancyKind] | None = None
    min_severity: Severity | None = strawberry.field(default=None, description="HIGH, or MEDIUM and up, or all.")
    field_office: str | None = strawberry.field(default=None, description=OFFICE_FILTER)


@strawberry.type(description="A data-quality discrepancy of one child.")
class ChildDiscrepancy:
    a_number: strawberry.ID
    field_office: str | None = strawberry.field(description="ICE's responsible field office.")
    kind: DiscrepancyKind
    severity: Severity
    detail: str
    found: strawberry.Private[Discrepancy]
    max_age: strawberry.Private[float | None] = None

    @strawberry.field(description="What each source involved says.")
    def claims(self, info: Info[RequestContext, None]) -> list[SourceClaim]:
        section_started(info, str(self.a_number))
        return self.found.claims

    @strawberry.field(description="The child's full status (each section subject to the caller's role).")
    def child(self) -> Child:
        return Child(a_number=self.a_number, max_age=self.max_age)


def _discrepancies_of(row: Row) -> list[Discrepancy]:
    return detect(row.orr, row.ice, row.eoir)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- summary


@strawberry.type(description="One field office's morning numbers (or every office's, when fieldOffice is null).")
class OfficeSummary:
    field_office: str | None
    children: int = strawberry.field(description="Children ICE now assigns to the office (not limited to `asOf`).")
    backlog: BacklogCounts = strawberry.field(description="The NTA backlog as of `asOf` (see NtaBacklog).")
    open_alerts: list[AlertCount] = strawberry.field(description="Court alerts as of `asOf` by kind (see "
                                                                 "courtAlerts).")
    new_alerts: list[AlertCount] = strawberry.field(description="Alerts whose fact arose from `newSince` to `asOf`.")
    discrepancies: list[DiscrepancyCount] = strawberry.field(description="Data-quality counts of the records as "
                                                                         "they are now.")
    is_total: strawberry.Private[bool] = False
    concerns: strawberry.Private[dict[str, Any]] = dataclasses.field(default_factory=dict)

    @strawberry.field(description="Unresolved safety concerns and the oldest one's age (PART B's store; caseworker "
                                  "or auditor); null when the office has none.")
    async def safety_concerns(self, info: Info[RequestContext, None]) -> OfficeSafetyConcerns | None:
        counts = await _concern_counts(info, self.concerns)
        if self.is_total:
            return merge_concerns(counts)
        if self.field_office is None:
            return None
        return next((c for c in counts if c.field_office is not None and same_office(c.field_office,
                                                                                     self.field_office)), None)


@strawberry.type(description="What a supervisor opens each morning: backlog, court alerts, open safety concerns "
                             "and data quality, per field office.")
class OversightSummary:
    as_of: datetime
    new_since: datetime
    hearing_within_days: int
    children_scanned: int
    totals: OfficeSummary
    by_field_office: list[OfficeSummary]
    concerns: strawberry.Private[dict[str, Any]] = dataclasses.field(default_factory=dict)

    @strawberry.field(description="Unresolved safety concerns per office (every office that has any, and "
                                  "unrouted ones), with the oldest one's age.")
    async def safety_concerns(self, info: Info[RequestContext, None]) -> list[OfficeSafetyConcerns] | None:
        return await _concern_counts(info, self.concerns)


async def _concern_counts(info: Info[RequestContext, None], memo: dict[str, Any]) -> list[OfficeSafetyConcerns]:
    """The safety-concern counts, read once per summary."""
    task = memo.get("task")
    if task is None:
        task = memo["task"] = asyncio.ensure_future(open_concern_counts(info))
    return await asyncio.shield(task)


def merge_concerns(counts: Sequence[OfficeSafetyConcerns]) -> OfficeSafetyConcerns | None:
    """Every office's counts added up, with the oldest concern overall; None when there are none."""
    if not counts:
        return None
    oldest = min(counts, key=lambda c: c.oldest_reported_at)
    return OfficeSafetyConcerns(
        field_office=None, open=sum(c.open for c in counts), acknowledged=sum(c.acknowledged for c in counts),
        unresolved=sum(c.unresolved for c in counts), critical=sum(c.critical for c in counts),
        high=sum(c.high for c in counts), medium=sum(c.medium for c in counts), low=sum(c.low for c in counts),
        oldest_reported_at=oldest.oldest_reported_at, oldest_age_seconds=oldest.oldest_age_seconds,
    )


@dataclasses.dataclass
class SummaryCounts:
    """A summary's counts over one walk, for one scope and time: what requests sharing the walk share."""

    offices: dict[str | None, Tally] = dataclasses.field(default_factory=lambda: defaultdict(Tally))
    total: Tally = dataclasses.field(default_factory=Tally)
    scanned: int = 0
    bad_shape: bool = False  # records of the wrong shape were left out

    def left_out(self) -> None:
        """Note that a record of the wrong shape was left out."""
        self.bad_shape = True


async def _counts_over(info: Info[RequestContext, None], scan: Scan, key: tuple[Any, ...],
                       compute: Callable[[Principal | None], Awaitable[SummaryCounts]]) -> SummaryCounts:
    """Counts over `scan` for the caller's field-office scope, computed once for every request sharing the
    walk with the same `key` and scope; the left-out-records warning goes to each of them."""
    principal = info.context.principal
    scope = None if principal is None else principal.field_offices
    counts = await shared_result(scan, (*key, scope), lambda: compute(principal))
    if counts.bad_shape:
        warn_shape(info.context)
    return counts


async def _count(rows: Sequence[Row], principal: Principal | None, as_of: datetime, new_since: datetime,
                 within_days: int) -> SummaryCounts:
    counts = SummaryCounts()
    backlog = scoped_items(principal, _backlog_of(as_of), counts.left_out)
    alerts = scoped_items(principal, _alerts_of(as_of, within_days), counts.left_out)
    discrepancies = scoped_items(principal, _discrepancies_of, counts.left_out)
    async for row in in_turns(rows):
        if principal is not None and not principal.covers_office(row.field_office):
            continue
        counts.scanned += 1
        entry = next(iter(backlog(row)), None)
        found_alerts, found_discrepancies = alerts(row), discrepancies(row)
        for tally in (counts.offices[row.field_office], counts.total):
            tally.add(entry, found_alerts, found_discrepancies, new_since, as_of)
    return counts


async def _backlog_counts(rows: Sequence[Row], principal: Principal | None, as_of: datetime) -> SummaryCounts:
    counts = SummaryCounts()
    derive = scoped_items(principal, _backlog_of(as_of), counts.left_out)
    async for row in in_turns(rows):
        for entry in derive(row):
            counts.offices[entry.field_office].add(entry, (), (), as_of, as_of)
    return counts


async def _summarize(info: Info[RequestContext, None], scan: Scan, as_of: datetime, new_since: datetime,
                     within_days: int) -> OversightSummary:
    """The summary over `scan`; its counts are computed once for every request sharing the walk with the same
    times and field-office scope."""
    counts = await _counts_over(info, scan, ("summary", as_of, new_since, within_days),
                                lambda principal: _count(scan.rows, principal, as_of, new_since, within_days))
    offices, total = counts.offices, counts.total
    concerns: dict[str, Any] = {}
    hidden = hidden_kinds(info.context.principal)  # kinds the caller may not learn of (security #3)

    def show(office: str | None, t: Tally, is_total: bool = False) -> OfficeSummary:
        found = [c for c in t.discrepancy_counts() if c.kind not in hidden]
        return OfficeSummary(field_office=office, children=t.children, backlog=t.backlog(office),
                             open_alerts=t.alert_counts(new=False), new_alerts=t.alert_counts(new=True),
                             discrepancies=found, is_total=is_total, concerns=concerns)

    return OversightSummary(
        as_of=as_of, new_since=new_since, hearing_within_days=within_days, children_scanned=counts.scanned,
        totals=show(None, total, is_total=True),
        by_field_office=[show(o, offices[o]) for o in sorted(offices, key=lambda o: (o is None, o or ""))],
        concerns=concerns,
    )


# ------------------------------------------------------------------------------------------- root


async def _prepare(info: Info[RequestContext, None], first: int | None = None) -> None:
    if first is not None:
        check_first(first)
    extend_deadline(info.context)


@strawberry.type
class OversightQuery:
    """Supervisor and field-office lists over every child."""

    @strawberry.field(description="Children matching a filter, a page at a time (Relay cursors).",
                      extensions=requires(STATUS))
    async def caseload(
        self, info: Info[RequestContext, None], filter: CaseloadFilter | None = None, first: int = 50,
        after: str | None = None, as_of: datetime | None = None, max_age_seconds: int | None = None,
    ) -> Connection[Child] | None:
        check_first(first)  # one listing page: the request's deadline (a totalCount's full scan extends it)
        if filter is not None:
            days_arg("hearingWithinDays", filter.hearing_within_days)
        return await caseload_page(info, filter, first, after, as_of_time(as_of), max_age_arg(max_age_seconds),
                                   as_of_given=given_time(as_of))

    @strawberry.field(description="The NTA backlog (released, NTA not filed with the court) as of a time; nothing "
                                  "dated after `asOf` is counted.",
                      extensions=requires(STATUS))
    async def nta_backlog(self, info: Info[RequestContext, None], as_of: datetime | None = None,
                          max_age_seconds: int | None = None) -> NtaBacklog | None:
        await _prepare(info)
        return NtaBacklog(as_of=as_of_time(as_of), max_age=max_age_arg(max_age_seconds),
                          as_of_given=given_time(as_of))

    @strawberry.field(description="Court alerts as of `asOf` (none whose fact is dated after it) by A-number, each "
                                  "with its evidence.", extensions=requires(STATUS))
    async def court_alerts(
        self, info: Info[RequestContext, None], filter: CourtAlertFilter | None = None,
        within_days: int = DEFAULT_WITHIN_DAYS, as_of: datetime | None = None, first: int = 50,
        after: str | None = None, max_age_seconds: int | None = None,
    ) -> Connection[CourtAlert] | None:
        await _prepare(info, first)
        days_arg("withinDays", within_days)
        f = filter or CourtAlertFilter()
        office = office_arg(f.field_office, "filter.fieldOffice")
        since = as_of_time(f.occurred_since, "occurredSince") if f.occurred_since is not None else None
        kinds = set(f.kinds) if f.kinds else None
        base = _alerts_of(as_of_time(as_of), within_days)
        max_age = max_age_arg(max_age_seconds)
        kind = list_kind("courtAlerts", sorted(k.value for k in kinds) if kinds else None, office_key(office),
                         given_time(f.occurred_since, "occurredSince"), within_days, given_time(as_of))

        def derive(row: Row) -> list[AlertFact]:
            if not same_office(row.field_office, office):
                return []
            return [a for a in base(row) if (kinds is None or a.kind in kinds)
                    and (since is None or (a.occurred_at is not None and a.occurred_at >= since))]

        def node(row: Row, a: AlertFact) -> CourtAlert:
            record_listed(info, row.a_number, "courtAlerts")
            return CourtAlert(kind=a.kind, a_number=strawberry.ID(row.a_number), field_office=row.field_office,
                              occurred_at=a.occurred_at, hearing=a.hearing, claims=a.evidence, max_age=max_age)

        return await item_page(info, kind, first, after, max_age, derive, node)

    @strawberry.field(description="Cross-agency data-quality discrepancies by A-number.", extensions=requires(STATUS))
    async def discrepancies(
        self, info: Info[RequestContext, None], filter: DiscrepancyFilter | None = None, first: int = 50,
        after: str | None = None, max_age_seconds: int | None = None,
    ) -> Connection[ChildDiscrepancy] | None:
        await _prepare(info, first)
        f = filter or DiscrepancyFilter()
        office = office_arg(f.field_office, "filter.fieldOffice")
        kinds = set(f.kinds) if f.kinds else None
        worst = SEVERITY_RANK[f.min_severity] if f.min_severity is not None else len(SEVERITY_RANK)
        max_age = max_age_arg(max_age_seconds)
        kind = list_kind("discrepancies", sorted(k.value for k in kinds) if kinds else None, f.min_severity,
                         office_key(office))
        hidden = hidden_kinds(info.context.principal)  # kinds the caller may not learn of (security #3)

        def derive(row: Row) -> list[Discrepancy]:
            if not same_office(row.field_office, office):
                return []
            return [d for d in _discrepancies_of(row) if d.kind not in hidden
                    and (kinds is None or d.kind in kinds) and SEVERITY_RANK[d.severity] <= worst]

        def node(row: Row, d: Discrepancy) -> ChildDiscrepancy:
            record_listed(info, row.a_number, "discrepancies")
            return ChildDiscrepancy(a_number=strawberry.ID(row.a_number), field_office=row.field_office,
                                    kind=d.kind, severity=d.severity, detail=d.detail, found=d, max_age=max_age)

        return await item_page(info, kind, first, after, max_age, derive, node)

    @strawberry.field(description="Which ERO field office should own a child's case, from the sponsor's address.",
                      extensions=requires(STATUS))
    async def field_office_routing(self, info: Info[RequestContext, None], a_number: strawberry.ID,
                                   max_age_seconds: int | None = None) -> FieldOfficeRouting | None:
        a = canonical_a_number(str(a_number))
        max_age = max_age_arg(max_age_seconds)
        ctx = info.context
        reads = ctx.reads  # every lookup is in the audit trail, as a child's is: found, not found or failed
        outcomes = await asyncio.gather(ctx.fetch(Source.ORR, a, max_age), ctx.fetch(Source.ICE, a, max_age))
        orr, ice = outcomes
        for outcome in outcomes:
            if isinstance(outcome, SourceError):
                reads.child(a).failed.add("fieldOfficeRouting")
                raise source_error(outcome)
        if orr.record is None and ice.record is None:  # type: ignore[union-attr]
            reads.found(a, False)
            if scoped(info):  # as outside the caller's offices (security #7)
                raise not_in_scope()
            return None
        denied = await office_scope_error(info, a, max_age)
        if denied is not None:
            reads.forbidden(a)
            raise denied
        record_listed(info, a, "fieldOfficeRouting")
        return routing(a, orr, ice)  # type: ignore[arg-type]

    @strawberry.field(description="Backlog, court alerts and data-quality counts per field office, as of a time "
                                  "(`asOf` omitted: when the walk of every child behind the counts had read the "
                                  "records; requests made while one walk runs share it, and its counts).",
                      extensions=requires(STATUS))
    async def oversight_summary(
        self, info: Info[RequestContext, None], as_of: datetime | None = None, new_since_hours: int = 24,
        within_days: int = DEFAULT_WITHIN_DAYS, max_age_seconds: int | None = None,
    ) -> OversightSummary | None:
        await _prepare(info)
        days_arg("withinDays", within_days)
        days_arg("newSinceHours", new_since_hours, limit=24 * 3650)
        max_age = max_age_arg(max_age_seconds)
        if as_of is not None:
            as_of_time(as_of)  # a bad one is refused before the walk
        scan = await request_scan(info.context, max_age)
        when = as_of_time(as_of) if as_of is not None else scan.ended_at  # omitted: when the walk read the records
        return await _summarize(info, scan, when, when - timedelta(hours=new_since_hours), within_days)

