"""How place names, personal names and addresses are compared across agencies (their folded forms)."""

from __future__ import annotations

import unicodedata
from typing import Any

Record = dict[str, Any]
ADDRESS_KEYS = ("street", "unit", "city", "state", "zip")


def place_key(text: str) -> str:
    """The form place names (field offices, cities) are compared in: letter case, accents, dots and spacing
    ignored, so "St Paul", "st. paul" and "ST.  PAUL" are one office."""
    if not text.isascii():  # ASCII holds no accents: only other text is decomposed and stripped of marks
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    return " ".join(text.casefold().replace(".", " ").split())


def fold_text(text: str) -> str:
    """`text` as names and address parts are compared: as place names are, and hyphens as spaces."""
    return place_key(text.replace("-", " "))


def address_key(raw: Record) -> tuple[str, ...]:
    """A source address record folded for comparison (case, accents, punctuation and spacing ignored)."""
    return tuple(fold_text(str(raw.get(k) or "")) for k in ADDRESS_KEYS)


def same_address(a: Record | None, b: Record | None) -> bool:
    """True when both addresses are given and name the same place once folded."""
    if a is None or b is None:
        return False
    return address_key(a) == address_key(b)


def sponsor_address(orr: Record | None) -> Record | None:
    """The sponsor's current address in an ORR record; None when ORR records no release."""
    release = (orr or {}).get("release") or {}
    return (release.get("sponsor") or {}).get("address")
