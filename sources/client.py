"""HTTP client of one backend: batch reads with deadlines, bounded retries and a circuit breaker."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import aiohttp
import orjson
from opentelemetry import trace
from yarl import URL

from sources.breaker import HALF_OPEN, CircuitBreaker
from sources.errors import BREAKER_OPEN, SOURCE_BAD_RESPONSE, SOURCE_TIMEOUT, SOURCE_UNAVAILABLE, SourceError
from sources.settings import Settings
from sources.source_access import SourceAccess, TokenError, connection_problem
from sources.systems import Source
from sources.tracing import BACKEND_SPAN, ERROR, SpanKind, Tracer, inject_traceparent, recorded

log = logging.getLogger("ucgw.client")

BATCH_LIMIT = 500  # the backends' own limit per batch request and per listing page
# Statuses by which a source that is up refuses one request; 408 and 429 (it is overloaded) are failures.
REFUSED = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 414, 415, 422})
T = TypeVar("T")
FAILED_FAST = "BREAKER_OPEN"  # the error kind counted for a call the open breaker stopped (no call made)
REFUSED_BY_SOURCE = "SOURCE_REFUSED"  # the error kind counted for a call the source answered with a REFUSED status


def _ignore(seconds: float) -> None:
    pass


@dataclass
class SourceHealth:
    """What /readyz and the `sources` query report about one backend."""

    last_success_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None
    calls: int = 0
    retries: int = 0
    in_flight: int = 0  # calls sent and not yet answered
    errors: dict[str, int] = field(default_factory=dict)  # failed or refused calls by code (SOURCE_TIMEOUT, ...)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))

    def latency_ms(self, quantile: float) -> float | None:
        """A quantile (0..1) of recent call latencies, or None before any call."""
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return cuts[min(98, max(0, round(quantile * 100) - 1))]


def _validate_batch(source: Source, body: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Check the batch response's shape; anything else is a schema-drifted answer."""
    if not isinstance(body, dict):
        raise SourceError(source, SOURCE_BAD_RESPONSE, "batch answer is not a JSON object", retryable=False)
    records, missing = body.get("records"), body.get("missing", [])
    if not isinstance(records, list) or not isinstance(missing, list):
        raise SourceError(source, SOURCE_BAD_RESPONSE, "batch answer lacks records/missing lists", retryable=False)
    for rec in records:
        if not (isinstance(rec, dict) and isinstance(rec.get("a_number"), str)
                and isinstance(rec.get("updated_at"), str)):
            raise SourceError(source, SOURCE_BAD_RESPONSE, "record without a_number/updated_at", retryable=False)
    if not all(isinstance(m, str) for m in missing):
        raise SourceError(source, SOURCE_BAD_RESPONSE, "missing list holds non-strings", retryable=False)
    return records, missing


def _validate_page(source: Source, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Check a listing page's shape: records with a_number and updated_at, and a next cursor or null."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SourceError(source, SOURCE_BAD_RESPONSE, "listing answer lacks a records list", retryable=False)
    cursor = body.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise SourceError(source, SOURCE_BAD_RESPONSE, "listing next_cursor is not a string", retryable=False)
    records, _ = _validate_batch(source, {"records": body["records"], "missing": []})
    return records, cursor or None


def _json_text(value: Any) -> str:
    """Request bodies as aiohttp wants them (text), encoded by orjson."""
    return orjson.dumps(value).decode()


def source_connector(settings: Settings, context: ssl.SSLContext | None = None) -> aiohttp.TCPConnector:
    """A connection pool to one backend (`context`: its TLS, sources/source_access.py). A connection idle
    `source_keepalive_seconds` is closed, not reused (0: none is reused): the backend closes idle ones too,
    and a call sent on one as it closes is lost."""
    keepalive = settings.source_keepalive_seconds
    reuse: dict[str, Any] = {"force_close": True} if keepalive == 0 else {"keepalive_timeout": keepalive}
    if context is not None:
        reuse["ssl"] = context
    return aiohttp.TCPConnector(limit=settings.source_connection_limit, ttl_dns_cache=300, **reuse)


class _TokenRefused(Exception):
    """The source answered 401 to a call that carried our access token."""


class SourceClient:
    """One backend's client; owns one aiohttp ClientSession for the app's lifetime."""

    def __init__(self, source: Source, settings: Settings, tracer: Tracer | None = None,
                 access: SourceAccess | None = None) -> None:
        self.source = source
        self.access = access or SourceAccess(source, settings)  # TLS and our token there (shared with the feed)
        self._tokens = self.access.tokens
        if self._tokens is None:  # no token to attach or refresh: each call is one exchange
            self._attempt = self._exchange  # type: ignore[method-assign]
        self.tracer = tracer  # None: tracing off, no tracer call on any path
        self.base_url = settings.source_url(source).rstrip("/")
        self.settings = settings
        self.breaker = CircuitBreaker(
            source.value, settings.breaker_failure_threshold, settings.breaker_reset_seconds
        )
        self.health = SourceHealth()
        # each answered call's seconds; `create_app` sets the metrics' (pre-bound) histogram observer
        self.observe_latency: Callable[[float], None] = _ignore
        self._session: aiohttp.ClientSession | None = None
        # parsed once: aiohttp parses a URL given as text on every request
        self._batch_url = URL(f"{self.base_url}/v1/{source.collection}/batch")
        self._list_url = URL(f"{self.base_url}/v1/{source.collection}")
        # route templates and span attributes, made once (no A-number or cursor ever goes into a span)
        self._batch_route = f"/v1/{source.collection}/batch"
        self._list_route = f"/v1/{source.collection}"
        self._span_name = f"{BACKEND_SPAN} {source.value}"

    async def start(self) -> None:
        """Open the connection pool."""
        connector = source_connector(self.settings, self.access.ssl)
        # the backends set no cookies: no cookie jar to consult on every request and answer
        self._session = aiohttp.ClientSession(
            connector=connector, json_serialize=_json_text, raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        """Close the connection pool (and the token endpoint's)."""
        await self.access.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_batch(self, a_numbers: list[str], deadline: float,
                          cache_result: str = "MISS") -> dict[str, dict[str, Any] | None]:
        """Records by A-number (None where the backend has no record), chunked by the backend's limit.
        `cache_result`: why the records are fetched (MISS, or STALE for a refresh), for the call's span."""
        if len(a_numbers) <= BATCH_LIMIT:  # one call: no task to gather
            return await self._fetch_chunk(a_numbers, deadline, cache_result)
        out: dict[str, dict[str, Any] | None] = {}
        chunks = [a_numbers[i : i + BATCH_LIMIT] for i in range(0, len(a_numbers), BATCH_LIMIT)]
        results = await asyncio.gather(*(self._fetch_chunk(c, deadline, cache_result) for c in chunks))
        for part in results:
            out.update(part)
        return out

    async def _fetch_chunk(self, a_numbers: list[str], deadline: float,
                           cache_result: str = "MISS") -> dict[str, dict[str, Any] | None]:
        def once() -> Awaitable[tuple[list[dict[str, Any]], list[str]]]:
            return self._attempt("POST", self._batch_url, deadline, _validate_batch, payload={"a_numbers": a_numbers})

        tracer = recorded(self.tracer)
        if tracer is None:
            records, missing = await self._retrying(deadline, once)
        else:
            records, missing = await self._traced(tracer, "POST", self._batch_route, cache_result, len(a_numbers),
                                                  deadline, once)
        out: dict[str, dict[str, Any] | None] = {a: None for a in missing}
        for rec in records:
            out[rec["a_number"]] = rec
        for a in a_numbers:
            out.setdefault(a, None)
        return out

    async def list_page(
        self, cursor: str | None, limit: int, deadline: float, **filters: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the backend's listing (a_number order) and the cursor of the next, None at the end."""
        params = {"limit": str(min(limit, BATCH_LIMIT)), **{k: v for k, v in filters.items() if v is not None}}
        if cursor:
            params["cursor"] = cursor

        def once() -> Awaitable[tuple[list[dict[str, Any]], str | None]]:
            return self._attempt("GET", self._list_url, deadline, _validate_page, params=params)

        tracer = recorded(self.tracer)
        if tracer is None:
            return await self._retrying(deadline, once)
        return await self._traced(tracer, "GET", self._list_route, "LISTING", limit, deadline, once)

    async def _traced(self, tracer: Tracer, method: str, route: str, cache_result: str, asked: int, deadline: float,
                      attempt_once: Callable[[], Awaitable[T]]) -> T:
        """`_retrying` inside one CLIENT span: source, route template, how many records were asked for, why
        (the cache's result), retries, the last HTTP status (set by `_attempt`) and the error code, if any."""
        attributes = {"ucgw.source": self.source.value, "http.request.method": method, "http.route": route,
                      "ucgw.cache.result": cache_result, "ucgw.records.asked": asked}
        with tracer.start_as_current_span(self._span_name, kind=SpanKind.CLIENT, attributes=attributes,
                                          record_exception=False, set_status_on_exception=False) as span:
            retries: list[int] = [0]
            try:
                return await self._retrying(deadline, attempt_once, retries)
            except SourceError as exc:
                span.set_attribute("ucgw.error.code", exc.code)
                span.set_status(ERROR)
                raise
            finally:
                span.set_attribute("ucgw.retries", retries[0])

    async def _retrying(self, deadline: float, attempt_once: Callable[[], Awaitable[T]],
                        retries: list[int] | None = None) -> T:
        """Run one request with bounded, jittered retries of retryable failures within the deadline
        (`retries`, when given, counts them in its one element)."""
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except SourceError as exc:
                remaining = deadline - time.monotonic()
                backoff = self.settings.retry_backoff_seconds * (2**attempt) * (0.5 + random.random())
                if not exc.retryable or attempt >= self.settings.retry_attempts or backoff >= remaining:
                    raise
                attempt += 1
                self.health.retries += 1
                if retries is not None:
                    retries[0] = attempt
                log.info("retrying %s after %s (attempt %d)", self.source.value, exc.code, attempt + 1)
                await asyncio.sleep(backoff)

    async def _attempt(
        self, method: str, url: URL, deadline: float, validate: Callable[[Source, Any], T],
        *, payload: Any = None, params: dict[str, str] | None = None,
    ) -> T:
        """`_exchange` with our access token; a 401 is answered by one new token and one retry (without a
        token source, `__init__` makes this `_exchange` itself)."""
        token = await self._token()
        try:
            return await self._exchange(method, url, deadline, validate, payload=payload, params=params, token=token)
        except _TokenRefused:
            assert self._tokens is not None
            self._tokens.invalidate(token)
        token = await self._token()
        try:
            return await self._exchange(method, url, deadline, validate, payload=payload, params=params, token=token)
        except _TokenRefused:
            detail = "refused our access token (HTTP 401), a new one too"
            self._failed(SOURCE_UNAVAILABLE, detail)
            raise SourceError(self.source, SOURCE_UNAVAILABLE, detail, retryable=False) from None

    async def _token(self) -> str:
        """Our current token at the source, or SOURCE_UNAVAILABLE saying why there is none."""
        assert self._tokens is not None
        try:
            return await self._tokens.token()
        except TokenError as exc:
            self._failed(SOURCE_UNAVAILABLE, exc.detail)
            raise SourceError(self.source, SOURCE_UNAVAILABLE, exc.detail, retryable=exc.retryable) from exc

    async def _exchange(
        self, method: str, url: URL, deadline: float, validate: Callable[[Source, Any], T],
        *, payload: Any = None, params: dict[str, str] | None = None, token: str | None = None,
    ) -> T:
        """One HTTP exchange within the deadline, through the breaker; `validate` checks the answer's shape.
        `token`: our access token, sent as a Bearer credential (a 401 then raises `_TokenRefused`)."""
        if self._session is None:
            raise SourceError(self.source, SOURCE_UNAVAILABLE, "client not started", retryable=False)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceError(self.source, SOURCE_TIMEOUT, "request deadline reached", retryable=False)
        probe = self.breaker.state == HALF_OPEN  # when let through, this call is the one probe
        if not self.breaker.allow():
            self.health.errors[FAILED_FAST] = self.health.errors.get(FAILED_FAST, 0) + 1
            raise SourceError(self.source, SOURCE_UNAVAILABLE, BREAKER_OPEN, retryable=False)
        timeout = min(self.settings.source_timeout_seconds, remaining)
        started = time.monotonic()
        health = self.health
        health.calls += 1
        health.in_flight += 1
        headers: dict[str, str] | None = None
        if self.tracer is not None:  # the current span (the backend call's, when recorded) goes out as the parent
            headers = {}
            inject_traceparent(headers)
        if token is not None:
            headers = headers if headers is not None else {}
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(method, url, json=payload, params=params, headers=headers) as resp:
                    if self.tracer is not None:
                        trace.get_current_span().set_attribute("http.response.status_code", resp.status)
                    if resp.status >= 500:
                        raise SourceError(self.source, SOURCE_UNAVAILABLE, f"HTTP {resp.status}")
                    if resp.status == 401 and token is not None:
                        raise _TokenRefused
                    refused = resp.status in REFUSED
                    if resp.status != 200 and not refused:
                        raise SourceError(
                            self.source, SOURCE_BAD_RESPONSE, f"HTTP {resp.status}", retryable=False
                        )
                    try:
                        body = await resp.json(loads=orjson.loads, content_type=None)
                    except (ValueError, aiohttp.ContentTypeError) as exc:
                        if refused:
                            body = None
                        else:
                            raise SourceError(
                                self.source, SOURCE_BAD_RESPONSE, "answer is not JSON", retryable=False
                            ) from exc
        except TimeoutError as exc:
            self._failed(SOURCE_TIMEOUT, f"no answer within {timeout:.2f} s")
            raise SourceError(self.source, SOURCE_TIMEOUT, f"no answer within {timeout:.2f} s") from exc
        except aiohttp.ClientError as exc:
            detail, retryable = connection_problem(exc, self.access.client_cert_hint)
            self._failed(SOURCE_UNAVAILABLE, detail)
            raise SourceError(self.source, SOURCE_UNAVAILABLE, detail, retryable=retryable) from exc
        except _TokenRefused:  # the source is up and wants another token: no outcome for its breaker yet
            if probe:
                self.breaker.abandon()
            raise
        except SourceError as exc:
            self._failed(exc.code, exc.detail)
            raise
        except asyncio.CancelledError:  # e.g. a scan that failed elsewhere: no outcome to record
            if probe:
                self.breaker.abandon()
            raise
        finally:
            health.in_flight -= 1
        if refused:
            self._refused(resp.status, body)
        try:
            result = validate(self.source, body)
        except SourceError as exc:
            self._failed(exc.code, exc.detail)
            raise
        self.breaker.record_success()
        health.last_success_at = time.time()
        elapsed = time.monotonic() - started
        health.latencies_ms.append(elapsed * 1000)
        self.observe_latency(elapsed)
        return result

    def _refused(self, status: int, body: Any) -> NoReturn:
        """The source answered and refused this one request (a status of REFUSED): it is up, so this is no
        failure for its breaker, whatever the request held. Raises SOURCE_BAD_RESPONSE with the source's
        error code (`BAD_REQUEST` etc.) when its body has one."""
        self.breaker.record_success()
        self.health.last_success_at = time.time()
        errors = self.health.errors
        errors[REFUSED_BY_SOURCE] = errors.get(REFUSED_BY_SOURCE, 0) + 1
        error = body.get("error") if isinstance(body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        reason = f"HTTP {status} {code}" if isinstance(code, str) and code.isidentifier() else f"HTTP {status}"
        log.warning("source %s refused a request: %s", self.source.value, reason)
        raise SourceError(self.source, SOURCE_BAD_RESPONSE, f"refused the request: {reason}", retryable=False,
                          refused=True)

    def _failed(self, code: str, detail: str) -> None:
        self.breaker.record_failure()
        errors = self.health.errors
        errors[code] = errors.get(code, 0) + 1
        self.health.last_error_at = time.time()
        self.health.last_error = f"{code}: {detail}"
        log.warning("source %s failed: %s: %s", self.source.value, code, detail)
