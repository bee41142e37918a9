"""`POST /hooks/changes`: a source pushes its changes here instead of (or besides) being polled; they go to
the same applier as the polled ones (`sync.feed_applier.ChangeProcessor.handle`). Posts are signed (HMAC
under `UCGW_WEBHOOK_SECRET`), fresh, never replayed, and every change is checked (security #9)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.http.asgi import address_key
from rules.digits import ascii_int
from sources.change_feed import A_NUMBER, change_time, parse_changes
from sources.redis_link import RedisLink
from sources.settings import Settings
from sources.systems import RECORD_FIELDS, Source
from stores.rate_limits import RateLimiter, retry_after
from sync.feed_applier import ChangeProcessor

log = logging.getLogger("ucgw.webhooks")
MAX_WEBHOOK_BYTES = 1_000_000  # 1,000 changes of a few hundred bytes each fit
WEBHOOK_TOLERANCE_SECONDS = 300  # how far a post's X-UCGW-Timestamp may be from the gateway's clock
SIGNATURES_REMEMBERED = 100_000  # signatures of accepted posts kept (for the tolerance window) to refuse replays
MAX_WEBHOOK_CHANGES = 1_000  # changes one post may carry (the mocks send at most 500)
MAX_CHANGE_TEXT = 64  # longest `updated_at` or field name
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


def webhook_change_problem(index: int, item: object, fields: frozenset[str]) -> str | None:
    """What is wrong with change `index` of a webhook post, or None: every member is checked (a feed page
    polled from a source skips a bad entry; an authenticated sender's bad post is its bug, refused whole)."""
    where = f"changes[{index}]"
    if not isinstance(item, dict):
        return f"{where} must be an object"
    unknown = sorted(set(item) - {"seq", "a_number", "updated_at", "fields"})
    if unknown:
        return f"{where} has unknown member(s): {', '.join(unknown)[:200]}"
    seq, a, updated, names = item.get("seq"), item.get("a_number"), item.get("updated_at"), item.get("fields")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2 ** 63:
        return f"{where}.seq must be a whole number in [0, 2^63)"
    if not isinstance(a, str) or not A_NUMBER.fullmatch(a):
        return f"{where}.a_number must be 'A' and 9 digits"
    if updated is not None and (not isinstance(updated, str) or len(updated) > MAX_CHANGE_TEXT
                                or change_time(updated) is None):
        return f"{where}.updated_at must be null or an ISO 8601 time"
    if not isinstance(names, list) or len(names) > len(fields) or len(set(map(str, names))) != len(names):
        return f"{where}.fields must be a list of distinct field names of the source's records"
    bad = [n for n in names if not isinstance(n, str) or n not in fields]
    if bad:
        return f"{where}.fields names no field of the source's records: {str(bad[0])[:MAX_CHANGE_TEXT]!r}"
    return None


class WebhookReplays:
    """Signatures of the posts accepted in the last two tolerance windows: a post seen again is a replay.
    (A timestamp is accepted up to the tolerance either side of now, so a signature stays usable for
    twice the tolerance after it first arrives.)"""

    def __init__(self, window: float, size: int = SIGNATURES_REMEMBERED) -> None:
        self.window = window
        self.size = size
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> when first accepted (monotonic)

    def first(self, signature: str) -> bool:
        """True, and remembered, the first time `signature` is seen; False for a replay."""
        now = time.monotonic()
        while self._seen and (len(self._seen) >= self.size
                              or next(iter(self._seen.values())) < now - 2 * self.window):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True


async def first_in_cluster(redis: RedisLink | None, signature: str, window: float) -> bool:
    """False when another replica accepted this signed post already (SET NX with expiry: a replay sent to a
    different replica is refused too); True without Redis or while it fails (this replica's memory decides)."""
    if redis is None or not redis.usable:
        return True
    try:
        return bool(await redis.run(lambda r: r.set(redis.key("hook", signature[7:]), b"1", nx=True,
                                                     px=int(2 * window * 1000))))
    except RedisError:
        return True


def _refusal(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def webhook_endpoint(settings: Settings, processor: ChangeProcessor,
                     limiter: RateLimiter | None = None, redis: RedisLink | None = None) -> Callable[[Request], Any]:
    """`POST /hooks/changes`: `{"source": "orr"|"ice"|"eoir", "changes": [...]}`, signed.

    The sender signs each post: `X-UCGW-Timestamp: <unix seconds>` and `X-UCGW-Signature: sha256=<hex
    HMAC-SHA256(secret, timestamp + "." + body)>` (the mocks' `signed_headers`). A timestamp more than
    `WEBHOOK_TOLERANCE_SECONDS` from the gateway's clock, a wrong signature, or a signature already accepted
    (a replay) is a 401; no secret in a query string or header is accepted. No secret configured: the
    endpoint answers 404. A refused signature costs the sender's address a token of `limiter` (as bad
    credentials on /graphql do), so guessing is slowed to the rate limit (429 with Retry-After). The body
    is parsed by orjson (a JSON nesting deeper than its limit, or a NaN, is a 400) and every change is
    checked (`webhook_change_problem`): one bad change refuses the post with a 400 that names it.
    During a rotation a post signed with `webhook_secret_previous` is accepted too (the senders move to the
    new secret one by one).
    """
    secret = settings.webhook_secret.encode()
    keys = [key.encode() for key in (settings.webhook_secret, settings.webhook_secret_previous) if key]
    replays = WebhookReplays(WEBHOOK_TOLERANCE_SECONDS)
    fields = RECORD_FIELDS

    async def refused(request: Request, message: str) -> JSONResponse:
        wait = await limiter.check(address_key(request.scope)) if limiter is not None else 0.0
        if wait:
            retry, text = retry_after(wait)
            return _refusal(429, "RATE_LIMITED", text, {"retry-after": str(retry)})
        log.info("webhook post refused: %s", message)
        return _refusal(401, "UNAUTHENTICATED", message)

    async def endpoint(request: Request) -> JSONResponse:
        if not secret:
            return _refusal(404, "NOT_FOUND", "webhook not configured")
        declared = request.headers.get("content-length", "")
        if ascii_int(declared, MAX_WEBHOOK_BYTES) is None:
            return _refusal(413, "PAYLOAD_TOO_LARGE", f"send a Content-Length of at most {MAX_WEBHOOK_BYTES} bytes")
        stamp = request.headers.get("x-ucgw-timestamp", "")
        signature = request.headers.get("x-ucgw-signature", "")
        when = ascii_int(stamp, 2 ** 40)
        if when is None or not _SIGNATURE.fullmatch(signature):
            return await refused(request, "sign the post: X-UCGW-Timestamp: <unix seconds> and X-UCGW-Signature: "
                                          "sha256=<hex HMAC-SHA256(secret, timestamp + '.' + body)>")
        if abs(time.time() - when) > WEBHOOK_TOLERANCE_SECONDS:
            return await refused(request, f"X-UCGW-Timestamp is more than {WEBHOOK_TOLERANCE_SECONDS} s from now")
        body = await request.body()
        signed = stamp.encode() + b"." + body
        if not any(hmac.compare_digest("sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest(), signature)
                   for key in keys):
            return await refused(request, "bad webhook signature")
        if not replays.first(signature) or not await first_in_cluster(redis, signature, WEBHOOK_TOLERANCE_SECONDS):
            return await refused(request, "this signed post was accepted before (a replay)")
        try:
            data = orjson.loads(body)
            source = Source(str(data["source"]).upper())
            raw = data["changes"]
            if not isinstance(raw, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _refusal(400, "BAD_USER_INPUT", 'expected {"source": "orr"|"ice"|"eoir", "changes": [...]}')
        if len(raw) > MAX_WEBHOOK_CHANGES:
            return _refusal(400, "BAD_USER_INPUT", f"at most {MAX_WEBHOOK_CHANGES} changes per post")
        for i, item in enumerate(raw):
            problem = webhook_change_problem(i, item, fields[source])
            if problem is not None:
                return _refusal(400, "BAD_USER_INPUT", problem)
        changes, _bad = parse_changes(raw)
        new = await processor.handle(source, changes, "webhook")
        return JSONResponse({"accepted": new, "skipped": len(changes) - new}, 202)

    return endpoint
