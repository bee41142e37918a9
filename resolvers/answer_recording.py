"""What one request's execution used, recorded while it runs so that its answer may be stored and served
again (`gateway/http/answer_memo.py`): the records served, open breakers, and the values that depend on the
moment of the answer. The resolvers fill it; the HTTP layer creates it and stores the answer."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sources.breaker import OPEN
from sources.errors import BREAKER_OPEN, SourceError
from sources.fetcher import STALE, Fetched, SourceFetcher
from sources.systems import Source

AGE, CACHE_STATUS = "age", "cache_status"  # kinds of open values
Dependency = tuple[Source, str, float | None, float]  # source, A-number, max age, fetched_at


class ResponsePath(Protocol, Hashable):
    """Where a value sits in the response (graphql-core's `graphql.pyutils.Path`)."""

    @property
    def prev(self) -> ResponsePath | None:
        """The enclosing path; None at the root."""

    @property
    def key(self) -> str | int:
        """The field name or list index of this step."""


@dataclass
class AnswerRecording:
    """What one request's execution used, collected by the resolvers while it runs.

    A request has one only when its answer may be stored (resolvers/schema.py `AnswerEligibility` drops
    it before execution for any operation other than a query of `child`/`children`)."""

    # ends the request's lead (`AnswerCache.lead`) early: called when its answer will not be recorded
    release: Callable[[], None] = field(default=lambda: None, repr=False)
    failed: bool = False  # a source failed (other than by an open breaker), or a section was served stale
    records: dict[tuple[Source, str, float | None], float] = field(default_factory=dict)
    open_breakers: dict[Source, float] = field(default_factory=dict)  # source → when its breaker opened
    # path → (kind, fetched_at); keyed by path, so a value completed twice (graphql-core taking over a field
    # the inline executor began) is one slot. The path is graphql-core's linked `Path` as completion has it
    # (hashed in C); the answer is rendered by following it, after the response has gone.
    slots: dict[ResponsePath, tuple[str, float]] = field(default_factory=dict)
    valid_until: float = math.inf  # when time alone changes the answer (a next hearing's start), epoch seconds

    def served(self, a_number: str, max_age: float | None, fetched: Fetched) -> None:
        """A record was served to the request."""
        if fetched.cache_status == STALE:
            self.failed = True
        self.records[(fetched.source, a_number, max_age)] = fetched.fetched_at

    def unavailable(self, error: SourceError | None, fetchers: Mapping[Source, SourceFetcher]) -> None:
        """A source gave no record. Only an open breaker's refusal is repeatable (until the breaker moves)."""
        if error is not None and error.detail == BREAKER_OPEN:
            breaker = fetchers[error.source].client.breaker
            if breaker.state == OPEN:
                self.open_breakers[error.source] = breaker.opened_at
                return
        self.failed = True

    def open_value(self, path: ResponsePath, kind: str, fetched_at: float) -> None:
        """The value at `path` depends on the moment of the answer (kind AGE or CACHE_STATUS)."""
        self.slots[path] = (kind, fetched_at)

    def changes_at(self, moment: float | None) -> None:
        """From `moment` on (epoch seconds), the same records would give another answer (None: never)."""
        if moment is not None and moment < self.valid_until:
            self.valid_until = moment

    def basis(self) -> Basis:
        """What the answer holds on: its records, open breakers and the moment time alone changes it."""
        return Basis(tuple((s, a, m, at) for (s, a, m), at in self.records.items()),
                     tuple(self.open_breakers.items()), self.valid_until)


@dataclass(frozen=True, slots=True)
class Basis:
    """What an answer holds on while it holds: the exact records (`Dependency`), the open breakers it
    reports (source, when the breaker opened) and the moment time alone changes it."""

    records: tuple[Dependency, ...]
    open_breakers: tuple[tuple[Source, float], ...]
    valid_until: float
