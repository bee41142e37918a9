"""Evidence shared by alerts and discrepancies: which source says what, with its provenance."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from resolvers.permissions import FORBIDDEN, allowed
from resolvers.types import Provenance, SourceEnum
from rules.discrepancies import SEVERITY_RANK, Severity
from rules.evidence import Evidence, Personal
from rules.roles import Capability
from sources.fetcher import Fetched

__all__ = ["SEVERITY_RANK", "ClaimValueAllowed", "Severity", "SourceClaim", "claim", "claims_of", "day_text"]

strawberry.enum(Severity, description="How urgently a finding needs a person's attention.")  # the rules' own enum
PERSONAL_CAPABILITY = {Personal.IDENTITY: Capability.CHILD_IDENTITY, Personal.CONTACT: Capability.CHILD_CONTACT}


class ClaimValueAllowed(BasePermission):
    """A claim's value quoting a name, birth date or address needs the capability that field needs."""

    message = ("not allowed: your role may not read this value (names and birth dates need "
               f"{Capability.CHILD_IDENTITY.value}, addresses {Capability.CHILD_CONTACT.value})")
    error_extensions = {"code": FORBIDDEN}

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        """Allow values that need nothing more, or that the caller's role may read; report denials."""
        needed: Capability | None = getattr(source, "requires", None)
        if needed is None or allowed(info, needed):
            return True
        reads = getattr(info.context, "reads", None)
        if reads is not None:
            reads.denied(info, source, kwargs)
        return False


@strawberry.type(description="What one system of record says about a fact, and how fresh that is.")
class SourceClaim:
    source: SourceEnum  # type: ignore[valid-type]
    field: str = strawberry.field(description="The record field the value comes from, e.g. `nta.status`.")
    value: str | None = strawberry.field(
        description="The value as text (null: the source has no value). A value quoting a name or birth date "
                    "needs child:identity, an address child:contact; other roles get FORBIDDEN here.",
        extensions=[PermissionExtension(permissions=[ClaimValueAllowed()], use_directives=False)],
    )
    provenance: Provenance
    requires: strawberry.Private[Capability | None] = None  # what reading `value` needs beyond child status


def claim(fetched: Fetched, field: str, value: str | None, *, requires: Capability | None = None) -> SourceClaim:
    """A claim of `fetched`'s source about `field`; `requires` when the value is personal data."""
    return SourceClaim(source=fetched.source, field=field, value=value, provenance=Provenance.of(fetched),
                       requires=requires)


def claims_of(evidence: Iterable[Evidence], orr: Fetched, ice: Fetched, eoir: Fetched) -> list[SourceClaim]:
    """A rule's evidence as claims of the sources it names, each with its provenance."""
    return [claim(orr if e.source == "ORR" else ice if e.source == "ICE" else eoir, e.field, e.value,
                  requires=PERSONAL_CAPABILITY.get(e.personal)) for e in evidence]  # type: ignore[arg-type]


def day_text(value: date | None) -> str | None:
    """ISO form of a date, or None."""
    return value.isoformat() if value else None
