"""A-numbers as people type them, made canonical (`A` + 9 digits)."""

from __future__ import annotations

import re

CANONICAL = re.compile(r"A[0-9]{9}")  # the stored form (fullmatch)
_FORM = re.compile(r"[Aa]?([0-9]{8,9})")  # ASCII digits: `\d` takes any script's
EXPECTED = "an A-number: 8 or 9 digits, optionally prefixed by 'A' and grouped with spaces or hyphens " \
           "(e.g. A012345678, 012-345-678, A 12345678)"


class InvalidANumber(ValueError):
    """Text that is no accepted form of an A-number; the message says what was expected."""


def canonical_a_number(raw: str) -> str:
    """`A` + 9 digits for any accepted form; `InvalidANumber` otherwise."""
    compact = re.sub(r"[\s\-]", "", raw or "")
    match = _FORM.fullmatch(compact)
    if not match:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise InvalidANumber(f"{shown!r} is not a valid A-number; expected {EXPECTED}")
    return "A" + match.group(1).zfill(9)
