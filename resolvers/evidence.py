"""Evidence shared by alerts and discrepancies: which source says what, with its provenance."""

from __future__ import annotations

import enum
from datetime import date
from typing import Any

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from resolvers.permissions import FORBIDDEN, allowed
from resolvers.types import Provenance, SourceEnum
from rules.roles import Capability
from sources.fetcher import Fetched


@strawberry.enum(description="How urgently a finding needs a person's attention.")
class Severity(enum.Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


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


def address_text(raw: dict[str, Any] | None) -> str | None:
    """One-line form of a source address record with its quality, e.g. `12 Oak St, Apt 2, Dallas, TX 75201`."""
    if raw is None:
        return None
    parts = [raw.get("street"), raw.get("unit"), raw.get("city")]
    line = ", ".join(p for p in parts if p)
    tail = " ".join(p for p in (raw.get("state"), raw.get("zip")) if p)
    text = ", ".join(p for p in (line, tail) if p)
    quality = raw.get("quality") or "valid"
    return f"{text} [{quality}]" if text else f"[{quality}]"


def day_text(value: date | None) -> str | None:
    """ISO form of a date, or None."""
    return value.isoformat() if value else None
