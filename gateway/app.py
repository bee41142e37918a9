"""The HTTP application: Starlette routes, the strawberry GraphQL view, health endpoints, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import jwt
import orjson
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.answer_cache import ANSWER_KEY, ANSWER_LEAD, AnswerCache, AnswerRecording, AnswerShortcut
from gateway.audit import AuditStore, SQLiteAuditStore
from gateway.auth import Authenticator, AuthError, mint_token
from gateway.changefeed import webhook_endpoint
from gateway.config import ConfigError, Settings
from gateway.graphiql import graphiql_response, static_mount, wants_graphiql_page
from gateway.guard import (
    ANSWER_HEADERS,
    PRINCIPAL_KEY,
    GraphQLGuard,
    InFlight,
    clean_purpose,
    header_purpose,
    send_error,
)
from gateway.http.bodies import is_json_type, too_deep
from gateway.ratelimit import RateLimiter
from gateway.roles import ROLES
from gateway.services import Services
from gateway.ws_protocol import GatewayTransportWS, SocketCount, TextFrameWebSocket
from resolvers.context import RequestContext
from resolvers.early import EARLY_KEY, EarlyFetch
from resolvers.masking import mask_unexpected
from resolvers.pagination import use_cursor_secret
from resolvers.safety import sponsor_office
from resolvers.schema import build_schema

try:
    from cross_web import HTTPException  # what strawberry raises to refuse a request (0.341)
except ImportError:  # pragma: no cover - strawberry releases before cross_web
    from strawberry.http.exceptions import HTTPException  # type: ignore[attr-defined,no-redef]

log = logging.getLogger("ucgw.app")
# codes of the requests strawberry refuses before any GraphQL work, by HTTP status
REFUSAL_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}
CONTEXT_KEY = "ucgw.context"  # ASGI scope entry: the request's GraphQL context, for process_result
DEMO_TOKEN_TTL = 12 * 3600
# operations an HTTP request may carry, by method (subscriptions need the websocket)
HTTP_OPERATIONS = {"GET": frozenset({OperationType.QUERY}),
                   "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}
SUBSCRIPTION_OVER_HTTP = "subscriptions need a websocket (graphql-transport-ws) on /graphql"


def _quiet_errors(schema: Any) -> None:
    """Log only unexpected errors: type, path and stack, never the message (it may hold record values)."""

    def process_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError):
                continue
            stack = "".join(traceback.format_tb(original.__traceback__))
            log.error("unexpected %s at path %s\n%s", type(original).__name__, error.path, stack.rstrip())

    schema.process_errors = process_errors


class GatewayGraphQL(GraphQL):
    """strawberry's ASGI view with our request context and the offline GraphiQL page.

    Websockets speak graphql-transport-ws through `gateway/ws_protocol.py` (malformed messages refused;
    `limiter`, when given, charges each operation a socket starts; each operation has its own context
    from `operation_context`; every message a text frame)."""

    graphql_transport_ws_handler_class = GatewayTransportWS
    websocket_adapter_class = TextFrameWebSocket

    def __init__(self, services: Services, answers: AnswerCache, audit_store: AuditStore | None = None,
                 authenticator: Authenticator | None = None, limiter: RateLimiter | None = None,
                 **kwargs: Any) -> None:
        schema = build_schema(services.settings)
        _quiet_errors(schema)
        super().__init__(schema, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,), **kwargs)
        self.services = services
        self.answers = answers
        self.audit_store = audit_store
        self.authenticator = authenticator or Authenticator(services.settings)
        self.limiter = limiter
        self.sockets = SocketCount(services.settings.websockets_per_client)

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
                await send_error(send, exc.status_code, REFUSAL_CODES.get(exc.status_code, "BAD_REQUEST"),
                                 exc.reason)
                return
            await response(scope, receive, send)
        finally:
            context = scope.get(CONTEXT_KEY)
            if context is not None:
                context.release()

    async def execute_single(self, request: Request, request_adapter: Any, sub_response: Response,
                             context: RequestContext, root_value: Any, request_data: Any) -> ExecutionResult:
        """strawberry's, except that over HTTP a subscription is refused (400 BAD_REQUEST, `__call__`) once
        parsed, before validation or any resolver: strawberry lets it run as a query, which fails inside
        its root field with an internal TypeError. Queries (GET and POST) and mutations (POST) as before."""
        allowed = HTTP_OPERATIONS.get(request_adapter.method, frozenset())
        if request_adapter.method == "GET" and not self.allow_queries_via_get:
            allowed = frozenset()
        try:
            return await self.schema.execute(
                request_data.query, root_value=root_value, variable_values=request_data.variables,
                context_value=context, operation_name=request_data.operation_name,
                allowed_operation_types=allowed, operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason()) from e
        except InvalidOperationTypeError as e:
            if e.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_OVER_HTTP) from e
            raise HTTPException(400, e.as_http_error_reason(request_adapter.method)) from e
        except MissingQueryError as e:
            raise HTTPException(400, "No GraphQL query found in the request") from e

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> RequestContext:
        lead = request.scope.get(ANSWER_LEAD)  # set with ANSWER_KEY: identical requests wait for this one
        recording = AnswerRecording(release=lead) if lead is not None else None
        early = request.scope.get(EARLY_KEY)
        context = RequestContext(services=self.services, request=request, response=response,
                                 principal=request.scope.get(PRINCIPAL_KEY),
                                 purpose=header_purpose(request.headers),
                                 audit_store=self.audit_store, answer=recording, early=early,
                                 deadline=early.deadline if early is not None else 0.0)
        request.scope[CONTEXT_KEY] = context
        return context

    def operation_context(self, socket: RequestContext) -> RequestContext:
        """The context of one operation on a websocket: the socket's caller, purpose and stores, with its
        own audit reads, deadline and DataLoaders (so each subscription audits its own events)."""
        return RequestContext(services=socket.services, request=socket.request, response=socket.response,
                              principal=socket.principal, purpose=socket.purpose, audit_store=socket.audit_store,
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
                context.principal = self.authenticator.authenticate(headers)
            except AuthError as exc:
                log.info("websocket refused: %s", exc)
                raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": str(exc)}) from None
        if headers.get("x-purpose"):
            context.purpose = clean_purpose(headers["x-purpose"])
        if isinstance(context.request, WebSocket):
            used = headers.get("authorization") or context.request.headers.get("authorization", "")
            expires = _token_expiry(used)
            if expires is not None:
                _close_at(context.request, expires)
        return None

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        """Last line of defence: an unexpected error that escaped the schema's masking is masked here."""
        if result.errors:
            result.errors = [mask_unexpected(e, show_type=not self.services.settings.production)
                             for e in result.errors]
        response = await super().process_result(request, result)
        key, context = request.scope.get(ANSWER_KEY), request.scope.get(CONTEXT_KEY)
        if key is not None and context is not None and context.answer is not None:
            # after this turn of the loop, when the response has been written: the template costs it nothing
            asyncio.get_running_loop().call_soon(
                self.answers.store, key, response, context.answer,
                lambda: context.reads.events(context.principal, context.purpose), self.encode_json)
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
        """strawberry's response, with the headers every /graphql answer carries (`ANSWER_HEADERS`)."""
        response = super().create_response(response_data, sub_response)
        response.headers.raw.extend(ANSWER_HEADERS)
        return response

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A browser asking for HTML gets GraphiQL, even with `?query=` (the demo's sample link)."""
        if self.graphql_ide is None:
            return False
        return super().should_render_graphql_ide(request) or wants_graphiql_page(
            request.method, request.headers.get("accept", "")
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return graphiql_response("/graphql")


def _token_expiry(authorization: str) -> float | None:
    """`exp` of an already verified Bearer JWT (None for API keys and tokens without one)."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    try:
        exp = jwt.decode(token.strip(), options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


def _close_at(websocket: WebSocket, expires: float) -> None:
    """Close a subscription connection when its token expires (the client must reconnect with a new one)."""
    loop = asyncio.get_running_loop()

    async def close() -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code=4401, reason="token expired")

    handle = loop.call_later(max(0.0, expires - time.time()), lambda: _background(loop.create_task(close())))
    websocket.state.expiry_timer = handle


_BACKGROUND: set[asyncio.Task[None]] = set()


def _background(task: asyncio.Task[None]) -> None:
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def demo_banner(settings: Settings) -> list[str]:
    """Ready tokens for each role, minted with the configured secret (development only)."""
    if settings.production or not settings.jwt_secret:
        return []
    lines = [f"Demo tokens ({DEMO_TOKEN_TTL // 3600} h; paste one into GraphiQL's token bar, or send "
             "'Authorization: Bearer <token>'):"]
    for role in ROLES:
        lines.append(f"  {role:<11} {mint_token(settings, role, ttl=DEMO_TOKEN_TTL, client='ucgw-demo')}")
    return lines


GC_THRESHOLDS = (20_000, 20, 10)  # Python's defaults are (700, 10, 10)


def settle_heap() -> None:
    """Keep the garbage collector off the request path as far as it is safe to.

    Everything alive once the gateway has started (modules, schema, settings) is moved out of the
    collector's sight (`gc.freeze`), and collections run less often: with a record cache of 100,000s of
    dicts, a full collection took 70-130 ms and hit about one cold `children` batch in five. Cycles are
    still collected, only in larger steps.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def open_audit_store(settings: Settings, may_block: Callable[[], bool] | None = None) -> AuditStore:
    """The audit trail under the data directory; a store that cannot open stops the start.

    `may_block` tells the store when a request may commit on the event loop (see `SQLiteAuditStore`)."""
    try:
        return SQLiteAuditStore(settings.audit_path, may_block=may_block, synchronous=settings.audit_sync)
    except Exception as exc:  # sqlite3.Error and filesystem errors alike
        raise ConfigError(f"cannot open the audit trail at {settings.audit_path}: {exc}") from exc


class GatewayApp(Starlette):
    """The routes below, with `POST`/`GET /graphql` handed straight to the guard.

    Starlette's middleware stack and router cost each request tens of microseconds to reach the one
    route that carries nearly all traffic; that route is matched here first. It loses nothing: its
    errors are the guard's and the GraphQL view's own, and an exception escaping them still reaches the
    server, which answers 500 as Starlette's error middleware would. Every other path, method and the
    websocket go through Starlette as before.
    """

    graphql: Any = None  # the guarded GraphQL endpoint (ASGI)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/graphql" and scope["method"] in ("POST", "GET"):
            scope["app"] = self
            await self.graphql(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, services: Services | None = None, audit_store: AuditStore | None = None,
               limiter: RateLimiter | None = None) -> GatewayApp:
    """Build the ASGI app; `services` are started and closed by the app's lifespan."""
    use_cursor_secret(settings.cursor_secret)
    authenticator = Authenticator(settings)
    in_flight = InFlight()
    audit_store = audit_store or open_audit_store(settings, may_block=in_flight.may_block)
    limiter = limiter or RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
    services = services or Services(settings)
    services.changes.office_fallback = sponsor_office
    answers = AnswerCache(settings.answer_cache_bytes, services.fetchers)
    graphql_app = GatewayGraphQL(
        services, answers, audit_store, authenticator, limiter,
        graphql_ide=None if settings.production else "graphiql", allow_queries_via_get=True,
    )
    early = EarlyFetch(services)
    guarded = GraphQLGuard(graphql_app, settings, authenticator, limiter, AnswerShortcut(answers, audit_store),
                           in_flight, early)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        facts = services.health()
        ready = any(f["usable"] for f in facts)
        return JSONResponse({"ready": ready, "sources": facts, "answerCache": answers.facts(),
                             "earlyFetch": early.facts(), "auditTrail": audit_store.facts(),
                             "websockets": graphql_app.sockets.facts(), "scans": services.scans.facts(),
                             "fetches": {s.value: asdict(f.stats) for s, f in services.fetchers.items()},
                             "connections": edge.facts() if (edge := getattr(app.state, "edge", None)) else None},
                            status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        settle_heap()
        try:
            yield
        finally:
            await services.close()
            audit_store.close()

    routes = [
        Route("/graphql", guarded, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", guarded),
        Route("/hooks/changes", webhook_endpoint(settings, services.changes, limiter), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    if not settings.production:
        routes.append(static_mount())
    app = GatewayApp(routes=routes, lifespan=lifespan)
    app.graphql = guarded
    app.state.services = services
    app.state.audit_store = audit_store
    app.state.answers = answers
    app.state.demo_banner = demo_banner(settings)
    return app
