"""Subscription events shared by every replica through one Redis pub/sub channel.

A change is published once to the channel `events` (by whichever replica read it: with feed leadership, the
leader alone); every replica's listener (`deliver`, run by sync/services.py) hands it to the subscribers of
its own websockets through its `MemoryPubSub`. An event is known by its topic and id (`encode` gives the
id), and each replica delivers a given (topic, id) once, so a change that two replicas read (both following
a feed, or a feed and a webhook) reaches each subscriber once. While Redis is unreachable, a replica delivers
what it reads itself to its own subscribers, as one process does.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from redis.exceptions import RedisError

from stores.pubsub import MemoryPubSub, MemorySubscription
from stores.redis_shared import SharedRedis

log = logging.getLogger("ucgw.pubsub")
DELIVERED_REMEMBERED = 20_000  # (topic, id) pairs kept to deliver each event once


class RedisPubSub:
    """The `PubSub` protocol over Redis: publish to the channel, deliver from it to local subscribers."""

    def __init__(self, link: SharedRedis, local: MemoryPubSub, encode: Callable[[Any], tuple[str, Any]],
                 decode: Callable[[Any], Any]) -> None:
        self.link = link
        self.local = local
        self.encode = encode  # event -> (id, JSON-able body)
        self.decode = decode  # JSON-able body -> event
        self.channel = link.key("events")
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.shared_published = 0  # events sent through Redis
        self.duplicates = 0  # events that arrived again (read by two replicas) and were delivered once

    async def publish(self, topic: str, event: Any) -> int:
        """Publish through Redis (every replica delivers it); to this replica's subscribers while Redis fails."""
        ident, body = self.encode(event)
        if self.link.usable:
            message = orjson.dumps({"topic": topic, "id": ident, "event": body})
            try:
                receivers = await self.link.run(lambda r: r.publish(self.channel, message))
                self.shared_published += 1
                return int(receivers)
            except RedisError:
                log.debug("redis unavailable: delivering an event to this replica's subscribers only")
        return await self._deliver_once(topic, ident, event)

    async def deliver(self, data: bytes) -> None:
        """One message of the channel, to this replica's subscribers (once per topic and id)."""
        doc = orjson.loads(data)
        await self._deliver_once(str(doc["topic"]), str(doc["id"]), self.decode(doc["event"]))

    async def _deliver_once(self, topic: str, ident: str, event: Any) -> int:
        mark = (topic, ident)
        if mark in self._delivered:
            self.duplicates += 1
            return 0
        self._delivered[mark] = None
        if len(self._delivered) > DELIVERED_REMEMBERED:
            self._delivered.popitem(last=False)
        return await self.local.publish(topic, event)

    def subscribe(self, topics: Iterable[str]) -> contextlib.AbstractAsyncContextManager[MemorySubscription]:
        """Subscribe this replica's caller to `topics`."""
        return self.local.subscribe(topics)

    def has_subscribers(self, prefix: str = "") -> bool:
        """With Redis, any replica may have one: True; alone, whether this replica has one."""
        return self.link.usable or self.local.has_subscribers(prefix)

    def subscriber_count(self) -> int:
        """Subscriptions open on this replica."""
        return self.local.subscriber_count()

    def dropped(self) -> int:
        """Events dropped from this replica's subscribers' full queues."""
        return self.local.dropped()

    async def close(self) -> None:
        """End this replica's subscriptions."""
        await self.local.close()


