"""Apollo Federation v2 subgraph mode (`UCGW_FEDERATION=true`): the same schema, plus `_service { sdl }` and
`_entities`, with `Child` an entity `@key(fields: "aNumber")`, so an agency's router can join other
subgraphs' fields onto a child.

`_entities` reads each child exactly as the `child` query does (`_read_child`): it needs `child:status`,
field-office scope and field capabilities hold, an unknown or out-of-scope child is null or NOT_FOUND as
there, and each read is recorded in the audit trail as a read of that child. At most `max_children`
representations per call, as for `children`. `_service` answers any authenticated caller (a router fetches
the SDL to compose; introspection may be off in production).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.federation import Schema as FederationSchema
from strawberry.federation.schema import FederationAny
from strawberry.federation.schema_directives import Key
from strawberry.types import Info

from resolvers.anumber import canonical_a_number
from resolvers.child import Child, prefetch_children
from resolvers.context import RequestContext
from resolvers.errors import bad_input
from resolvers.permissions import forbidden, principal_of
from resolvers.schema import GatewaySchema, _read_child, _sources_for, build_schema
from resolvers.upstream.federation_entity import as_entity, entity
from rules.roles import Capability
from sources.settings import Settings

CHILD_KEY = "aNumber"


def _a_number(representation: Any) -> str | GraphQLError:
    """The canonical A-number of one `Child` representation, or why it is not one."""
    if not isinstance(representation, dict) or representation.get("__typename") != "Child":
        return bad_input('an entity representation must be {"__typename": "Child", "aNumber": "..."}')
    raw = representation.get(CHILD_KEY)
    if not isinstance(raw, str):
        return bad_input("a Child representation needs its aNumber as a string")
    try:
        return canonical_a_number(raw)
    except GraphQLError as exc:
        return exc


class SubgraphSchema(GatewaySchema, FederationSchema):
    """The gateway's schema as a federation subgraph; `_entities` reads children as `child` does."""

    async def entities_resolver(  # type: ignore[override]
        self, info: Info[RequestContext, None], representations: list[FederationAny]
    ) -> list[FederationAny]:
        wanted = [_a_number(r) for r in representations]
        numbers = [a for a in wanted if isinstance(a, str)]
        principal = principal_of(info)
        if principal is None or not principal.can(Capability.CHILD_STATUS):
            for a in numbers:
                info.context.reads.forbidden(a)
            raise forbidden("not allowed: Child entities need child:status (caseworker or partner)")
        limit = info.context.services.settings.max_children
        if len(representations) > limit:
            raise bad_input(f"_entities takes at most {limit} representations per call (got {len(representations)})")
        sources = _sources_for(info)
        await prefetch_children(info, numbers, None, sources)
        return [a if isinstance(a, GraphQLError) else entity(await _read_child(info, a, None, sources))
                for a in wanted]


def build_subgraph(settings: Settings) -> SubgraphSchema:
    """`build_schema`'s schema with `Child` as the one entity, served as a Federation v2 subgraph."""
    with as_entity(Child, Key(fields=CHILD_KEY)):  # type: ignore[arg-type]
        return build_schema(settings, SubgraphSchema)  # type: ignore[return-value]
