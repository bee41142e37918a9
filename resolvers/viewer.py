"""The `viewer` query: who the caller is and what its role may do, so a client (GraphiQL's list of
ready-made operations) can offer only what the caller may run. It reveals nothing the caller's own
credential does not already say."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers.context import RequestContext
from rules.roles import ROLE_CAPABILITIES


@strawberry.type(description="The authenticated caller of this request.")
class Viewer:
    subject: str = strawberry.field(description="The token's `sub`, or the API key's client name.")
    role: str
    capabilities: list[str] = strawberry.field(description="What the role grants, e.g. child:status, "
                                                           "schema:read (sorted).")
    field_offices: list[str] | None = strawberry.field(
        description="The field offices the caller is limited to, in the form names are compared in (lower "
                    "case, no dots or accents); null: every office.")


@strawberry.type
class ViewerQuery:
    """Who is asking."""

    @strawberry.field(description="The caller: subject, role, capabilities and field-office scope. Needs only "
                                  "valid credentials.")
    def viewer(self, info: Info[RequestContext, None]) -> Viewer | None:
        principal = info.context.principal
        if principal is None:
            return None
        capabilities = sorted(c.value for c in ROLE_CAPABILITIES.get(principal.role, frozenset()))
        offices = sorted(principal.field_offices) if principal.field_offices is not None else None
        return Viewer(subject=principal.subject, role=principal.role, capabilities=capabilities,
                      field_offices=offices)
