"""What the stores need of the replicas' Redis connection (sources/redis_link.py `RedisLink` has it).

Stores and sources are siblings that never import each other, so the stores name the few members they use
here; `sync/services.py` hands them the process's one link. Its failures are redis-py `RedisError`s (raised
at once while its breaker is open), which the Redis stores catch to fall back on their memory twins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class SharedRedis(Protocol):
    """One replica's link to the shared Redis."""

    client: Any  # a redis.asyncio.Redis

    @property
    def usable(self) -> bool:
        """False while Redis is failing (the caller goes on alone)."""

    def key(self, *parts: str) -> str:
        """A key or channel under the deployment's prefix."""

    async def run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """`op(client)` as one round trip; RedisError when Redis fails or is known to be down."""
