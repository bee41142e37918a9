"""Who may read what: roles, the capabilities each grants, and the authenticated caller (`Principal`).

Fields declare the capability they need (see `resolvers.permissions`); roles map to capabilities here,
so a new role or a new restricted field is one line. Minimum necessary: a partner (e.g. a legal
service provider) sees case status, not who the child or sponsor is or where they live.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.places import place_key


class Capability(enum.StrEnum):
    """One kind of data or action a field or mutation may require."""

    CHILD_STATUS = "child:status"  # location status and placement, NTA, court case, hearings, court addresses
    CHILD_IDENTITY = "child:identity"  # names, date of birth, ORR case id
    CHILD_CONTACT = "child:contact"  # sponsor identity and phone, every address of a child or sponsor
    CHILD_WELFARE = "child:welfare"  # follow-up call details and safety information
    AUDIT_READ = "audit:read"  # the audit trail
    HEALTH_READ = "health:read"  # backend health (`sources`)
    HEALTH_ADMIN = "health:admin"  # the gateway's own counters (`gatewayHealth`, the admin listener's /readyz)
    SCHEMA_READ = "schema:read"  # introspection in production (GraphiQL's docs, explorer and completion)


CASEWORKER, PARTNER, AUDITOR, OPERATOR = "caseworker", "partner", "auditor", "operator"
ANONYMOUS = "anonymous"  # no credentials while UCGW_AUTH_REQUIRED=false: a role with no capability (not in ROLES)

ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    CASEWORKER: frozenset({
        Capability.CHILD_STATUS, Capability.CHILD_IDENTITY, Capability.CHILD_CONTACT, Capability.CHILD_WELFARE,
        Capability.HEALTH_READ, Capability.SCHEMA_READ,
    }),
    # partners work from trusted documents: no introspection in production
    PARTNER: frozenset({Capability.CHILD_STATUS, Capability.HEALTH_READ}),
    AUDITOR: frozenset({Capability.AUDIT_READ, Capability.HEALTH_READ, Capability.SCHEMA_READ}),
    OPERATOR: frozenset({Capability.HEALTH_READ, Capability.HEALTH_ADMIN, Capability.SCHEMA_READ}),
}
ROLES: tuple[str, ...] = tuple(ROLE_CAPABILITIES)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    subject: str  # JWT `sub`, or the API key's client name
    role: str
    client: str  # the calling application
    method: str  # "jwt", "api_key" or "anonymous"
    field_offices: frozenset[str] | None = None  # None: every office; else only these (as `place_key`s)
    trusted_documents_only: bool = False  # may run only its client's trusted documents (gateway/http/persisted.py)

    def can(self, capability: Capability) -> bool:
        """True when the caller's role grants `capability`."""
        return capability in ROLE_CAPABILITIES.get(self.role, frozenset())

    def covers_office(self, office: str | None) -> bool:
        """True when the caller may see children of field office `office` (unknown office: only if unscoped).

        With `scope_office` this is the one scope rule (security #14): pass it a child's `scope_office`.
        """
        if self.field_offices is None:
            return True
        return office is not None and place_key(office) in self.field_offices

    def covers(self, ice_record: Mapping[str, Any] | None) -> bool:
        """True when the caller may see the child whose ICE record this is (None: ICE has none)."""
        return self.covers_office(scope_office(ice_record))

    @property
    def rate_key(self) -> str:
        """The token bucket this caller draws from: one per partner app, one per person otherwise."""
        return f"app:{self.client}" if self.method == "api_key" else f"sub:{self.subject}"


def scope_office(ice_record: Mapping[str, Any] | None) -> str | None:
    """The field office whose scope a child is in: the office ICE holds responsible, as ICE names it.

    The one scope rule (security #14), for queries, lists, subscriptions and the audit trail alike: a child
    ICE assigns to no office (no record, or no office named) is in no office's scope, so only unscoped
    callers see it. Nothing else decides scope: an office routed from the sponsor's address would reveal
    where the sponsor lives to callers who may not read addresses.
    """
    office = ice_record.get("field_office") if isinstance(ice_record, Mapping) else None
    return office if isinstance(office, str) and office.strip() else None


def office_scope(raw: object) -> frozenset[str] | None:
    """A `field_offices` claim (list or comma-separated string) as a set of `place_key`s; None when absent."""
    if raw is None:
        return None
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple | set | frozenset) or not all(isinstance(i, str) for i in items):
        raise ValueError("field_offices must be a list of office names or a comma-separated string")
    return frozenset(place_key(i) for i in items if i.strip())

