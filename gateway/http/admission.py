"""The door in front of `/graphql`: body size, authentication and rate limit, before any GraphQL work.

Each refusal is a JSON body shaped like a GraphQL error with a stable code: 413 PAYLOAD_TOO_LARGE,
401 UNAUTHENTICATED, 429 RATE_LIMITED (with Retry-After), 408 REQUEST_TIMEOUT (a body not received within
the request deadline). The authenticated `Principal` and the request's deadline travel to the GraphQL
view in one `RequestState` (`gateway/http/request_state.py`). The GraphiQL page itself (a browser
navigation) needs no credentials; the queries it sends do.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.asgi import address_key, header_purpose, replay_body, send_error
from gateway.http.auth import Authenticator, AuthError
from gateway.http.bodies import LEGACY_JSON, response_media_type
from gateway.http.graphiql import wants_graphiql_page
from gateway.http.metrics import UNKNOWN, GatewayMetrics
from gateway.http.persisted import Documents
from gateway.http.request_ids import REQUEST_ID, begin
from gateway.http.request_state import REQUEST_STATE, RequestState
from sources.settings import Settings
from stores.audit_trail import AuditStore, presented_subject, unauthenticated_event
from stores.rate_limits import RateLimiter, retry_after

log = logging.getLogger("ucgw.guard")

UNAUTHENTICATED, RATE_LIMITED, PAYLOAD_TOO_LARGE = "UNAUTHENTICATED", "RATE_LIMITED", "PAYLOAD_TOO_LARGE"
REQUEST_TIMEOUT, NOT_ACCEPTABLE = "REQUEST_TIMEOUT", "NOT_ACCEPTABLE"
UNAUTHENTICATED_CLASS = "unauthenticated"  # the rate-limit class of callers without valid credentials


class _TooLarge(Exception):
    pass


# Answers a request from the body already read (True), or leaves it to the GraphQL app (False).
Shortcut = Callable[[Scope, RequestState, Headers, bytes, Send], Awaitable[bool]]
# Runs just before the GraphQL app takes an admitted request (e.g. starts the backend calls it will make).
EarlyHook = Callable[[Scope, RequestState, Headers, bytes], Awaitable[None]]


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; raises `_TooLarge` as soon as it passes `limit` bytes (0: no limit)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit and size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


QUIET_SECONDS = 0.010  # a request this long after the one before it arrived into a quiet gateway
STEADY_SECONDS = 0.100  # every request this long from one connection: a lone client, asking in turn


class InFlight:
    """The GraphQL endpoint's traffic as the guard sees it: requests in flight, and who sent the latest.

    `may_block` tells a store (the audit trail) whether the request it serves may keep the event loop busy
    for a moment (one commit) without anybody else waiting: it is the only request in flight, and either
    it came after a quiet spell, or every request for a while came over one connection (an HTTP/1.1
    connection sends its next request only after this one's answer). Requests from several connections
    at once, read one at a time by the server, are never counted as alone.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = 0
        self._clock = clock
        self._started = -math.inf  # clock time when the latest request arrived
        self._quiet = True  # it arrived QUIET_SECONDS or more after the one before it
        self._connection: object = None  # the latest request's client address
        self._switched = -math.inf  # when a request last came over another connection than the one before

    def enter(self, connection: object) -> None:
        """A request arrived over `connection` (the ASGI scope's client address)."""
        now = self._clock()
        self.count += 1
        self._quiet, self._started = now - self._started >= QUIET_SECONDS, now
        if connection != self._connection:
            self._connection, self._switched = connection, now

    def leave(self) -> None:
        """A request was answered (or failed)."""
        self.count -= 1

    def may_block(self) -> bool:
        """True when the latest request is alone and nobody else is likely to be kept waiting."""
        return self.count <= 1 and (self._quiet or self._started - self._switched >= STEADY_SECONDS)


class BodyWatch:
    """Requests still reading their body, each given up (its task cancelled) `seconds` after it began.

    One sweeping task, alive only while some body is being read, checks every `seconds / 4` (at most 1 s),
    so a body that trickles in (or never comes) holds a request at most about `seconds` longer than it
    should; the requests whose body is already there pay a dict entry, not a timer each.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reading: dict[int, tuple[float, asyncio.Task[Any]]] = {}
        self._expired: set[int] = set()
        self._ids = itertools.count()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> int:
        """The current task begins reading a body; the token to pass to `done` and `timed_out`."""
        task = asyncio.current_task()
        token = next(self._ids)
        if task is None:
            return token
        self._reading[token] = (time.monotonic() + self.seconds, task)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = task.get_loop().create_task(self._sweep())
        return token

    def done(self, token: int) -> None:
        """The body was read, refused or given up."""
        self._reading.pop(token, None)
        self._expired.discard(token)

    def timed_out(self, token: int) -> bool:
        """True when the cancellation being handled is this watch's (it is then taken back)."""
        if token not in self._expired:
            return False
        task = asyncio.current_task()
        return task is None or task.uncancel() == 0

    async def _sweep(self) -> None:
        while self._reading:
            await asyncio.sleep(min(1.0, self.seconds / 4))
            now = time.monotonic()
            for token, (deadline, task) in list(self._reading.items()):
                if now >= deadline and token not in self._expired:
                    self._expired.add(token)
                    task.cancel()


class GraphQLGuard:
    """ASGI middleware for the GraphQL endpoint."""

    def __init__(self, app: ASGIApp, settings: Settings, authenticator: Authenticator,
                 limiter: RateLimiter, shortcut: Shortcut | None = None, in_flight: InFlight | None = None,
                 early: EarlyHook | None = None, audit: AuditStore | None = None,
                 metrics: GatewayMetrics | None = None, documents: Documents | None = None,
                 negotiates: bool = True) -> None:
        # False for an endpoint that answers in a media type of its own (the event streams: text/event-stream)
        self.negotiates = negotiates
        self.app = app
        self.documents = documents  # persisted documents named by hash (gateway/http/persisted.py)
        self.metrics = metrics
        self.audit = audit  # where refused credentials are recorded
        self.settings = settings
        self.authenticator = authenticator
        self.limiter = limiter
        self.shortcut = shortcut
        self.early = early
        self.in_flight = in_flight or InFlight()
        self.bodies = BodyWatch(settings.request_deadline_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight.enter(scope.get("client"))
        metrics = self.metrics
        if metrics is None:
            try:
                await self._http(scope, receive, send)
            finally:
                self.in_flight.leave()
            return
        started, refused = time.perf_counter(), 0  # 0: an exception escaped (the server answers 500)
        try:
            refused = await self._http(scope, receive, send)
        finally:
            self.in_flight.leave()
            state: RequestState | None = scope.get(REQUEST_STATE)
            if refused or state is None:
                metrics.finished(started, UNKNOWN, None, refused or 0, False)
            else:
                metrics.finished(started, state.operation, state.principal.role if state.principal else None,
                                 state.status, state.errors)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> int | None:
        """Answer one request; the status of a refusal made here, None when the request was admitted (the
        GraphQL view or the stored answer records its status in the request's state)."""
        request_id = begin(scope)  # every answer below carries it (send_error, the shortcut, the view)
        headers = Headers(scope=scope)
        if wants_graphiql_page(scope["method"], headers.get("accept", "")):
            await self.app(scope, receive, send)  # the page holds no data; its queries come back through here
            return 200
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length", "")
        if limit and (len(scope.get("query_string", b"")) > limit or (declared.isdigit() and int(declared) > limit)):
            await self._too_large(send)
            return 413
        try:
            if self.authenticator.oidc is not None:
                await self.authenticator.prepare(headers)  # a rotated provider key is read before it is needed
            principal = self.authenticator.authenticate(headers)
        except AuthError as exc:
            wait = await self.limiter.check(address_key(scope))  # slows credential guessing
            if wait:
                await self._rate_limited(send, wait, UNAUTHENTICATED_CLASS)
                return 429
            log.info("request refused: %s", exc)
            await self._audit_refusal(headers, request_id)
            await send_error(send, 401, UNAUTHENTICATED, str(exc), {"www-authenticate": 'Bearer realm="ucgw"'})
            return 401
        wait = await self.limiter.check(principal.rate_key)
        if wait:
            await self._rate_limited(send, wait, principal.role)
            return 429
        media_type = response_media_type(headers.get("accept")) if self.negotiates else LEGACY_JSON
        if media_type is None:
            await send_error(send, 406, NOT_ACCEPTABLE, "the Accept header allows no media type the gateway sends: "
                             "accept application/graphql-response+json or application/json")
            return 406
        watch = self.bodies.start()
        try:
            body = await read_body(receive, limit)
        except _TooLarge:
            await self._too_large(send)
            return 413
        except asyncio.CancelledError:
            if not self.bodies.timed_out(watch):
                raise
            await self._body_timed_out(send)
            return 408
        finally:
            self.bodies.done(watch)
        state = scope[REQUEST_STATE] = RequestState(principal,
                                                     time.monotonic() + self.settings.request_deadline_seconds,
                                                     request_id)
        state.media_type = media_type
        if self.documents is not None:
            named = await self.documents(scope, state, headers, body, send)
            if named is None:
                return None  # refused, with its status in the state
            body = named
        if self.metrics is not None:
            state.operation = self.metrics.operation(body, scope.get("query_string", b""))
        if self.shortcut is not None and await self.shortcut(scope, state, headers, body, send):
            if state.registration is not None:  # a stored answer's document is valid: register the one it sent
                await state.registration()
            return None
        try:
            if self.early is not None:
                await self.early(scope, state, headers, body)
            await self.app(scope, replay_body(body, receive), send)
        finally:
            if state.answer_lead is not None:
                asyncio.get_running_loop().call_soon(state.answer_lead)
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A handshake with credentials must pass; one without goes on with no principal.

        Browsers cannot set headers on a websocket, so a subscription protocol may authenticate in its
        `connection_init` payload instead; until then the connection can read nothing (every field
        needs a capability and no principal holds none). Each handshake takes one token of the rate
        limit, as an HTTP request does: the principal's when the handshake carries credentials, else
        the client address's (bad credentials included, which slows guessing). Each operation the
        socket then starts takes one more (`gateway/http/ws_protocol.py`).
        """
        headers = Headers(scope=scope)
        principal = None
        if "authorization" in headers or "x-api-key" in headers:
            try:
                principal = await self.authenticator.authenticate_async(headers)
            except AuthError:
                if await self._websocket_admitted(scope, send, address_key(scope), UNAUTHENTICATED_CLASS):
                    await self._audit_refusal(headers)
                    await send({"type": "websocket.close", "code": 4401, "reason": "unauthenticated"})
                return
            scope[REQUEST_STATE] = RequestState(principal, request_id=REQUEST_ID.get() or begin(scope))
        key = principal.rate_key if principal is not None else address_key(scope)
        if await self._websocket_admitted(scope, send, key, principal.role if principal else UNAUTHENTICATED_CLASS):
            await self.app(scope, receive, send)

    async def _audit_refusal(self, headers: Headers, request_id: str | None = None) -> None:
        """Record a request refused for its credentials, with the subject it presented (unverified), after
        the rate limit let it through (so a flood of bad tokens is bounded by the limit). The event joins the
        loop turn's group commit; a failed write is logged and the refusal goes out all the same."""
        if self.audit is None:
            return
        event = unauthenticated_event(presented_subject(headers.get("authorization", "")), header_purpose(headers),
                                      request_id)
        try:
            await self.audit.append([event])
        except Exception as exc:  # noqa: BLE001 - the caller is refused either way
            log.error("audit trail write failed for a refused request (%s)", type(exc).__name__)

    async def _websocket_admitted(self, scope: Scope, send: Send, key: str, client_class: str) -> bool:
        """Take a token for a handshake; when there is none, refuse it (HTTP 429 where the server can
        send a denial response, else close code 4429) and return False."""
        wait = await self.limiter.check(key)
        if not wait:
            return True
        retry, message = retry_after(wait)
        if self.metrics is not None:
            self.metrics.refused(client_class)
        log.info("websocket refused: rate limit")
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send_error(send, 429, RATE_LIMITED, message, {"retry-after": str(retry)},
                             kind="websocket.http.response", retryAfterSeconds=retry)
        else:
            await send({"type": "websocket.close", "code": 4429, "reason": message})
        return False

    async def _body_timed_out(self, send: Send) -> None:
        deadline = self.bodies.seconds
        log.info("request refused: body not received within %s s", deadline)
        await send_error(send, 408, REQUEST_TIMEOUT, f"the request body did not arrive within {deadline} s",
                         {"connection": "close"})

    async def _too_large(self, send: Send) -> None:
        limit = self.settings.max_body_bytes
        # the body is left unread: the edge closes the connection gently after this answer (gateway/http/edge.py)
        await send_error(send, 413, PAYLOAD_TOO_LARGE, f"request larger than {limit} bytes", {"connection": "close"},
                         max=limit)

    async def _rate_limited(self, send: Send, wait: float, client_class: str) -> None:
        if self.metrics is not None:
            self.metrics.refused(client_class)
        retry, message = retry_after(wait)
        log.info("request refused: rate limit")
        await send_error(send, 429, RATE_LIMITED, message, {"retry-after": str(retry)}, retryAfterSeconds=retry)
