"""The gateway's Prometheus metrics, served at `/metrics` on the operators' admin listener (never the public port).

One `GatewayMetrics` per process, built by `create_app` with a registry of its own (not prometheus-client's
global one). Counters that the gateway already keeps as plain numbers (sources' health, fetchers' stats, the
caches, the audit trail, websockets, pub/sub) are read at scrape time by `StateCollector`, so the request path
counts nothing twice; only what had no counter before is observed as it happens: requests by operation, role
and outcome (and their duration), each backend call's latency and each audit commit's.

Every family is named `ucgw_*` and carries `replica` (`UCGW_REPLICA_ID`, default hostname:pid), so the series
of several replicas can be summed and told apart. Label values come from bounded sets only: operation names
are the first `MAX_OPERATIONS` well-formed names seen (others "other"), roles the known roles, sources the
three systems; never an A-number or free text (docs/operating.md `## Metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from rules.roles import ROLES
from sources.breaker import CLOSED, HALF_OPEN, OPEN
from sources.systems import Source

MAX_OPERATIONS = 50  # distinct operation names labelled; later new names count as "other"
UNKNOWN = "unknown"  # requests answered before their body was read (refused by size, credentials, rate)
ANONYMOUS_OPERATION, OTHER = "anonymous", "other"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SOURCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BREAKER_STATES = (CLOSED, HALF_OPEN, OPEN)
LAG_INTERVAL_SECONDS = 0.5
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# `"operationName":"Name"` in a JSON body, else the name after the first `query`/`mutation`/`subscription`
# (looked for in the first `DEFINITION_WINDOW` bytes only: a request pays for a short search, not its whole body)
_OPERATION_NAME = re.compile(rb'"operationName"\s*:\s*"([_A-Za-z][_0-9A-Za-z]{0,63})"')
_DEFINITION = re.compile(rb'\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]{0,63})')
DEFINITION_WINDOW = 512
_DIGITS = re.compile(r"\d{6}")  # a name holding a run of digits may hold an A-number: never a label


def default_replica() -> str:
    """hostname:pid, unique among the replicas on one host and across hosts."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), 0 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class LoopLag:
    """How late the event loop runs a timer: a task that sleeps `LAG_INTERVAL_SECONDS` and notes the overshoot."""

    def __init__(self) -> None:
        self.last = 0.0
        self.max = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
            self.last = max(0.0, loop.time() - start - LAG_INTERVAL_SECONDS)
            self.max = max(self.max, self.last)

    def start(self) -> None:
        """Start watching on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Buckets:
    """A histogram as plain numbers: counts per bucket (not cumulative; the last is +Inf) and the sum. Its
    `observe` costs a bisect and two additions, and no lock: each is observed from one thread at a time (the
    event loop, or the audit store under its connection lock)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposition(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, +Inf last."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), total))
        return out


class GatewayMetrics:
    """The registry, the families observed as they happen, and the collector of everything else."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.registry = CollectorRegistry(auto_describe=False)
        self.lag = LoopLag()
        self.rate_limited: dict[str, int] = {}  # refusals by client class (role, or "unauthenticated")
        # observed as they happen, as plain numbers; read by `ObservedCollector` at scrape time
        self.requests: dict[tuple[str, str, str], list[int]] = {}  # (operation, role, outcome) -> [count]
        self.durations: dict[tuple[str, str], Buckets] = {}  # (operation, role) -> request seconds
        self.source_latency = {s: Buckets(SOURCE_BUCKETS) for s in Source}
        self.audit_commit = Buckets(COMMIT_BUCKETS)
        self.registry.register(ObservedCollector(self))
        self._operations: dict[bytes, str] = {}  # raw name -> label (bounded by MAX_OPERATIONS, then OTHER)
        self._children: dict[tuple[str, str, int, bool], tuple[list[int], Buckets]] = {}
        self._roles = frozenset(ROLES)

    def source_observer(self, source: Source) -> Callable[[float], None]:
        """The pre-bound `observe` of one source's latency histogram (handed to its client)."""
        return self.source_latency[source].observe

    def commit_observer(self) -> Callable[[float], None]:
        """The pre-bound `observe` of the audit commit histogram (handed to the audit store)."""
        return self.audit_commit.observe

    def operation(self, body: bytes, query_string: bytes) -> str:
        """The operation-name label of a request: from `operationName`, else the query's first named
        definition; "anonymous" without one; "other" past `MAX_OPERATIONS` names or for a name with digits."""
        text = body or query_string
        at = text.find(b'"operationName"')
        found = _OPERATION_NAME.match(text, at) if at >= 0 else None
        if found is None:
            found = _DEFINITION.search(text, 0, DEFINITION_WINDOW)
        if found is None:
            return ANONYMOUS_OPERATION
        raw = found.group(1)
        label = self._operations.get(raw)
        if label is None:
            name = raw.decode()
            label = OTHER if len(self._operations) >= MAX_OPERATIONS or _DIGITS.search(name) else name
            if len(self._operations) < 4 * MAX_OPERATIONS:
                self._operations[raw] = label
        return label

    def finished(self, started: float, operation: str, role: str | None, status: int, errors: bool) -> None:
        """Count one answered request (`status` 0: it failed with no answer of ours; `errors`: its answer held
        GraphQL errors) and observe its duration since `started` (`time.perf_counter()`)."""
        key = (operation, role or "none", status, errors)
        children = self._children.get(key)
        if children is None:
            children = self._bind(key)
        children[0][0] += 1
        children[1].observe(time.perf_counter() - started)

    def _bind(self, key: tuple[str, str, int, bool]) -> tuple[list[int], Buckets]:
        operation, role, status, errors = key
        role = role if role in self._roles or role == "none" else OTHER
        if status >= 500 or status == 0:
            outcome = "server_error"
        elif status == 429:
            outcome = "rate_limited"
        elif status >= 400:
            outcome = "rejected"
        else:
            outcome = "errors" if errors else "ok"
        count = self.requests.setdefault((operation, role, outcome), [0])
        duration = self.durations.get((operation, role))
        if duration is None:
            duration = self.durations[(operation, role)] = Buckets(REQUEST_BUCKETS)
        children = (count, duration)
        if len(self._children) < 10_000:
            self._children[key] = children
        return children

    def refused(self, client_class: str) -> None:
        """A request or handshake refused by the rate limit."""
        self.rate_limited[client_class] = self.rate_limited.get(client_class, 0) + 1

    def watch(self, collector: Collector) -> None:
        """Read `collector` at every scrape."""
        self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition of every family."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


def _gauge(name: str, doc: str, labels: list[str], rows: Iterable[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows:
        family.add_metric(values, value)
    return family


class ObservedCollector(Collector):
    """The families observed as they happen: requests and their durations, backend call and audit commit
    latency."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m, r = self.metrics, self.metrics.replica
        yield _counter("ucgw_requests", "GraphQL HTTP requests by operation name, role and outcome",
                       ["replica", "operation", "role", "outcome"],
                       (([r, *key], cell[0]) for key, cell in sorted(m.requests.items())))
        family = HistogramMetricFamily("ucgw_request_duration_seconds",
                                       "GraphQL HTTP request duration by operation name and role",
                                       labels=["replica", "operation", "role"])
        for (operation, role), buckets in sorted(m.durations.items()):
            family.add_metric([r, operation, role], buckets.exposition(), buckets.sum)
        yield family
        family = HistogramMetricFamily("ucgw_source_call_duration_seconds",
                                       "Duration of answered backend calls, by source", labels=["replica", "source"])
        for source, buckets in m.source_latency.items():
            family.add_metric([r, source.value], buckets.exposition(), buckets.sum)
        yield family
        family = HistogramMetricFamily("ucgw_audit_commit_duration_seconds",
                                       "Duration of audit-trail commits (one transaction each)", labels=["replica"])
        family.add_metric([r], m.audit_commit.exposition(), m.audit_commit.sum)
        yield family


class StateCollector(Collector):
    """Reads the gateway's own counters at scrape time. `parts` are the objects `create_app` built."""

    def __init__(self, metrics: GatewayMetrics, services: Any, answers: Any, audit: Any,
                 sockets: Any, connections: Any) -> None:
        self.metrics, self.services, self.answers, self.audit = metrics, services, answers, audit
        self.sockets, self.connections = sockets, connections

    def collect(self) -> Iterable[Metric]:
        r = self.metrics.replica
        services = self.services
        clients = [(s.value, services.clients[s]) for s in Source]
        yield _counter("ucgw_source_calls", "Calls sent to each backend (each attempt)", ["replica", "source"],
                       (([r, s], c.health.calls) for s, c in clients))
        yield _counter("ucgw_source_retries", "Retried backend calls", ["replica", "source"],
                       (([r, s], c.health.retries) for s, c in clients))
        yield _counter("ucgw_source_errors", "Failed, refused or breaker-stopped backend calls by error kind",
                       ["replica", "source", "kind"],
                       (([r, s, k], n)
                        for s, c in clients for k, n in sorted(c.health.errors.items())))
        yield _gauge("ucgw_source_in_flight", "Backend calls sent and not yet answered", ["replica", "source"],
                     (([r, s], c.health.in_flight) for s, c in clients))
        yield _gauge("ucgw_source_breaker_state", "1 for the state each source's circuit breaker is in",
                     ["replica", "source", "state"],
                     (([r, s, st], 1.0 if c.breaker.state == st else 0.0) for s, c in clients for st in BREAKER_STATES))
        yield _gauge("ucgw_source_breaker_open", "1 while a source's breaker is open or half-open (calls fail fast)",
                     ["replica", "source"], (([r, s], 0.0 if c.breaker.state == CLOSED else 1.0) for s, c in clients))
        stats = [(s.value, services.fetchers[s].stats) for s in Source]
        yield _counter("ucgw_record_cache_lookups", "Record cache lookups by source and result (hit, miss, stale)",
                       ["replica", "source", "result"],
                       (([r, s, res], getattr(st, attr)) for s, st in stats
                        for res, attr in (("hit", "hits"), ("miss", "misses"), ("stale", "stale"))))
        yield _counter("ucgw_singleflight_coalesced", "Record reads that joined a backend call already in flight",
                       ["replica", "source"], (([r, s], st.coalesced) for s, st in stats))
        yield _counter("ucgw_source_batches", "Batch calls the fetchers made", ["replica", "source"],
                       (([r, s], st.batches) for s, st in stats))
        yield _gauge("ucgw_record_cache_entries", "Records held in the record cache", ["replica"],
                     [([r], len(services.cache))])
        a = self.answers.facts()
        yield _counter("ucgw_answer_cache_lookups", "Stored-answer lookups by result (hit, miss, stale: outdated)",
                       ["replica", "result"],
                       [([r, "hit"], a["hits"]), ([r, "miss"], a["misses"]), ([r, "stale"], a["outdated"])])
        yield _counter("ucgw_answer_cache_shared", "Requests answered with an identical request's answer in flight",
                       ["replica"], [([r], a["shared"])])
        yield _gauge("ucgw_answer_cache_entries", "Stored answers held", ["replica"], [([r], a["entries"])])
        yield _gauge("ucgw_answer_cache_bytes", "Bytes of stored answers held", ["replica"], [([r], a["bytes"])])
        audit = self.audit.facts()
        yield _counter("ucgw_audit_commits", "Audit-trail transactions committed", ["replica"],
                       [([r], audit.get("commits", 0))])
        yield _counter("ucgw_audit_rows", "Audit events written", ["replica"], [([r], audit.get("rowsWritten", 0))])
        yield _counter("ucgw_audit_slow_commits", "Audit commits on the event loop that were slow (a slow disk)",
                       ["replica"], [([r], audit.get("slowCommits", 0))])
        yield _counter("ucgw_rate_limited", "Requests and handshakes refused by the rate limit, by client class",
                       ["replica", "client_class"],
                       (([r, k], n) for k, n in sorted(self.metrics.rate_limited.items())))
        pubsub = services.pubsub
        yield _gauge("ucgw_websockets_open", "Open graphql-transport-ws connections", ["replica"],
                     [([r], self.sockets.facts()["open"])])
        yield _gauge("ucgw_subscriptions_open", "Open subscriptions", ["replica"],
                     [([r], pubsub.subscriber_count())])
        yield _counter("ucgw_subscription_events", "Events handed to subscribers (one per subscriber)", ["replica"],
                       [([r], getattr(pubsub, "offered", 0))])
        yield _counter("ucgw_subscription_queue_drops", "Events dropped from a slow subscriber's full queue",
                       ["replica"], [([r], pubsub.dropped() if hasattr(pubsub, "dropped") else 0)])
        scans = services.scans.stats
        yield _counter("ucgw_scans", "Walks of every child (oversight lists and counts) by what a caller did: "
                       "started one, joined one running, waited for a slot, was refused", ["replica", "event"],
                       (([r, e], getattr(scans, e)) for e in ("started", "joined", "waited", "refused")))
        yield _gauge("ucgw_scans_running", "Walks of every child running now", ["replica"], [([r], scans.running)])
        leadership = getattr(services, "leadership", None)
        roles = leadership.roles() if leadership is not None else {}
        yield _gauge("ucgw_feed_leader", "1 while this replica follows the source's change feed (its leader)",
                     ["replica", "source"], (([r, s.value], 1.0 if roles.get(s.value) == "leader" else 0.0)
                                             for s in Source))
        database = getattr(services, "database", None)
        if database is not None:
            yield _gauge("ucgw_database_reachable", "1 while PostgreSQL answers this replica", ["replica"],
                         [([r], 1.0 if database.reachable else 0.0)])
        conn = self.connections.facts()
        yield _gauge("ucgw_connections_open", "Open client connections on the public listener", ["replica"],
                     [([r], conn.get("open", 0))])
        yield _gauge("ucgw_process_resident_memory_bytes", "Resident set size of the gateway process", ["replica"],
                     [([r], process_rss_bytes())])
        lag = self.metrics.lag
        yield _gauge("ucgw_event_loop_lag_seconds", "How late the event loop last ran a timer", ["replica"],
                     [([r], lag.last)])
        yield _gauge("ucgw_event_loop_lag_max_seconds", "The largest event-loop lag seen since the start",
                     ["replica"], [([r], lag.max)])
