"""Errors the gateway raises about its backends, each with a stable GraphQL `extensions.code`."""

from __future__ import annotations

from sources.systems import Source

SOURCE_UNAVAILABLE = "SOURCE_UNAVAILABLE"
SOURCE_TIMEOUT = "SOURCE_TIMEOUT"
SOURCE_BAD_RESPONSE = "SOURCE_BAD_RESPONSE"
FORBIDDEN = "FORBIDDEN"  # the caller's role or scope may not read a field
BREAKER_OPEN = "circuit breaker open"  # the detail of a SOURCE_UNAVAILABLE error that cost no call


class SourceError(Exception):
    """A backend could not give a usable answer; `code` is one of the SOURCE_* constants."""

    def __init__(self, source: Source, code: str, detail: str, *, retryable: bool = True,
                 refused: bool = False) -> None:
        super().__init__(f"{source.value}: {detail}")
        self.source = source
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.refused = refused  # the source is up and refused this one request (a 4xx)

    @property
    def message(self) -> str:
        """Human-readable message for the GraphQL error."""
        if self.refused:
            return f"{self.source.value} {self.detail}"
        return f"{self.source.value} is unavailable: {self.detail}"
