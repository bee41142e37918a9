"""One id per HTTP request, quoted in tickets: the `X-Request-Id` every answer carries, `extensions.requestId` of
every GraphQL error, the `request_id` of the request's audit events and of every log line written for it.

A caller (a proxy, a partner app) may bring its own id in `X-Request-Id`; it is kept when it is well-formed
(`WELL_FORMED`: 1-128 characters of letters, digits and `.`, `_`, `:`, `-`), so that one id follows the request
through systems. Anything else (empty, longer, other characters, several headers) is replaced by a new id of
the gateway's (`stores.audit_trail.new_request_id`: 32 hex digits, from a per-process prefix and a counter,
without asking the OS for randomness per request). A caller's id is its own: two requests may bring the same.

The id of the request being served is in `REQUEST_ID`, a context variable: set in the request's own task
(uvicorn runs each request and each websocket in a task of its own, so it ends with it), read by the log
formatter (`gateway/logs.py`) and by the code that writes an answer.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from starlette.types import Message, Scope, Send

from stores.audit_trail import new_request_id

HEADER = b"x-request-id"
MAX_CHARS = 128
WELL_FORMED = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_CHARS).fullmatch

# the id of the request this task serves (None outside a request: start-up, timers, the change feed)
REQUEST_ID: ContextVar[str | None] = ContextVar("ucgw_request_id", default=None)


def given_id(scope: Scope) -> str | None:
    """The caller's `X-Request-Id` when it is well-formed (and given once), else None."""
    found = None
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            if found is not None:
                return None  # two ids for one request: neither is taken
            found = value
    if found is None or not WELL_FORMED(found):
        return None
    return found.decode("ascii")


def begin(scope: Scope) -> str:
    """The request's id (the caller's, else a new one), made the current one (`REQUEST_ID`) for this task."""
    request_id = given_id(scope) or new_request_id()
    REQUEST_ID.set(request_id)
    return request_id


def id_header(request_id: str) -> tuple[bytes, bytes]:
    """The response header carrying `request_id`."""
    return HEADER, request_id.encode("ascii")


def with_id_header(send: Send, request_id: str, starts: tuple[str, ...] = ("http.response.start",)) -> Send:
    """`send` adding the `X-Request-Id` header to the start of each answer (`starts`: the message types that
    start one). For the routes off the hot path (health, hooks, 404s, websockets); /graphql adds it itself."""
    header = id_header(request_id)

    async def sending(message: Message) -> None:
        if message["type"] in starts:
            headers = list(message.get("headers") or ())
            if not any(name.lower() == HEADER for name, _ in headers):
                headers.append(header)
            message = {**message, "headers": headers}
        await send(message)

    return sending
