"""In-process publish/subscribe for change events: one small interface, a memory default.

Topics are plain strings (`child:A123456789`, `office:Houston`, `alert:office:Houston` ...). Each
subscriber owns a bounded queue: a subscriber that falls behind loses its oldest events (counted in
`dropped`) instead of slowing the publisher. A broker-backed implementation for several replicas
(Redis, NATS) fits the same `PubSub` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("ucgw.pubsub")


class Subscription(Protocol):
    """Events of the topics subscribed to, in publish order."""

    def __aiter__(self) -> AsyncIterator[Any]:
        """Iterate over events until the subscription is closed."""

    async def get(self) -> Any:
        """The next event (waits)."""


class PubSub(Protocol):
    """What the gateway needs of a pub/sub."""

    async def publish(self, topic: str, event: Any) -> int:
        """Deliver `event` to every subscriber of `topic`; returns how many got it."""

    def subscribe(self, topics: Iterable[str]) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribe to `topics` for the duration of the `async with` block."""

    def has_subscribers(self, prefix: str = "") -> bool:
        """True when some subscriber listens to a topic starting with `prefix`."""

    async def close(self) -> None:
        """End every subscription (their iterators stop)."""


_CLOSED = object()


@dataclass(eq=False)
class MemorySubscription:
    """One subscriber's bounded queue."""

    topics: frozenset[str]
    max_queue: int
    queue: asyncio.Queue[Any] = field(init=False)
    dropped: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.max_queue + 1)  # one slot kept for the close marker

    def offer(self, event: Any) -> None:
        """Enqueue without waiting; drop the oldest event when full."""
        while self.queue.qsize() >= self.max_queue:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def close(self) -> None:
        """Wake the consumer and end its iteration."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_CLOSED)

    async def get(self) -> Any:
        """The next event; raises StopAsyncIteration once closed."""
        event = await self.queue.get()
        if event is _CLOSED:
            self.queue.put_nowait(_CLOSED)  # keep later calls ending too
            raise StopAsyncIteration
        return event

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.get()


class MemoryPubSub:
    """Pub/sub inside one process; publishing never blocks on slow subscribers."""

    def __init__(self, max_queue: int = 1000) -> None:
        self.max_queue = max_queue
        self._topics: dict[str, set[MemorySubscription]] = {}
        self._subs: set[MemorySubscription] = set()
        self.published = 0
        self.offered = 0  # events handed to subscribers' queues (one per subscriber per event)
        self.ended_dropped = 0  # events dropped from the queues of subscriptions that have ended

    async def publish(self, topic: str, event: Any) -> int:
        """Deliver to every current subscriber of `topic`."""
        subs = self._topics.get(topic, ())
        for sub in subs:
            sub.offer(event)
        self.published += 1
        self.offered += len(subs)
        return len(subs)

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: Iterable[str]) -> AsyncIterator[MemorySubscription]:
        """Register a subscriber for the block's duration."""
        sub = MemorySubscription(frozenset(topics), self.max_queue)
        self._subs.add(sub)
        for t in sub.topics:
            self._topics.setdefault(t, set()).add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            for t in sub.topics:
                members = self._topics.get(t)
                if members is not None:
                    members.discard(sub)
                    if not members:
                        del self._topics[t]
            self.ended_dropped += sub.dropped
            if sub.dropped:
                log.info("subscriber fell behind and lost %d events", sub.dropped)

    def has_subscribers(self, prefix: str = "") -> bool:
        """True when a topic starting with `prefix` has a subscriber."""
        return any(t.startswith(prefix) for t in self._topics)

    def dropped(self) -> int:
        """Events dropped from subscribers' full queues, since the start."""
        return self.ended_dropped + sum(sub.dropped for sub in self._subs)

    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)

    async def close(self) -> None:
        """End every open subscription."""
        for sub in list(self._subs):
            sub.close()
