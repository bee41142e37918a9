"""The span of each `/graphql` request (only installed when tracing is on: `create_app` wraps the guarded endpoint
in `TracedRequests` then, and leaves it bare otherwise, so an untraced gateway pays nothing here).

The caller's W3C `traceparent` is honoured (the request span becomes its child; with a parent-based sampler the
caller's sampling decision holds). The span carries the operation's name (a GraphQL name of at most 64
characters; one holding a run of digits, as an A-number does, is recorded as `redacted`), the caller's role,
the HTTP status and an outcome: `ok`, `partial` (an answer with errors), `refused` (4xx) or `error` (5xx).
Never the query text, variables, the caller's subject or anything about a child.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from opentelemetry.context import attach, detach
from opentelemetry.trace import set_span_in_context
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http.request_state import request_state
from sources.tracing import ERROR, REQUEST_SPAN, SpanKind, Tracer, extract_context

_OPERATION = re.compile(rb"^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_DIGITS = re.compile(r"[0-9]{3,}")  # A-numbers, dates and phone numbers all hold runs of digits
_COMMENTS = re.compile(rb"#[^\n]*")


def operation_name(body: bytes, query_string: bytes) -> str:
    """The operation's name from a POST body (`operationName`, else the first named operation of `query`) or a
    GET's query string; `anonymous` when it has none, `redacted` when it could carry data."""
    name: Any = None
    if body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            name = data.get("operationName")
            query = data.get("query")
            if not name and isinstance(query, str):
                found = _OPERATION.match(_COMMENTS.sub(b"", query.encode()))
                name = found.group(1).decode() if found else None
    elif query_string:
        from urllib.parse import parse_qs

        params = parse_qs(query_string.decode("latin-1"))
        name = (params.get("operationName") or [None])[0]
        if not name and params.get("query"):
            found = _OPERATION.match(_COMMENTS.sub(b"", params["query"][0].encode()))
            name = found.group(1).decode() if found else None
    if not name:
        return "anonymous"
    if not isinstance(name, str) or not _NAME.fullmatch(name) or _DIGITS.search(name):
        return "redacted"
    return name


def _outcome(status: int, errors: bool) -> str:
    if status >= 500:
        return "error"
    if status >= 400:
        return "refused"
    return "partial" if errors else "ok"


class TracedRequests:
    """ASGI wrapper of the guarded GraphQL endpoint: one SERVER span per HTTP request, current while the guard,
    the GraphQL view and the resolvers run (their spans and the backend calls' `traceparent` descend from it)."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer
        self._attributes = {method: {"http.request.method": method, "http.route": "/graphql"}
                            for method in ("GET", "POST")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {}
        for key, value in scope["headers"]:
            if key in (b"traceparent", b"tracestate"):
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        parent = extract_context(carrier) if carrier else None
        span = self.tracer.start_span(REQUEST_SPAN, context=parent, kind=SpanKind.SERVER,
                                      attributes=self._attributes.get(scope["method"]) or self._attributes["POST"])
        token = attach(set_span_in_context(span))
        try:
            if span.is_recording():
                await self._recorded(span, scope, receive, send)
            else:  # not sampled: the span only carries the trace id on to the backends (traceparent)
                await self.app(scope, receive, send)
        finally:
            detach(token)
            span.end()

    async def _recorded(self, span: Any, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request, noting its body (for the operation's name) and its answer's status and errors."""
        chunks: list[bytes] = []
        answer = {"status": 500, "errors": False}

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and not answer["errors"]:
                answer["errors"] = b'"errors":' in message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            status = int(answer["status"])
            state = request_state(scope)
            principal = state.principal if state is not None else None
            span.set_attributes({
                "graphql.operation.name": operation_name(b"".join(chunks), scope.get("query_string", b"")),
                "ucgw.role": principal.role if principal is not None else "none",
                "http.response.status_code": status,
                "ucgw.outcome": _outcome(status, bool(answer["errors"])),
            })
            if status >= 500:
                span.set_status(ERROR)
