"""Rendered answers of repeated status queries, served without running GraphQL again while their records hold.

A caseworker's screen or a partner app asks the same `child`/`children` query again and again, and
while the records behind it sit unchanged in the record cache, the answer is the same bytes except for
each section's freshness (`ageSeconds`, `cacheStatus`). So the gateway keeps the answer's JSON text as a
template with those values left open, keyed by what decides the answer: the request body as sent (query
text, operation name and variables) and the caller's view (role and field-office scope). Each template
lists the exact records it was built from (source, A-number, max age, `fetched_at`).

A later identical request is answered from the template only when every one of those records is still
the fresh entry in the record cache (`SourceFetcher.fresh`, which counts the cache hits as a normal
answer would); a record refetched, invalidated by a change feed or past its TTL sends the request down
the normal GraphQL path, which stores a new template. The open values are filled in for the moment of
the answer: `cacheStatus` HIT and `ageSeconds` aged to now. Authentication, the rate limit and the body
limit have already run; the audit trail gets the same events the first answer wrote (new request id,
time, caller and purpose), committed before the response, as on the normal path.

Identical requests in flight are answered once: from the moment the shortcut finds no stored answer for
a request (`lead`) until it is over, an identical one waits for it (`follow`, until its own deadline at
most) and is sent the same JSON bytes, stored or not (what it would have computed itself by joining the
same backend calls), with audit events of its own. A request whose operation is not a status query
releases its followers as soon as that is known; one that ends without an answer releases them to run
GraphQL themselves.

Only answers that a new execution would repeat are stored: no stale section, no failed source and no
error other than FORBIDDEN (decided by role and scope, which are in the key), except a source refused by
its open circuit breaker: that answer (SOURCE_UNAVAILABLE for the source's sections) holds while the
breaker stays open in the same period, and the first request after it half-opens runs GraphQL (the
probe). The store is process-local and bounded in bytes of JSON. It is a derived memo of the record
cache, not state of its own: a replica that has not seen a query runs it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from gateway.http.asgi import ANSWER_HEADERS, header_purpose
from gateway.http.request_ids import HEADER
from gateway.http.request_state import RequestState
from resolvers.answer_recording import AGE, AnswerRecording, Basis, ResponsePath
from rules.roles import Principal
from sources.breaker import OPEN
from sources.errors import FORBIDDEN, SOURCE_UNAVAILABLE
from sources.fetcher import HIT, SourceFetcher
from sources.systems import Source
from sources.tracing import AUDIT_SPAN, ERROR, Tracer, recorded
from stores.audit_trail import AuditEvent, AuditStore, utc_timestamp

_SENTINEL = re.compile(r'"\\u0000(\d+)\\u0000"')
_REQUEST_KEYS = frozenset({"query", "variables", "operationName"})
REQUEST_ID_SLOT = "request_id"  # the open value of each error's `extensions.requestId`: every request's own
# an answer handed to identical requests in flight holds this in place of its errors' request id (`follow`)
_ID_MARK = "\x00rid\x00"
_ID_MARK_JSON = b'"\\u0000rid\\u0000"'



@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """JSON text split around its open values, what it was built from, and its audit events."""

    parts: tuple[str, ...]  # len(parts) == len(ages) + 1
    # fetched_at of each ageSeconds between two parts (cacheStatus is written in); None: an error's requestId
    ages: tuple[float | None, ...]
    basis: Basis
    events: tuple[AuditEvent, ...]
    size: int


@dataclass
class AnswerStats:
    """Counters for tests, /readyz and benchmarks."""

    hits: int = 0
    misses: int = 0  # no template for the key
    outdated: int = 0  # a template whose records changed or expired
    stored: int = 0
    not_stored: int = 0  # executed status queries whose answer may not be stored (errors, stale, too large)
    followed: int = 0  # requests that waited for an identical request in flight
    shared: int = 0  # of those, the ones answered with its answer
    stale_shares: int = 0  # of those, the ones whose answer no longer held when it came: they ran their own


@dataclass(eq=False, slots=True)
class _Lead:
    """A request answering its key through GraphQL, and how many identical requests wait for its answer."""

    answer: asyncio.Future[tuple[bytes, tuple[AuditEvent, ...], Basis] | None]
    followers: int = 0


@dataclass(frozen=True, slots=True)
class AnswerKey:
    """What decides an answer: the request body as sent (query, variables, operation name; the same request
    written otherwise is another key) and the caller's view."""

    body: bytes
    role: str
    field_offices: frozenset[str] | None


def is_json(headers: Headers) -> bool:
    """True when the request says its body is JSON (`Content-Type: application/json`, any parameters)."""
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def json_request(body: bytes) -> tuple[str, dict[str, Any] | None, str | None] | None:
    """(query, variables, operation name) of a JSON request body that holds a query and nothing else than
    its variables and operation name; None for any other body."""
    try:
        parsed = orjson.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not parsed.keys() <= _REQUEST_KEYS:
        return None
    query, variables, name = parsed.get("query"), parsed.get("variables"), parsed.get("operationName")
    if isinstance(query, str) and isinstance(variables, dict | None) and isinstance(name, str | None):
        return query, variables, name
    return None


def _holder(data: Any, path: ResponsePath, seen: dict[int, Any]) -> Any:
    """The container holding the value at `path` in `data`.

    `seen` maps the id of each enclosing path already resolved to its container's value: the open values of
    one Provenance share their parent path object, and the Provenances of a list share theirs, so most
    slots take one lookup instead of a walk from the root (the paths are alive while the answer renders).
    """
    prev = path.prev
    if prev is None:
        return data
    found = seen.get(id(prev))
    if found is None:
        found = seen[id(prev)] = _holder(data, prev, seen)[prev.key]
    return found


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response's JSON text split around its open values (`parts`, one more than `slots`)."""

    parts: tuple[str, ...]
    slots: tuple[tuple[str, float], ...]  # (kind, fetched_at) in text order
    size: int  # characters of the text


def render(response: MutableMapping[str, Any], recording: AnswerRecording,
           encode: Callable[[Any], str | bytes]) -> Rendered | None:
    """The response rendered with its open values marked; None when a slot's path is not in it.

    Each open value (the recording's, and each error's `extensions.requestId`) is replaced by a numbered
    marker, the response is encoded as the view encodes it, and the values are put back in the dict.
    """
    data = response.get("data")
    slots: list[tuple[str, float]] = []
    saved: list[tuple[Any, str | int, Any]] = []
    seen: dict[int, Any] = {}
    try:
        for path, slot in recording.slots.items():
            holder, last = _holder(data, path, seen), path.key
            saved.append((holder, last, holder[last]))
            holder[last] = f"\x00{len(slots)}\x00"
            slots.append(slot)
        for error in response.get("errors") or ():
            extensions = error.get("extensions")
            if isinstance(extensions, dict) and "requestId" in extensions:
                saved.append((extensions, "requestId", extensions["requestId"]))
                extensions["requestId"] = f"\x00{len(slots)}\x00"
                slots.append((REQUEST_ID_SLOT, 0.0))
        encoded = encode(response)
    except (KeyError, IndexError, TypeError):
        return None
    finally:
        for holder, last, value in saved:
            holder[last] = value
    text = encoded.decode() if isinstance(encoded, bytes) else encoded
    pieces = _SENTINEL.split(text)
    order = [int(i) for i in pieces[1::2]]
    if sorted(order) != list(range(len(slots))):
        return None
    return Rendered(tuple(pieces[0::2]), tuple(slots[i] for i in order), len(text))


def _as_served(rendered: Rendered) -> tuple[tuple[str, ...], tuple[float | None, ...]]:
    """The template a stored answer is served from: each cacheStatus written in (an answer served from the
    store is a HIT), so that only the ages and the errors' request ids are left to fill in; (parts, fetched_at
    of each age, None for a request id)."""
    parts: list[str] = [rendered.parts[0]]
    ages: list[float | None] = []
    for (kind, fetched_at), part in zip(rendered.slots, rendered.parts[1:], strict=True):
        if kind == AGE or kind == REQUEST_ID_SLOT:
            ages.append(fetched_at if kind == AGE else None)
            parts.append(part)
        else:
            parts[-1] += f'"{HIT}"{part}'
    return tuple(parts), tuple(ages)


class AnswerCache:
    """Templates of stored answers, bounded by their total size in bytes (LRU)."""

    def __init__(self, max_bytes: int, fetchers: Mapping[Source, SourceFetcher],
                 paused: Callable[[], bool] = lambda: False) -> None:
        self.max_bytes = max_bytes
        self.fetchers = fetchers
        self.paused = paused  # True while answers need a warning a template lacks (the shared Redis is down)
        self.stats = AnswerStats()
        self._store: LRUCache[AnswerKey, StoredAnswer] = LRUCache(maxsize=max(1, max_bytes),
                                                                 getsizeof=lambda a: a.size)
        self._in_flight: dict[AnswerKey, _Lead] = {}  # keys being answered by GraphQL now

    @property
    def enabled(self) -> bool:
        """False when configured with no room (`answer_cache_bytes = 0`)."""
        return self.max_bytes > 0

    def store(self, key: AnswerKey, response: MutableMapping[str, Any], recording: AnswerRecording,
              events: Callable[[], Sequence[AuditEvent]], encode: Callable[[Any], str | bytes]) -> bool:
        """Keep the executed `response` for `key` when it may be served again; True when kept.

        Called once the response has gone (the view schedules it), so rendering the template adds nothing
        to the response's latency; `response` is not changed afterwards. Identical requests waiting for this
        one (`follow`) are handed its answer, stored or not.
        """
        lead = self._in_flight.get(key)
        # an answer without data (refused, invalid, or withheld when its audit write failed) is not handed on:
        # each follower then runs GraphQL and records its own read, or its own refusal
        if lead is not None and lead.followers and not lead.answer.done() and isinstance(response.get("data"), dict):
            encoded = _encode_without_ids(response, encode)
            lead.answer.set_result((encoded if isinstance(encoded, bytes) else encoded.encode(), tuple(events()),
                                    recording.basis()))
        if not self._storable(response, recording):
            self.stats.not_stored += 1
            return False
        rendered = render(response, recording, encode)
        if rendered is None:
            self.stats.not_stored += 1
            return False
        templates = tuple(events())
        # text and key, plus what the records (~150 bytes each) and audit event templates (~600 bytes) hold
        size = rendered.size + len(key.body) + 150 * len(recording.records) + 600 * len(templates) + 200
        if size > self.max_bytes:
            self.stats.not_stored += 1
            return False
        parts, ages = _as_served(rendered)
        self._store[key] = StoredAnswer(parts, ages, recording.basis(), templates, size)
        self.stats.stored += 1
        return True

    def _storable(self, response: Mapping[str, Any], recording: AnswerRecording) -> bool:
        if not self.enabled or recording.failed:
            return False
        if not (recording.records or recording.open_breakers):
            return False
        if response.get("extensions") or not isinstance(response.get("data"), dict):
            return False
        repeatable = {FORBIDDEN, SOURCE_UNAVAILABLE} if recording.open_breakers else {FORBIDDEN}
        return all((e.get("extensions") or {}).get("code") in repeatable for e in response.get("errors") or ())

    def answer(self, key: AnswerKey, request_id: str = "") -> tuple[bytes, tuple[AuditEvent, ...]] | None:
        """The stored answer for `key` as of now (its errors carrying `request_id`), with its audit events;
        None when there is none or it is outdated (a record changed, was dropped or expired)."""
        if self.paused():
            return None
        stored = self._store.get(key)
        if stored is None:
            self.stats.misses += 1
            return None
        if not self._holds(stored.basis):
            return self._outdated(key)
        now = time.time()
        out = [stored.parts[0]]
        ages: dict[float, str] = {}  # one record's provenance recurs in several sections: each age written once
        for fetched_at, part in zip(stored.ages, stored.parts[1:], strict=True):
            if fetched_at is None:  # an error's requestId (well-formed ids need no JSON escaping)
                out.append(f'"{request_id}"')
                out.append(part)
                continue
            age = ages.get(fetched_at)
            if age is None:
                age = ages[fetched_at] = repr(round(max(0.0, now - fetched_at), 3))
            out.append(age)
            out.append(part)
        self.stats.hits += 1
        return "".join(out).encode(), stored.events

    def _holds(self, basis: Basis, asked_at: float | None = None) -> bool:
        """True while an answer built on `basis` is what the same request, made at `asked_at` (default now),
        would get now: each record is still the entry of the record cache (none refetched or invalidated
        by a change since) and was fresh for that request (not expired, nor older than its max age), each
        breaker it reports is still open since the same moment, and time alone has not changed it."""
        if time.time() >= basis.valid_until:
            return False
        for source, a_number, max_age, fetched_at in basis.records:
            fresh = self.fetchers[source].fresh(a_number, max_age, asked_at)
            if fresh is None or fresh.fetched_at != fetched_at:
                return False
        for source, opened_at in basis.open_breakers:
            breaker = self.fetchers[source].client.breaker
            if breaker.state != OPEN or breaker.opened_at != opened_at:
                return False
        return True

    def lead(self, key: AnswerKey) -> Callable[[], None]:
        """Note that a request is answering `key` through GraphQL; the returned function ends that: call it
        once the request is over (after `store`, which hands its answer to the requests that followed it)."""
        lead = self._in_flight[key] = _Lead(asyncio.get_running_loop().create_future())

        def finish() -> None:
            if self._in_flight.get(key) is lead:
                del self._in_flight[key]
            if not lead.answer.done():
                lead.answer.set_result(None)  # it ended without an answer to share: followers run GraphQL
        return finish

    async def follow(self, key: AnswerKey, deadline: float,
                     request_id: str = "") -> tuple[bytes, tuple[AuditEvent, ...]] | None:
        """The answer of the identical request answering `key` now (its JSON, its errors carrying
        `request_id`, and audit events), waited for
        until `time.monotonic()` reaches `deadline` at most; None at once when there is no such request,
        and None when it ended without one or its answer no longer holds (`_holds`: a record it read has
        since changed, or is older than the request's max age), so that this request runs on its own."""
        lead = self._in_flight.get(key)
        if lead is None:
            return None
        asked_at = time.time()
        self.stats.followed += 1
        lead.followers += 1
        await asyncio.wait([lead.answer], timeout=max(0.0, deadline - time.monotonic()))
        shared = lead.answer.result() if lead.answer.done() else None
        if shared is None:
            return None
        payload, events, basis = shared
        if not self._holds(basis, asked_at):
            self.stats.stale_shares += 1
            return None
        self.stats.shared += 1
        if _ID_MARK_JSON in payload:
            payload = payload.replace(_ID_MARK_JSON, f'"{request_id}"'.encode())
        return payload, events

    def _outdated(self, key: AnswerKey) -> None:
        self._store.pop(key, None)
        self.stats.outdated += 1

    def facts(self) -> dict[str, Any]:
        """Counters and size, for /readyz."""
        return {"entries": len(self._store), "bytes": int(self._store.currsize), "maxBytes": self.max_bytes,
                **self.stats.__dict__}


def _encode_without_ids(response: MutableMapping[str, Any], encode: Callable[[Any], str | bytes]) -> str | bytes:
    """`response` encoded with `_ID_MARK` in place of each error's requestId (each follower writes its own)."""
    marked = []
    for error in response.get("errors") or ():
        extensions = error.get("extensions")
        if isinstance(extensions, dict) and "requestId" in extensions:
            marked.append((extensions, extensions["requestId"]))
            extensions["requestId"] = _ID_MARK
    try:
        return encode(response)
    finally:
        for extensions, request_id in marked:
            extensions["requestId"] = request_id


def events_for(templates: Sequence[AuditEvent], principal: Principal, purpose: str | None,
               request_id: str) -> list[AuditEvent]:
    """This request's audit events: the stored answer's, with this request's id, time, caller and purpose."""
    now = utc_timestamp()
    return [AuditEvent(time=now, request_id=request_id, subject=principal.subject, role=principal.role,
                       client=principal.client, a_number=e.a_number, outcome=e.outcome,
                       sections_returned=e.sections_returned, sections_denied=e.sections_denied,
                       sections_failed=e.sections_failed, purpose=purpose, office=e.office) for e in templates]


class AnswerShortcut:
    """The guard's shortcut (`gateway.http.admission.Shortcut`): a POSTed JSON query with a stored, current answer is
    answered here; any other request goes on to GraphQL, marked with its key when it may be stored."""

    def __init__(self, cache: AnswerCache, audit_store: AuditStore, tracer: Tracer | None = None) -> None:
        self.cache = cache
        self.audit_store = audit_store
        self.tracer = tracer  # None: tracing off

    async def _commit(self, events: list[AuditEvent]) -> None:
        """The stored answer's audit events written, in an audit span when tracing is on."""
        tracer = recorded(self.tracer)
        if tracer is None:
            await self.audit_store.append(events)
            return
        attributes = {"ucgw.audit.events": len(events), "ucgw.answer": "stored"}
        with tracer.start_as_current_span(AUDIT_SPAN, attributes=attributes, record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                await self.audit_store.append(events)
            except Exception:
                span.set_attribute("ucgw.outcome", "error")
                span.set_status(ERROR)
                raise
            span.set_attribute("ucgw.outcome", "ok")

    async def __call__(self, scope: Scope, state: RequestState, headers: Headers, body: bytes, send: Send) -> bool:
        if not self.cache.enabled or scope.get("method") != "POST":
            return False
        if not is_json(headers):
            return False
        principal = state.principal
        assert principal is not None  # the guard admits a request only with one
        key = AnswerKey(body, principal.role, principal.field_offices)
        request_id = state.request_id
        found = self.cache.answer(key, request_id) or await self.cache.follow(key, state.deadline, request_id)
        if found is not None:
            payload, templates = found
            try:
                await self._commit(events_for(templates, principal, header_purpose(headers), request_id))
            except Exception:  # noqa: BLE001 - GraphQL runs instead: it retries the write, withholds data on failure
                found = None
        if found is None:
            if json_request(body) is not None:
                state.answer_key = key
                state.answer_lead = self.cache.lead(key)  # identical requests now wait for this one
            return False
        state.status = 200  # a stored answer holds no errors
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", state.media_type.encode()),
                                (b"content-length", str(len(payload)).encode()), *ANSWER_HEADERS,
                                (HEADER, request_id.encode())]})
        await send({"type": "http.response.body", "body": payload})
        return True
