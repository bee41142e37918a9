"""Walking the world: the ICE listing page by page (a_number order), ORR and EOIR batch-read per page.

Every child has an ICE subject, so the ICE listing enumerates the children. Listed ICE records are put
into the cache and primed into the request's ICE DataLoader, and each page's ORR and EOIR records are
prefetched into the request (a `Child` built from a row reuses them all), so each page costs one listing
call and at most one batch call per other source. A full walk lists and joins a few pages ahead of the
one it works on. A full scan runs at most once per request and freshness bound, and
is shared by the requests that ask for it at the same time; what is computed over its rows hands the event
loop to other requests every few milliseconds (`in_turns`), so a lookup never waits for a whole count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from graphql import GraphQLError

from resolvers.context import RequestContext
from resolvers.errors import MAX_AGE_TOO_LOW, SCANS_BUSY, source_error
from sources.breaker import CLOSED
from sources.errors import SOURCE_TIMEOUT, SourceError
from sources.fetcher import Fetched
from sources.systems import Source
from sync.services import Services
from sync.shared_runs import NoSlot

ORR, ICE, EOIR = Source.ORR, Source.ICE, Source.EOIR
SCAN_PAGE = 500  # the backends' limit per listing page and per batch call
TURN_SECONDS = 0.005  # the longest stretch of work over a scan's rows before other requests get the loop
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row:
    """One child's records as one scan saw them (`orr`/`eoir` None when the scan did not read them)."""

    ice: Fetched
    orr: Fetched | None = None
    eoir: Fetched | None = None

    @property
    def a_number(self) -> str:
        """The child's canonical A-number."""
        return str(self.ice.record["a_number"])  # type: ignore[index]

    @property
    def field_office(self) -> str | None:
        """ICE's responsible field office."""
        return (self.ice.record or {}).get("field_office")


def extend_deadline(ctx: RequestContext) -> None:
    """Give an oversight request the scan deadline instead of the (shorter) per-request one."""
    ctx.deadline = max(ctx.deadline, time.monotonic() + ctx.services.settings.scan_deadline_seconds)


async def _list(ctx: RequestContext, cursor: str | None, limit: int, max_age: float | None,
                filters: dict[str, str]) -> tuple[list[Fetched], str | None]:
    try:
        listed, next_cursor = await ctx.services.fetchers[ICE].list_page(cursor, limit, ctx.deadline, **filters)
    except SourceError as exc:
        raise source_error(exc) from None
    loader = ctx.loader(ICE, max_age)
    for f in listed:
        loader.prime(f.record["a_number"], f)  # type: ignore[index]
    return listed, next_cursor


async def _join(ctx: RequestContext, listed: list[Fetched], max_age: float | None,
                sources: Iterable[Source]) -> list[Row]:
    a_numbers = [f.record["a_number"] for f in listed]  # type: ignore[index]
    wanted = [s for s in (ORR, EOIR) if s in set(sources)]
    if wanted:
        await ctx.prefetch(a_numbers, max_age, wanted)  # one batch call per source, no load per A-number
    by_source = {s: _answered(ctx, s, a_numbers, max_age) for s in wanted}
    orr, eoir = by_source.get(ORR), by_source.get(EOIR)
    return [Row(ice=f, orr=orr[i] if orr else None, eoir=eoir[i] if eoir else None)
            for i, f in enumerate(listed)]


def _answered(ctx: RequestContext, source: Source, a_numbers: list[str], max_age: float | None) -> list[Fetched]:
    """The prefetched records of `a_numbers`; a source that failed for any of them fails the page."""
    out = []
    for a in a_numbers:
        outcome = ctx.ready(source, a, max_age)
        if not isinstance(outcome, Fetched):  # a SourceError (`prefetch` leaves every answer at hand)
            raise source_error(outcome if isinstance(outcome, SourceError) else
                               SourceError(source, SOURCE_TIMEOUT, "no answer", retryable=False))
        out.append(outcome)
    return out


async def read_page(ctx: RequestContext, cursor: str | None, limit: int, max_age: float | None,
                    sources: Iterable[Source] = (), filters: dict[str, str] | None = None
                    ) -> tuple[list[Row], str | None]:
    """The listing page at the source's `cursor` (None: the first), joined with `sources`, and the next
    page's cursor (None at the end)."""
    listed, next_cursor = await _list(ctx, cursor, limit, max_age, filters or {})
    return await _join(ctx, listed, max_age, sources), next_cursor


@dataclass(frozen=True, slots=True)
class Page:
    """One listing page of a walk: its rows, the source cursor that returned it, whether it is the last."""

    rows: list[Row]
    cursor: str | None
    last: bool


async def walk(ctx: RequestContext, cursor: str | None, max_age: float | None,
               sources: Iterable[Source] = (ORR, EOIR), filters: dict[str, str] | None = None,
               ahead: int = 0) -> AsyncIterator[Page]:
    """Listing pages from the source's `cursor` to the end, in order. With `ahead`, up to that many further
    pages are listed and joined while the caller works on one: the listing (whose cursor allows no other
    order) is then the only chain of backend calls one after another, and each page's join overlaps it."""
    sources = tuple(sources)
    filters = filters or {}
    if ahead < 1:
        while True:
            listed, next_cursor = await _list(ctx, cursor, SCAN_PAGE, max_age, filters)
            last = next_cursor is None or not listed
            yield Page(await _join(ctx, listed, max_age, sources), cursor, last)
            if last:
                return
            cursor = next_cursor
    queue: asyncio.Queue[tuple[asyncio.Future[list[Row]], str | None, bool]] = asyncio.Queue()
    room = asyncio.Semaphore(ahead)  # pages listed that the reader has not taken yet

    async def produce(cursor: str | None) -> None:
        previous: asyncio.Future[list[Row]] | None = None
        while True:
            await room.acquire()
            joined: asyncio.Future[list[Row]]
            try:
                listed, next_cursor = await _list(ctx, cursor, SCAN_PAGE, max_age, filters)
            except Exception as exc:  # the walk's reader raises it where the page would have been
                joined = asyncio.get_running_loop().create_future()
                joined.set_exception(exc)
                queue.put_nowait((joined, cursor, True))
                return
            last = next_cursor is None or not listed
            if previous is not None and not _closed(ctx, sources):
                await asyncio.wait([previous])  # a recovering source lets one call through: one page at a time
            joined = previous = asyncio.ensure_future(_join(ctx, listed, max_age, sources))
            queue.put_nowait((joined, cursor, last))
            if last:
                return
            cursor = next_cursor

    producer = asyncio.ensure_future(produce(cursor))
    try:
        while True:
            joined, page_cursor, last = await queue.get()
            room.release()
            yield Page(await joined, page_cursor, last)
            if last:
                return
    finally:
        producer.cancel()
        while not queue.empty():
            _abandon(queue.get_nowait()[0])


def _closed(ctx: RequestContext, sources: Iterable[Source]) -> bool:
    """True when every source a join reads has its circuit breaker closed (no call of it would be refused)."""
    return all(ctx.services.fetchers[s].client.breaker.state == CLOSED for s in sources if s is not ICE)


def _abandon(joined: asyncio.Future[Any]) -> None:
    """Stop a page's join that nobody will read; an error it already ended with is not reported as unseen."""
    joined.cancel()
    if joined.done() and not joined.cancelled():
        joined.exception()


async def in_turns(rows: Iterable[T], turn_seconds: float = TURN_SECONDS) -> AsyncIterator[T]:
    """`rows` one by one, handing the event loop to other requests after each `turn_seconds` of work."""
    clock = time.perf_counter
    end = clock() + turn_seconds
    for row in rows:
        yield row
        if clock() >= end:
            await asyncio.sleep(0)
            end = clock() + turn_seconds


@dataclass(frozen=True, slots=True)
class Scan:
    """Every child's records as one walk saw them, the warnings of that walk (stale values served), when it
    had read them all, and what requests sharing it computed over it (`shared_result`)."""

    rows: list[Row]
    warnings: list[dict[str, str]]
    ended_at: datetime
    memo: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)


async def _scan_all(services: Services, max_age: float | None) -> Scan:
    """One walk of every child, in a context of its own: it belongs to no single request, since every
    request asking for the same walk while it runs shares it."""
    ctx = RequestContext(services=services, deadline=time.monotonic() + services.settings.scan_deadline_seconds)
    rows: list[Row] = []
    async for page in walk(ctx, None, max_age, ahead=services.settings.scan_pages_ahead):
        rows.extend(page.rows)
    return Scan(rows, ctx.warnings, datetime.now(UTC))


async def _shared_scan(ctx: RequestContext, max_age: float | None) -> Scan:
    services = ctx.services
    owner = ctx.principal.rate_key if ctx.principal is not None else None  # the token's subject or key's client
    try:
        scan = await services.scans.run(max_age, lambda: _scan_all(services, max_age), ctx.deadline, max_lag=max_age,
                                        owner=owner)
    except NoSlot as exc:
        raise GraphQLError(f"{exc}; try again shortly", extensions={"code": SCANS_BUSY}) from None
    except TimeoutError:
        raise GraphQLError("the walk of every child did not end within the deadline",
                           extensions={"code": SOURCE_TIMEOUT}) from None
    for warning in scan.warnings:
        if warning not in ctx.warnings:
            ctx.warnings.append(warning)
    return scan


def min_scan_age_error(ctx: RequestContext, max_age: float | None) -> GraphQLError | None:
    """MAX_AGE_TOO_LOW when `max_age` is below `min_scan_max_age_seconds`: a fresh walk of every child per
    request would defeat sharing and let one caller keep every scan slot busy, so the bound is refused
    rather than silently raised."""
    least = ctx.services.settings.min_scan_max_age_seconds
    if max_age is None or max_age >= least:
        return None
    return GraphQLError(f"maxAgeSeconds must be at least {least:g} for a query over every child (it walks every "
                        f"record; a fresher walk per request would starve the others)",
                        extensions={"code": MAX_AGE_TOO_LOW, "min": least})


async def request_scan(ctx: RequestContext, max_age: float | None) -> Scan:
    """The request's walk of every child: one per request and freshness bound, joined by the requests that
    ask for it while it runs (one that started at most `max_age` seconds before them), with at most
    `max_concurrent_scans` different walks at once and one new walk per caller at a time
    (`sync.shared_runs`). A `max_age` below `min_scan_max_age_seconds` is MAX_AGE_TOO_LOW."""
    error = min_scan_age_error(ctx, max_age)
    if error is not None:
        raise error
    task = ctx.scans.get(max_age)
    if task is None:
        extend_deadline(ctx)
        task = ctx.scans[max_age] = asyncio.ensure_future(_shared_scan(ctx, max_age))
    return await asyncio.shield(task)  # type: ignore[no-any-return]


async def full_scan(ctx: RequestContext, max_age: float | None) -> list[Row]:
    """Every child with all three records (the rows of `request_scan`)."""
    return (await request_scan(ctx, max_age)).rows


async def shared_result(scan: Scan, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
    """`compute()` once per walk and `key`: the requests sharing a walk share what they compute over it.
    `key` must hold everything the result depends on besides the walk's rows (times, the caller's scope)."""
    future = scan.memo.get(key)
    if future is None:
        future = scan.memo[key] = asyncio.ensure_future(compute())
    return await asyncio.shield(future)  # type: ignore[no-any-return]
