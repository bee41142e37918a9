"""Automatic persisted queries registered on one replica, known to all: the APQ store's Redis twin.

Apollo's `PersistedQueryLink` sends a hash alone, and after `PERSISTED_QUERY_NOT_FOUND` the hash and the
query; behind a load balancer the next hash-only request may reach another replica, which must know it too.
Each replica keeps its own store (SQLite or memory) in front: a hit there costs no round trip, a miss asks
Redis, and a registration goes to both. While Redis fails the replica works from its own store alone (a
client whose hash is unknown there just sends the query again, as the protocol expects).
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from stores.documents import DocumentStore
from stores.redis_shared import SharedRedis

log = logging.getLogger("ucgw.documents")

KEEP_SECONDS = 30 * 86_400  # a registration unused this long is dropped (clients register it again)


class RedisDocumentStore:
    """`DocumentStore` over the replicas' Redis, with this replica's own store in front."""

    def __init__(self, link: SharedRedis, local: DocumentStore) -> None:
        self.link = link
        self.local = local
        self.shared_hits = 0  # hashes this replica learnt from another's registration

    async def get(self, digest: str) -> str | None:
        text = await self.local.get(digest)
        if text is not None or not self.link.usable:
            return text
        key = self.link.key("doc", digest)
        try:
            raw = await self.link.run(lambda r: r.getex(key, ex=KEEP_SECONDS))
        except RedisError:
            log.debug("redis unavailable: persisted documents from this replica's store only")
            return None
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        self.shared_hits += 1
        await self.local.put(digest, text)
        return text

    async def put(self, digest: str, text: str) -> None:
        await self.local.put(digest, text)
        if not self.link.usable:
            return
        key = self.link.key("doc", digest)
        try:
            await self.link.run(lambda r: r.set(key, text.encode(), ex=KEEP_SECONDS))
        except RedisError:
            log.debug("redis unavailable: a persisted document registered on this replica only")

    def close(self) -> None:
        close = getattr(self.local, "close", None)
        if close is not None:
            close()
