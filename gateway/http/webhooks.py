"""`POST /hooks/changes`: a source pushes its changes here instead of (or besides) being polled; they go to
the same applier as the polled ones (`sync.feed_applier.ChangeProcessor.handle`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.http.asgi import address_key
from rules.digits import ascii_int
from sources.change_feed import parse_changes
from sources.settings import Settings
from sources.systems import Source
from stores.rate_limits import RateLimiter, retry_after
from sync.feed_applier import ChangeProcessor

MAX_WEBHOOK_BYTES = 5_000_000


def webhook_endpoint(settings: Settings, processor: ChangeProcessor,
                     limiter: RateLimiter | None = None) -> Callable[[Request], Any]:
    """`POST /hooks/changes`: `{"source": "orr"|"ice"|"eoir", "changes": [...]}`.

    The shared secret comes in the `X-UCGW-Webhook-Secret` header or, for senders that can only be given
    a URL (the mocks' `--webhook-url`), as `?token=`. No secret configured: the endpoint answers 404. A
    wrong secret costs the sender's address a token of `limiter` (as bad credentials on /graphql do), so
    guessing is slowed to the rate limit (429 with Retry-After). The body is parsed by orjson: a JSON
    nesting deeper than its limit (1,024) or a NaN is a 400 like any other malformed body.
    """
    secret = settings.webhook_secret.encode()

    async def endpoint(request: Request) -> JSONResponse:
        if not secret:
            return JSONResponse({"error": {"code": "NOT_FOUND", "message": "webhook not configured"}}, 404)
        given = (request.headers.get("x-ucgw-webhook-secret") or request.query_params.get("token", "")).encode()
        if not hmac.compare_digest(given, secret):
            wait = await limiter.check(address_key(request.scope)) if limiter is not None else 0.0
            if wait:
                retry, message = retry_after(wait)
                return JSONResponse({"error": {"code": "RATE_LIMITED", "message": message}}, 429,
                                    headers={"retry-after": str(retry)})
            return JSONResponse({"error": {"code": "UNAUTHENTICATED", "message": "bad webhook secret"}}, 401)
        declared = request.headers.get("content-length", "")
        if ascii_int(declared, MAX_WEBHOOK_BYTES) is None:
            return JSONResponse({"error": {"code": "PAYLOAD_TOO_LARGE", "message":
                                 f"send a Content-Length of at most {MAX_WEBHOOK_BYTES} bytes"}}, 413)
        try:
            body = orjson.loads(await request.body())
            source = Source(str(body["source"]).upper())
            changes, bad = parse_changes(body["changes"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"code": "BAD_USER_INPUT", "message":
                                 'expected {"source": "orr"|"ice"|"eoir", "changes": [...]}'}}, 400)
        new = await processor.handle(source, changes, "webhook")
        return JSONResponse({"accepted": new, "skipped": bad + len(changes) - new}, 202)

    return endpoint
