"""The ASGI application, wired: `create_app` builds every long-lived part once (services, stores, caches, the
GraphQL view and the guard in front of it) and hands each to the parts that use it. The one module that
imports every layer; what each part does lives in its own room (ARCHITECTURE.md)."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from gateway.config import ConfigError
from gateway.http.admin import AdminListener
from gateway.http.admission import GraphQLGuard, InFlight
from gateway.http.answer_memo import AnswerCache, AnswerShortcut
from gateway.http.asgi import send_error
from gateway.http.auth import Authenticator
from gateway.http.edge import Connections, EdgeLimits
from gateway.http.graphiql import static_mount
from gateway.http.graphql_view import GatewayGraphQL
from gateway.http.metrics import GatewayMetrics, StateCollector, default_replica
from gateway.http.prefetch import Prefetcher
from gateway.http.request_ids import begin, with_id_header
from gateway.http.traced import TracedRequests
from gateway.http.webhooks import webhook_endpoint
from gateway.tracing import Tracing, build_tracing
from resolvers.masking import INTERNAL_SERVER_ERROR
from resolvers.pagination import CursorCodec
from sources.settings import Settings
from stores.audit_trail import AuditStore, SQLiteAuditStore
from stores.rate_limits import RateLimiter
from sync.services import Services

log = logging.getLogger("ucgw.app")
GC_THRESHOLDS = (20_000, 20, 10)  # Python's defaults are (700, 10, 10)
# the messages that start an answer: an HTTP response, a websocket's acceptance or its refusal
ID_STARTS = ("http.response.start", "websocket.accept", "websocket.http.response.start")


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

    `may_block` tells the store when a request may commit on the event loop (see `SQLiteAuditStore`). Without
    `audit_hmac_key` (only `ucgw demo` starts so; `ucgw serve` refuses) the events are signed with a random
    key of this process's, which nobody can verify them with later."""
    if not settings.audit_hmac_key:
        log.warning("UCGW_AUDIT_HMAC_KEY is not set: audit events are signed with a random key of this process "
                    "(`ucgw audit verify` cannot check their HMACs)")
    try:
        return SQLiteAuditStore(settings.audit_path, may_block=may_block, synchronous=settings.audit_sync,
                                hmac_key=settings.audit_hmac_key.encode() or None)
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
            try:
                await self.graphql(scope, receive, send)  # the guard takes the request's id and answers with it
            except Exception:
                with contextlib.suppress(Exception):  # nothing sent yet: a 500 with the id (else uvicorn closes)
                    await send_error(send, 500, INTERNAL_SERVER_ERROR, "internal error")
                raise  # for uvicorn to log
            return
        if scope["type"] in ("http", "websocket"):  # every other answer carries an id too (off the hot path)
            send = with_id_header(send, begin(scope), ID_STARTS)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, services: Services | None = None, audit_store: AuditStore | None = None,
               limiter: RateLimiter | None = None, tracing: Tracing | None = None) -> GatewayApp:
    """Build the ASGI app; `services` are started and closed by the app's lifespan. `tracing` defaults to what
    `UCGW_TRACING` and the `OTEL_*` variables ask for (gateway/tracing.py)."""
    tracing = tracing or build_tracing(settings)
    authenticator = Authenticator(settings)
    in_flight = InFlight()
    audit_store = audit_store or open_audit_store(settings, may_block=in_flight.may_block)
    limiter = limiter or RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
    try:
        services = services or Services(settings, tracer=tracing.tracer)
    except ValueError as exc:  # a source's CA or client certificate file that cannot be used (source_access.py)
        raise ConfigError(str(exc)) from exc
    answers = AnswerCache(settings.answer_cache_bytes, services.fetchers)
    early = Prefetcher(services)
    connections = Connections(EdgeLimits.from_settings(settings))  # the public listener's (gateway/http/server.py)
    # Prometheus metrics, served by the admin listener only: none without one (nothing would read them)
    metrics = GatewayMetrics(settings.replica_id or default_replica()) if settings.admin_port is not None else None
    if metrics is not None:
        for source, client in services.clients.items():
            client.observe_latency = metrics.source_observer(source)
        if hasattr(audit_store, "observe_commit"):
            audit_store.observe_commit = metrics.commit_observer()

    def details() -> dict[str, Any]:
        """Everything an operator needs to see how the gateway is doing (admin listener, `gatewayHealth`)."""
        facts = services.health()
        ready, status = services.readiness(facts)
        return {"ready": ready, "status": status, "sources": facts, "answerCache": answers.facts(),
                "earlyFetch": early.facts(), "auditTrail": audit_store.facts(),
                "websockets": graphql_app.sockets.facts(), "scans": services.scans.facts(),
                "fetches": {s.value: asdict(f.stats) for s, f in services.fetchers.items()},
                "connections": connections.facts()}

    graphql_app = GatewayGraphQL(
        services, answers, CursorCodec(settings.cursor_secret, settings.cursor_secret_previous), audit_store,
        authenticator, limiter, details,
        graphql_ide=None if settings.production else "graphiql", allow_queries_via_get=True,
    )
    shortcut = AnswerShortcut(answers, audit_store, tracing.tracer)
    guarded = GraphQLGuard(graphql_app, settings, authenticator, limiter, shortcut, in_flight, early, audit=audit_store,
                           metrics=metrics)
    if metrics is not None:
        metrics.watch(StateCollector(metrics, services, answers, audit_store, graphql_app.sockets, connections))
    endpoint = guarded if tracing.tracer is None else TracedRequests(guarded, tracing.tracer)  # off: no wrapper

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        """Public: whether to send traffic here, and nothing a stranger could learn the gateway's load from."""
        ready, status = services.readiness()
        return JSONResponse({"ready": ready, "status": status}, status_code=200 if ready else 503)

    admin = AdminListener(settings, details, metrics) if settings.admin_port is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        if admin is not None:
            await admin.start()
        if metrics is not None:
            metrics.lag.start()
        settle_heap()
        try:
            yield
        finally:
            if metrics is not None:
                await metrics.lag.stop()
            if admin is not None:
                await admin.stop()
            await services.close()
            audit_store.close()
            tracing.shutdown()  # the spans still buffered go out

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", guarded),
        Route("/hooks/changes", webhook_endpoint(settings, services.changes, limiter), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    if not settings.production:
        routes.append(static_mount())
    app = GatewayApp(routes=routes, lifespan=lifespan)
    app.graphql = endpoint
    app.state.tracing = tracing
    app.state.services = services
    app.state.connections = connections
    app.state.audit_store = audit_store
    app.state.answers = answers
    return app
