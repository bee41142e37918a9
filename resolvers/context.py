"""Per-request state: one DataLoader per source (and max age), the deadline and warnings."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from resolvers.answer_recording import AnswerRecording
from resolvers.audit_reads import ReadRecorder
from resolvers.pagination import CursorCodec
from resolvers.prefetch_plans import PrefetchStart
from rules.roles import Principal
from sources.errors import SOURCE_BAD_RESPONSE, SourceError
from sources.fetcher import STALE, Fetched, PendingCall
from sources.systems import Source
from stores.audit_trail import AuditStore
from sync.services import Services


@dataclass
class RequestContext:
    """Built by the HTTP layer for each GraphQL request."""

    services: Services
    request: Any = None
    response: Any = None
    deadline: float = field(default=0.0)
    warnings: list[dict[str, str]] = field(default_factory=list)
    principal: Principal | None = None
    purpose: str | None = None  # the caller's stated reason (`X-Purpose`), for the audit trail
    audit_store: AuditStore | None = None
    reads: ReadRecorder = field(default_factory=ReadRecorder)
    connection_params: dict[str, Any] | None = None  # a websocket's connection_init payload
    answer: AnswerRecording | None = None  # set when the answer may be stored for identical requests
    cursors: CursorCodec = field(default_factory=CursorCodec)  # the process's, from `create_app`
    # the gateway's own counters for operators (`gatewayHealth`), from `create_app`; None: the sources' only
    health_details: Callable[[], dict[str, Any]] | None = None
    early: PrefetchStart | None = None  # backend calls started before GraphQL ran (gateway/http/prefetch.py)
    _loaders: dict[tuple[Source, float | None], DataLoader[str, Fetched | SourceError]] = field(
        default_factory=dict
    )
    # answers loaded for a whole list by `prefetch`: (source, max age, A-number) → outcome
    _prefetched: dict[tuple[Source, float | None, str], Fetched | SourceError] = field(default_factory=dict)
    # this request's walks of every child, by freshness bound (resolvers/scan.py)
    scans: dict[float | None, asyncio.Future[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.services.settings.request_deadline_seconds

    def renew(self) -> None:
        """Start a new unit of work on a long-lived context (one subscription event on a websocket):
        a fresh deadline and fresh DataLoaders, so nothing cached by an earlier event is served again."""
        self.deadline = time.monotonic() + self.services.settings.request_deadline_seconds
        self._loaders.clear()
        self._prefetched.clear()
        self.warnings.clear()

    def release(self) -> None:
        """Drop the records and results the request holds, once its response is sent. The context stays
        referenced from cycles (the ASGI scope, the executor) that only the cyclic collector frees, and that
        runs seldom over a large cache: a walk of every child would otherwise outlive its request by minutes."""
        self._loaders.clear()
        self._prefetched.clear()
        self.scans.clear()
        self.early = None

    def loader(self, source: Source, max_age: float | None) -> DataLoader[str, Fetched | SourceError]:
        """The request's DataLoader for one source and freshness bound."""
        key = (source, max_age)
        loader = self._loaders.get(key)
        if loader is None:
            fetcher = self.services.fetchers[source]
            owner = weakref.ref(self)  # not `self`: a loader holding its context would make a cycle, which only
            # the cyclic collector frees, so every record a request (or a scan of every child) held would outlive it

            async def load(keys: Sequence[str]) -> list[Fetched | SourceError]:
                ctx = owner()
                return await fetcher.load_many(keys, max_age, ctx.deadline if ctx else time.monotonic())

            loader = self._loaders[key] = DataLoader(load_fn=load)
        return loader

    def ready(self, source: Source, a_number: str, max_age: float | None) -> Fetched | SourceError | None:
        """One source's answer when it needs no waiting, else None (then await `fetch`).

        What this request already holds for the A-number (prefetched, started early, loaded or primed) comes
        first, so every section of one answer sees the same record; otherwise a fresh cached record (a HIT),
        primed into the request's DataLoader for the same reason. A cached answer thus costs no DataLoader
        batch and no task switch.
        """
        prefetched = self._prefetched.get((source, max_age, a_number)) or self._early_done(source, a_number, max_age)
        if prefetched is not None:
            self._served(a_number, max_age, prefetched)
            return prefetched
        loader = self.loader(source, max_age)
        future = loader.cache_map.get(a_number)
        if future is not None:
            if not future.done() or future.cancelled():
                return None
            exc = future.exception()
            outcome = exc if isinstance(exc, SourceError) else None if exc is not None else future.result()
        else:
            outcome = self.services.fetchers[source].fresh(a_number, max_age)
            if outcome is None:
                return None
            loader.prime(a_number, outcome)
        self._served(a_number, max_age, outcome)
        return outcome

    async def fetch(self, source: Source, a_number: str, max_age: float | None) -> Fetched | SourceError:
        """One source's answer, or the SourceError explaining why there is none."""
        outcome = self.ready(source, a_number, max_age)
        if outcome is not None:
            return outcome
        if self._early_call(source, a_number, max_age) is not None:
            await self._await_early(source, max_age, [a_number])
            return self.ready(source, a_number, max_age)  # type: ignore[return-value]  # at hand now
        try:
            outcome = await self.loader(source, max_age).load(a_number)
        except SourceError as exc:  # the DataLoader re-raises error values
            outcome = exc
        self._served(a_number, max_age, outcome)
        return outcome

    def _served(self, a_number: str, max_age: float | None, outcome: Fetched | SourceError | None) -> None:
        """Note a stale value's warning, ICE's record for the audit event, and what the answer was built from
        when it may be stored."""
        if isinstance(outcome, Fetched):
            if outcome.source is Source.ICE:  # the child's scope office, for its audit event
                self.reads.saw_ice(a_number, outcome.record)
            if outcome.warning is not None:
                self.warn_stale(outcome)
            if self.answer is not None:
                self.answer.served(a_number, max_age, outcome)
        elif self.answer is not None:
            self.answer.unavailable(outcome, self.services.fetchers)

    async def prefetch(self, a_numbers: Sequence[str], max_age: float | None, sources: Sequence[Source]) -> None:
        """Have every named source's answer for every A-number at hand (each source asked in one batch).

        The answers go straight from the fetchers to the request (`ready` finds them first), without a
        DataLoader load per A-number. Failures are not raised here: they are what `ready`/`fetch` give each
        reader afterwards.
        """
        wanted = dict.fromkeys(a_numbers)

        def at_hand(source: Source, a: str) -> bool:
            call = self._early_call(source, a, max_age)  # one still out is missing: no cache lookup for it
            return (call is None or call.done()) and self.ready(source, a, max_age) is not None

        missing = {s: [a for a in wanted if not at_hand(s, a)] for s in sources}

        async def fill(source: Source, keys: list[str]) -> None:
            started = [a for a in keys if self._early_call(source, a, max_age) is not None]
            if started:
                await self._await_early(source, max_age, started)
                keys = [a for a in keys if (source, max_age, a) not in self._prefetched]
            if keys:
                outcomes = await self.services.fetchers[source].load_many(keys, max_age, self.deadline)
                for a, outcome in zip(keys, outcomes, strict=True):
                    self._prefetched.setdefault((source, max_age, a), outcome)

        fills = [fill(s, keys) for s, keys in missing.items() if keys]
        if len(fills) == 1:
            await fills[0]
        elif fills:
            await asyncio.gather(*fills)

    def _early_call(self, source: Source, a_number: str, max_age: float | None) -> PendingCall | None:
        return None if self.early is None else self.early.calls.get((source, max_age, a_number))

    def _early_done(self, source: Source, a_number: str, max_age: float | None) -> Fetched | SourceError | None:
        """The answer of an early call that has come back, taken as this request's own (None otherwise)."""
        call = self._early_call(source, a_number, max_age)
        if call is None or not call.done():
            return None
        del self.early.calls[(source, max_age, a_number)]  # type: ignore[union-attr]
        outcome = self.services.fetchers[source].fallback(a_number, call.result(), max_age)
        return self._prefetched.setdefault((source, max_age, a_number), outcome)

    async def _await_early(self, source: Source, max_age: float | None, a_numbers: Sequence[str]) -> None:
        """Wait (within the deadline) for the early calls of `a_numbers`; their answers become the request's."""
        fetcher = self.services.fetchers[source]
        calls = {a: f for a in a_numbers if (f := self._early_call(source, a, max_age)) is not None}
        for a, outcome in (await fetcher.wait(calls, self.deadline)).items():
            if self._early_done(source, a, max_age) is None:  # unanswered at the deadline (or taken already)
                self.early.calls.pop((source, max_age, a), None)  # type: ignore[union-attr]
                self._prefetched.setdefault((source, max_age, a), fetcher.fallback(a, outcome, max_age))

    async def answers(self, a_number: str, max_age: float | None,
                      sources: Sequence[Source]) -> list[Fetched | SourceError]:
        """Every named source's answer (or error), concurrently; without a task when all are ready."""
        outcomes = [self.ready(s, a_number, max_age) for s in sources]
        if any(o is None for o in outcomes):
            return list(await asyncio.gather(*(self.fetch(s, a_number, max_age) for s in sources)))
        return outcomes  # type: ignore[return-value]

    def warn_stale(self, fetched: Fetched) -> None:
        """Note, once per source, that an expired value was served because the source failed."""
        err = fetched.warning
        assert err is not None and fetched.cache_status == STALE
        if any(w["source"] == err.source.value for w in self.warnings):
            return
        self.warnings.append({
            "source": err.source.value,
            "code": err.code,
            "message": f"{err.source.value} failed ({err.detail}); serving cached data marked STALE",
        })


def bad_response(source: Source, exc: Exception) -> SourceError:
    """A record that does not fit the expected shape (schema drift) is the source's fault."""
    return SourceError(source, SOURCE_BAD_RESPONSE, f"record does not fit the expected shape "
                                                    f"({type(exc).__name__})", retryable=False)
