"""The GraphQL schema: queries over children, assembled with the gateway's schema extensions."""

from __future__ import annotations

import asyncio
from typing import Any

import strawberry
from strawberry.extensions import MaxAliasesLimiter, ParserCache, QueryDepthLimiter, SchemaExtension
from strawberry.tools import merge_types
from strawberry.types import Info

from gateway.config import Settings
from resolvers.anumber import canonical_a_number
from resolvers.child import Child, needed_sources, resolve_child
from resolvers.context import RequestContext
from resolvers.errors import bad_input
from resolvers.health import SourceStatus, source_statuses


def _max_age(value: int | None) -> float | None:
    if value is not None and value < 0:
        raise bad_input("maxAgeSeconds must be 0 or more (0 = fetch from the source now)")
    return None if value is None else float(value)


@strawberry.type
class StatusQuery:
    """One child, a list of children, and the sources' health."""

    @strawberry.field(description="One child by A-number (any common typed form); null when no system knows it.")
    async def child(
        self,
        info: Info[RequestContext, None],
        a_number: strawberry.ID,
        max_age_seconds: int | None = strawberry.UNSET,
    ) -> Child | None:
        max_age = _max_age(None if max_age_seconds is strawberry.UNSET else max_age_seconds)
        canonical = canonical_a_number(str(a_number))
        return await resolve_child(info, canonical, max_age, needed_sources(info))

    @strawberry.field(description="Up to 100 children, in the order asked; null for A-numbers no system knows.")
    async def children(
        self,
        info: Info[RequestContext, None],
        a_numbers: list[strawberry.ID],
        max_age_seconds: int | None = strawberry.UNSET,
    ) -> list[Child | None]:
        limit = info.context.services.settings.max_children
        if len(a_numbers) > limit:
            raise bad_input(f"children takes at most {limit} A-numbers per call (got {len(a_numbers)})")
        max_age = _max_age(None if max_age_seconds is strawberry.UNSET else max_age_seconds)
        canonical = [canonical_a_number(str(a)) for a in a_numbers]
        sources = needed_sources(info)
        return list(await asyncio.gather(*(resolve_child(info, a, max_age, sources) for a in canonical)))

    @strawberry.field(description="Health of each system of record as the gateway sees it.")
    def sources(self, info: Info[RequestContext, None]) -> list[SourceStatus]:
        return source_statuses(info.context.services)


class ResponseWarnings(SchemaExtension):
    """Adds `extensions.warnings` when a section was served stale because its source failed."""

    def get_results(self) -> dict[str, Any]:
        ctx = self.execution_context.context
        warnings = getattr(ctx, "warnings", None)
        return {"warnings": list(warnings)} if warnings else {}


# Each feature contributes its root fields here (one class per feature module).
QUERIES: tuple[type, ...] = (StatusQuery,)
MUTATIONS: tuple[type, ...] = ()
SUBSCRIPTIONS: tuple[type, ...] = ()

Query = merge_types("Query", QUERIES)
Mutation = merge_types("Mutation", MUTATIONS) if MUTATIONS else None
Subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with its extensions; limits come from `settings` (defaults when None)."""
    settings = settings or Settings()
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            ParserCache(maxsize=256),
            QueryDepthLimiter(max_depth=settings.max_query_depth),
            MaxAliasesLimiter(max_alias_count=settings.max_aliases),
            ResponseWarnings,
        ],
    )
