"""The `fieldOffice` argument as the API takes it; the offices and routing themselves are rules.office_routing."""

from __future__ import annotations

from resolvers.errors import bad_input
from rules.office_routing import (
    FIELD_OFFICES,
    STATE_OFFICE,
    RoutingBasis,
    canonical_office,
    office_key,
    route_address,
    same_office,
)

__all__ = ["FIELD_OFFICES", "STATE_OFFICE", "RoutingBasis", "canonical_office", "office_arg", "office_key",
           "route_address", "same_office"]


def office_arg(name: str | None, arg: str = "fieldOffice") -> str | None:
    """A field-office argument as given (None: not given); BAD_USER_INPUT when it is empty or only spaces."""
    if name is not None and not name.strip():
        raise bad_input(f"{arg} must name a field office (e.g. \"San Antonio\") or be omitted, not be blank")
    return name
