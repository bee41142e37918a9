"""What a rule's finding rests on: which source's record says what, as plain text."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple


class Personal(enum.Enum):
    """The kind of personal data a quoted value holds (the GraphQL layer maps it to a capability)."""

    IDENTITY = "identity"  # names, birth dates
    CONTACT = "contact"  # addresses


class Evidence(NamedTuple):
    """One source's value for one record field, quoted as text (None: the source has no value). A tuple:
    whole-world counts make these per child, and a tuple is the cheapest immutable value to make."""

    source: str  # "ORR", "ICE" or "EOIR"
    field: str
    value: str | None
    personal: Personal | None = None


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
