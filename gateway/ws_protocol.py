"""The graphql-transport-ws handler, with the rate limit on every operation a websocket starts.

The protocol carries queries and mutations as well as subscriptions. Each operation a socket starts
costs its caller one token of the same bucket an HTTP request takes from (the guard charges the
handshake), so a websocket is no way around the limit. A refused operation gets the protocol's `error`
message (code RATE_LIMITED, with `retryAfterSeconds`); the connection stays open and its other
operations go on. Events pushed to a running subscription cost nothing.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage

from gateway.guard import RATE_LIMITED
from gateway.ratelimit import RateLimiter, retry_after

log = logging.getLogger("ucgw.guard")


class RateLimitedTransportWS(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's handler; `subscribe` first takes a token from the view's `limiter` (when it has one)."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """Start the operation, or refuse it with an `error` message when its caller is over the limit.

        Before the connection is acknowledged, and for an id already running, strawberry's own answer
        (closing the socket) stands."""
        limiter: RateLimiter | None = getattr(self.view, "limiter", None)
        principal = getattr(self.context, "principal", None)
        if (limiter is not None and principal is not None and self.connection_acknowledged
                and message["id"] not in self.operations):
            wait = await limiter.check(principal.rate_key)
            if wait:
                retry, text = retry_after(wait)
                log.info("websocket operation refused: rate limit")
                error = {"message": text, "extensions": {"code": RATE_LIMITED, "retryAfterSeconds": retry}}
                await self.send_message(cast(Message, {"id": message["id"], "type": "error", "payload": [error]}))
                return
        await super().handle_subscribe(message)
