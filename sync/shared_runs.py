"""Long work shared by the requests that ask for it at the same time, with a cap on how much runs at once.

A full walk of every child (an oversight count) costs a listing call per 500 children and holds every
record until it ends. Requests that want the same walk while one is running join it instead of starting
their own, and at most `limit` different walks run at once; the others wait for a free slot within their
own deadline. One `owner` (a caller) has at most one run of its own going: a caller's next new run waits
for its last to end, so no caller can hold every slot and keep the others waiting (joining a run someone
else started is always allowed). One process, one event loop: the runs are per replica; with Redis
(`owner_slots`) the one run of a caller's own is counted over every replica, so a caller cannot run a walk
on each replica at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

from stores.redis_slots import ClusterSlots

T = TypeVar("T")


class NoSlot(Exception):
    """No run ended (freeing a slot) before the caller's deadline."""

    def __init__(self, limit: int, own: bool = False) -> None:
        super().__init__("your own full scan was still running and did not end in time" if own else
                         f"{limit} full scans were already running and none ended in time")
        self.limit = limit


@dataclass
class RunStats:
    """Counters since start: runs started, callers that joined a running one, callers that waited for a
    slot, and callers that gave up waiting."""

    started: int = 0
    joined: int = 0
    waited: int = 0
    refused: int = 0
    running: int = 0


@dataclass
class _Run(Generic[T]):
    task: asyncio.Future[T]
    started: float  # monotonic
    owner: Hashable | None = None
    slot: str | None = None  # the owner's cluster-wide slot (ClusterSlots), freed when the run ends


class SharedRuns(Generic[T]):
    """One running task per key, joined by later callers; at most `limit` tasks at once."""

    def __init__(self, limit: int, owner_slots: ClusterSlots | None = None) -> None:
        self.limit = limit
        self.owner_slots = owner_slots
        self.stats = RunStats()
        self._runs: dict[Hashable, _Run[T]] = {}
        self._owners: set[Hashable] = set()  # owners with a run of their own going
        self._free = asyncio.Condition()

    def facts(self) -> dict[str, int]:
        """The counters and the limit, for /readyz."""
        return {**asdict(self.stats), "limit": self.limit}

    def _joinable(self, key: Hashable, max_lag: float | None) -> _Run[T] | None:
        run = self._runs.get(key)
        if run is None or run.task.done():
            return None
        if max_lag is not None and time.monotonic() - run.started > max_lag:
            return None
        return run

    async def run(self, key: Hashable, start: Callable[[], Awaitable[T]], deadline: float,
                  max_lag: float | None = None, owner: Hashable | None = None) -> T:
        """The result of `key`'s run in flight when it started at most `max_lag` seconds ago (None: any
        age), else of a new run of `start()` once fewer than `limit` runs are going and `owner` (when given)
        has none of its own going.

        Waits until `deadline` (monotonic) at most: `NoSlot` when no slot freed in time, TimeoutError when
        the run did not end in time (the run itself goes on for the others). A run's exception is raised to
        every caller of it.
        """
        run = self._joinable(key, max_lag)
        if run is not None:
            self.stats.joined += 1
        else:
            slot = await self._owner_slot(owner, deadline)
            begun: _Run[T] | None = None
            try:
                begun = await self._begin(key, start, deadline, max_lag, owner, slot)
            finally:
                if self.owner_slots is not None and slot and (begun is None or begun.slot != slot):
                    self.owner_slots.give_back(slot)  # refused, or joined a run another caller began
            run = begun
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not run.task.done():
            raise TimeoutError
        return await asyncio.wait_for(asyncio.shield(run.task), max(remaining, 0.0))

    async def _owner_slot(self, owner: Hashable | None, deadline: float) -> str | None:
        """With cluster-wide slots: wait (polling) until `owner` has no run of its own on any replica, and take
        its slot; NoSlot at `deadline`. "" while Redis cannot say (this replica's count alone decides)."""
        if owner is None or self.owner_slots is None:
            return None
        pause, waited = 0.05, False
        while True:
            slot = await self.owner_slots.take(str(owner))
            if slot is not None:
                return slot
            if not waited:
                self.stats.waited += 1
                waited = True
            if time.monotonic() + pause > deadline:
                self.stats.refused += 1
                raise NoSlot(self.limit, own=True)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _begin(self, key: Hashable, start: Callable[[], Awaitable[T]], deadline: float,
                     max_lag: float | None, owner: Hashable | None, slot: str | None = None) -> _Run[T]:
        async with self._free:
            if self._busy(owner):
                self.stats.waited += 1
                while self._busy(owner):
                    remaining = deadline - time.monotonic()
                    try:
                        if remaining <= 0:
                            raise TimeoutError
                        await asyncio.wait_for(self._free.wait(), remaining)
                    except TimeoutError:
                        self.stats.refused += 1
                        raise NoSlot(self.limit, own=owner in self._owners) from None
                    run = self._joinable(key, max_lag)  # started by another waiter meanwhile
                    if run is not None:
                        self.stats.joined += 1
                        return run
            self.stats.running += 1
            self.stats.started += 1
            task = asyncio.ensure_future(start())
            run = self._runs[key] = _Run(task, time.monotonic(), owner, slot)
            if owner is not None:
                self._owners.add(owner)
            task.add_done_callback(lambda _t: self._ended(key, run))
            return run

    def _busy(self, owner: Hashable | None) -> bool:
        """True while no new run may start for `owner`: every slot taken, or a run of its own going."""
        return self.stats.running >= self.limit or (owner is not None and owner in self._owners)

    def _ended(self, key: Hashable, run: _Run[T]) -> None:
        if self._runs.get(key) is run:
            del self._runs[key]
        self._owners.discard(run.owner)
        if self.owner_slots is not None and run.slot:
            self.owner_slots.give_back(run.slot)
        if not run.task.cancelled():
            run.task.exception()  # retrieved: no "exception was never retrieved" when every caller left
        self.stats.running -= 1
        asyncio.ensure_future(self._wake())

    async def _wake(self) -> None:
        async with self._free:
            self._free.notify_all()
