"""Cached, coalesced reads of one backend: the only way resolvers get records.

Per A-number: a fresh cache entry is a HIT; otherwise one batch call fetches every miss
(concurrent identical misses wait on the same call: MISS for all of them). When the call
fails, an expired entry inside the max-stale window is served as STALE with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sources.breaker import CLOSED
from sources.client import SourceClient
from sources.errors import SOURCE_BAD_RESPONSE, SOURCE_TIMEOUT, SourceError
from sources.record_cache import Cache, CacheEntry
from sources.settings import Settings
from sources.systems import Source

log = logging.getLogger("ucgw.fetcher")

HIT, MISS, STALE = "HIT", "MISS", "STALE"


@dataclass(frozen=True, slots=True)
class Fetched:
    """One backend's answer for one A-number as served to a request."""

    source: Source
    record: dict[str, Any] | None
    fetched_at: float
    cache_status: str
    warning: SourceError | None = None  # why an expired value was served


BatchOutcome = dict[str, Fetched] | SourceError  # one batch call's answers by A-number, or why it failed


class PendingCall:
    """One A-number's share of a batch call: done once the call has answered; `result` is this A-number's
    answer (or the call's error). The A-numbers of one call share its one future, so a batch of 100 costs
    one completion to wait for, not 100."""

    __slots__ = ("batch", "a_number")

    def __init__(self, batch: asyncio.Future[BatchOutcome], a_number: str) -> None:
        self.batch = batch
        self.a_number = a_number

    def done(self) -> bool:
        """True once the call has answered or failed."""
        return self.batch.done()

    def result(self) -> Fetched | SourceError:
        """This A-number's answer, or the SourceError of the call; only once `done()`."""
        outcome = self.batch.result()
        return outcome if isinstance(outcome, SourceError) else outcome[self.a_number]


@dataclass
class FetchStats:
    """Counters of one fetcher, for /readyz, tests and benchmarks."""

    hits: int = 0
    misses: int = 0
    stale: int = 0
    coalesced: int = 0
    batches: int = 0
    records_fetched: int = 0  # A-numbers asked for in those batches


class SourceFetcher:
    """Cache + coalescing + stale handling in front of one `SourceClient`."""

    def __init__(self, client: SourceClient, cache: Cache, settings: Settings) -> None:
        self.client = client
        self.source = client.source
        self.cache = cache
        self.ttl = settings.ttl(self.source)
        self.max_stale = settings.max_stale_seconds
        self.swr = settings.stale_while_revalidate_seconds
        self.revalidate_timeout = settings.source_timeout_seconds * (settings.retry_attempts + 1)
        self.stats = FetchStats()
        self._key_prefix = f"{self.source.value}:"
        self._inflight: dict[str, asyncio.Future[BatchOutcome]] = {}  # cache key -> the call fetching it
        self._tasks: set[asyncio.Task[None]] = set()

    def key(self, a_number: str) -> str:
        """Cache key of one record."""
        return self._key_prefix + a_number

    def invalidate(self, a_number: str) -> None:
        """Drop the cached record of one A-number (the source says it changed).

        A fetch already in flight may hold the record as it was before the change: later readers do
        not join it, and its answer is not cached.
        """
        key = self.key(a_number)
        self.cache.delete(key)
        self._inflight.pop(key, None)

    async def list_page(
        self, cursor: str | None, limit: int, deadline: float, **filters: str
    ) -> tuple[list[Fetched], str | None]:
        """One listing page; its records go into the cache as fresh entries (MISS for this request)."""
        records, next_cursor = await self.client.list_page(cursor, limit, deadline, **filters)
        return self.store_listed(records), next_cursor

    def store_listed(self, records: Sequence[dict[str, Any]]) -> list[Fetched]:
        """Cache records a listing returned, as if a batch read had just fetched them."""
        fetched_at = time.time()
        out = []
        for record in records:
            self.cache.set(self.key(record["a_number"]), CacheEntry(record, fetched_at))
            out.append(Fetched(self.source, record, fetched_at, MISS))
        self.stats.misses += len(out)
        return out

    def fresh(self, a_number: str, max_age: float | None, at: float | None = None) -> Fetched | None:
        """The cached record as a HIT when it is fresh enough (what `load_many` would answer at once),
        else None: then `load_many` decides (stale, coalesced or fetched). `at`: fresh enough for a request
        made then (epoch seconds; default now), so a record fetched after it is fresh whatever `max_age`."""
        entry = self.cache.get(self.key(a_number))
        if entry is None:
            return None
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        if (time.time() if at is None else at) - entry.fetched_at > limit:
            return None
        self.stats.hits += 1
        return Fetched(self.source, entry.record, entry.fetched_at, HIT)

    async def load_many(
        self, a_numbers: Sequence[str], max_age: float | None, deadline: float
    ) -> list[Fetched | SourceError]:
        """Answers in the order asked; `max_age` (seconds) bounds the age of anything served."""
        now = time.time()
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        results: dict[str, Fetched | SourceError] = {}
        to_fetch: list[str] = []
        to_revalidate: list[str] = []
        for a in dict.fromkeys(a_numbers):
            entry = self.cache.get(self.key(a))
            if entry is not None:
                age = now - entry.fetched_at
                if age <= limit:
                    self.stats.hits += 1
                    results[a] = Fetched(self.source, entry.record, entry.fetched_at, HIT)
                    continue
                if (self.swr > 0 and age <= self.ttl + self.swr and (max_age is None or age <= max_age)
                        and self._answering()):
                    self.stats.stale += 1
                    results[a] = Fetched(self.source, entry.record, entry.fetched_at, STALE)
                    to_revalidate.append(a)
                    continue
            to_fetch.append(a)
        if to_revalidate:
            self._start_batch(to_revalidate, time.monotonic() + self.revalidate_timeout, STALE)
        if to_fetch:
            fetched = await self._fetch(to_fetch, deadline)
            for a in to_fetch:
                results[a] = self.fallback(a, fetched[a], max_age)
        return [results[a] for a in a_numbers]

    def _answering(self) -> bool:
        """Whether the source answered its latest call and its breaker is closed. Only then does
        stale-while-revalidate serve an expired record at once; while the source fails, the request
        waits for it as without, and an expired record is served only within `max_stale`, with a warning."""
        health = self.client.health
        return self.client.breaker.state == CLOSED and (
            health.last_error_at is None or (health.last_success_at or 0.0) >= health.last_error_at)

    def fallback(self, a: str, outcome: Fetched | SourceError, max_age: float | None) -> Fetched | SourceError:
        """On a failed fetch, an expired entry within the stale window (and `max_age`) is served instead."""
        if not isinstance(outcome, SourceError):
            return outcome
        entry = self.cache.get(self.key(a))
        if entry is None:
            return outcome
        age = time.time() - entry.fetched_at
        if age <= self.ttl + self.max_stale and (max_age is None or age <= max_age):
            self.stats.stale += 1
            return Fetched(self.source, entry.record, entry.fetched_at, STALE, warning=outcome)
        return outcome

    def start(self, a_numbers: Sequence[str], max_age: float | None, deadline: float) -> dict[str, PendingCall]:
        """Begin what `load_many` would fetch, without waiting: the calls for the A-numbers with no fresh
        entry (joining any already in flight), to `wait` for later and pass through `fallback`.

        A-numbers with a fresh entry get none (`fresh` answers them), nor, when stale-while-revalidate is
        on, does any A-number with an entry (`load_many` decides whether to serve it at once).
        """
        now = time.time()
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        misses: list[str] = []
        for a in dict.fromkeys(a_numbers):
            entry = self.cache.get(self.key(a))
            if entry is not None and (now - entry.fetched_at <= limit or self.swr > 0):
                continue
            misses.append(a)
        return self._join_or_start(misses, deadline) if misses else {}

    async def _fetch(self, a_numbers: list[str], deadline: float) -> dict[str, Fetched | SourceError]:
        """Join in-flight calls for keys already being fetched; one new batch call for the rest."""
        return await self.wait(self._join_or_start(a_numbers, deadline), deadline)

    async def wait(self, calls: Mapping[str, PendingCall], deadline: float) -> dict[str, Fetched | SourceError]:
        """The outcome of each call in `calls` (from `start`), a SOURCE_TIMEOUT error for any still
        unanswered at `deadline`; a failure is as the call gave it (see `fallback`)."""
        if not calls:
            return {}
        remaining = max(0.0, deadline - time.monotonic())
        await asyncio.wait({c.batch for c in calls.values()}, timeout=remaining)
        out: dict[str, Fetched | SourceError] = {}
        for a, call in calls.items():
            if call.done():
                out[a] = call.result()
            else:
                out[a] = SourceError(self.source, SOURCE_TIMEOUT, "request deadline reached", retryable=False)
        return out

    def _join_or_start(self, a_numbers: list[str], deadline: float) -> dict[str, PendingCall]:
        """The in-flight call for keys already being fetched; one new batch call for the rest."""
        calls: dict[str, PendingCall] = {}
        new: list[str] = []
        for a in a_numbers:
            batch = self._inflight.get(self.key(a))
            if batch is None:
                new.append(a)
            else:
                self.stats.coalesced += 1
                calls[a] = PendingCall(batch, a)
        if new:
            calls.update(self._start_batch(new, deadline))
        return calls

    def _start_batch(self, a_numbers: list[str], deadline: float, why: str = MISS) -> dict[str, PendingCall]:
        """Start one batch call for `a_numbers` (skipping ones in flight), each registered as in flight; `why`
        (MISS, or STALE for a stale-while-revalidate refresh) goes to the call's span."""
        batch: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        calls: dict[str, PendingCall] = {}
        for a in a_numbers:
            key = self.key(a)
            if key not in self._inflight:
                self._inflight[key] = batch
                calls[a] = PendingCall(batch, a)
        if calls:
            self.stats.misses += len(calls)
            self.stats.batches += 1
            self.stats.records_fetched += len(calls)
            task = asyncio.create_task(self._run_batch(batch, list(calls), deadline, why))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return calls

    async def _run_batch(self, batch: asyncio.Future[BatchOutcome], a_numbers: list[str], deadline: float,
                         why: str = MISS) -> None:
        try:
            records = await self.client.fetch_batch(a_numbers, deadline, why)
            fetched_at = time.time()
            answers: dict[str, Fetched] = {}
            for a in a_numbers:
                record, key = records.get(a), self.key(a)
                if self._inflight.get(key) is batch:  # not invalidated while we waited
                    self.cache.set(key, CacheEntry(record, fetched_at))
                answers[a] = Fetched(self.source, record, fetched_at, MISS)
            batch.set_result(answers)
        except SourceError as exc:
            if not batch.done():
                batch.set_result(exc)
        except Exception as exc:  # a bug or an unforeseen answer must not hang the waiters
            log.exception("unexpected failure fetching from %s", self.source.value)
            if not batch.done():
                batch.set_result(SourceError(self.source, SOURCE_BAD_RESPONSE, f"unexpected {type(exc).__name__}",
                                             retryable=False))
        finally:
            for a in a_numbers:
                key = self.key(a)
                if self._inflight.get(key) is batch:
                    del self._inflight[key]

    async def aclose(self) -> None:
        """Wait briefly for background refreshes, then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2)
            for task in pending:
                task.cancel()
