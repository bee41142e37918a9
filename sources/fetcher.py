"""Cached, coalesced reads of one backend: the only way resolvers get records.

Per A-number: a fresh cache entry is a HIT; otherwise one batch call fetches every miss
(concurrent identical misses wait on the same call: MISS for all of them). When the call
fails, an expired entry inside the max-stale window is served as STALE with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from sources.breaker import CLOSED
from sources.client import SourceClient
from sources.errors import SOURCE_BAD_RESPONSE, SOURCE_TIMEOUT, SourceError
from sources.record_cache import Cache, CacheEntry
from sources.settings import Settings
from sources.shared_records import SharedRecords
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


# one batch call's answers by A-number (an A-number's own failure, with Redis), or why the whole call failed
BatchOutcome = dict[str, Fetched | SourceError] | SourceError


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
    shared_hits: int = 0  # A-numbers of those batches found in the shared cache (Redis), fetched by some replica
    shared_waits: int = 0  # A-numbers another replica was fetching, waited for
    backend_records: int = 0  # A-numbers this replica asked its backend for


class SourceFetcher:
    """Cache + coalescing + stale handling in front of one `SourceClient`.

    With `shared` (Redis), a batch's misses are first looked up in the replicas' shared cache, and only the
    A-numbers no replica is fetching are asked of the backend (under a lease); the others are waited for.
    When Redis fails the batch goes on as without it: this replica's own single-flight, its own cache."""

    def __init__(self, client: SourceClient, cache: Cache, settings: Settings,
                 shared: SharedRecords | None = None) -> None:
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
        self._limits: dict[int, float] = {}  # id of a call in flight -> the oldest age it may answer with
        self.shared = shared
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

    async def invalidate_shared(self, a_numbers: Sequence[str]) -> None:
        """Drop changed records from the shared cache too and tell every replica to drop its copy (nothing
        without Redis, or while it fails: then the TTL bounds the other replicas' copies)."""
        if self.shared is not None and a_numbers:
            try:
                await self.shared.invalidate([self.key(a) for a in a_numbers])
            except RedisError:
                log.warning("could not announce %d changed %s record(s) to the other replicas (redis unavailable)",
                            len(a_numbers), self.source.value)

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
            self._start_batch(to_revalidate, time.monotonic() + self.revalidate_timeout, STALE, self.ttl)
        if to_fetch:
            fetched = await self._fetch(to_fetch, deadline, limit)
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
        return self._join_or_start(misses, deadline, limit) if misses else {}

    async def _fetch(self, a_numbers: list[str], deadline: float, limit: float) -> dict[str, Fetched | SourceError]:
        """Join in-flight calls for keys already being fetched; one new batch call for the rest."""
        return await self.wait(self._join_or_start(a_numbers, deadline, limit), deadline)

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

    def _join_or_start(self, a_numbers: list[str], deadline: float, limit: float) -> dict[str, PendingCall]:
        """The in-flight call for keys already being fetched (one that may answer with records no older than
        `limit`); one new batch call for the rest."""
        calls: dict[str, PendingCall] = {}
        new: list[str] = []
        for a in a_numbers:
            batch = self._inflight.get(self.key(a))
            # with a shared cache a call may answer with a record another replica fetched earlier: joined only
            # by requests that accept records as old as it does (without one, every answer is a new fetch)
            if batch is None or (self.shared is not None and self._limits.get(id(batch), 0.0) > limit):
                new.append(a)
            else:
                self.stats.coalesced += 1
                calls[a] = PendingCall(batch, a)
        if new:
            calls.update(self._start_batch(new, deadline, MISS, limit, replace=True))
        return calls

    def _start_batch(self, a_numbers: list[str], deadline: float, why: str = MISS, limit: float | None = None,
                     replace: bool = False) -> dict[str, PendingCall]:
        """Start one batch call for `a_numbers` (skipping ones in flight unless `replace`), each registered as
        in flight; `why` (MISS, or STALE for a stale-while-revalidate refresh) goes to the call's span; `limit`:
        the oldest shared-cache entry (seconds) the call may answer with (default the TTL)."""
        batch: asyncio.Future[BatchOutcome] = asyncio.get_running_loop().create_future()
        calls: dict[str, PendingCall] = {}
        for a in a_numbers:
            key = self.key(a)
            if replace or key not in self._inflight:
                self._inflight[key] = batch
                calls[a] = PendingCall(batch, a)
        if calls:
            self.stats.misses += len(calls)
            self.stats.batches += 1
            self.stats.records_fetched += len(calls)
            self._limits[id(batch)] = self.ttl if limit is None else limit
            task = asyncio.create_task(self._run_batch(batch, list(calls), deadline, why))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return calls

    async def _run_batch(self, batch: asyncio.Future[BatchOutcome], a_numbers: list[str], deadline: float,
                         why: str = MISS) -> None:
        try:
            limit = self._limits.get(id(batch), self.ttl)
            if self.shared is not None and self.shared.usable:
                answers = await self._shared_batch(batch, a_numbers, deadline, why, limit)
            else:
                answers = await self._backend_batch(batch, a_numbers, deadline, why)
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
            self._limits.pop(id(batch), None)
            for a in a_numbers:
                key = self.key(a)
                if self._inflight.get(key) is batch:
                    del self._inflight[key]

    def _keep(self, batch: asyncio.Future[BatchOutcome], a: str, entry: CacheEntry) -> None:
        """Cache an answer of `batch` unless the record was invalidated while the call ran."""
        key = self.key(a)
        if self._inflight.get(key) is batch:
            self.cache.set(key, entry)

    async def _backend_batch(self, batch: asyncio.Future[BatchOutcome], a_numbers: list[str], deadline: float,
                             why: str) -> dict[str, Fetched | SourceError]:
        """One backend call for `a_numbers`; the answers cached here (SourceError raised)."""
        self.stats.backend_records += len(a_numbers)
        records = await self.client.fetch_batch(a_numbers, deadline, why)
        fetched_at = time.time()
        answers: dict[str, Fetched | SourceError] = {}
        for a in a_numbers:
            record = records.get(a)
            self._keep(batch, a, CacheEntry(record, fetched_at))
            answers[a] = Fetched(self.source, record, fetched_at, MISS)
        return answers

    async def _shared_batch(self, batch: asyncio.Future[BatchOutcome], a_numbers: list[str], deadline: float,
                            why: str, limit: float) -> dict[str, Fetched | SourceError]:
        """The batch through the shared cache: entries some replica fetched (no older than `limit`, or fetched
        since this call began) are HITs; the A-numbers no replica is fetching are leased and fetched here in one
        backend call, and stored for the others; the rest are waited for (polled), taken over when their lease
        expires. Redis failing part-way: the A-numbers still open are fetched from the backend directly."""
        assert self.shared is not None
        shared = self.shared
        started = time.time()
        answers: dict[str, Fetched | SourceError] = {}
        open_ = {self.key(a): a for a in a_numbers}
        calls: list[asyncio.Task[None]] = []

        async def fetch_leased(keys: list[str]) -> None:
            wanted = [open_[k] for k in keys]
            try:
                got = await self._backend_batch(batch, wanted, deadline, why)
            except SourceError as exc:
                for a in wanted:
                    answers[a] = exc
                with contextlib.suppress(RedisError):
                    await shared.release(keys)
                return
            answers.update(got)
            with contextlib.suppress(RedisError):
                await shared.store({self.key(a): CacheEntry(f.record, f.fetched_at)  # type: ignore[union-attr]
                                    for a, f in got.items()}, started)

        pause, first = 0.005, True
        try:
            waiting = list(open_)
            while waiting and time.monotonic() < deadline:
                entries, leased = await shared.claim(waiting, min(time.time() - limit, started))
                for key, entry in entries.items():
                    a = open_[key]
                    self._keep(batch, a, entry)
                    answers[a] = Fetched(self.source, entry.record, entry.fetched_at,
                                         MISS if entry.fetched_at >= started else HIT)
                    self.stats.shared_hits += 1
                if leased:
                    calls.append(asyncio.create_task(fetch_leased(leased)))
                waiting = [k for k in waiting if k not in entries and k not in leased]
                if waiting:
                    if first:
                        self.stats.shared_waits += len(waiting)
                        first = False
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.05)
        except RedisError:
            if waiting:
                calls.append(asyncio.create_task(self._direct(batch, [open_[k] for k in waiting], deadline, why,
                                                              answers)))
                waiting = []
        if calls:
            await asyncio.gather(*calls)
        for key in waiting:  # the deadline came first
            answers[open_[key]] = SourceError(self.source, SOURCE_TIMEOUT, "request deadline reached",
                                              retryable=False)
        return answers

    async def _direct(self, batch: asyncio.Future[BatchOutcome], a_numbers: list[str], deadline: float, why: str,
                      answers: dict[str, Fetched | SourceError]) -> None:
        """Redis failed: fetch from the backend as without it."""
        try:
            answers.update(await self._backend_batch(batch, a_numbers, deadline, why))
        except SourceError as exc:
            for a in a_numbers:
                answers[a] = exc

    async def aclose(self) -> None:
        """Wait briefly for background refreshes, then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2)
            for task in pending:
                task.cancel()
