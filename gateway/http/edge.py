"""The HTTP edge: uvicorn's httptools protocol with the deadlines, caps and closes it lacks (issue 33).

uvicorn has no deadline for receiving a request (only keep-alive between requests), answers parser errors
in plain text, counts no connections per client, and closes a connection with unread request bytes, which
makes the kernel reset it so that the client loses the answer. `EdgeProtocol` adds, per connection:
- an absolute deadline for the request line and headers (from the connection's start, or from a kept-alive
  connection's next first byte) and one for the body (from the end of the headers); on expiry a 408
  `REQUEST_TIMEOUT` where no answer has begun, else a close;
- 414 (request target), 431 (header fields) and 400 (anything the strict llhttp parser refuses: both
  Content-Length and Transfer-Encoding, duplicate Content-Length, obs-folds, bad chunk sizes) as the
  gateway's JSON error with its `extensions.code`;
- a cap on open connections, in all and per source address: past either the new connection gets a 503
  with Retry-After and is closed;
- a graceful close: a connection closed with request bytes unread is half-closed and drained, up to
  `LINGER_BYTES` and `LINGER_SECONDS`, so that the answer already sent arrives (nginx's lingering close).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sources.settings import Settings
from stores.audit_trail import new_request_id

log = logging.getLogger("ucgw.edge")

LINGER_SECONDS = 2.0  # how long a closing connection drains the rest of a request it was refused
LINGER_BYTES = 64 * 1024 * 1024  # and how much of it at most
RETRY_AFTER_SECONDS = 1  # what a refused connection is told
SWEEP_SECONDS = 0.25  # how often deadlines are checked: a slow request is closed at most this long after its own
BAD_REQUEST, REQUEST_TIMEOUT = "BAD_REQUEST", "REQUEST_TIMEOUT"
URI_TOO_LONG, HEADERS_TOO_LARGE, TOO_MANY_CONNECTIONS = "URI_TOO_LONG", "HEADERS_TOO_LARGE", "TOO_MANY_CONNECTIONS"


@dataclass(frozen=True)
class EdgeLimits:
    """What a connection may cost before it is answered and closed (0 turns a cap off)."""

    header_seconds: float = 10.0
    body_seconds: float = 30.0
    max_url_bytes: int = 8_192
    max_header_bytes: int = 16_384
    max_connections: int = 10_000
    max_connections_per_client: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        return cls(header_seconds=settings.header_timeout_seconds, body_seconds=settings.body_timeout_seconds,
                   max_url_bytes=settings.max_url_bytes, max_header_bytes=settings.max_header_bytes,
                   max_connections=settings.max_connections,
                   max_connections_per_client=settings.max_connections_per_client)


class Connections:
    """Open connections of one listener, in all and per source address; refusals and expiries counted."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0
        # the admitted connections, whose deadlines one timer sweeps (`SWEEP_SECONDS`): a request then costs
        # two clock reads, where a timer handle armed and cancelled per head and per body cost more
        self.watched: set[EdgeProtocol] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self, protocol: EdgeProtocol) -> None:
        """Sweep `protocol`'s deadlines from now on (the sweep runs while any connection is watched)."""
        self.watched.add(protocol)
        if self._sweep is None:
            self._sweep = protocol.loop.call_later(SWEEP_SECONDS, self.sweep, protocol.loop)

    def unwatch(self, protocol: EdgeProtocol) -> None:
        self.watched.discard(protocol)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire every watched connection whose deadline has passed; again in `SWEEP_SECONDS` while any is
        watched."""
        now = loop.time()
        for protocol in [p for p in self.watched if p.expires_at and p.expires_at <= now]:
            protocol.expire()
        self._sweep = loop.call_later(SWEEP_SECONDS, self.sweep, loop) if self.watched else None

    def admit(self, client: str) -> bool:
        """Take a place for a new connection from `client`; False (nothing taken) when a cap is reached."""
        limits, held = self.limits, self.by_client.get(client, 0)
        if (limits.max_connections and self.open >= limits.max_connections) or \
                (limits.max_connections_per_client and held >= limits.max_connections_per_client):
            self.refused += 1
            return False
        self.open += 1
        self.by_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        """A connection admitted for `client` closed."""
        self.open -= 1
        held = self.by_client.get(client, 1) - 1
        if held:
            self.by_client[client] = held
        else:
            self.by_client.pop(client, None)

    def facts(self) -> dict[str, int]:
        """For /readyz: open connections, distinct clients, refusals and expired deadlines so far."""
        return {"open": self.open, "clients": len(self.by_client), "refused": self.refused,
                "timedOut": self.timed_out}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   request_id: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer with the gateway's JSON error body; it always closes the connection. The
    request never reached the app: its id (`X-Request-Id`, `extensions.requestId`) is a new one."""
    request_id = request_id or new_request_id()
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]}
                      ).encode()
    head = [STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"cache-control: no-store\r\n", b"connection: close\r\n",
            b"x-request-id: %s\r\n" % request_id.encode("ascii")]
    head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in (headers or {}).items()]
    return b"".join(head) + b"\r\n" + body


class _Refusal(Exception):
    """Raised inside a parser callback: the request is answered with this status and code, then closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _ClosingGently:
    """The request cycle's view of the transport: its close() is the protocol's graceful close."""

    __slots__ = ("_transport", "close")

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None]) -> None:
        self._transport = transport
        self.close = close

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()


# What EdgeProtocol takes from uvicorn's httptools protocol (an internal class, so uvicorn is pinned to a minor
# in pyproject.toml): the methods it overrides or calls, by their parameters, and the attributes it reads.
# tests/unit/test_upstream.py checks them against the installed uvicorn.
UPSTREAM_METHODS: dict[str, tuple[str, ...]] = {
    "__init__": ("self", "config", "server_state", "app_state", "_loop"),
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "eof_received": ("self",),
    "data_received": ("self", "data"),
    "handle_websocket_upgrade": ("self",),
    "on_message_begin": ("self",),
    "on_headers_complete": ("self",),
    "on_message_complete": ("self",),
    "on_response_complete": ("self",),
    "_unset_keepalive_if_required": ("self",),
    "_should_upgrade": ("self",),
    "_unsupported_upgrade_warning": ("self",),
}


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's deadlines, caps and graceful close (module docstring).

    `edge_protocol` makes the subclass a listener uses, holding its `Connections`."""

    connections_of: Connections  # set on the listener's subclass
    _head_cap: int  # bytes a request's head may take before it is refused whatever its fields: set with it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expires_at = 0.0  # loop time the current deadline passes (0: none), swept by `connections_of`
        self._on_expiry: Callable[[], None] = self._head_expired
        self._linger: asyncio.TimerHandle | None = None
        self._admitted: str | None = None  # the client address holding a place in `connections_of`
        self._in_head = True  # between a request's first byte (or the connection's start) and its headers' end
        self._head_bytes = 0
        self._message_done = False  # the current request has been received whole
        self._lingering = False
        self._drained = 0

    # connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else ""
        if not self.connections_of.admit(client):
            log.info("connection from %s refused: connection cap", client)
            self._answer_and_close(503, TOO_MANY_CONNECTIONS, "too many connections; try again shortly",
                                   {"retry-after": str(RETRY_AFTER_SECONDS)})
            return
        self._admitted = client
        self.connections_of.watch(self)
        self._arm(self.connections_of.limits.header_seconds, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._release()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._admitted is not None:
            self.connections_of.release(self._admitted)
            self.connections_of.unwatch(self)
            self._admitted = None

    def eof_received(self) -> bool | None:
        if self._lingering:
            self.transport.close()
        return None

    def handle_websocket_upgrade(self) -> None:
        """The handshake arrived within its deadline; the websocket protocol takes the connection over, and
        gives back its place in the counts when it closes."""
        self._disarm()
        super().handle_websocket_upgrade()
        client, self._admitted = self._admitted, None
        if client is None:
            return
        self.connections_of.unwatch(self)
        socket_protocol = self.transport.get_protocol()
        lost = socket_protocol.connection_lost
        counts = self.connections_of

        def connection_lost(exc: Exception | None) -> None:
            try:
                lost(exc)
            finally:
                counts.release(client)

        socket_protocol.connection_lost = connection_lost  # type: ignore[method-assign]

    # receiving

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._drained += len(data)
            if self._drained > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self._in_head and self._head_bytes > self._head_cap:  # one field growing in the parser's buffer
                raise httptools.HttpParserCallbackError from _Refusal(431, HEADERS_TOO_LARGE,
                                                                      "request header fields too large")
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__cause__ or exc.__context__
            if not isinstance(refusal, _Refusal):
                raise
            self._refuse(refusal)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self._refuse(_Refusal(400, BAD_REQUEST, f"malformed HTTP request: {exc}"))

    def send_400_response(self, msg: str) -> None:
        self._answer_and_close(400, BAD_REQUEST, msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._message_done = False
        if not self._in_head:  # a kept-alive connection's next request: its head has its own deadline
            self._in_head, self._head_bytes = True, 0
            self._arm(self.connections_of.limits.header_seconds, self._head_expired)

    def on_headers_complete(self) -> None:
        # the target's and the fields' sizes are counted once here, from what uvicorn has parsed (no callback
        # per part): while they arrive, `_head_cap` in data_received bounds what the parser may buffer
        limits = self.connections_of.limits
        if limits.max_url_bytes and len(self.url) > limits.max_url_bytes:
            raise _Refusal(414, URI_TOO_LONG, f"request target longer than {limits.max_url_bytes} bytes")
        limit = limits.max_header_bytes  # the fields cannot outgrow the bytes the head came in: most go unsummed
        if limit and self._head_bytes > limit and sum(len(n) + len(v) + 4 for n, v in self.headers) > limit:
            raise _Refusal(431, HEADERS_TOO_LARGE, f"request header fields larger than {limit} bytes")
        self._in_head = False
        self._arm(self.connections_of.limits.body_seconds, self._body_expired)
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:
            # until the body is read whole, the cycle's close() is a graceful one (an answer before the body)
            self.cycle.transport = _ClosingGently(self.transport, self.close_gently)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._message_done = True
        self._disarm()
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport.__class__ is _ClosingGently:
            cycle.transport = self.transport  # the body is read: an ordinary close will do, and writes go direct

    def on_response_complete(self) -> None:
        if self._lingering:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()
        if not self._message_done and not self.transport.is_closing():
            self.close_gently()  # answered before the body was read (413): the rest is not read as a request

    # deadlines

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self.expires_at = self.loop.time() + seconds if seconds else 0.0
        self._on_expiry = expired

    def _disarm(self) -> None:
        self.expires_at = 0.0

    def expire(self) -> None:
        """The current deadline has passed (the sweep of `connections_of` calls this)."""
        self.expires_at = 0.0
        self._on_expiry()

    def _head_expired(self) -> None:
        if self.transport.is_closing() or self._lingering:
            return
        self.connections_of.timed_out += 1
        seconds = self.connections_of.limits.header_seconds
        self._answer_and_close(408, REQUEST_TIMEOUT, f"the request line and headers did not arrive within {seconds} s")

    def _body_expired(self) -> None:
        if self.transport.is_closing() or self._lingering:
            return
        self.connections_of.timed_out += 1
        seconds = self.connections_of.limits.body_seconds
        self._answer_and_close(408, REQUEST_TIMEOUT, f"the request body did not arrive within {seconds} s")

    # answering and closing

    def _refuse(self, refusal: _Refusal) -> None:
        request_id = new_request_id()  # the answer's and the log line's
        log.info("request from %s refused: %s", self.client[0] if self.client else "?", refusal.message,
                 extra={"request_id": request_id})
        self._answer_and_close(refusal.status, refusal.code, refusal.message, request_id=request_id)

    def _answer_and_close(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                          request_id: str | None = None) -> None:
        """Answer with the JSON error when no answer is under way on this connection, then close gently;
        a request the app is still serving is told its client is gone."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(error_response(status, code, message, headers, request_id))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.close_gently()

    def close_gently(self) -> None:
        """Half-close (the answer and a FIN go out), then drain what the client still sends, up to
        `LINGER_BYTES` and `LINGER_SECONDS`, so that no unread byte makes the kernel reset the connection."""
        if self._lingering or self.transport.is_closing():
            return
        if self._message_done and not self.pipeline:  # nothing unread: an ordinary close
            self.transport.close()
            return
        self._lingering = True
        self._disarm()
        self._release()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def edge_protocol(connections: Connections) -> type[EdgeProtocol]:
    """The protocol class of one listener, counting its connections in `connections`."""
    limits = connections.limits
    head_cap = limits.max_url_bytes + limits.max_header_bytes + 4096 if limits.max_header_bytes else 1 << 62
    return type("EdgeProtocol", (EdgeProtocol,), {"connections_of": connections, "_head_cap": head_cap})
