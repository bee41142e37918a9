"""Introspection in production: answered for callers whose role holds `schema:read` (caseworkers, auditors,
operators: GraphiQL's docs, explorer and completion need it), refused for everyone else (partners work from
trusted documents). Outside production every caller may introspect, as before."""

from __future__ import annotations

from collections.abc import Iterator

from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension

from rules.roles import Capability


class IntrospectionByCapability(SchemaExtension):
    """Adds graphql-core's `NoSchemaIntrospectionCustomRule` to validation unless the caller holds
    `schema:read`; `__typename` stays allowed. Must run before the validation itself (`ValidationByText`)."""

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        principal = getattr(ctx.context, "principal", None)
        if principal is None or not principal.can(Capability.SCHEMA_READ):
            ctx.validation_rules = (*ctx.validation_rules, NoSchemaIntrospectionCustomRule)
        yield
