"""The GraphQL endpoint: strawberry's ASGI view with the gateway's request context, JSON refusals, stored
answers recorded after the response, websocket authentication and the offline GraphiQL page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from gateway.http.answer_memo import AnswerCache
from gateway.http.asgi import ANSWER_HEADERS, clean_purpose, header_purpose, send_error
from gateway.http.auth import Authenticator, AuthError
from gateway.http.bodies import GRAPHQL_RESPONSE_JSON, LEGACY_JSON, is_json_type, too_deep
from gateway.http.graphiql import graphiql_response, wants_graphiql_page
from gateway.http.request_ids import REQUEST_ID, id_header
from gateway.http.request_state import REQUEST_STATE, RequestState, request_state
from gateway.http.upstream.execute_single import HTTPException, SubscriptionsRefusedOverHTTP
from gateway.http.ws_protocol import GatewayTransportWS, SocketCount, TextFrameWebSocket
from resolvers.answer_recording import AnswerRecording
from resolvers.audit_reads import AUDIT_UNAVAILABLE, ReadRecorder
from resolvers.complexity import GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, QUERY_TOO_COMPLEX
from resolvers.context import RequestContext
from resolvers.errors import BAD_USER_INPUT
from resolvers.federation import build_subgraph
from resolvers.masking import mask_unexpected
from resolvers.pagination import CursorCodec
from resolvers.schema import build_schema
from stores.audit_trail import AuditStore
from stores.rate_limits import RateLimiter
from stores.safety_concerns import STORE_UNAVAILABLE
from sync.services import Services

UNAVAILABLE_CODES = frozenset({AUDIT_UNAVAILABLE, STORE_UNAVAILABLE})
RETRY_UNAVAILABLE = b"2"  # seconds: the stores' probe asks PostgreSQL every second
log = logging.getLogger("ucgw.app")
# codes of the requests strawberry refuses before any GraphQL work, by HTTP status
# codes of the errors a request gets before execution begins (resolvers/complexity.py `RequestErrorCodes`)
REQUEST_ERRORS = frozenset({GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, BAD_USER_INPUT, QUERY_TOO_COMPLEX})
REFUSAL_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class GatewayGraphQL(SubscriptionsRefusedOverHTTP, GraphQL):
    """strawberry's ASGI view with our request context and the offline GraphiQL page.

    Websockets speak graphql-transport-ws through `gateway/http/ws_protocol.py` (malformed messages refused;
    `limiter`, when given, charges each operation a socket starts; each operation has its own context
    from `operation_context`; every message a text frame)."""

    graphql_transport_ws_handler_class = GatewayTransportWS
    websocket_adapter_class = TextFrameWebSocket

    def __init__(self, services: Services, answers: AnswerCache, cursors: CursorCodec,
                 audit_store: AuditStore | None = None,
                 authenticator: Authenticator | None = None, limiter: RateLimiter | None = None,
                 health_details: Callable[[], dict[str, Any]] | None = None, **kwargs: Any) -> None:
        schema = build_subgraph(services.settings) if services.settings.federation else build_schema(services.settings)
        super().__init__(schema, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,), **kwargs)
        self.services = services
        self.answers = answers
        self.cursors = cursors
        self.audit_store = audit_store
        self.authenticator = authenticator or Authenticator(services.settings)
        self.limiter = limiter
        self.health_details = health_details  # the operators' counters, for `gatewayHealth`
        settings = services.settings
        self.sockets = SocketCount(settings.websockets_per_client)
        self.background: set[asyncio.Task[None]] = set()  # tasks started by timers (token expiry closes)
        # websocket limits (gateway/http/ws_protocol.py); strawberry's own per-socket cap (no code) is replaced
        self.connection_init_wait_timeout = timedelta(seconds=settings.ws_init_timeout_seconds)
        self.max_subscriptions_per_connection = None
        self.operations_per_socket = settings.ws_operations_per_socket
        self.max_tokens = settings.max_tokens  # a websocket operation's document is parsed first against it
        self.caller_operations = SocketCount(settings.subscriptions_per_client)
        self.unauthenticated = SocketCount(settings.ws_unauthenticated_per_address)
        # with Redis, the per-caller caps above count every replica's sockets and operations too
        self.shared_sockets = services.socket_slots
        self.shared_operations = services.operation_slots

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """strawberry's view, except that a request it refuses before any GraphQL work (a body that is not
        JSON, `query` not a string, a batch, a wrong method) gets the gateway's JSON error body with a code
        (`REFUSAL_CODES`) and strawberry's status and message, not a plain-text body."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            try:
                response = await self.run(Request(scope=scope, receive=receive))
            except HTTPException as exc:
                state = request_state(scope)
                if state is not None:
                    state.status = exc.status_code
                await send_error(send, exc.status_code, REFUSAL_CODES.get(exc.status_code, "BAD_REQUEST"),
                                 exc.reason, media_type=state.media_type if state is not None else LEGACY_JSON)
                return
            state = request_state(scope)
            if state is not None:
                if state.request_error and state.media_type == GRAPHQL_RESPONSE_JSON:
                    response.status_code = 400  # the spec: a request that did not reach execution is a 4xx
                if response.media_type == LEGACY_JSON and state.media_type != LEGACY_JSON:
                    response.headers["content-type"] = state.media_type
                state.status = response.status_code
            await response(scope, receive, send)
        finally:
            state = request_state(scope)
            if state is not None and state.context is not None:
                state.context.release()

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> RequestContext:
        state = request_state(request.scope)
        if state is None:  # the GraphiQL page, or a websocket handshake without credentials
            state = request.scope[REQUEST_STATE] = RequestState(None)
        lead = state.answer_lead  # set with the answer key: identical requests wait for this one
        recording = AnswerRecording(release=lead) if lead is not None else None
        early = state.prefetch
        context = RequestContext(services=self.services, request=request, response=response,
                                 principal=state.principal, purpose=header_purpose(request.headers),
                                 audit_store=self.audit_store, cursors=self.cursors, answer=recording, early=early,
                                 health_details=self.health_details,
                                 deadline=early.deadline if early is not None else 0.0,
                                 reads=ReadRecorder(state.request_id or None))
        state.context = context
        return context

    def operation_context(self, socket: RequestContext) -> RequestContext:
        """The context of one operation on a websocket: the socket's caller, purpose and stores, with its
        own audit reads, deadline and DataLoaders (so each subscription audits its own events)."""
        return RequestContext(services=socket.services, request=socket.request, response=socket.response,
                              principal=socket.principal, purpose=socket.purpose, audit_store=socket.audit_store,
                              cursors=socket.cursors, health_details=socket.health_details,
                              connection_params=socket.connection_params)

    async def on_ws_connect(self, context: RequestContext) -> dict[str, object] | None:
        """Authenticate a websocket from its `connection_init` payload (`{"Authorization": "Bearer ..."}`).

        Credentials sent with the handshake (checked by the guard) also count; none at all, or bad ones,
        close the connection with 4403.
        """
        params = {str(k).lower(): v for k, v in (context.connection_params or {}).items()}
        headers = {k: v for k, v in params.items() if isinstance(v, str)}
        if context.principal is None or "authorization" in headers or "x-api-key" in headers:
            try:
                context.principal = await self.authenticator.authenticate_async(headers)
            except AuthError as exc:
                log.info("websocket refused: %s", exc)
                raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": str(exc)}) from None
        if headers.get("x-purpose"):
            context.purpose = clean_purpose(headers["x-purpose"])
        if isinstance(context.request, WebSocket):
            used = headers.get("authorization") or context.request.headers.get("authorization", "")
            expires = token_expiry(used)
            if expires is not None:
                self._close_at(context.request, expires)
            elif context.principal is not None and context.principal.method == "api_key":
                given = headers if "authorization" in headers or "x-api-key" in headers else context.request.headers
                self._recheck_key(context.request, given, self.services.settings.api_keys_recheck_seconds)
        return None

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """Last line of defence: an unexpected error that escaped the schema's masking is masked here. Every
        error carries the request's id in `extensions.requestId`."""
        if result.errors:
            request_id = REQUEST_ID.get()
            result.errors = [_with_id(mask_unexpected(e, show_type=not self.services.settings.production),
                                      request_id) for e in result.errors]
        response = await super().process_result(request, result)
        state = request_state(request.scope)
        if state is not None and result.data is None and result.errors and request.scope["type"] == "http" and all(
                e.path is None and (e.extensions or {}).get("code") in REQUEST_ERRORS for e in result.errors):
            # a request error (not GraphQL, not valid, variables that do not fit, over the limits): execution never
            # began, so the answer has no `data` entry at all (the GraphQL spec; `"data": null` says it failed)
            response.pop("data", None)
            state.request_error = True
        elif state is not None and state.registration is not None:  # parsed and valid: its hash may name it now
            registration, state.registration = state.registration, None
            await registration()
        if state is not None and result.errors:
            state.errors = True  # the metrics' outcome (gateway/http/metrics.py)
        key, context = (state.answer_key, state.context) if state is not None else (None, None)
        if key is not None and context is not None and context.answer is not None:
            # after this turn of the loop, when the response has been written: the template costs it nothing
            asyncio.get_running_loop().call_soon(
                self.answers.store, key, response, context.answer,
                lambda: context.reads.written or context.reads.events(context.principal, context.purpose),
                self.encode_json)
        return response

    def encode_json(self, data: object) -> str | bytes:
        """The view's JSON encoding (orjson: compact, UTF-8)."""
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        """Request bodies and query parameters (orjson raises `json.JSONDecodeError`'s subclass on bad input)."""
        return orjson.loads(data)

    def parse_json(self, data: str | bytes) -> dict[str, object] | list[object]:
        """A request body: a JSON object (a batch, a list, is refused later); anything else a 400, where
        strawberry took `null`, `5` or `"x"` through to an AttributeError (HTTP 500)."""
        value = super().parse_json(data)
        if not isinstance(value, dict | list):
            raise HTTPException(400, 'the request body must be a JSON object: {"query": "...", "variables": {...}}')
        deep = too_deep(value)
        if deep:
            raise HTTPException(400, deep)
        return value

    async def parse_http_body(self, request: Any) -> Any:
        """strawberry's, except that a POST whose Content-Type is not JSON is a 415 (strawberry: 400)."""
        if request.method != "GET" and not is_json_type(request.content_type):
            raise HTTPException(415, "the request body must be JSON (Content-Type: application/json)")
        return await super().parse_http_body(request)

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        """strawberry's response, with the headers every /graphql answer carries (`ANSWER_HEADERS`); variables
        that do not coerce to their declared types (nothing executed) are a malformed request: HTTP 400, as
        the GraphQL-over-HTTP spec has it, with their BAD_USER_INPUT errors."""
        if _variables_refused(response_data):
            sub_response.status_code = 400
        unavailable = _store_unavailable(response_data)
        if unavailable:
            sub_response.status_code = 503
        response = super().create_response(response_data, sub_response)
        response.headers.raw.extend(ANSWER_HEADERS)
        if unavailable:
            response.headers.raw.append((b"retry-after", RETRY_UNAVAILABLE))
        request_id = REQUEST_ID.get()
        if request_id is not None:
            response.headers.raw.append(id_header(request_id))
        return response

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A browser asking for HTML gets GraphiQL, even with `?query=` (the demo's sample link)."""
        if self.graphql_ide is None:
            return False
        return super().should_render_graphql_ide(request) or wants_graphiql_page(
            request.method, request.headers.get("accept", "")
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        page = graphiql_response(self.services.settings, "/graphql")
        request_id = REQUEST_ID.get()
        if request_id is not None:
            page.headers.raw.append(id_header(request_id))
        return page

    def _close_at(self, websocket: WebSocket, expires: float) -> None:
        """Close a subscription connection when its token expires (the client must reconnect with a new one)."""
        loop = asyncio.get_running_loop()

        async def close() -> None:
            with contextlib.suppress(Exception):
                await websocket.close(code=4401, reason="token expired")

        handle = loop.call_later(max(0.0, expires - time.time()), lambda: self._background(loop.create_task(close())))
        websocket.state.expiry_timer = handle

    def _recheck_key(self, websocket: WebSocket, headers: Any, every: float) -> None:
        """Check an API-key websocket's key again every `every` seconds (the authenticator re-reads a changed key
        file, once for all sockets and requests); a key no longer there closes the socket with 4401."""
        loop = asyncio.get_running_loop()

        async def close() -> None:
            with contextlib.suppress(Exception):
                await websocket.close(code=4401, reason="API key revoked")

        def check() -> None:
            try:
                self.authenticator.authenticate(headers)
            except AuthError:
                log.info("websocket closed: its API key is no longer valid")
                self._background(loop.create_task(close()))
                return
            websocket.state.expiry_timer = loop.call_later(every, check)

        websocket.state.expiry_timer = loop.call_later(every, check)

    def _background(self, task: asyncio.Task[None]) -> None:
        """Keep a timer's task alive until it is done (the loop holds only weak references to tasks)."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def _with_id(error: GraphQLError, request_id: str | None) -> GraphQLError:
    """`error` with `extensions.requestId` (a new dict: an error's extensions may be shared)."""
    if request_id is not None:
        error.extensions = {**(error.extensions or {}), "requestId": request_id}
    return error


def _store_unavailable(response_data: Any) -> bool:
    """True when the answer holds no data because a shared store is down (the audit trail: fail closed; the
    concern store): HTTP 503 with Retry-After, so clients and load balancers retry, not treat it as final."""
    if not isinstance(response_data, dict):
        return False
    errors, data = response_data.get("errors") or [], response_data.get("data")
    if not any(isinstance(e, dict) and (e.get("extensions") or {}).get("code") in UNAVAILABLE_CODES for e in errors):
        return False
    return data is None or (isinstance(data, dict) and all(v is None for v in data.values()))


def _variables_refused(response_data: Any) -> bool:
    """True for an answer whose request was refused for its variables: no data at all, and only errors of the
    request (no path) tagged BAD_USER_INPUT (resolvers/complexity.py `RequestErrorCodes`)."""
    errors = response_data.get("errors") if isinstance(response_data, dict) else None
    return bool(errors) and response_data.get("data") is None and all(
        "path" not in e and (e.get("extensions") or {}).get("code") == BAD_USER_INPUT for e in errors)


def token_expiry(authorization: str) -> float | None:
    """`exp` of an already verified Bearer JWT (None for API keys and tokens without one)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    try:
        exp = jwt.decode(token.strip(), options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None
