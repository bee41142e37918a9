"""The ASGI application, wired: `create_app` builds every long-lived part once (services, stores, caches, the
GraphQL view and the guard in front of it) and hands each to the parts that use it. The one module that
imports every layer; what each part does lives in its own room (ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
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
from gateway.http.graphql_view import REFUSAL_CODES, GatewayGraphQL
from gateway.http.metrics import GatewayMetrics, StateCollector, default_replica
from gateway.http.persisted import PersistedDocuments
from gateway.http.prefetch import Prefetcher
from gateway.http.request_ids import begin, with_id_header
from gateway.http.sse import STREAM_PATH, GraphQLStreams
from gateway.http.traced import TracedRequests
from gateway.http.webhooks import webhook_endpoint
from gateway.tracing import Tracing, build_tracing
from resolvers.masking import INTERNAL_SERVER_ERROR
from resolvers.pagination import CursorCodec
from sources.settings import Settings
from stores.audit_pg import PgAuditStore
from stores.audit_trail import AuditStore, SQLiteAuditStore
from stores.documents import DocumentStore, MemoryDocumentStore, SQLiteDocumentStore, TrustedDocuments
from stores.pg import Database
from stores.rate_limits import RateLimiter, RedisBucketStore
from stores.redis_documents import RedisDocumentStore
from stores.schema_migrations import MigrationError, migrate
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


def open_database(settings: Settings) -> Database | None:
    """The PostgreSQL pool of `UCGW_DATABASE_URL` (opened by the lifespan); None: the SQLite files."""
    if not settings.database_url:
        return None
    return Database(settings.database_url, size=settings.database_pool_size, timeout=settings.database_timeout_seconds)


async def migrate_at_start(settings: Settings) -> None:
    """Apply pending migrations when `database_migrate_on_start` allows (through the owning role's URL when
    given). A server that cannot be reached is logged and the replica starts degraded; a failing migration
    stops the start."""
    if not settings.database_url or not settings.migrate_on_start:
        return
    try:
        applied = await asyncio.to_thread(migrate, settings.database_migrate_url or settings.database_url,
                                          settings.database_url)
    except MigrationError as exc:
        raise ConfigError(f"database migration failed: {exc}") from exc
    except psycopg.OperationalError as exc:
        log.error("cannot migrate the database at start (%s); starting degraded", type(exc).__name__)
        return
    if applied:
        log.info("database migrations applied: %s", ", ".join(applied))


def open_audit_store(settings: Settings, may_block: Callable[[], bool] | None = None,
                     database: Database | None = None) -> AuditStore:
    """The audit trail under the data directory; a store that cannot open stops the start.

    `may_block` tells the store when a request may commit on the event loop (see `SQLiteAuditStore`). Without
    `audit_hmac_key` (only `ucgw demo` starts so; `ucgw serve` refuses) the events are signed with a random
    key of this process's, which nobody can verify them with later."""
    if not settings.audit_hmac_key:
        log.warning("UCGW_AUDIT_HMAC_KEY is not set: audit events are signed with a random key of this process "
                    "(`ucgw audit verify` cannot check their HMACs)")
    if database is not None:
        return PgAuditStore(database, hmac_key=settings.audit_hmac_key.encode() or None)
    try:
        return SQLiteAuditStore(settings.audit_path, may_block=may_block, synchronous=settings.audit_sync,
                                hmac_key=settings.audit_hmac_key.encode() or None)
    except Exception as exc:  # sqlite3.Error and filesystem errors alike
        raise ConfigError(f"cannot open the audit trail at {settings.audit_path}: {exc}") from exc


def open_documents(settings: Settings) -> tuple[DocumentStore | None, TrustedDocuments]:
    """The stores of persisted documents: APQ registrations as `persisted_queries` says (None: off) and the
    trusted manifests, both in `documents_path` (SQLite) unless the APQ store is memory."""
    try:
        trusted = TrustedDocuments(settings.documents_path)
        registered: DocumentStore | None = {"sqlite": lambda: SQLiteDocumentStore(settings.documents_path),
                                            "memory": MemoryDocumentStore, "off": lambda: None}[
            settings.persisted_queries]()
    except Exception as exc:  # sqlite3.Error and filesystem errors alike
        raise ConfigError(f"cannot open the documents database at {settings.documents_path}: {exc}") from exc
    return registered, trusted


class GatewayApp(Starlette):
    """The routes below, with `POST`/`GET /graphql` handed straight to the guard (and `/graphql/stream` to its
    own guard, which sets the request id as that one does).

    Starlette's middleware stack and router cost each request tens of microseconds to reach the one
    route that carries nearly all traffic; that route is matched here first. It loses nothing: its
    errors are the guard's and the GraphQL view's own, and an exception escaping them still reaches the
    server, which answers 500 as Starlette's error middleware would. Every other path, method and the
    websocket go through Starlette as before.
    """

    graphql: Any = None  # the guarded GraphQL endpoint (ASGI)
    stream: Any = None  # the guarded server-sent-events endpoint (ASGI)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and ((scope["path"] == "/graphql" and scope["method"] in ("POST", "GET"))
                                        or scope["path"] == STREAM_PATH):
            scope["app"] = self
            endpoint = self.graphql if scope["path"] == "/graphql" else self.stream
            try:
                await endpoint(scope, receive, send)  # the guard takes the request's id and answers with it
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
    database = services.database if services is not None else open_database(settings)
    audit_store = audit_store or open_audit_store(settings, may_block=in_flight.may_block, database=database)
    try:
        services = services or Services(settings, tracer=tracing.tracer, database=database)
    except ValueError as exc:  # a source's CA or client certificate file that cannot be used (source_access.py)
        raise ConfigError(str(exc)) from exc
    limiter = limiter or RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst,
                                     None if services.redis is None else RedisBucketStore(services.redis))
    answers = AnswerCache(settings.answer_cache_bytes, services.fetchers, paused=services.redis_down)
    early = Prefetcher(services)
    registered, trusted = open_documents(settings)
    if registered is not None and services.redis is not None:  # a registration on one replica serves on all
        registered = RedisDocumentStore(services.redis, registered)
    documents = PersistedDocuments(registered, trusted)
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
                "earlyFetch": early.facts(), "persistedDocuments": documents.facts(), "auditTrail": audit_store.facts(),
                "websockets": graphql_app.sockets.facts(), "scans": services.scans.facts(),
                "fetches": {s.value: asdict(f.stats) for s, f in services.fetchers.items()},
                "connections": connections.facts(),
                "database": database.facts() if database is not None else None,
                "redis": None if services.redis is None else services.redis.facts(),
                "changeFeed": {"leadership": services.leadership.roles() if services.leadership is not None else {},
                               "applied": services.changes.applied, "processed": services.changes.processed}}

    graphql_app = GatewayGraphQL(
        services, answers, CursorCodec(settings.cursor_secret, settings.cursor_secret_previous), audit_store,
        authenticator, limiter, details,
        graphql_ide="graphiql", allow_queries_via_get=True,  # in production too: caseworkers use it (issue 30)
    )
    shortcut = AnswerShortcut(answers, audit_store, tracing.tracer)
    guarded = GraphQLGuard(graphql_app, settings, authenticator, limiter, shortcut, in_flight, early, audit=audit_store,
                           metrics=metrics, documents=documents)
    # server-sent events: the same admission (no stored answers or early fetches: every stream is its own),
    # a traffic count of its own (a stream open for hours is no request in flight for the audit's commits)
    streams = GraphQLGuard(GraphQLStreams(graphql_app, settings.sse_keepalive_seconds), settings, authenticator,
                           limiter, audit=audit_store, negotiates=False)
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
        if database is not None:
            await migrate_at_start(settings)
            await database.open()
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
            trusted.close()
            if isinstance(registered, SQLiteDocumentStore | RedisDocumentStore):
                registered.close()
            if database is not None:
                await database.close()
            tracing.shutdown()  # the spans still buffered go out

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", guarded),
        Route("/hooks/changes", webhook_endpoint(settings, services.changes, limiter, services.redis),
              methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    routes.append(static_mount())

    async def coded_refusal(request: Request, exc: Exception) -> JSONResponse:
        """Starlette's own refusals (an unknown path, a method a route does not take) as the gateway's JSON
        error with a code, not a plain-text body."""
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else "internal error"
        headers = exc.headers if isinstance(exc, StarletteHTTPException) else None
        return JSONResponse({"errors": [{"message": detail, "extensions": {"code": REFUSAL_CODES.get(status,
                             "BAD_REQUEST")}}]}, status, headers=headers)

    app = GatewayApp(routes=routes, lifespan=lifespan, exception_handlers={404: coded_refusal, 405: coded_refusal})
    app.graphql = endpoint
    app.stream = streams
    app.state.tracing = tracing
    app.state.services = services
    app.state.connections = connections
    app.state.audit_store = audit_store
    app.state.answers = answers
    return app
