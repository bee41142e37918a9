"""Paging lists that hold zero or more items per child (alerts, discrepancies, backlog entries).

Items are ordered by (A-number, item index within the child). A page walks the ICE listing from the
cursor's child, joining ORR and EOIR per listing page, until it holds `first` items; `totalCount` counts
over the request's single full scan.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from strawberry.types import Info

from resolvers.child import selected_names
from resolvers.context import RequestContext
from resolvers.pagination import Connection, Edge, PageInfo, Position
from resolvers.permissions import principal_of
from resolvers.scan import Row, full_scan, in_turns, walk
from resolvers.upstream.raw_info import graphql_resolve_info
from rules.roles import Principal
from sources.errors import SOURCE_BAD_RESPONSE

T = TypeVar("T")
N = TypeVar("N")
SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)
PAGE_FIELDS = frozenset({"edges", "pageInfo"})


def scoped_items(principal: Principal | None, derive: Callable[[Row], Sequence[T]],
                 bad_shape: Callable[[], None]) -> Callable[[Row], Sequence[T]]:
    """`derive` limited to `principal`'s field-office scope (None: every office); a record of the wrong
    shape is left out, and `bad_shape` called (a warning: never silently)."""
    def run(row: Row) -> Sequence[T]:
        if principal is not None and not principal.covers_office(row.field_office):
            return ()
        try:
            return derive(row)
        except SHAPE_ERRORS:
            bad_shape()
            return ()
    return run


def safe_items(info: Info[RequestContext, None], derive: Callable[[Row], Sequence[T]]) -> Callable[[Row], Sequence[T]]:
    """`derive` limited to the caller's field-office scope, a record of the wrong shape left out with a
    warning on the request."""
    return scoped_items(principal_of(info), derive, lambda: warn_shape(info.context))


def warn_shape(ctx: RequestContext) -> None:
    """Warn the request, once, that records of the wrong shape were left out of a list or count."""
    if any(w.get("code") == SOURCE_BAD_RESPONSE and w.get("source") == "SCAN" for w in ctx.warnings):
        return
    ctx.warnings.append({"source": "SCAN", "code": SOURCE_BAD_RESPONSE,
                         "message": "records that do not fit the expected shape were left out of this list"})


def page_selected(info: Info[RequestContext, None]) -> bool:
    """True when the list field being resolved selects its `edges` or `pageInfo`. One asked only for its
    `totalCount` reads no page: no listing call for it, and no child recorded in the audit trail as listed."""
    raw = graphql_resolve_info(info)
    return bool(selected_names((n.selection_set for n in raw.field_nodes), raw.fragments) & PAGE_FIELDS)


def count_only(count_all: Callable[[], Awaitable[int]]) -> Connection[Any]:
    """A list's answer when only its `totalCount` is selected."""
    return Connection(edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None), count_all=count_all)


async def item_page(info: Info[RequestContext, None], kind: str, first: int, after: str | None,
                    max_age: float | None, derive: Callable[[Row], Sequence[T]],
                    node: Callable[[Row, T], N]) -> Connection[N]:
    """One page of a per-child item list (`derive` gives a child's items, `node` shows one)."""
    pos = info.context.cursors.decode(kind, after)
    items_of = safe_items(info, derive)
    if not page_selected(info):
        return count_only(lambda: count_items(info, max_age, items_of))
    edges: list[Edge[N]] = []
    more = False
    end: Position | None = pos
    async with contextlib.aclosing(walk(info.context, pos.listing if pos else None, max_age)) as pages:
        async for page in pages:
            async for row in in_turns(page.rows):
                if pos is not None and pos.passed(row.a_number):
                    continue
                for i, item in enumerate(items_of(row)):
                    if pos is not None and pos.passed(row.a_number, i):
                        continue
                    if len(edges) == first:
                        more = True
                        break
                    end = Position(row.a_number, i, page.cursor)
                    edges.append(Edge(cursor=info.context.cursors.encode(kind, end), node=node(row, item)))
                if more:
                    break
            if len(edges) == first and not more:
                more = not page.last  # full at a listing page's end: another page may hold more
            if more or page.last:
                break
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=more, end_cursor=info.context.cursors.encode(kind, end) if end else None),
        count_all=lambda: count_items(info, max_age, items_of),
    )


async def count_items(info: Info[RequestContext, None], max_age: float | None,
                      items_of: Callable[[Row], Sequence[Any]]) -> int:
    """How many items the whole list holds (over the request's full scan)."""
    return sum([len(items_of(row)) async for row in in_turns(await full_scan(info.context, max_age))])
