"""A child's cross-agency discrepancies as GraphQL objects: rules.discrepancies judges them, this module
shows each with its sources' claims (and their provenance)."""

from __future__ import annotations

import strawberry

from gateway.fetcher import Fetched
from resolvers.evidence import Severity, SourceClaim, claims_of
from rules import discrepancies as discrepancy_rules
from rules.discrepancies import DiscrepancyKind

strawberry.enum(DiscrepancyKind, description="A kind of cross-agency data-quality fault.")  # the rules' own enum


@strawberry.type(description="Records of different agencies that disagree, or a record that cannot be used.")
class Discrepancy:
    kind: DiscrepancyKind
    severity: Severity
    detail: str = strawberry.field(description="What is wrong, in words (never quotes personal data).")
    claims: list[SourceClaim] = strawberry.field(description="What each source involved says.")


def detect(orr: Fetched, ice: Fetched, eoir: Fetched) -> list[Discrepancy]:
    """Every discrepancy among one child's three records, in DiscrepancyKind order."""
    return [Discrepancy(kind=f.kind, severity=f.severity, detail=f.detail, claims=claims_of(f.evidence, orr, ice, eoir))
            for f in discrepancy_rules.detect(orr.record, ice.record, eoir.record)]
