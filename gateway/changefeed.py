"""Push: follow the sources' change feeds (or take their webhook), invalidate the cache, publish events.

`ChangeProcessor.handle` is the one path for both transports: it drops the changed records from the
cache, publishes a `ChangeEvent` per change (to the child's topic and its field office's), and looks
for new court alerts in changed EOIR records. `ChangeFollower` polls `GET /v1/changes` of each
source from the feed's current end, so a restart does not replay history; it retries with backoff
through outages, reads a feed that no longer knows its cursor (the source restarted) from the feed's
first change, and ends with the app. Logs carry counts and sources, never A-numbers.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import hmac
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.client import source_connector
from gateway.config import Settings
from gateway.digits import ascii_int
from gateway.errors import SourceError
from gateway.events import (
    ALL_ALERTS,
    ALL_CHANGES,
    IN_ABSENTIA_ORDER,
    MISSED_HEARING,
    AlertEvent,
    ChangeEvent,
    child_alert_topic,
    child_topic,
    office_alert_topic,
    office_topic,
)
from gateway.fetcher import Fetched, SourceFetcher
from gateway.guard import address_key
from gateway.pubsub import PubSub
from gateway.ratelimit import RateLimiter, retry_after
from gateway.roles import scope_office
from gateway.sources import Source

log = logging.getLogger("ucgw.changefeed")

A_NUMBER = re.compile(r"A[0-9]{9}")  # fullmatch, ASCII digits
ALERT_FIELDS = frozenset({"hearings", "in_absentia_order", "decision", "case_status"})
RECENT_SECONDS = 2 * 86_400  # with no earlier copy to compare, an event this close to updated_at is new
MAX_PENDING = 10_000
SEEN_CHANGES = 10_000  # changes remembered per source, so one that both poll and webhook bring is handled once
MAX_WEBHOOK_BYTES = 1_000_000  # 1,000 changes of a few hundred bytes each fit
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Change:
    """One validated entry of a change feed."""

    seq: int
    a_number: str
    updated_at: str | None
    fields: tuple[str, ...]


def parse_changes(raw: object) -> tuple[list[Change], int]:
    """Valid changes of a feed page or webhook body, and how many malformed entries were skipped."""
    if not isinstance(raw, list):
        raise ValueError("changes must be a list")
    out, bad = [], 0
    for item in raw:
        if not isinstance(item, dict):
            bad += 1
            continue
        seq, a, updated, fields = item.get("seq"), item.get("a_number"), item.get("updated_at"), item.get("fields")
        if (not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(a, str) or not A_NUMBER.fullmatch(a)
                or not (updated is None or isinstance(updated, str))):
            bad += 1
            continue
        names = tuple(f for f in fields if isinstance(f, str)) if isinstance(fields, list) else ()
        out.append(Change(seq, a, updated, names))
    return out, bad


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return float(calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        try:
            return float(calendar.timegm(time.strptime(iso[:10], "%Y-%m-%d")))
        except ValueError:
            return None


class Recent(Generic[K]):
    """The latest `size` distinct keys added, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: K) -> None:
        """Remember `key` (again: it becomes the newest)."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def first(self, key: K) -> bool:
        """True the first time `key` is seen (while remembered); it is remembered from now on."""
        if key in self._keys:
            return False
        self.add(key)
        return True

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()


class ChangeProcessor:
    """Invalidate, enrich and publish one batch of changes from one source."""

    def __init__(self, settings: Settings, fetchers: Mapping[Source, SourceFetcher], pubsub: PubSub) -> None:
        self.settings = settings
        self.fetchers = fetchers
        self.pubsub = pubsub
        self._seen_changes: dict[Source, Recent[tuple[Change, str]]] = {s: Recent(SEEN_CHANGES) for s in Source}
        self.processed = 0
        self.alerts = 0
        self._alerted: Recent[tuple[str, str]] = Recent(100_000)
        self._pending_alert_checks: dict[str, dict[str, Any] | None] = {}

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.request_deadline_seconds

    async def handle(self, source: Source, changes: Sequence[Change], via: str) -> int:
        """Process the changes the other transport has not brought already; returns how many were new.

        With both polling and the webhook on, each change arrives twice and is handled once. A change is
        known by its whole entry (seq, A-number, time, fields), not by a high-water mark of seqs: a source
        that restarts numbers its feed from 1 again, and one wrong seq from a sender must not hide every
        later change. A transport bringing a change again (a webhook's retry) gets it handled again:
        a repeated event costs less than a lost one.
        """
        seen = self._seen_changes[source]
        other = "webhook" if via == "poll" else "poll"
        fresh = [c for c in changes if (c, other) not in seen]
        for c in fresh:
            seen.add((c, via))
        if not fresh:
            return 0
        fetcher = self.fetchers[source]
        previous: dict[str, dict[str, Any] | None] = {}
        for c in fresh:
            entry = fetcher.cache.get(fetcher.key(c.a_number))
            previous.setdefault(c.a_number, entry.record if entry is not None else None)
            fetcher.invalidate(c.a_number)
        a_numbers = list(dict.fromkeys(c.a_number for c in fresh))
        alert_candidates = [a for a in a_numbers if source is Source.EOIR
                            and any(ALERT_FIELDS.intersection(c.fields) or not c.fields
                                    for c in fresh if c.a_number == a)]
        need_offices = self.pubsub.has_subscribers("office:") or self.pubsub.has_subscribers("alert:office:") \
            or bool(alert_candidates)
        offices = await self._offices(source, a_numbers, previous, fresh) if need_offices else {}
        now = time.time()
        for c in fresh:
            event = ChangeEvent(source, c.a_number, c.seq, c.updated_at, c.fields,
                                offices.get(c.a_number, ()), now, via)
            await self.pubsub.publish(child_topic(c.a_number), event)
            await self.pubsub.publish(ALL_CHANGES, event)
            for office in event.field_offices:
                await self.pubsub.publish(office_topic(office), event)
        self.processed += len(fresh)
        for a in alert_candidates:
            self._pending_alert_checks.setdefault(a, previous.get(a))
        await self.check_alerts(offices)
        return len(fresh)

    def source_restarted(self, source: Source) -> None:
        """Forget the source's changes seen so far: its renumbered feed may repeat their entries."""
        self._seen_changes[source].clear()

    async def _offices(self, source: Source, a_numbers: list[str], previous: Mapping[str, dict[str, Any] | None],
                       changes: Sequence[Change]) -> dict[str, tuple[str, ...]]:
        """Responsible field office(s) per child by the one scope rule (`scope_office`: ICE's office only;
        none when ICE assigns none, never one routed from the sponsor's address, security #14)."""
        out: dict[str, tuple[str, ...]] = {}
        to_fetch: list[str] = []
        for a in a_numbers:
            old = scope_office(previous.get(a)) if source is Source.ICE else None
            moved = any("field_office" in c.fields for c in changes if c.a_number == a)
            if old is not None and not moved:
                out[a] = (old,)
            else:
                to_fetch.append(a)
        if to_fetch:
            ice = await self._load(Source.ICE, to_fetch, None)
            for a in to_fetch:
                old = scope_office(previous.get(a)) if source is Source.ICE else None
                names = [o for o in (old, scope_office(ice.get(a))) if o is not None]
                out[a] = tuple(dict.fromkeys(names))
        return out

    async def _load(self, source: Source, a_numbers: list[str], max_age: float | None) -> dict[str, dict | None]:
        """Records through the cached fetcher; failures leave the A-number out (logged by count)."""
        outcomes = await self.fetchers[source].load_many(a_numbers, max_age, self._deadline())
        out: dict[str, dict | None] = {}
        failed = 0
        for a, o in zip(a_numbers, outcomes, strict=True):
            if isinstance(o, Fetched):
                out[a] = o.record
            else:
                failed += 1
        if failed:
            log.warning("change enrichment: %s did not answer for %d record(s)", source.value, failed)
        return out

    async def check_alerts(self, offices: Mapping[str, tuple[str, ...]] | None = None) -> int:
        """Re-fetch changed EOIR records (max age 0) and publish new missed-hearing and in-absentia alerts.

        Records whose fetch fails stay pending and are checked again on the next call.
        """
        if not self._pending_alert_checks:
            return 0
        pending = dict(self._pending_alert_checks)
        a_numbers = list(pending)
        outcomes = await self.fetchers[Source.EOIR].load_many(a_numbers, 0.0, self._deadline())
        found: list[AlertEvent] = []
        now = time.time()
        for a, outcome in zip(a_numbers, outcomes, strict=True):
            if isinstance(outcome, SourceError):
                continue
            del self._pending_alert_checks[a]
            if outcome.record is not None:
                found += self._alerts_in(a, pending[a], outcome, now)
        if len(self._pending_alert_checks) > MAX_PENDING:
            log.warning("dropping %d pending alert checks (EOIR unavailable too long)",
                        len(self._pending_alert_checks) - MAX_PENDING)
            for a in list(self._pending_alert_checks)[: len(self._pending_alert_checks) - MAX_PENDING]:
                del self._pending_alert_checks[a]
        if not found:
            return 0
        known = dict(offices or {})
        missing = [a for a in dict.fromkeys(al.a_number for al in found) if a not in known]
        if missing:
            known.update(await self._offices(Source.EOIR, missing, {}, ()))
        for alert in found:
            office = next(iter(known.get(alert.a_number, ())), None)
            alert = AlertEvent(alert.kind, alert.a_number, office, alert.hearing_id, alert.hearing_starts_at,
                               alert.court_name, alert.ordered_on, alert.evidence, alert.detected_at)
            await self.pubsub.publish(child_alert_topic(alert.a_number), alert)
            await self.pubsub.publish(ALL_ALERTS, alert)
            if office:
                await self.pubsub.publish(office_alert_topic(office), alert)
        self.alerts += len(found)
        log.debug("published %d court alert(s)", len(found))
        return len(found)

    def _alerts_in(self, a: str, before: dict[str, Any] | None, fetched: Fetched, now: float) -> list[AlertEvent]:
        """New failed-to-appear hearings and a new in-absentia order in one EOIR record."""
        rec = fetched.record or {}
        updated = _epoch(rec.get("updated_at"))
        out: list[AlertEvent] = []

        def recent(iso: str | None) -> bool:
            at = _epoch(iso)
            return at is not None and updated is not None and updated - at <= RECENT_SECONDS

        old_hearings = {h.get("id"): h for h in (before or {}).get("hearings", []) if isinstance(h, dict)}
        for h in rec.get("hearings") or []:
            if not isinstance(h, dict) or h.get("outcome") != "failed_to_appear":
                continue
            hid = str(h.get("id"))
            if before is not None:
                new = old_hearings.get(hid, {}).get("outcome") != "failed_to_appear"
            else:
                new = recent(h.get("starts_at"))
            if new and self._alerted.first((a, f"H:{hid}")):
                out.append(AlertEvent(MISSED_HEARING, a, None, hid, h.get("starts_at"), h.get("court_name"),
                                      None, fetched, now))
        order = rec.get("in_absentia_order")
        if isinstance(order, dict):
            old_order = (before or {}).get("in_absentia_order")
            new = old_order is None if before is not None else recent(order.get("ordered_on"))
            if new and self._alerted.first((a, f"IA:{order.get('ordered_on')}")):
                last_fta = next((h for h in reversed(rec.get("hearings") or [])
                                 if isinstance(h, dict) and h.get("outcome") == "failed_to_appear"), None)
                out.append(AlertEvent(IN_ABSENTIA_ORDER, a, None, last_fta.get("id") if last_fta else None,
                                      last_fta.get("starts_at") if last_fta else None,
                                      last_fta.get("court_name") if last_fta else None,
                                      order.get("ordered_on"), fetched, now))
        return out


class CursorExpired(Exception):
    """The feed no longer holds changes after our cursor (HTTP 410)."""


class CursorRejected(Exception):
    """The feed does not know our cursor (HTTP 400): the source restarted and numbers its changes anew."""


class ChangeFollower:
    """Polls each source's change feed and hands the changes to the processor."""

    def __init__(self, settings: Settings, processor: ChangeProcessor) -> None:
        self.settings = settings
        self.processor = processor
        self.interval = settings.change_feed_poll_seconds
        self.limit = settings.change_feed_batch_limit
        self.cursors: dict[Source, str] = {}
        self.failures: dict[Source, int] = {}
        self.polls = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        """False when polling is switched off (interval 0)."""
        return self.interval > 0

    async def start(self) -> None:
        """Start one polling task per source (nothing when disabled)."""
        if not self.enabled or self._tasks:
            return
        timeout = aiohttp.ClientTimeout(total=self.settings.source_timeout_seconds * 2)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=source_connector(self.settings))
        self._tasks = [asyncio.create_task(self._follow(s), name=f"changefeed-{s.value}") for s in Source]

    async def stop(self) -> None:
        """Cancel the polling tasks and close the session."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, source: Source, since: str, limit: int) -> tuple[list[Change], str]:
        assert self._session is not None
        url = f"{self.settings.source_url(source).rstrip('/')}/v1/changes"
        params = {"since": since, "limit": str(limit)} if since else {"limit": str(limit)}
        async with self._session.get(url, params=params) as resp:
            if resp.status == 410:
                raise CursorExpired
            if resp.status == 400 and since not in ("", "latest"):
                raise CursorRejected
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or "next_cursor" not in body:
            raise RuntimeError("change feed answer lacks next_cursor")
        changes, bad = parse_changes(body.get("changes"))
        if bad:
            log.warning("%s change feed: skipped %d malformed change(s)", source.value, bad)
        cursor = body["next_cursor"]
        return changes, (str(cursor) if cursor is not None else since)

    async def _follow(self, source: Source) -> None:
        while True:
            try:
                if source not in self.cursors:
                    _, self.cursors[source] = await self._get(source, "latest", 1)
                    log.info("%s change feed: following from its current end", source.value)
                since = self.cursors[source]
                changes, cursor = await self._get(source, since, self.limit)
                self.polls += 1
                if changes and since.isdigit() and changes[0].seq > int(since) + 1:
                    log.warning("%s change feed: %d change(s) were trimmed before we read them; "
                                "affected cache entries expire by TTL", source.value,
                                changes[0].seq - int(since) - 1)
                if changes:
                    await self.processor.handle(source, changes, "poll")
                elif source is Source.EOIR:
                    await self.processor.check_alerts()
                self.cursors[source] = cursor
                if self.failures.get(source):
                    log.info("%s change feed: reachable again", source.value)
                self.failures[source] = 0
                if len(changes) < self.limit:
                    await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except CursorRejected:
                log.warning("%s change feed: our cursor is not one the feed issued (the source restarted?); "
                            "reading the feed from its first change", source.value)
                self.cursors[source] = ""
                self.processor.source_restarted(source)
            except CursorExpired:
                log.warning("%s change feed: our cursor expired (changes were dropped before we read them); "
                            "following from the current end, missed changes expire by TTL", source.value)
                self.cursors.pop(source, None)
            except Exception as exc:  # an outage or a bad answer: log, back off, keep going
                n = self.failures[source] = self.failures.get(source, 0) + 1
                delay = min(30.0, self.interval * 2 ** min(n, 6)) * (0.5 + random.random())
                log.warning("%s change feed failed (%s); retry %d in %.1f s", source.value,
                            type(exc).__name__, n, delay)
                await asyncio.sleep(delay)


WEBHOOK_TOLERANCE_SECONDS = 300  # how far a post's X-UCGW-Timestamp may be from the gateway's clock
SIGNATURES_REMEMBERED = 100_000  # signatures of accepted posts kept (for the tolerance window) to refuse replays
MAX_WEBHOOK_CHANGES = 1_000  # changes one post may carry (the mocks send at most 500)
MAX_CHANGE_TEXT = 64  # longest `updated_at` or field name
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


def record_fields(source: Source) -> frozenset[str]:
    """The top-level field names of `source`'s records, from the source's published schema."""
    from mocks.schemas import RECORD_SCHEMAS  # the sources' contract (the mocks serve it as OpenAPI)

    return frozenset(RECORD_SCHEMAS[source.value.lower()]["properties"])


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
                                or _epoch(updated) is None):
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


def _refusal(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def webhook_endpoint(settings: Settings, processor: ChangeProcessor,
                     limiter: RateLimiter | None = None) -> Callable[[Request], Any]:
    """`POST /hooks/changes`: `{"source": "orr"|"ice"|"eoir", "changes": [...]}`, signed.

    The sender signs each post: `X-UCGW-Timestamp: <unix seconds>` and `X-UCGW-Signature: sha256=<hex
    HMAC-SHA256(secret, timestamp + "." + body)>` (the mocks' `signed_headers`). A timestamp more than
    `WEBHOOK_TOLERANCE_SECONDS` from the gateway's clock, a wrong signature, or a signature already accepted
    (a replay) is a 401; no secret in a query string or header is accepted. No secret configured: the
    endpoint answers 404. A refused signature costs the sender's address a token of `limiter` (as bad
    credentials on /graphql do), so guessing is slowed to the rate limit (429 with Retry-After). The body
    is parsed by orjson (a JSON nesting deeper than its limit, or a NaN, is a 400) and every change is
    checked (`webhook_change_problem`): one bad change refuses the post with a 400 that names it.
    """
    secret = settings.webhook_secret.encode()
    replays = WebhookReplays(WEBHOOK_TOLERANCE_SECONDS)
    fields = {source: record_fields(source) for source in Source}

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
        expected = "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return await refused(request, "bad webhook signature")
        if not replays.first(signature):
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
