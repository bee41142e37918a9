"""The operators' admin listener: the detailed readiness and the Prometheus metrics on a port of its own.

Served on `UCGW_ADMIN_HOST` (loopback unless chosen otherwise) by a second uvicorn server on the gateway's own
event loop, so it reads the very objects the gateway uses; never on the public port, so a scraper needs no
token and a stranger learns nothing from it (security #8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.config import ConfigError
from gateway.http.edge import Connections, EdgeLimits, edge_protocol
from gateway.http.metrics import CONTENT_TYPE, GatewayMetrics
from sources.settings import Settings

log = logging.getLogger("ucgw.admin")


def admin_app(details: Callable[[], dict[str, Any]], metrics: GatewayMetrics | None = None) -> Starlette:
    """The operators' application: the detailed readiness at `/readyz` and the Prometheus text exposition at
    `/metrics`. No GraphQL, no child data: only counters, served on `UCGW_ADMIN_HOST` (loopback unless chosen
    otherwise)."""

    async def readyz(request: Request) -> JSONResponse:
        facts = details()
        return JSONResponse(facts, status_code=200 if facts["ready"] else 503)

    routes = [Route("/readyz", readyz)]
    if metrics is not None:
        async def scrape(request: Request) -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

        routes.append(Route("/metrics", scrape))
    return Starlette(routes=routes)


class AdminListener:
    """The admin app served by a second uvicorn server on the main server's event loop, started and stopped by
    the main app's lifespan, so it reads the very objects the gateway uses and ends with it.

    Its socket is bound when the app is built, so a taken port is a configuration error before anything
    starts (uvicorn would exit the process from inside the event loop)."""

    def __init__(self, settings: Settings, details: Callable[[], dict[str, Any]],
                 metrics: GatewayMetrics | None = None) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
                return contextlib.nullcontext()  # SIGTERM and Ctrl+C are the main server's to handle

        host, port = settings.admin_host, settings.admin_port or 0
        self.where = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
        except OSError as exc:
            self.socket.close()
            raise ConfigError(f"the admin listener (UCGW_ADMIN_HOST, UCGW_ADMIN_PORT) cannot listen on "
                              f"{self.where}: {exc.strerror or exc}") from None
        # the same edge as the public listener: deadlines for receiving a request, size and connection caps
        config = uvicorn.Config(admin_app(details, metrics), lifespan="off", access_log=False, log_config=None,
                                log_level=None,  # the main server's logging stays as it is
                                http=edge_protocol(Connections(EdgeLimits.from_settings(settings))))
        self.server = Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve on the bound socket."""
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.socket]))
        log.info("admin listener (detailed /readyz, /metrics) on %s", self.where)

    async def stop(self) -> None:
        """End the admin server once the main server is shutting down."""
        if self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await self.task
        self.socket.close()
