"""Field-level authorization: strawberry permission classes driven by capabilities (`rules.roles`).

Put `extensions=requires(Capability.X)` (or use `restricted_field`) on any field: a caller whose role
lacks X gets null there and a FORBIDDEN error on that path; the resolver never runs, so the value is
never fetched into the response. Restricted fields must be nullable (strawberry refuses otherwise only
at run time, so keep them `T | None`). Denials are reported to the request's audit recorder.

The rule for derived values (security #3): a value derived from others requires every capability of the
values it is derived from, and its field's description names that capability (`restricted_field` and
`documented` write it). So the sponsor's category (from the relationship), the office routed from the
sponsor's address, its basis and whether it matches ICE's office, and a claim quoting any of them need
child:contact, as the address does; the country of birth needs child:identity, as the birth date does.
The one exception, on purpose: that an address-mismatch alert or an address discrepancy exists (its kind and
severity, no values) stays visible to partners, since a legal-service provider must know that a child may
miss a hearing; its claims do not. A discrepancy kind whose existence is itself derived from a restricted
value (FIELD_OFFICE_MISMATCH: from the sponsor's address) is left out for callers without the capability
(`resolvers.discrepancies.KIND_REQUIRES`).
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from resolvers.errors import source_error
from rules.roles import ROLE_CAPABILITIES, Capability, Principal, scope_office
from sources.errors import FORBIDDEN, SourceError
from sources.fetcher import Fetched
from sources.systems import Source


def forbidden(message: str, **facts: Any) -> GraphQLError:
    """A FORBIDDEN error (never includes the withheld value)."""
    return GraphQLError(message, extensions={"code": FORBIDDEN, **facts})


NOT_FOUND = "NOT_FOUND"
NOT_IN_SCOPE = "no child with this A-number is in your field offices"


def not_in_scope() -> GraphQLError:
    """What a caller scoped to field offices gets for a child outside its scope and for an unknown A-number
    alike (security #7): one code and one message, so the answer does not tell whether the child exists."""
    return GraphQLError(NOT_IN_SCOPE, extensions={"code": NOT_FOUND})


def scoped(info: Info[Any, Any]) -> bool:
    """True when the request's caller is limited to some field offices."""
    principal = principal_of(info)
    return principal is not None and principal.field_offices is not None


def principal_of(info: Info[Any, Any]) -> Principal | None:
    """The authenticated caller of the request, if any."""
    return getattr(info.context, "principal", None)


def holds(context: Any, capability: Capability) -> bool:
    """True when the caller of the request with this context holds `capability`."""
    principal: Principal | None = getattr(context, "principal", None)
    return principal is not None and principal.can(capability)


def allowed(info: Info[Any, Any], capability: Capability) -> bool:
    """True when the request's caller holds `capability`."""
    return holds(info.context, capability)


class Requires(BasePermission):
    """Grants the field to roles holding one capability."""

    def __init__(self, capability: Capability) -> None:
        self.capability = capability
        self.message = f"not allowed: your role may not read this field (it needs {capability.value})"
        self.error_class = GraphQLError
        self.error_extensions = {"code": FORBIDDEN, "capability": capability.value}

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        """Allow, or report the denial to the audit recorder and refuse."""
        if allowed(info, self.capability):
            return True
        reads = getattr(info.context, "reads", None)
        if reads is not None:
            reads.denied(info, source, kwargs)
        return False


def requires(capability: Capability) -> list[FieldExtension]:
    """Field extensions restricting a field to roles holding `capability`."""
    return [PermissionExtension(permissions=[Requires(capability)], use_directives=False)]


def roles_with(capability: Capability) -> list[str]:
    """Roles granted `capability`, for documentation."""
    return [role for role, caps in ROLE_CAPABILITIES.items() if capability in caps]


def documented(description: str | None, capability: Capability) -> str:
    """`description` followed by who may read the field."""
    note = f"Requires {capability.value} ({', '.join(roles_with(capability))})."
    return f"{description} {note}" if description else note


def capability_field(description: str | None, capability: Capability) -> dict[str, Any]:
    """`strawberry.field` arguments restricting a field to `capability`, its description saying who may read it:
    the capability named once for both."""
    return {"description": documented(description, capability), "extensions": requires(capability)}


def restricted_field(capability: Capability, description: str | None = None) -> Any:
    """A `strawberry.field` for a plain attribute, restricted to `capability`, documented as such."""
    return strawberry.field(**capability_field(description, capability))


async def office_scope_error(info: Info[Any, Any], a_number: str, max_age: float | None) -> GraphQLError | None:
    """None when the caller may see this child (its `scope_office` is in the caller's scope); else why not:
    the source error when ICE cannot say, or `not_in_scope()` (as for an unknown A-number).

    Uses the request's ICE DataLoader, so when ICE was fetched for the query (the caller adds ICE to the
    sources it asks first) this costs no extra backend call. A child ICE assigns to no office is outside
    every scope.
    """
    principal = principal_of(info)
    if principal is None or principal.field_offices is None:
        return None
    outcome = await info.context.fetch(Source.ICE, a_number, max_age)
    if isinstance(outcome, SourceError):
        return source_error(outcome)
    if principal.covers_office(scope_office(outcome.record if isinstance(outcome, Fetched) else None)):
        return None
    reads = getattr(info.context, "reads", None)
    if reads is not None:  # a scope refusal is audited wherever it happens (queries, lists, subscriptions)
        reads.forbidden(a_number)
    return not_in_scope()
