"""A-number arguments: the rule (`rules/anumber.py`) with its refusal as the GraphQL BAD_USER_INPUT error."""

from __future__ import annotations

from resolvers.errors import bad_input
from rules import anumber


def canonical_a_number(raw: str) -> str:
    """`A` + 9 digits for any accepted form; a BAD_USER_INPUT GraphQL error otherwise."""
    try:
        return anumber.canonical_a_number(raw)
    except anumber.InvalidANumber as exc:
        raise bad_input(str(exc)) from None
