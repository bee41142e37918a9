"""Field-office routing as the schema shows it: rules.office_routing routes the sponsor's current address."""

from __future__ import annotations

import strawberry

from resolvers.permissions import restricted_field
from resolvers.types import Provenance
from rules.office_routing import RoutingBasis, route_address
from rules.places import sponsor_address
from rules.roles import Capability
from sources.fetcher import Fetched

CONTACT = Capability.CHILD_CONTACT
RoutingBasisEnum = strawberry.enum(RoutingBasis, name="RoutingBasis",
                                   description="What a routing decision rests on.")


@strawberry.type(description="The office that should own a case against the office ICE has. The routed office, "
                             "its basis and whether it matches are derived from the sponsor's address, so they need "
                             "what the address needs.")
class FieldOfficeRouting:
    a_number: strawberry.ID
    routed_office: str | None = restricted_field(
        CONTACT, "ERO office whose area of responsibility covers the sponsor's current ORR address; null when the "
                 "child has no sponsor address with a state."
    )
    basis: RoutingBasisEnum | None = restricted_field(  # type: ignore[valid-type]
        CONTACT, "What the routed office rests on (which part of the sponsor's address).")
    current_office: str | None = strawberry.field(description="The office ICE records as responsible.")
    matches: bool | None = restricted_field(
        CONTACT, "Whether the routed and the current office agree; null when it cannot be routed.")
    provenance: list[Provenance]


def routing(a_number: str, orr: Fetched, ice: Fetched) -> FieldOfficeRouting:
    """Route the child from ORR's sponsor address and compare with ICE's field office."""
    route = route_address(sponsor_address(orr.record))
    current = (ice.record or {}).get("field_office")
    return FieldOfficeRouting(
        a_number=strawberry.ID(a_number), routed_office=route.office, basis=route.basis, current_office=current,
        matches=None if route.office is None else route.office == current,
        provenance=[Provenance.of(orr), Provenance.of(ice)],
    )
