"""strawberry's `Info._raw_info`: the graphql-core `GraphQLResolveInfo` behind strawberry's `Info`.

Resolvers that read the operation's AST (the selected fields, the root field's arguments as written) need
graphql-core's info; strawberry keeps it in the private attribute `_raw_info` (strawberry 0.341)."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLResolveInfo
from strawberry.types import Info

UPSTREAM_FIELDS = ("_raw_info", "_field")  # strawberry's `Info` dataclass fields as written against (0.341)


def graphql_resolve_info(info: Info[Any, Any]) -> GraphQLResolveInfo:
    """graphql-core's resolve info of a strawberry `Info`."""
    return info._raw_info
