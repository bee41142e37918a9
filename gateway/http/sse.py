"""GraphQL over server-sent events at `/graphql/stream`: the `graphql-sse` protocol's distinct connections
mode, for partners whose proxies block websockets.

One request is one operation: `POST` with a JSON body `{"query", "variables"?, "operationName"?,
"extensions"?}` (any operation), or `GET` with those as query parameters (queries and subscriptions only).
The answer is `text/event-stream`: each result is an `event: next` whose data is the result's JSON, the
end is `event: complete`; a comment line (`:`) every `sse_keepalive_seconds` keeps idle proxies from
closing a quiet stream. The protocol's single connection mode (a `PUT` reservation and a stream token) is
not offered: `PUT` is a 405 saying so.

The stream is the websocket path's equal, not a copy of it:
- admission is the same `GraphQLGuard` (body limit, credentials in headers, rate limit: one token per
  stream, as per websocket operation; refusals audited), so a 401, 413 or 429 comes before any stream;
- an open stream counts as one connection of its caller against `websockets_per_client` and as one
  operation against `subscriptions_per_client`, in the same counts the view keeps for websockets; one past
  either cap is a 429 (TOO_MANY_CONNECTIONS, TOO_MANY_OPERATIONS); the slot is released when the stream
  ends, whether it completes, the client goes away or its credentials lapse;
- the operation runs in a context made by the view's `get_context` and through the same schema, so the
  role, field and field-office rules hold and each event's child reads are audited (`StreamAudit`), and
  its results pass the view's `process_result` (masking, request id);
- a JWT's `exp` ends the stream (a last `next` with UNAUTHENTICATED, then `complete`), as it closes a
  websocket; an API key is checked again every `api_keys_recheck_seconds`.
Malformed requests are refused before the stream starts: 400 BAD_REQUEST (not JSON, wrong shape, too
deep), 415 (a POST that is not JSON), 406 NOT_ACCEPTABLE (an Accept without `text/event-stream`). Errors the
operation meets once admitted (validation, FORBIDDEN from a resolver) are its stream's `next` events, as
graphql-sse's own server sends them; a fault of the stream itself ends it with INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.types.graphql import OperationType

from gateway.http.admission import UNAUTHENTICATED, read_body
from gateway.http.asgi import ANSWER_HEADERS, send_error
from gateway.http.auth import AuthError
from gateway.http.bodies import is_json_type, too_deep
from gateway.http.graphql_view import GatewayGraphQL, token_expiry
from gateway.http.request_ids import REQUEST_ID, id_header
from gateway.http.request_state import request_state
from gateway.http.ws_protocol import TOO_MANY_OPERATIONS, request_problem
from resolvers.masking import INTERNAL_SERVER_ERROR

log = logging.getLogger("ucgw.guard")
STREAM_PATH = "/graphql/stream"
TOO_MANY_CONNECTIONS, NOT_ACCEPTABLE = "TOO_MANY_CONNECTIONS", "NOT_ACCEPTABLE"
EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = ((b"content-type", b"text/event-stream; charset=utf-8"), *ANSWER_HEADERS,
                  (b"x-accel-buffering", b"no"))  # nginx and others: pass each event on at once
OPERATIONS = {"GET": (OperationType.QUERY, OperationType.SUBSCRIPTION),
              "POST": (OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION)}


class _Refused(Exception):
    """A request refused before its stream starts: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def accepts_event_stream(accept: str | None) -> bool:
    """True when an Accept header (absent counts as anything) admits `text/event-stream`."""
    if not accept:
        return True
    for part in accept.split(","):
        if part.partition(";")[0].strip().lower() in (EVENT_STREAM, "text/*", "*/*"):
            return True
    return False


def event(kind: str, data: bytes = b"") -> bytes:
    """One server-sent event (the JSON the view encodes holds no line breaks)."""
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


class GraphQLStreams:
    """The `/graphql/stream` endpoint (module docstring), behind the same `GraphQLGuard` as `/graphql`."""

    def __init__(self, view: GatewayGraphQL, keepalive_seconds: float) -> None:
        self.view = view
        self.keepalive_seconds = keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = request_state(scope)
        try:
            if state is None or state.principal is None:  # the guard's GraphiQL-page pass-through
                raise _Refused(401, UNAUTHENTICATED, "authentication required: send a token or API key")
            request = await self._request(scope, receive)
        except _Refused as refusal:
            if state is not None:
                state.status = refusal.status
            await send_error(send, refusal.status, refusal.code, str(refusal),
                             {"allow": "GET, POST"} if refusal.status == 405 else None)
            return
        key = state.principal.rate_key
        connections, operations = self.view.sockets, self.view.caller_operations
        # with Redis, the caps count every replica's websockets and streams too (services' cluster slots)
        shared_connections, shared_operations = self.view.shared_sockets, self.view.shared_operations
        connection_slot = operation_slot = None
        try:
            if not connections.enter(key):
                key_entered = False
            else:
                key_entered = True
                connection_slot = None if shared_connections is None else await shared_connections.take(key)
            if not key_entered or (shared_connections is not None and connection_slot is None):
                await self._refuse(send, TOO_MANY_CONNECTIONS, "too many open subscription connections (websockets "
                                                               f"and event streams) for this client (at most "
                                                               f"{connections.cap})")
                return
            operation_entered = operations.enter(key)
            try:
                operation_slot = (None if shared_operations is None or not operation_entered
                                  else await shared_operations.take(key))
                if not operation_entered or (shared_operations is not None and operation_slot is None):
                    await self._refuse(send, TOO_MANY_OPERATIONS, "too many operations running over all your "
                                                                  f"connections (at most {operations.cap})")
                    return
                state.status = 200
                await self._stream(scope, receive, send, request)
            finally:
                if operation_entered:
                    operations.leave(key)
                if shared_operations is not None and operation_slot is not None:
                    shared_operations.give_back(operation_slot)
        finally:
            if key_entered:
                connections.leave(key)
            if shared_connections is not None and connection_slot is not None:
                shared_connections.give_back(connection_slot)

    async def _refuse(self, send: Send, code: str, message: str) -> None:
        log.info("event stream refused: %s", message)
        await send_error(send, 429, code, message)

    async def _request(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """The GraphQL request of a GET or POST, checked for shape; `_Refused` otherwise."""
        method = scope["method"]
        headers = Headers(scope=scope)
        if method == "PUT":
            raise _Refused(405, "METHOD_NOT_ALLOWED", "graphql-sse's single connection mode is not offered: use "
                                                      "distinct connections (a GET or POST per operation)")
        if method not in OPERATIONS:
            raise _Refused(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here: use GET or POST")
        if not accepts_event_stream(headers.get("accept")):
            raise _Refused(406, NOT_ACCEPTABLE, "this endpoint answers with text/event-stream only "
                                                "(Accept: text/event-stream)")
        try:
            if method == "POST":
                if not is_json_type(headers.get("content-type")):
                    raise _Refused(415, "UNSUPPORTED_MEDIA_TYPE", "the request body must be JSON "
                                                                  "(Content-Type: application/json)")
                body: Any = orjson.loads(await read_body(receive, 0))  # the guard has read and capped it
            else:  # query parameters; variables and extensions as JSON text
                body = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
                for member in ("variables", "extensions"):
                    body[member] = orjson.loads(body[member]) if body.get(member) else None
        except orjson.JSONDecodeError:
            raise _Refused(400, "BAD_REQUEST", "the request is not valid JSON") from None
        problem = request_problem(body, "the request") or too_deep(body)
        if problem is not None:
            raise _Refused(400, "BAD_REQUEST", problem)
        return body

    async def _stream(self, scope: Scope, receive: Receive, send: Send, body: dict[str, Any]) -> None:
        """Run the operation and send its results as events until it completes, the client leaves or the
        caller's credentials lapse."""
        view = self.view
        request = Request(scope, receive)
        context = await view.get_context(request, Response())
        results = await view.schema.stream(
            body["query"], variable_values=body.get("variables"), context_value=context,
            operation_name=body.get("operationName"), operation_extensions=body.get("extensions"),
            allowed_operation_types=OPERATIONS[scope["method"]])
        writing = asyncio.Lock()
        closed = False

        async def write(chunk: bytes) -> None:
            nonlocal closed
            async with writing:
                if closed:
                    return
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except OSError:  # the client went away under us
                    closed = True

        async def pump() -> None:
            async for result in results:
                await write(event("next", view.encode_json(await view.process_result(request, result))))  # type: ignore[arg-type]

        request_id = REQUEST_ID.get()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*STREAM_HEADERS, *([id_header(request_id)] if request_id else [])]})
        tasks = {asyncio.create_task(pump()): "done", asyncio.create_task(_disconnected(receive)): "gone",
                 asyncio.create_task(self._credentials_lapse(request)): "lapsed"}
        keepalive = asyncio.create_task(_every(self.keepalive_seconds, lambda: write(b":\n\n")))
        why = "gone"
        try:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(finished))
            why = tasks[first]
            if why == "lapsed":
                reason = first.result()
                error = {"message": reason, "extensions": {"code": UNAUTHENTICATED}}
                await write(event("next", view.encode_json({"errors": [error]})))  # type: ignore[arg-type]
            elif why == "done" and first.exception() is not None:  # the schema masks errors; this is a fault here
                log.error("event stream ended by %s", type(first.exception()).__name__)
                error = {"message": "internal error", "extensions": {"code": INTERNAL_SERVER_ERROR}}
                await write(event("next", view.encode_json({"errors": [error]})))  # type: ignore[arg-type]
        finally:
            keepalive.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(keepalive, *tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await results.aclose()
            context.release()
        if why != "gone":
            await write(event("complete"))
            async with writing:
                if not closed:
                    with contextlib.suppress(OSError):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _credentials_lapse(self, request: Request) -> str:
        """Waits until the caller's credentials lapse (a JWT's expiry, an API key no longer in the key file,
        as websockets are closed for them) and returns why; forever for neither."""
        principal = request_state(request.scope).principal  # type: ignore[union-attr]
        expires = token_expiry(request.headers.get("authorization", ""))
        if expires is not None:
            await asyncio.sleep(max(0.0, expires - time.time()))
            return "token expired"
        if principal is not None and principal.method == "api_key":
            every = self.view.services.settings.api_keys_recheck_seconds
            while True:
                await asyncio.sleep(every)
                try:
                    self.view.authenticator.authenticate(request.headers)
                except AuthError:
                    log.info("event stream ended: its API key is no longer valid")
                    return "API key revoked"
        await asyncio.Event().wait()
        return ""


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has closed the connection."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _every(seconds: float, act: Callable[[], Awaitable[None]]) -> None:
    """Run `act` every `seconds` (never for 0)."""
    if seconds <= 0:
        return
    while True:
        await asyncio.sleep(seconds)
        await act()

