"""The record cache: one small interface, an in-memory LRU default.

Entries are kept past their TTL (up to the stale window) so that stale-if-error and
stale-while-revalidate can serve them; freshness is decided by the caller from `fetched_at`.
A Redis implementation for multi-replica deployments fits the same `Cache` protocol.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One backend's answer for one A-number: the record (None = the backend has none) and when we got it."""

    record: dict[str, Any] | None
    fetched_at: float  # wall clock, seconds since the epoch


class Cache(Protocol):
    """What the gateway needs of a cache."""

    def get(self, key: str) -> CacheEntry | None:
        """The entry under `key`, or None."""

    def set(self, key: str, entry: CacheEntry) -> None:
        """Store an entry."""

    def delete(self, key: str) -> None:
        """Forget an entry (no error when absent)."""

    def __len__(self) -> int:
        """How many entries are held."""


class MemoryCache:
    """Bounded LRU cache whose entries expire `retain_seconds(key)` after they were fetched.

    An OrderedDict in least-recently-used order: a read moves its entry to the end, a write evicts from
    the front when the cache is full. An expired entry is dropped when it is read, and every write also
    drops the least recently used entry if that one has expired, so expired entries do not pile up while
    the cache is written. (cachetools' TLRUCache, used before, also kept a heap of per-entry items that
    under eviction grew to twice the entries before it was cleaned up.)
    """

    def __init__(self, max_entries: int, retain_seconds: Callable[[str], float],
                 clock: Callable[[], float] = time.time) -> None:
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._max = max_entries
        self._retain = retain_seconds
        self._clock = clock

    def _expired(self, key: str, entry: CacheEntry, now: float) -> bool:
        return now >= entry.fetched_at + self._retain(key)

    def get(self, key: str) -> CacheEntry | None:
        """The entry under `key`, or None (also when it has expired)."""
        data = self._data
        entry = data.get(key)
        if entry is None:
            return None
        if self._expired(key, entry, self._clock()):
            del data[key]
            return None
        data.move_to_end(key)
        return entry

    def set(self, key: str, entry: CacheEntry) -> None:
        """Store an entry (an already expired one only removes what `key` held), evicting the least
        recently used entry when full."""
        data = self._data
        now = self._clock()
        if self._expired(key, entry, now):
            data.pop(key, None)
            return
        data[key] = entry
        data.move_to_end(key)
        oldest = next(iter(data))
        if oldest != key and self._expired(oldest, data[oldest], now):
            del data[oldest]
        while len(data) > self._max:
            data.popitem(last=False)

    def delete(self, key: str) -> None:
        """Forget an entry."""
        self._data.pop(key, None)

    def __len__(self) -> int:
        """How many entries are held (expired ones not yet dropped included)."""
        return len(self._data)
