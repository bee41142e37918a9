"""GraphQL errors with stable `extensions.code` values."""

from __future__ import annotations

from graphql import GraphQLError

from sources.errors import SourceError

BAD_USER_INPUT = "BAD_USER_INPUT"
MAX_AGE_TOO_LOW = "MAX_AGE_TOO_LOW"  # maxAgeSeconds of a query over every child below min_scan_max_age_seconds
SCANS_BUSY = "SCANS_BUSY"  # every slot for a walk of all children was taken until the deadline


def bad_input(message: str) -> GraphQLError:
    """An argument the caller must correct."""
    return GraphQLError(message, extensions={"code": BAD_USER_INPUT})


def source_error(err: SourceError) -> GraphQLError:
    """A backend that gave no usable answer, with its code and name."""
    return GraphQLError(err.message, extensions={"code": err.code, "source": err.source.value})
