"""The HTTP application: Starlette routes, the strawberry GraphQL view, health endpoints, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.types import ExecutionContext

from gateway.config import Settings
from gateway.graphiql import graphiql_page, static_mount, wants_graphiql_page
from gateway.services import Services
from resolvers.context import RequestContext
from resolvers.schema import build_schema

log = logging.getLogger("ucgw.app")


def _quiet_errors(schema: Any) -> None:
    """Log only unexpected errors, without their messages (they may echo user input)."""

    def process_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError):
                continue
            log.error("unexpected %s at path %s", type(original).__name__, error.path, exc_info=original)

    schema.process_errors = process_errors


class GatewayGraphQL(GraphQL):
    """strawberry's ASGI view with our request context and the offline GraphiQL page."""

    def __init__(self, services: Services, **kwargs: Any) -> None:
        schema = build_schema(services.settings)
        _quiet_errors(schema)
        super().__init__(schema, **kwargs)
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> RequestContext:
        return RequestContext(services=self.services, request=request, response=response)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A browser asking for HTML gets GraphiQL, even with `?query=` (the demo's sample link)."""
        if self.graphql_ide is None:
            return False
        return super().should_render_graphql_ide(request) or wants_graphiql_page(
            request.method, request.headers.get("accept", "")
        )

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_page("/graphql"))


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """Build the ASGI app; `services` are started and closed by the app's lifespan."""
    services = services or Services(settings)
    graphql_app = GatewayGraphQL(
        services, graphql_ide=None if settings.production else "graphiql", allow_queries_via_get=True
    )

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        facts = services.health()
        ready = any(f["usable"] for f in facts)
        return JSONResponse({"ready": ready, "sources": facts}, status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.close()

    routes = [
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    if not settings.production:
        routes.append(static_mount())
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return app
