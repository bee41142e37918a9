"""The graphql-transport-ws handler, with the gateway's rules: malformed messages refused, a cap on the
sockets one caller holds open, and the rate limit on every operation a socket starts.

A message that is not a JSON object with a string `type`, or a `subscribe` whose id is not a string or
whose payload is not `{"query": str, "variables"?: object, "operationName"?: str, "extensions"?: object}`,
closes the socket with 4400 and its reason, as the protocol asks (strawberry's own handler let such a
message raise, which dropped the connection without a close frame and logged a traceback).

One caller (a token's subject and client, or an API key) holds at most `websockets_per_client` open
sockets in one gateway process: the one past the cap is acknowledged and then closed with 4429 and a
reason (strawberry answers a rejected `connection_init` with a bare 4403, which would read as "forbidden").
The count lives in the process, as the sockets do.

The protocol carries queries and mutations as well as subscriptions. Each operation a socket starts
costs its caller one token of the same bucket an HTTP request takes from (the guard charges the
handshake), so a websocket is no way around the limit. A refused operation gets the protocol's `error`
message (code RATE_LIMITED, with `retryAfterSeconds`); the connection stays open and its other
operations go on. Events pushed to a running subscription cost nothing.

Each operation runs with a context of its own, made by the view's `operation_context` from the socket's
(same caller, purpose and stores): its own audit reads, deadline and DataLoaders, so one subscription's
event never takes another's reads into its audit event nor renews state another is using.

Limits besides those (gateway/app.py sets them from the settings): a socket that sends no `connection_init`
within `ws_init_timeout_seconds` is closed with 4408 (strawberry's); one client address holds at most
`ws_unauthenticated_per_address` sockets that have not yet sent `connection_init` (the one past it is
closed with 4429 at once); one socket runs at most `ws_operations_per_socket` operations at once, and one
caller at most `subscriptions_per_client` over all its sockets: an operation past either gets the
protocol's `error` message with code TOO_MANY_OPERATIONS (strawberry's own "Subscription limit reached"
had no code), and the socket stays open. A message's size is capped by the server (uvicorn's
`ws_max_size`, `max_body_bytes`: close 1009).

Every message goes out as a text frame (`TextFrameWebSocket`): browsers' graphql-ws client, which GraphiQL
uses, expects text, and strawberry sends the view's JSON as a binary frame when it is bytes (orjson's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, cast

from graphql import GraphQLSyntaxError, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage

from gateway.http.admission import RATE_LIMITED
from gateway.http.asgi import address_key
from resolvers.complexity import syntax_code
from rules.roles import Principal
from stores.rate_limits import RateLimiter, retry_after
from stores.redis_slots import ClusterSlots

log = logging.getLogger("ucgw.guard")
TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
# the running operation's own context, in that operation's task (and the tasks it starts)
_OPERATION_CONTEXT: ContextVar[Any] = ContextVar("ucgw_ws_operation_context", default=None)


class TextFrameWebSocket(ASGIWebSocketAdapter):
    """strawberry's ASGI websocket adapter, sending every message as a text frame."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        """The view's JSON encoding, as text (orjson's UTF-8 bytes decoded once)."""
        try:
            await self.ws.send_text(self.view.encode_json_string(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


def request_problem(payload: Any, what: str = "subscribe payload") -> str | None:
    """What is wrong with the shape of a GraphQL request `{"query": str, "variables"?: object,
    "operationName"?: str, "extensions"?: object}`, or None (websocket `subscribe` payloads and the
    server-sent-events endpoint's requests alike)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return f"{what} needs a string query"
    for key, kind in (("variables", dict), ("operationName", str), ("extensions", dict)):
        if payload.get(key) is not None and not isinstance(payload[key], kind):
            return f"{what}'s {key} must be {'an object' if kind is dict else 'a string'}"
    return None


def _subscribe_problem(message: dict[str, Any]) -> str | None:
    """What is wrong with a `subscribe` message's shape, or None."""
    if not isinstance(message.get("id"), str):
        return "subscribe needs a string id"
    if not isinstance(message.get("payload"), dict) or not isinstance(message["payload"].get("query"), str):
        return "subscribe needs a payload with a string query"
    return request_problem(message["payload"])


def _syntax_error(query: str, max_tokens: int | None) -> dict[str, Any] | None:
    """The coded error of a document that does not parse (or passes `max_tokens`), as an `error` message's
    payload holds it; None for one that parses."""
    try:
        parse(query, max_tokens=max_tokens, no_location=True)
    except GraphQLSyntaxError as error:
        formatted = dict(error.formatted)
        formatted["extensions"] = {"code": syntax_code(error)}
        return formatted
    return None


class SocketCount:
    """Open websockets per caller (`Principal.rate_key`), with a cap (0: none)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        """Count one more socket of `key`; False (and not counted) when it already holds `cap`."""
        held = self.open.get(key, 0)
        if self.cap and held >= self.cap:
            return False
        self.open[key] = held + 1
        return True

    def facts(self) -> dict[str, int]:
        """Open sockets and the callers holding them, for /readyz."""
        return {"open": sum(self.open.values()), "clients": len(self.open), "perClientCap": self.cap}

    def leave(self, key: str) -> None:
        """One socket of `key` closed."""
        held = self.open.get(key, 0) - 1
        if held > 0:
            self.open[key] = held
        else:
            self.open.pop(key, None)


class GatewayTransportWS(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's handler; messages are checked for shape first, an acknowledged socket is counted
    against its caller's cap (the view's `sockets`, when it has one), and `subscribe` takes a token from
    the view's `limiter` (when it has one)."""

    counted: str | None = None  # the caller key this socket is counted under
    shared_slot: str | None = None  # its slot among the caller's sockets on every replica (with Redis)
    waiting_at: str | None = None  # the address this socket is counted under until connection_init
    socket_context: Any = None

    async def handle(self) -> None:
        """strawberry's loop, unless the client address already holds its cap of sockets that have not
        sent `connection_init` (the view's `unauthenticated`): then the socket is closed with 4429."""
        waiting: SocketCount | None = getattr(self.view, "unauthenticated", None)
        if waiting is not None:
            address = address_key(self.websocket.ws.scope)  # type: ignore[attr-defined]
            if not waiting.enter(address):
                log.info("websocket refused: %d waiting for connection_init from one address", waiting.cap)
                await self.websocket.close(code=4429, reason="too many websockets awaiting connection_init from "
                                                             f"this address (at most {waiting.cap})")
                return
            self.waiting_at = address
        await super().handle()

    def _initialised(self) -> None:
        """The socket no longer counts as waiting for `connection_init` at its address."""
        waiting: SocketCount | None = getattr(self.view, "unauthenticated", None)
        if waiting is not None and self.waiting_at is not None:
            waiting.leave(self.waiting_at)
            self.waiting_at = None

    @property  # type: ignore[override]
    def context(self) -> Any:
        """The running operation's own context inside its task; the socket's everywhere else."""
        own = _OPERATION_CONTEXT.get()
        return self.socket_context if own is None else own

    @context.setter
    def context(self, value: Any) -> None:
        self.socket_context = value

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        """strawberry's, with a context of the operation's own (the view's `operation_context`, when it has
        one); set in the operation's task, so no other operation or the socket sees it."""
        make = getattr(self.view, "operation_context", None)
        if make is not None:
            _OPERATION_CONTEXT.set(make(self.socket_context))
        await super().run_operation(operation)

    async def handle_connection_init(self, message: Any) -> None:
        """strawberry's handshake; then count the socket, or close it with 4429 when its caller is at the cap."""
        await super().handle_connection_init(message)
        self._initialised()
        sockets: SocketCount | None = getattr(self.view, "sockets", None)
        principal: Principal | None = getattr(self.context, "principal", None)
        if sockets is None or principal is None or not self.connection_acknowledged or self.counted is not None:
            return
        if sockets.enter(principal.rate_key):
            shared: ClusterSlots | None = getattr(self.view, "shared_sockets", None)
            slot = None if shared is None else await shared.take(principal.rate_key)
            if shared is None or slot is not None:
                self.counted, self.shared_slot = principal.rate_key, slot
                return
            sockets.leave(principal.rate_key)
            log.info("websocket refused: %d open for one client over all replicas", sockets.cap)
        else:
            log.info("websocket refused: %d open for one client", sockets.cap)
        self.connection_acknowledged = False
        reason = f"too many open websockets for this client (at most {sockets.cap})"
        await self.websocket.close(code=4429, reason=reason)

    async def shutdown(self) -> None:
        """strawberry's clean-up; then the socket no longer counts against its caller, and its token-expiry
        timer (gateway/app.py `_close_at`) is cancelled, which would otherwise hold it until the expiry."""
        try:
            await super().shutdown()
        finally:
            self._initialised()
            sockets: SocketCount | None = getattr(self.view, "sockets", None)
            if sockets is not None and self.counted is not None:
                sockets.leave(self.counted)
                self.counted = None
                shared: ClusterSlots | None = getattr(self.view, "shared_sockets", None)
                if shared is not None:
                    shared.give_back(self.shared_slot)
                self.shared_slot = None
            state = getattr(getattr(self.context, "request", None), "state", None)
            timer = getattr(state, "expiry_timer", None)
            if timer is not None:
                timer.cancel()

    async def handle_message(self, message: Message) -> None:
        """Close with 4400 on a malformed message, else handle it as strawberry does."""
        raw: Any = message
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self.handle_invalid_message("Failed to parse message")
            return
        problem = _subscribe_problem(raw) if raw["type"] == "subscribe" else None
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

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
        if not self.connection_acknowledged or message["id"] in self.operations:
            await super().handle_subscribe(message)  # strawberry's answer (closing the socket) stands
            return
        unparsed = _syntax_error(message["payload"]["query"], getattr(self.view, "max_tokens", None))
        if unparsed is not None:  # strawberry sent a bare `complete`: the client never learnt why
            log.info("websocket operation refused: %s", unparsed["extensions"]["code"])
            await self.send_message(cast(Message, {"id": message["id"], "type": "error", "payload": [unparsed]}))
            return
        cap: int = getattr(self.view, "operations_per_socket", 0)
        running: SocketCount | None = getattr(self.view, "caller_operations", None)
        key = principal.rate_key if principal is not None else None
        if cap and len(self.operations) >= cap:
            await self._too_many(message["id"], f"too many operations running on this websocket (at most {cap})")
            return
        shared: ClusterSlots | None = getattr(self.view, "shared_operations", None)
        slot: str | None = None
        if running is not None and key is not None:
            if not running.enter(key):
                await self._too_many(message["id"], "too many operations running over all your websockets (at "
                                                    f"most {running.cap})")
                return
            if shared is not None:
                slot = await shared.take(key)
                if slot is None:
                    running.leave(key)
                    await self._too_many(message["id"], "too many operations running over all your websockets "
                                                        f"on every replica (at most {running.cap})")
                    return
        await super().handle_subscribe(message)
        operation = self.operations.get(message["id"])
        if running is not None and key is not None:
            def ended(_task: object = None) -> None:
                running.leave(key)
                if shared is not None:
                    shared.give_back(slot)

            if operation is None or operation.task is None:
                ended()
            else:  # a done callback runs even when the task is cancelled before it starts
                operation.task.add_done_callback(ended)

    async def _too_many(self, operation_id: str, text: str) -> None:
        """Refuse one operation with the protocol's `error` message (code TOO_MANY_OPERATIONS)."""
        log.info("websocket operation refused: %s", text)
        error = {"message": text, "extensions": {"code": TOO_MANY_OPERATIONS}}
        await self.send_message(cast(Message, {"id": operation_id, "type": "error", "payload": [error]}))
