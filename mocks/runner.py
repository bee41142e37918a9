"""Run the three mock services in one process: one world, three uvicorn servers on one asyncio loop.

CLI: `ucgw mocks` / `python -m mocks` (see add_arguments). In-process, e.g. for `ucgw demo`:

    async with running_mocks(seed=7, children=5000) as urls:
        urls["orr"], urls["ice"], urls["eoir"]   # http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import uvicorn

from mocks.service import Faults, ServiceState, create_app
from mocks.tokens import CLIENT_ID_ENV, CLIENT_SECRET_ENV, DEFAULT_CLIENT_ID, TokenIssuer
from mocks.util import DEFAULT_START, dumps, parse_iso, valid_datetime
from mocks.world import MAX_SPEED, SOURCES, World, children_problem, start_problem

log = logging.getLogger("mocks.runner")

DEFAULT_PORTS = {"orr": 8101, "ice": 8102, "eoir": 8103}
WEBHOOK_CHUNK = 500
WEBHOOK_SECRET_ENV = "UCGW_WEBHOOK_SECRET"  # the secret the webhook posts are signed with (as the gateway's)
MIN_WEBHOOK_SECRET_BYTES = 32
DEFAULT_KEEP_ALIVE = 5.0  # seconds an idle client connection stays open: uvicorn's own default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock-service flags to an argument parser (used by `ucgw mocks` and `python -m mocks`)."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--orr-port", type=int, default=DEFAULT_PORTS["orr"], help="ORR port (0 = any free)")
    parser.add_argument("--ice-port", type=int, default=DEFAULT_PORTS["ice"], help="ICE port (0 = any free)")
    parser.add_argument("--eoir-port", type=int, default=DEFAULT_PORTS["eoir"], help="EOIR port (0 = any free)")
    parser.add_argument("--seed", type=int, default=7, help="world seed (same seed and size = same data)")
    parser.add_argument("--children", type=int, default=5000, help="number of children in the world")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="default added latency per data request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="default share of injected 500/503 answers")
    parser.add_argument("--webhook-url", default=None, help="POST every change batch here (fire and forget), "
                        f"signed with the secret in ${WEBHOOK_SECRET_ENV} (32+ bytes)")
    parser.add_argument("--clock-speed", type=float, default=0.0,
                        help="simulated seconds per real second (0 = clock moves only via /_admin/clock)")
    parser.add_argument("--start", default=DEFAULT_START, help=f"simulation start (default {DEFAULT_START})")
    parser.add_argument("--keep-alive-seconds", type=float, default=DEFAULT_KEEP_ALIVE,
                        help=f"close a client's connection idle this long (default {DEFAULT_KEEP_ALIVE:g}, "
                             "as uvicorn does)")
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this PEM certificate (with --tls-key)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument("--client-ca", default=None,
                        help="with --tls-cert: demand a client certificate issued by this CA (mTLS)")
    parser.add_argument("--require-token", action="store_true",
                        help=f"serve POST /oauth/token (client credentials: ${CLIENT_ID_ENV}, default "
                             f"{DEFAULT_CLIENT_ID}, and ${CLIENT_SECRET_ENV}) and demand its Bearer token on /v1/")
    parser.add_argument("--token-ttl-seconds", type=float, default=300.0,
                        help="with --require-token: how long an issued token is accepted (default 300)")


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """`X-UCGW-Signature` of a webhook post: `sha256=` and the hex HMAC-SHA256 of `timestamp + "." + body`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of one signed webhook post: content type, `X-UCGW-Timestamp` (unix seconds), signature."""
    timestamp = str(int(time.time() if now is None else now))
    return {"Content-Type": "application/json", "X-UCGW-Timestamp": timestamp,
            "X-UCGW-Signature": sign_webhook(secret, timestamp, body)}


class WebhookSender:
    """Posts change batches to a URL from a background task, each signed (`signed_headers`) when it is
    sent; never blocks the services."""

    def __init__(self, url: str, secret: bytes) -> None:
        self.url = url
        self.secret = secret
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0

    def __call__(self, source: str, changes: list[dict[str, Any]]) -> None:
        for i in range(0, len(changes), WEBHOOK_CHUNK):
            body = dumps({"source": source, "changes": changes[i:i + WEBHOOK_CHUNK]})
            try:
                self.queue.put_nowait(body)
            except asyncio.QueueFull:
                self.failed += 1
                log.warning("webhook queue full; dropping a %s change batch", source)

    async def run(self) -> None:
        """Deliver queued batches in order; failures are logged and dropped."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                body = await self.queue.get()
                try:
                    async with session.post(self.url, data=body, headers=signed_headers(self.secret, body)) as resp:
                        if resp.status >= 400:
                            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                    self.sent += 1
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.failed += 1
                    log.warning("webhook POST to %s failed: %r", self.url, exc)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.set_inheritable(True)
    return sock


class MockCluster:
    """The world plus three started servers; use start() / stop() or running_mocks()."""

    def __init__(self, world: World, host: str = "127.0.0.1", ports: dict[str, int] | None = None,
                 latency_ms: float = 0.0, error_rate: float = 0.0, webhook_url: str | None = None,
                 clock_speed: float = 0.0, keep_alive_seconds: float = DEFAULT_KEEP_ALIVE,
                 webhook_secret: str = "", tls: dict[str, Any] | None = None,
                 tokens: tuple[str, str, float] | None = None) -> None:
        self.world = world
        self.tls = tls or {}  # uvicorn's ssl_* options (`tls_options`)
        self.keep_alive_seconds = keep_alive_seconds
        self.host = host
        self.ports = {**DEFAULT_PORTS, **(ports or {})}
        defaults = Faults(latency_ms=latency_ms, error_rate=error_rate)
        self.states = {s: ServiceState(s, world, defaults) for s in SOURCES}
        if tokens is not None:  # each service issues and checks tokens of its own (as separate agencies would)
            for state in self.states.values():
                state.tokens = TokenIssuer(*tokens)
        self.urls: dict[str, str] = {}
        if webhook_url and len(webhook_secret.encode()) < MIN_WEBHOOK_SECRET_BYTES:
            raise ValueError(webhook_secret_problem())
        self.webhook = WebhookSender(webhook_url, webhook_secret.encode()) if webhook_url else None
        world.speed = clock_speed
        self._servers: list[tuple[uvicorn.Server, socket.socket]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, str]:
        """Bind and start the three servers; returns {"orr": url, "ice": url, "eoir": url}."""
        for source in SOURCES:
            sock = _bind(self.host, self.ports[source])
            config = uvicorn.Config(create_app(self.states[source]), lifespan="off", log_level="warning",
                                    access_log=False, timeout_graceful_shutdown=1,
                                    timeout_keep_alive=self.keep_alive_seconds,
                                    **self.tls)  # type: ignore[arg-type]
            config.load()
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)  # what Server._serve does before startup()
            await server.startup(sockets=[sock])
            self._servers.append((server, sock))
            port = sock.getsockname()[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.urls[source] = f"{'https' if self.tls else 'http'}://{host}:{port}"
        if self.webhook is not None:
            self.world.listeners.append(self.webhook)
            self._tasks.append(asyncio.create_task(self.webhook.run()))
        self._tasks.append(asyncio.create_task(self._tick()))
        return dict(self.urls)

    async def _tick(self) -> None:
        """Auto clock: advance the world by speed x elapsed real time, four times a second."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self.world.speed > 0:
                self.world.advance(self.world.speed * (now - last))
            last = now

    async def stop(self) -> None:
        """Stop the servers (cutting any injected hangs short) and the background tasks."""
        for st in self.states.values():
            st.closing = True
        for server, sock in self._servers:
            server.should_exit = True
            await server.shutdown(sockets=[sock])
        self._servers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.webhook is not None and self.webhook in self.world.listeners:
            self.world.listeners.remove(self.webhook)


@contextlib.asynccontextmanager
async def running_mocks(host: str = "127.0.0.1", ports: dict[str, int] | None = None, seed: int = 7,
                        children: int = 5000, latency_ms: float = 0.0, error_rate: float = 0.0,
                        webhook_url: str | None = None, clock_speed: float = 0.0,
                        start: str = DEFAULT_START, keep_alive_seconds: float = DEFAULT_KEEP_ALIVE,
                        webhook_secret: str = "") -> AsyncIterator[dict[str, str]]:
    """Generate a world and serve ORR, ICE and EOIR on this event loop; yields their base URLs.

    `ports` maps "orr"/"ice"/"eoir" to a port (0 = any free one; missing keys use 8101-8103).
    """
    world = await asyncio.to_thread(World.generate, seed, children, start)
    cluster = MockCluster(world, host, ports, latency_ms, error_rate, webhook_url, clock_speed, keep_alive_seconds,
                          webhook_secret)
    try:
        yield await cluster.start()
    finally:
        await cluster.stop()


async def _serve(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    world = await asyncio.to_thread(World.generate, args.seed, args.children, args.start)
    log.info("generated %d children in %.1f s", args.children, time.perf_counter() - t0)
    ports = {"orr": args.orr_port, "ice": args.ice_port, "eoir": args.eoir_port}
    tokens = None
    if args.require_token:
        tokens = (os.environ.get(CLIENT_ID_ENV) or DEFAULT_CLIENT_ID, os.environ[CLIENT_SECRET_ENV],
                  args.token_ttl_seconds)
    cluster = MockCluster(world, args.host, ports, args.latency_ms, args.error_rate, args.webhook_url,
                          args.clock_speed, args.keep_alive_seconds, os.environ.get(WEBHOOK_SECRET_ENV, ""),
                          tls_options(args), tokens)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    urls = await cluster.start()
    try:
        for source in SOURCES:
            print(f"{source.upper()} {urls[source]}", flush=True)
        print("READY", flush=True)
        await stop.wait()
    finally:
        await cluster.stop()


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn's TLS options from --tls-cert, --tls-key and --client-ca (none without --tls-cert)."""
    if not args.tls_cert:
        return {}
    options: dict[str, Any] = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
    if args.client_ca:
        options.update(ssl_ca_certs=args.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def webhook_secret_problem() -> str:
    """What to set for `--webhook-url`."""
    return (f"--webhook-url needs ${WEBHOOK_SECRET_ENV}: a secret of at least {MIN_WEBHOOK_SECRET_BYTES} bytes "
            "(the gateway's UCGW_WEBHOOK_SECRET) to sign every post with")


def check_arguments(given: argparse.Namespace) -> str | None:
    """The first problem with the mock flags in `given` (flags it lacks count as their defaults), or None."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    args = argparse.Namespace(**{**vars(defaults.parse_args([])), **vars(given)})
    problem = children_problem(args.children)
    if problem:
        return problem
    for name in ("latency_ms", "error_rate"):  # the limits /_admin/faults applies
        problem = Faults.problem(name, getattr(args, name))
        if problem:
            return f"--{name.replace('_', '-')} {problem}"
    if not 0 <= args.clock_speed <= MAX_SPEED:  # the limit /_admin/clock applies
        return f"--clock-speed must be a number in [0, {MAX_SPEED:.0f}]"
    if not (math.isfinite(args.keep_alive_seconds) and args.keep_alive_seconds > 0):
        return "--keep-alive-seconds must be a finite number above 0"
    for name in ("orr_port", "ice_port", "eoir_port"):
        if not 0 <= getattr(args, name) <= 65535:
            return f"--{name.replace('_', '-')} must be in [0, 65535]"
    if not valid_datetime(args.start):
        return "--start must look like 2026-11-01T12:00:00Z"
    if args.webhook_url and len(os.environ.get(WEBHOOK_SECRET_ENV, "").encode()) < MIN_WEBHOOK_SECRET_BYTES:
        return webhook_secret_problem()
    if bool(args.tls_cert) != bool(args.tls_key):
        return "--tls-cert and --tls-key go together"
    if args.client_ca and not args.tls_cert:
        return "--client-ca needs --tls-cert and --tls-key"
    for flag in ("tls_cert", "tls_key", "client_ca"):
        if getattr(args, flag) and not os.access(getattr(args, flag), os.R_OK):
            return f"--{flag.replace('_', '-')}: cannot read {getattr(args, flag)}"
    if args.require_token and not os.environ.get(CLIENT_SECRET_ENV):
        return f"--require-token needs ${CLIENT_SECRET_ENV} (the client secret the token endpoint accepts)"
    if not (math.isfinite(args.token_ttl_seconds) and args.token_ttl_seconds > 0):
        return "--token-ttl-seconds must be a finite number above 0"
    return start_problem(parse_iso(args.start))


def _run(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed (as `uvicorn` itself would pick), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def main(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; prints one 'SOURCE URL' line per service, then READY."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    problem = check_arguments(args)
    if problem:
        print(f"ucgw mocks: {problem}", file=sys.stderr)
        return 2
    try:
        _run(_serve(args))
    except OSError as exc:
        print(f"ucgw mocks: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
