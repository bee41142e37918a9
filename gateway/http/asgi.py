"""Small ASGI helpers the HTTP layer shares: the caller's stated purpose read from its header, the headers
every /graphql answer carries, JSON error responses, the rate-limit key of an unknown caller, and a body
read once handed on again. ASGI types come from `starlette.types`."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from gateway.http.request_ids import REQUEST_ID, id_header

MAX_PURPOSE_CHARS = 200


def clean_purpose(raw: str | None) -> str | None:
    """The caller's stated reason (`X-Purpose`) as the audit trail keeps it: printable (tabs and line breaks
    as spaces), at most 200 characters."""
    if raw is None:
        return None
    text = "".join(" " if c.isspace() else c for c in raw if c.isprintable() or c.isspace())
    return text.strip()[:MAX_PURPOSE_CHARS] or None


def header_purpose(headers: Headers) -> str | None:
    """`clean_purpose` of the request's `X-Purpose` header, read as UTF-8: ASGI servers hand header bytes
    over as Latin-1, which turned 'revisión' into 'revisiÃ³n' in the trail (bytes that are not UTF-8 stay
    as Latin-1 gave them)."""
    raw = headers.get("x-purpose")
    if raw is None:
        return None
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    return clean_purpose(raw)


# On every /graphql answer: child data must not be kept by browsers or proxies, nor sniffed as another type.
ANSWER_HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"cache-control", b"no-store"),
                                                   (b"x-content-type-options", b"nosniff"))


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: dict[str, str] | None = None, *, kind: str = "http.response",
                     media_type: str = "application/json", **facts: Any) -> None:
    """A JSON error response `{"errors": [{"message", "extensions": {"code", ...}}]}`.

    `kind` "websocket.http.response" refuses a websocket handshake with this response instead (the ASGI
    denial-response extension); `media_type` is the one the request's Accept chose (`bodies.response_media_type`).
    The request's id (`REQUEST_ID`), when it has one, is in the error's
    `extensions.requestId` and the `X-Request-Id` header."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        facts["requestId"] = request_id
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code, **facts}}]}).encode()
    raw = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()), *ANSWER_HEADERS]
    if request_id is not None:
        raw.append(id_header(request_id))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": f"{kind}.start", "status": status, "headers": raw})
    await send({"type": f"{kind}.body", "body": body})


def address_key(scope: Scope) -> str:
    """The rate-limit key of a caller known only by its address (no credentials, or bad ones)."""
    client = scope.get("client") or ("unknown", 0)
    return f"ip:{client[0]}"


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
