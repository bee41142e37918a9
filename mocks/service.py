"""One mock agency service (ORR, ICE or EOIR) as a Starlette app over the shared world.

Data routes live under /v1 and go through the fault injector and the request counter; /healthz,
/openapi.json and the tester controls under /_admin do not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mocks.openapi import SERVICES, build
from mocks.tokens import TokenGate, TokenIssuer, token_endpoint, tokens_admin
from mocks.util import A_NUMBER_RE, LAST_TS, b64d, b64e, dumps, http_date, iso, parse_iso
from mocks.world import CATEGORY_ORDER, MAX_ADVANCE_SECONDS, MAX_SPEED, SOURCES, World

log = logging.getLogger("mocks.service")

MAX_BATCH = 500
MAX_BODY = 1 << 20
HANG_SECONDS = 300.0
JSON = "application/json"


def error_body(code: str, message: str) -> bytes:
    """The JSON error envelope shared by every service."""
    return dumps({"error": {"code": code, "message": message}})


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error response."""
    return Response(error_body(code, message), status_code=status, media_type=JSON, headers=headers)


MAX_LATENCY_MS = 600_000
DELAY_KNOBS = ("latency_ms", "jitter_ms")
RATE_KNOBS = ("error_rate", "timeout_rate", "malformed_rate", "drift_rate")


@dataclass
class Faults:
    """Runtime fault knobs of one service."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_rate: float = 0.0  # share of data answers whose body is cut-off, non-JSON text
    drift_rate: float = 0.0  # share of data answers whose records carry status values no client knows
    down: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @staticmethod
    def problem(key: str, value: Any) -> str | None:
        """What is wrong with `value` for the knob `key` (the one definition of the limits), or None."""
        number = not isinstance(value, bool) and isinstance(value, int | float)
        if key == "down":
            return None if isinstance(value, bool) else "must be true or false"
        if key in DELAY_KNOBS:
            return None if number and 0 <= value <= MAX_LATENCY_MS else \
                f"must be a number of milliseconds in [0, {MAX_LATENCY_MS}]"
        if key in RATE_KNOBS:
            return None if number and 0 <= value <= 1 else "must be a number in [0, 1]"
        return "unknown fault knob"

    def updated(self, body: Any) -> tuple[Faults | None, list[str]]:
        """A copy with a (partial) update applied, or the validation errors."""
        if not isinstance(body, dict):
            return None, ["body must be a JSON object"]
        errors = []
        new = Faults(**self.as_dict())
        for key, value in body.items():
            problem = self.problem(key, value)
            if problem:
                errors.append(f"{key}: {problem}")
            else:
                setattr(new, key, value if key == "down" else float(value))
        return (None, errors) if errors else (new, [])


MAX_BATCH_SIZES = 10_000  # `Stats.batch_sizes` keeps the latest this many: a long run stays small


@dataclass
class Stats:
    """Counts of data requests (not admin, health or openapi), and the client connections they came on."""

    total: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_BATCH_SIZES))
    peers: set[tuple[str, int]] = field(default_factory=set)  # (client address, port) of each connection
    in_flight: int = 0  # data requests being answered now (latency included)
    peak_in_flight: int = 0  # the most at once since the last reset
    traceparent: dict[str, str] = field(default_factory=dict)  # the latest W3C traceparent received, by route


    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"total": self.total, "by_route": dict(sorted(self.by_route.items())),
                "batch_sizes": list(self.batch_sizes), "connections": len(self.peers),
                "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight,
                "traceparent": dict(sorted(self.traceparent.items()))}


class ServiceState:
    """Mutable per-service state: faults (and their defaults), stats, the fault dice."""

    def __init__(self, source: str, world: World, defaults: Faults | None = None) -> None:
        self.source = source
        self.world = world
        self.collection = SERVICES[source]["collection"]
        self.defaults = defaults or Faults()
        self.faults = Faults(**self.defaults.as_dict())
        self.stats = Stats()
        self.rng = random.Random(f"faults:{source}")
        self.closing = False
        self.tokens: TokenIssuer | None = None  # set with --require-token: /v1/ needs a token of ours

    def reset(self) -> None:
        """Default faults, zeroed stats, re-seeded fault dice (data untouched)."""
        self.faults = Faults(**self.defaults.as_dict())
        self.stats = Stats()
        self.rng = random.Random(f"faults:{self.source}")

    def route_label(self, method: str, path: str) -> str:
        """The route template a data request maps to, for the stats."""
        base = f"/v1/{self.collection}"
        if path == "/v1/changes":
            return f"{method} /v1/changes"
        if path == base:
            return f"{method} {base}"
        if path == f"{base}/batch" and method == "POST":
            return f"POST {base}/batch"
        if path.startswith(base + "/") and "/" not in path[len(base) + 1:]:
            return f"{method} {base}/{{a_number}}"
        return f"{method} /v1/(unknown)"


async def _send_raw(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    hdrs = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


DRIFTED_KEYS = {"status", "case_status", "custody_status", "outcome", "type", "quality"}


def _malform(body: bytes) -> bytes:
    """A 200 answer cut off halfway: not JSON."""
    return body[: max(1, len(body) // 2)] + b"<!-- truncated -->"


def _drift(body: bytes) -> bytes:
    """Valid JSON whose status-like values were renamed, as after an unannounced schema change."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (f"V2_{v.upper()}" if k in DRIFTED_KEYS and isinstance(v, str) else walk(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    try:
        return json.dumps(walk(json.loads(body))).encode()
    except ValueError:
        return body


def _rewriting(send: Send, rewrite: Callable[[bytes], bytes]) -> Send:
    """A `send` that buffers a successful response and sends `rewrite(body)` instead."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = rewrite(body)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


class FaultInjector:
    """ASGI middleware: counts data requests, then applies latency, outage, hangs and errors."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        stats = self.state.stats  # a reset meanwhile starts new stats: this request ends in the ones it began in
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            await self._answer(scope, receive, send, stats)
        finally:
            stats.in_flight -= 1

    async def _answer(self, scope: Scope, receive: Receive, send: Send, stats: Stats) -> None:
        st = self.state
        label = st.route_label(scope["method"], scope["path"])
        stats.total += 1
        stats.by_route[label] = stats.by_route.get(label, 0) + 1
        for key, value in scope["headers"]:
            if key == b"traceparent":
                stats.traceparent[label] = value.decode("latin-1")
        if scope.get("client"):
            stats.peers.add(tuple(scope["client"]))
        f = st.faults
        delay = f.latency_ms + (st.rng.random() * f.jitter_ms if f.jitter_ms else 0.0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        f = st.faults  # the knobs may have changed while we slept
        if f.down:
            await _send_raw(send, 503, error_body("UNAVAILABLE", f"{st.source} is down (injected outage)"),
                            {"Retry-After": "1"})
            return
        if f.timeout_rate and st.rng.random() < f.timeout_rate:
            if await self._hang(receive):
                return
            await _send_raw(send, 503, error_body("UNAVAILABLE", "injected hang ended"))
            return
        if f.error_rate and st.rng.random() < f.error_rate:
            if st.rng.random() < 0.5:
                await _send_raw(send, 500, error_body("INTERNAL_ERROR", "injected server error"))
            else:
                await _send_raw(send, 503, error_body("UNAVAILABLE", "injected temporary outage"),
                                {"Retry-After": "1"})
            return
        if f.malformed_rate and st.rng.random() < f.malformed_rate:
            await self.app(scope, receive, _rewriting(send, _malform))
            return
        if f.drift_rate and st.rng.random() < f.drift_rate:
            await self.app(scope, receive, _rewriting(send, _drift))
            return
        await self.app(scope, receive, send)

    async def _hang(self, receive: Receive) -> bool:
        """Wait until the client goes away (True) or the hang cap / shutdown ends the wait (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANG_SECONDS
        while loop.time() < deadline and not self.state.closing:
            try:
                msg: Message = await asyncio.wait_for(receive(), timeout=0.5)
            except TimeoutError:
                continue
            if msg["type"] == "http.disconnect":
                return True
        return False


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _updated_at(raw: bytes) -> int:
    i = raw.rfind(b'"updated_at":"')
    return parse_iso(raw[i + 14:i + 34].decode())


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int | str:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"\d{1,9}", value, re.ASCII) or not lo <= int(value) <= hi:
        return f"{name} must be an integer in [{lo}, {hi}]"
    return int(value)


async def _json_body(request: Request) -> tuple[Any, Response | None]:
    """The decoded JSON body, or an error; reads no more than MAX_BODY (+ one chunk) of a larger body."""
    too_large = error(413, "PAYLOAD_TOO_LARGE", f"body larger than {MAX_BODY} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
        return None, too_large  # refused unread
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None, too_large  # the server discards the rest
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        return json.loads(body), None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than json parses
        return None, error(400, "BAD_REQUEST", "body is not valid JSON")


def create_app(state: ServiceState) -> Starlette:
    """The Starlette app of one service."""
    world = state.world
    source = state.source
    coll = state.collection
    feed = world.feeds[source]
    filters = SERVICES[source]["filters"]
    filter_key = {"nta_status": "status"}
    openapi_body = dumps(build(source))

    async def health(request: Request) -> Response:
        down = state.faults.down
        body = {"status": "down" if down else "ok", "service": source, "now": iso(world.now)}
        return Response(dumps(body), status_code=503 if down else 200, media_type=JSON)

    async def openapi(request: Request) -> Response:
        return Response(openapi_body, media_type=JSON)

    async def get_one(request: Request) -> Response:
        a = request.path_params["a_number"]
        if not A_NUMBER_RE.match(a):
            return error(400, "BAD_REQUEST", "a_number must be canonical: 'A' followed by 9 digits")
        raw = world.get(source, a)
        if raw is None:
            return error(404, "NOT_FOUND", f"no {source} record for {a}")
        etag = _etag(raw)
        headers = {"ETag": etag, "Last-Modified": http_date(_updated_at(raw))}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(raw, media_type=JSON, headers=headers)

    async def batch(request: Request) -> Response:
        body, err = await _json_body(request)
        if err is not None:
            return err
        if not isinstance(body, dict) or set(body) != {"a_numbers"} or not isinstance(body["a_numbers"], list):
            return error(400, "BAD_REQUEST", 'body must be {"a_numbers": [...]}')
        ids = body["a_numbers"]
        if not ids:
            return error(400, "BAD_REQUEST", "a_numbers must not be empty")
        if len(ids) > MAX_BATCH:
            return error(413, "PAYLOAD_TOO_LARGE", f"at most {MAX_BATCH} a_numbers per batch, got {len(ids)}")
        for i, a in enumerate(ids):
            if not isinstance(a, str) or not A_NUMBER_RE.match(a):
                return error(400, "BAD_REQUEST", f"a_numbers[{i}] is not a canonical A-number ('A' + 9 digits)")
        state.stats.batch_sizes.append(len(ids))
        records: list[bytes] = []
        missing: list[str] = []
        seen: set[str] = set()
        newest = 0
        for a in ids:
            if a in seen:
                continue
            seen.add(a)
            raw = world.get(source, a)
            if raw is None:
                missing.append(a)
            else:
                records.append(raw)
                newest = max(newest, _updated_at(raw))
        out = b'{"missing":' + dumps(missing) + b',"records":[' + b",".join(records) + b"]}"
        headers = {"ETag": _etag(out), "Last-Modified": http_date(newest or world.now)}
        return Response(out, media_type=JSON, headers=headers)

    async def listing(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, MAX_BATCH)
        if isinstance(limit, str):
            return error(400, "BAD_REQUEST", limit)
        after = None
        cursor = request.query_params.get("cursor")
        if cursor is not None:
            src, _sep, after = (b64d(cursor) or "").partition(">")
            if src != source or not A_NUMBER_RE.match(after):
                return error(400, "BAD_REQUEST", "cursor is not a next_cursor issued by this service")
        needles = []
        for name, schema in filters.items():
            value = request.query_params.get(name)
            if value is None:
                continue
            if not value or ("enum" in schema and value not in schema["enum"]):
                allowed = f": one of {schema['enum']}" if "enum" in schema else ""
                return error(400, "BAD_REQUEST", f"bad {name} filter{allowed}")
            needles.append(b'"' + filter_key.get(name, name).encode() + b'":' + dumps(value))
        page, last = world.page(source, after, limit, tuple(needles))
        nxt = dumps(b64e(f"{source}>{last}")) if last else b"null"
        return Response(b'{"next_cursor":' + nxt + b',"records":[' + b",".join(page) + b"]}", media_type=JSON)

    def _cursor(seq: int) -> str:
        return b64e(f"{source}:{seq}")

    async def changes(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, 1000)
        if isinstance(limit, str):
            return error(400, "BAD_REQUEST", limit)
        since = request.query_params.get("since")
        if since is None:
            seq = 0
        elif since == "latest":
            seq = feed.last_seq
        else:
            decoded = b64d(since)
            m = re.fullmatch(rf"{source}:(\d{{1,12}})", decoded or "", re.ASCII)
            if m is None or int(m.group(1)) > feed.last_seq:
                return error(400, "BAD_REQUEST", "since is not a cursor issued by this service's change feed")
            seq = int(m.group(1))
            if seq < feed.first_seq - 1:
                return error(410, "CURSOR_EXPIRED", "changes before this cursor are no longer kept; "
                                                    "restart with since=latest")
        items = feed.after(seq, limit)
        last = items[-1]["seq"] if items else max(seq, feed.first_seq - 1)
        return Response(dumps({"changes": items, "next_cursor": _cursor(last)}), media_type=JSON)

    # ------------------------------------------------------------------------------ tester controls

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            body, err = await _json_body(request)
            if err is not None:
                return err
            new, errors = state.faults.updated(body)
            if new is None:
                return error(400, "BAD_REQUEST", "; ".join(errors))
            state.faults = new
        return JSONResponse(state.faults.as_dict())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"faults": state.faults.as_dict(), "stats": state.stats.as_dict()})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.as_dict())

    def _clock_body(**extra: Any) -> dict[str, Any]:
        nxt = world.events[0][0] if world.events else None
        return {"now": iso(world.now), "speed": world.speed, "pending_events": len(world.events),
                "next_event_at": iso(nxt) if nxt is not None else None, **extra}

    async def clock(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(_clock_body())
        body, err = await _json_body(request)
        if err is not None:
            return err
        if not isinstance(body, dict) or not body or not set(body) <= {"advance_seconds", "speed"}:
            return error(400, "BAD_REQUEST", 'body must be {"advance_seconds": S} and/or {"speed": X}')
        adv = body.get("advance_seconds", 0)
        speed = body.get("speed", world.speed)
        for name, value, hi in (("advance_seconds", adv, MAX_ADVANCE_SECONDS), ("speed", speed, MAX_SPEED)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= hi:
                return error(400, "BAD_REQUEST", f"{name} must be a number in [0, {hi}]")
        left = LAST_TS - world.now
        if adv > left:
            return error(400, "BAD_REQUEST", f"advance_seconds {adv} would take the clock past {iso(LAST_TS)}; "
                                             f"it can move at most {int(left)} more seconds")
        world.speed = float(speed)
        applied = world.advance(float(adv)) if adv else 0
        return JSONResponse(_clock_body(events_applied=applied))

    async def sample(request: Request) -> Response:
        n = _int_param(request, "n", 10, 1, 1000)
        if isinstance(n, str):
            return error(400, "BAD_REQUEST", n)
        state_name = request.query_params.get("state")
        if state_name is not None and state_name not in CATEGORY_ORDER:
            return error(400, "BAD_REQUEST", f"state must be one of {CATEGORY_ORDER}")
        return JSONResponse({"a_numbers": world.sample(n, state_name), "state": state_name})

    async def records(request: Request) -> Response:
        a = request.path_params["a_number"]
        if not A_NUMBER_RE.match(a):
            return error(400, "BAD_REQUEST", "a_number must be canonical: 'A' followed by 9 digits")
        if request.method == "GET":
            raw = world.get(source, a)
            if raw is None:
                return error(404, "NOT_FOUND", f"no {source} record for {a}")
            return Response(raw, media_type=JSON)
        body, err = await _json_body(request)
        if err is not None:
            return err
        status, result = world.stage(source, a, body, replace=request.method == "PUT")
        if status >= 400:
            code = "NOT_FOUND" if status == 404 else "BAD_REQUEST"
            return error(status, code, "; ".join(result))
        return Response(dumps(result), status_code=status, media_type=JSON)

    async def world_info(request: Request) -> Response:
        cats = world.categories()
        body: dict[str, Any] = {
            "seed": world.seed, "children": world.children, "start": iso(world.start), "now": iso(world.now),
            "speed": world.speed, "records": {s: len(world.stores[s]) for s in SOURCES},
            "pending_events": len(world.events), "states": {k: len(v) for k, v in cats.items()},
        }
        if request.query_params.get("digest") in ("1", "true"):
            body["digest"] = world.digest()
        return JSONResponse(body)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return error(exc.status_code, codes.get(exc.status_code, "BAD_REQUEST"), str(exc.detail),
                     headers=dict(exc.headers or {}))

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "INTERNAL_ERROR", "unexpected server error")

    routes = [
        Route("/healthz", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(f"/v1/{coll}/batch", batch, methods=["POST"]),
        Route(f"/v1/{coll}/{{a_number}}", get_one, methods=["GET"]),
        Route(f"/v1/{coll}", listing, methods=["GET"]),
        Route("/v1/changes", changes, methods=["GET"]),
        Route("/_admin/faults", faults, methods=["GET", "PUT"]),
        Route("/_admin/reset", reset, methods=["POST"]),
        Route("/_admin/stats", stats, methods=["GET"]),
        Route("/_admin/clock", clock, methods=["GET", "POST"]),
        Route("/_admin/sample", sample, methods=["GET"]),
        Route("/_admin/world", world_info, methods=["GET"]),
        Route("/_admin/records/{a_number}", records, methods=["GET", "PUT", "PATCH"]),
    ]
    if state.tokens is not None:
        routes += [Route("/oauth/token", token_endpoint, methods=["POST"]),
                   Route("/_admin/tokens", tokens_admin, methods=["GET", "POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: crash})
    app.add_middleware(FaultInjector, state=state)
    if state.tokens is not None:  # outermost: a refused request is not counted as a data request
        app.state.tokens = state.tokens
        app.add_middleware(TokenGate, issuer=state.tokens)
    return app
