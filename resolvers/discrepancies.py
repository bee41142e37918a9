"""A child's cross-agency discrepancies as GraphQL objects: rules.discrepancies judges them, this module
shows each with its sources' claims (and their provenance)."""

from __future__ import annotations

from typing import Any

import strawberry

from resolvers.evidence import Severity, SourceClaim, claims_of
from rules import discrepancies as discrepancy_rules
from rules.discrepancies import DiscrepancyKind
from rules.roles import Capability
from sources.fetcher import Fetched

strawberry.enum(DiscrepancyKind, description="A kind of cross-agency data-quality fault.")  # the rules' own enum


@strawberry.type(description="Records of different agencies that disagree, or a record that cannot be used.")
class Discrepancy:
    kind: DiscrepancyKind
    severity: Severity
    detail: str = strawberry.field(description="What is wrong, in words (never quotes personal data).")
    claims: list[SourceClaim] = strawberry.field(description="What each source involved says.")


# What knowing that a discrepancy of a kind exists needs (security #3: a derived value needs every capability of
# the values it comes from). Name and birth-date mismatches are derived from names and birth dates (a MEDIUM
# DOB_MISMATCH even tells that day and month are swapped); FIELD_OFFICE_MISMATCH from the sponsor's address (its
# existence would tell whether the sponsor lives in ICE's office's area). ADDRESS_MISMATCH and MISSING_ADDRESS
# are the one exception, on purpose: their kind and severity stay visible (a child may miss a hearing), their
# claims do not.
KIND_REQUIRES: dict[DiscrepancyKind, Capability] = {
    DiscrepancyKind.NAME_MISMATCH: Capability.CHILD_IDENTITY,
    DiscrepancyKind.DOB_MISMATCH: Capability.CHILD_IDENTITY,
    DiscrepancyKind.FIELD_OFFICE_MISMATCH: Capability.CHILD_CONTACT,
}


def hidden_kinds(principal: Any) -> frozenset[DiscrepancyKind]:
    """The discrepancy kinds whose existence the caller (a `Principal`, or None) may not learn."""
    return frozenset(k for k, needed in KIND_REQUIRES.items() if principal is None or not principal.can(needed))


def detect(orr: Fetched, ice: Fetched, eoir: Fetched) -> list[Discrepancy]:
    """Every discrepancy among one child's three records, in DiscrepancyKind order."""
    return [Discrepancy(kind=f.kind, severity=f.severity, detail=f.detail, claims=claims_of(f.evidence, orr, ice, eoir))
            for f in discrepancy_rules.detect(orr.record, ice.record, eoir.record)]
