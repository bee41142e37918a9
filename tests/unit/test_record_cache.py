"""The in-memory record cache (sources/record_cache.py): LRU bound, expiry after the retain time, on a stepped clock."""

from __future__ import annotations

from sources.record_cache import CacheEntry, MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def entry(fetched_at: float, tag: str = "r") -> CacheEntry:
    return CacheEntry({"tag": tag}, fetched_at)


def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    clock = Clock()
    cache = MemoryCache(3, lambda key: 60.0, clock=clock)
    for key in ("a", "b", "c"):
        cache.set(key, entry(clock.now, key))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.set("d", entry(clock.now, "d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k).record["tag"] for k in ("a", "c", "d")] == ["a", "c", "d"]  # type: ignore[union-attr]
    cache.set("a", entry(clock.now, "a2"))  # replacing keeps one entry per key
    assert len(cache) == 3 and cache.get("a").record == {"tag": "a2"}  # type: ignore[union-attr]


def test_entries_expire_after_their_keys_retain_time() -> None:
    clock = Clock()
    cache = MemoryCache(10, lambda key: 10.0 if key.startswith("ORR:") else 100.0, clock=clock)
    cache.set("ORR:A1", entry(clock.now))
    cache.set("ICE:A1", entry(clock.now))
    clock.now += 9.999
    assert cache.get("ORR:A1") is not None
    clock.now += 0.001  # fetched_at + retain: gone
    assert cache.get("ORR:A1") is None
    assert len(cache) == 1  # dropped when read
    assert cache.get("ICE:A1") is not None
    cache.set("ICE:A2", entry(clock.now - 100.0))  # already expired: not stored
    assert cache.get("ICE:A2") is None and len(cache) == 1
    cache.set("ICE:A1", entry(clock.now - 100.0))  # an expired value removes what the key held
    assert cache.get("ICE:A1") is None and len(cache) == 0


def test_a_write_drops_the_oldest_entry_once_it_has_expired() -> None:
    clock = Clock()
    cache = MemoryCache(100, lambda key: 10.0, clock=clock)
    for i in range(5):
        cache.set(f"k{i}", entry(clock.now))
    clock.now += 11.0
    cache.set("new1", entry(clock.now))
    cache.set("new2", entry(clock.now))
    assert len(cache) == 5  # two expired entries dropped by two writes, none read
    cache.delete("new1")
    cache.delete("absent")
    assert len(cache) == 4 and cache.get("new2") is not None
