"""Numbers as clients send them in text: ASCII digits only.

`str.isdigit` and `int` also take other scripts' digits ('٤') and superscripts ('²', which `int`
then refuses), and `int` takes any length, which SQLite's 64-bit integers do not.
"""

from __future__ import annotations

SQLITE_MAX_INT = 2**63 - 1


def ascii_int(text: str, maximum: int = SQLITE_MAX_INT) -> int | None:
    """`text` as a non-negative integer when it is 1 to 19 ASCII digits and at most `maximum`; else None."""
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= maximum else None
