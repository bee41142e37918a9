"""Field-level authorization: strawberry permission classes driven by capabilities (`rules.roles`).

Put `extensions=requires(Capability.X)` (or use `restricted_field`) on any field: a caller whose role
lacks X gets null there and a FORBIDDEN error on that path; the resolver never runs, so the value is
never fetched into the response. Restricted fields must be nullable (strawberry refuses otherwise only
at run time, so keep them `T | None`). Denials are reported to the request's audit recorder.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from resolvers.errors import source_error
from rules.roles import ROLE_CAPABILITIES, Capability, Principal
from sources.errors import FORBIDDEN, SourceError
from sources.fetcher import Fetched
from sources.systems import Source


def forbidden(message: str, **facts: Any) -> GraphQLError:
    """A FORBIDDEN error (never includes the withheld value)."""
    return GraphQLError(message, extensions={"code": FORBIDDEN, **facts})


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
    """None when the caller may see this child's field office; else why not.

    Uses the request's ICE DataLoader, so when ICE was fetched for the query (the caller adds ICE to the
    sources it asks first) this costs no extra backend call. An unknown office is outside every scope.
    """
    principal = principal_of(info)
    if principal is None or principal.field_offices is None:
        return None
    outcome = await info.context.fetch(Source.ICE, a_number, max_age)
    if isinstance(outcome, SourceError):
        return source_error(outcome)
    office = (outcome.record or {}).get("field_office") if isinstance(outcome, Fetched) else None
    if principal.covers_office(office):
        return None
    return forbidden("not allowed: this child's responsible field office is outside your scope")
