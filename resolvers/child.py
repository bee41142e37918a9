"""The `Child` type: each section fetches only the sources it needs, through the request's DataLoaders."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
)
from graphql.pyutils import Path
from strawberry.types import Info

from resolvers import sections
from resolvers.context import RequestContext, bad_response
from resolvers.discrepancies import Discrepancy, DiscrepancyKind, detect, hidden_kinds
from resolvers.errors import source_error
from resolvers.permissions import allowed, capability_field
from resolvers.types import (
    AgencyAddress,
    FollowUpCall,
    HearingStatus,
    Identity,
    Location,
    NoticeToAppear,
    Sponsor,
)
from resolvers.upstream.execution_context import Compute, computed_inline
from resolvers.upstream.raw_info import graphql_resolve_info
from rules.roles import Capability
from sources.errors import SourceError
from sources.fetcher import Fetched
from sources.systems import Source
from sources.tracing import CHILD_SPAN, ERROR, SECTION_SPAN, recorded

ORR, ICE, EOIR = Source.ORR, Source.ICE, Source.EOIR

SECTION_SOURCES: dict[str, tuple[Source, ...]] = {
    "identity": (ICE, ORR),
    "location": (ORR, ICE),
    "sponsor": (ORR,),
    "followUpCall": (ORR,),
    "nta": (ICE,),
    "hearing": (EOIR,),
    "addressesOnFile": (ORR, ICE, EOIR),
    "discrepancies": (ORR, ICE, EOIR),
}
# sections readable only with a capability beyond child:status (finer limits sit on the section's fields)
SECTION_CAPABILITY: dict[str, Capability] = {
    "followUpCall": Capability.CHILD_WELFARE,
    "addressesOnFile": Capability.CHILD_CONTACT,
}
# how each section is made from its sources' records (in SECTION_SOURCES order)
SECTION_BUILDERS: dict[str, Callable[..., Any]] = {
    "identity": sections.identity,
    "location": sections.location,
    "sponsor": sections.sponsor,
    "followUpCall": sections.follow_up,
    "nta": sections.nta,
    "hearing": sections.hearing_status,
    "addressesOnFile": sections.addresses_on_file,
    "discrepancies": detect,
}


class NotAtHand(Exception):
    """A section's records are not all at hand (or one is an error): its resolver must run."""


def _section(info: Info[RequestContext, None], child: Child) -> Any:
    """The section this field names, built from its sources' records for the child, or an awaitable of it
    while a source must still be waited for.

    When every record is at hand (cached, or loaded for the whole list by `children`) the section is
    returned at once: the executor then needs no coroutine and no task for it.
    """
    ctx, name = info.context, info.field_name
    ctx.reads.section_started(info, child.a_number)
    outcomes = [ctx.ready(s, child.a_number, child.max_age) for s in SECTION_SOURCES[name]]
    if any(o is None for o in outcomes):
        return _section_when_fetched(ctx, child, name)
    return _build_section(ctx, child, name, outcomes)  # type: ignore[arg-type]


def _at_hand(name: str) -> Compute:
    """Section `name` computed by the inline executor (resolvers/upstream/execution_context.py) when all its
    records are at hand and none is an error; otherwise it raises `NotAtHand` and the section's resolver runs (it waits,
    or reports the error at the section's path)."""
    sources = SECTION_SOURCES[name]

    def compute(child: Child, ctx: RequestContext, path: Path) -> Any:
        outcomes = [ctx.ready(s, child.a_number, child.max_age) for s in sources]
        if any(o is None or isinstance(o, SourceError) for o in outcomes):
            raise NotAtHand
        ctx.reads.section_started_at(path, name, child.a_number)
        return _build_section(ctx, child, name, outcomes)  # type: ignore[arg-type]
    return compute


async def _section_when_fetched(ctx: RequestContext, child: Child, name: str) -> Any:
    tracer = recorded(ctx.services.tracer)
    if tracer is None:
        outcomes = await ctx.answers(child.a_number, child.max_age, SECTION_SOURCES[name])
        return _make_section(ctx, child, name, outcomes)
    with tracer.start_as_current_span(SECTION_SPAN, attributes=SECTION_ATTRIBUTES[name], record_exception=False,
                                      set_status_on_exception=False) as span:
        outcomes = await ctx.answers(child.a_number, child.max_age, SECTION_SOURCES[name])
        return _traced_section(span, ctx, child, name, outcomes)


# each section span's attributes, made once: the section's name and sources (never the child's A-number)
SECTION_ATTRIBUTES = {name: {"ucgw.section": name, "ucgw.section.sources": [s.value for s in sources]}
                      for name, sources in SECTION_SOURCES.items()}


def _build_section(ctx: RequestContext, child: Child, name: str, outcomes: list[Fetched | SourceError]) -> Any:
    """`_make_section`, inside a section span when the request is traced."""
    tracer = recorded(ctx.services.tracer)
    if tracer is None:
        return _make_section(ctx, child, name, outcomes)
    with tracer.start_as_current_span(SECTION_SPAN, attributes=SECTION_ATTRIBUTES[name], record_exception=False,
                                      set_status_on_exception=False) as span:
        return _traced_section(span, ctx, child, name, outcomes)


def _traced_section(span: Any, ctx: RequestContext, child: Child, name: str,
                    outcomes: list[Fetched | SourceError]) -> Any:
    """`_make_section`, with the section's outcome and its records' cache results on `span`."""
    span.set_attribute("ucgw.cache.results", [o.cache_status if isinstance(o, Fetched) else "ERROR"
                                              for o in outcomes])
    try:
        section = _make_section(ctx, child, name, outcomes)
    except GraphQLError as exc:
        span.set_attribute("ucgw.outcome", "error")
        code = (exc.extensions or {}).get("code")
        if isinstance(code, str):
            span.set_attribute("ucgw.error.code", code)
        span.set_status(ERROR)
        raise
    span.set_attribute("ucgw.outcome", "ok")
    return section


def _make_section(ctx: RequestContext, child: Child, name: str, outcomes: list[Fetched | SourceError]) -> Any:
    """Build section `name` from its sources' outcomes; a failed source or a record of the wrong shape is a
    source error, and such a record is dropped from the cache (the next request asks the source again
    instead of being refused from the cache until the TTL ends). The outcome (returned or failed) goes to
    the request's audit recorder; when the section changes by time alone goes to its answer recording.
    """
    sources, make = SECTION_SOURCES[name], SECTION_BUILDERS[name]
    reads = ctx.reads
    try:
        fetched: list[Fetched] = []
        for outcome in outcomes:
            if isinstance(outcome, SourceError):
                raise source_error(outcome)
            fetched.append(outcome)
        try:
            section = make(*fetched)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            culprit = _culprit(sources, fetched, make)
            ctx.services.fetchers[culprit].invalidate(child.a_number)
            raise source_error(bad_response(culprit, exc)) from None
    except GraphQLError:
        reads.section_done(name, child.a_number, ok=False)
        raise
    reads.section_done(name, child.a_number, ok=True)
    if ctx.answer is not None:
        ctx.answer.changes_at(sections.changes_at(section))
    return section


def _culprit(sources: tuple[Source, ...], fetched: list[Fetched], make: Callable[..., Any]) -> Source:
    """For a multi-source section, the first source whose record alone breaks the builder."""
    if len(sources) == 1:
        return sources[0]
    for i, source in enumerate(sources):
        probe = [f if j == i else Fetched(f.source, None, f.fetched_at, f.cache_status) for j, f in enumerate(fetched)]
        try:
            make(*probe)
        except (KeyError, TypeError, ValueError, AttributeError):
            return source
    return sources[0]


def _section_field(name: str, description: str, section: Any) -> Any:
    """A section field of `Child` (GraphQL name `name`): restricted to its capability when
    `SECTION_CAPABILITY` names one (documented as such), else completed inline when its records are at hand."""

    def resolve(self: Child, info: Info[RequestContext, None]) -> Any:
        return _section(info, self)

    resolve.__annotations__["return"] = section | None
    capability = SECTION_CAPABILITY.get(name)
    if capability is not None:
        return strawberry.field(resolver=resolve, **capability_field(description, capability))
    return strawberry.field(resolver=resolve, description=description, metadata=computed_inline(_at_hand(name)))


# Every field of Child (and below) must be a function of the records read through the request's
# RequestContext (`ready`/`fetch`/`answers`) and of the caller's role and scope: the answer store
# (gateway/http/answer_memo.py) repeats an answer while those records are unchanged. A field that reads other
# state (a database, the clock beyond Provenance's open values) must set `info.context.answer.failed`.
@strawberry.type(description="One child's status across ORR, ICE and EOIR, section by section.")
class Child:
    a_number: strawberry.ID = strawberry.field(description="Canonical A-number: A + 9 digits.")
    max_age: strawberry.Private[float | None] = None

    identity = _section_field("identity", "Name and birth data (ICE, with ORR's case id).", Identity)
    location = _section_field("location", "Where the child is now, derived from ORR and ICE.", Location)
    sponsor = _section_field("sponsor", "Who the child was released to (ORR); null when not released.", Sponsor)
    follow_up_call = _section_field("followUpCall", "ORR's 30-day safety and well-being call; null before one is due.",
                                    FollowUpCall)
    nta = _section_field("nta", "The Notice to Appear as ICE records it.", NoticeToAppear)
    hearing = _section_field("hearing", "The immigration-court case and hearings (EOIR).", HearingStatus)
    addresses_on_file = _section_field("addressesOnFile",
                                       "The address each agency has on file for the child or sponsor.",
                                       list[AgencyAddress])

    @strawberry.field(description="Where ORR, ICE and EOIR disagree or hold unusable data, each with a severity "
                                  "and what each source says (see resolvers/discrepancies.py).")
    def discrepancies(self, info: Info[RequestContext, None]) -> list[Discrepancy] | None:
        section = _section(info, self)
        hidden = hidden_kinds(info.context.principal)
        if not hidden:
            return section  # type: ignore[no-any-return]
        if inspect.isawaitable(section):
            return _visible_later(section, hidden)  # type: ignore[return-value]
        return [d for d in section if d.kind not in hidden]


async def _visible_later(section: Awaitable[list[Discrepancy]],
                         hidden: frozenset[DiscrepancyKind]) -> list[Discrepancy]:
    return [d for d in await section if d.kind not in hidden]


def selected_names(selection_sets: Iterable[SelectionSetNode | None],
                   fragments: Mapping[str, FragmentDefinitionNode]) -> set[str]:
    """Names of the fields selected directly in `selection_sets`, through fragments.

    A shallow walk of the query's syntax tree: strawberry's `info.selected_fields` converts the whole
    sub-tree (arguments and directives of every nested field) and cost more than the rest of a cached
    answer. Validation has already refused fragment cycles; `seen` guards anyway.
    """
    names: set[str] = set()
    seen: set[str] = set()

    def walk(selection_set: SelectionSetNode | None) -> None:
        for sel in selection_set.selections if selection_set is not None else ():
            if isinstance(sel, FieldNode):
                names.add(sel.name.value)
            elif isinstance(sel, InlineFragmentNode):
                walk(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                fragment = fragments.get(sel.name.value)
                walk(fragment.selection_set if fragment is not None else None)

    for selection_set in selection_sets:
        walk(selection_set)
    return names


def needed_sources(info: Info[RequestContext, None]) -> list[Source]:
    """The sources the child selection of the current field reads, in a stable order.

    Sections the caller may not read are left out: a refused section costs no backend call.
    """
    raw = graphql_resolve_info(info)
    names = selected_names((node.selection_set for node in raw.field_nodes), raw.fragments)
    names = {n for n in names if n not in SECTION_CAPABILITY or allowed(info, SECTION_CAPABILITY[n])}
    wanted = {s for name in names for s in SECTION_SOURCES.get(name, ())}
    return [s for s in Source if s in wanted]


async def resolve_child(info: Info[RequestContext, None], a_number: str, max_age: float | None,
                        sources: list[Source]) -> Child | None:
    """A Child when any system knows the A-number (or one could not answer); None when none does.

    The sources the selection needs are asked first; the others only when those have no record.
    """
    ctx = info.context
    tracer = recorded(ctx.services.tracer)
    if tracer is not None:
        with tracer.start_as_current_span(CHILD_SPAN, attributes={"ucgw.sources": [s.value for s in sources]}):
            return await _resolve_child(ctx, a_number, max_age, sources)
    return await _resolve_child(ctx, a_number, max_age, sources)


async def _resolve_child(ctx: RequestContext, a_number: str, max_age: float | None,
                         sources: list[Source]) -> Child | None:
    async def known(group: list[Source]) -> bool:
        return _any_known(await ctx.answers(a_number, max_age, group))

    if sources and await known(sources):
        return Child(a_number=strawberry.ID(a_number), max_age=max_age)
    rest = [s for s in Source if s not in sources]
    if rest and await known(rest):
        return Child(a_number=strawberry.ID(a_number), max_age=max_age)
    return None


def _any_known(outcomes: Sequence[Fetched | SourceError | None]) -> bool:
    """True when a source has a record of the child, or could not answer (the child may exist)."""
    return any(isinstance(o, SourceError) or (o is not None and o.record is not None) for o in outcomes)


async def prefetch_children(info: Info[RequestContext, None], a_numbers: Sequence[str], max_age: float | None,
                            sources: list[Source]) -> None:
    """Load what `resolve_child` will read for each of `a_numbers`, for all of them at once.

    One wait for every source's batch (and, for children none of those sources knows, one more for the
    other sources), so that each child's own reads then find their answers ready: a list of 100 costs
    a handful of waits instead of three per child.
    """
    ctx = info.context
    tracer = recorded(ctx.services.tracer)
    if tracer is not None:
        with tracer.start_as_current_span(CHILD_SPAN, attributes={"ucgw.sources": [s.value for s in sources],
                                                                  "ucgw.children": len(a_numbers)}):
            await _prefetch_children(ctx, a_numbers, max_age, sources)
            return
    await _prefetch_children(ctx, a_numbers, max_age, sources)


async def _prefetch_children(ctx: RequestContext, a_numbers: Sequence[str], max_age: float | None,
                             sources: list[Source]) -> None:
    await ctx.prefetch(a_numbers, max_age, sources)
    rest = [s for s in Source if s not in sources]
    if rest:
        unknown = [a for a in a_numbers
                   if not (sources and _any_known([ctx.ready(s, a, max_age) for s in sources]))]
        if unknown:
            await ctx.prefetch(unknown, max_age, rest)
