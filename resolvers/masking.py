"""Masking of unexpected errors: a caller sees a code, never an exception's message or internals.

Errors the gateway raises on purpose (GraphQLError with a code: BAD_USER_INPUT, FORBIDDEN, SOURCE_*)
pass through; anything else (a bug, a library exception whose text may echo record values) becomes
"internal error" with code INTERNAL_SERVER_ERROR. Outside production the exception's type name is
kept in the message to help debugging; the message text never is.
"""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors caused by an exception the gateway did not raise as a GraphQL error."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def masked(error: GraphQLError, show_type: bool) -> GraphQLError:
    """The same location and path, a generic message and the INTERNAL_SERVER_ERROR code."""
    message = "internal error"
    if show_type and error.original_error is not None:
        message = f"{message} ({type(error.original_error).__name__})"
    return GraphQLError(message, nodes=error.nodes, source=error.source, positions=error.positions,
                        path=error.path, original_error=None, extensions={"code": INTERNAL_SERVER_ERROR})


def mask_unexpected(error: GraphQLError, show_type: bool = False) -> GraphQLError:
    """`error` itself when the gateway raised it on purpose, else its masked form."""
    return masked(error, show_type) if is_unexpected(error) else error


class InternalErrorMask(MaskErrors):
    """strawberry's MaskErrors, limited to unexpected errors and keeping a stable code."""

    def __init__(self, show_type: bool = False) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message="internal error")
        self.show_type = show_type

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        """The same location and path, a generic message and code."""
        return masked(error, self.show_type)
