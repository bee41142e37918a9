"""The record cache: one small interface, an in-memory default built on cachetools.

Entries are kept past their TTL (up to the stale window) so that stale-if-error and
stale-while-revalidate can serve them; freshness is decided by the caller from `fetched_at`.
A Redis implementation for multi-replica deployments fits the same `Cache` protocol.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TLRUCache


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
    """Bounded LRU cache whose entries expire `retain_seconds(key)` after they were fetched."""

    def __init__(self, max_entries: int, retain_seconds: Callable[[str], float]) -> None:
        def ttu(key: str, entry: CacheEntry, now: float) -> float:
            return entry.fetched_at + retain_seconds(key)

        self._data: TLRUCache[str, CacheEntry] = TLRUCache(maxsize=max_entries, ttu=ttu, timer=time.time)

    def get(self, key: str) -> CacheEntry | None:
        """The entry under `key`, or None."""
        return self._data.get(key)

    def set(self, key: str, entry: CacheEntry) -> None:
        """Store an entry, evicting the least recently used one when full."""
        self._data[key] = entry

    def delete(self, key: str) -> None:
        """Forget an entry."""
        self._data.pop(key, None)

    def __len__(self) -> int:
        """How many entries are held (expired ones are dropped lazily)."""
        return len(self._data)
