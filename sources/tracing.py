"""Tracing as every layer uses it: the span names and attribute keys, W3C `traceparent` in and out, and the
current trace id for log lines.

The process's tracer is built once by `gateway/tracing.py` (from `UCGW_TRACING` and the standard `OTEL_*`
variables) and passed down by `create_app`; the parts that trace hold it as `tracer`, which is None when
tracing is off, so the request path then makes no tracer call at all (one attribute test per instrumented
place). Nothing here holds process state. Attributes never carry an A-number or anything else about a child:
only sources, route templates, statuses, counts, section and operation names, roles and outcomes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Tracer = trace.Tracer
SpanKind = trace.SpanKind
Status, StatusCode = trace.Status, trace.StatusCode
ERROR = Status(StatusCode.ERROR)

# span names
REQUEST_SPAN = "graphql.request"  # one per HTTP request to /graphql (gateway/http/traced.py)
CHILD_SPAN = "ucgw.child.sections"  # the backend reads the selected sections of one child need (resolvers/child.py)
SECTION_SPAN = "ucgw.section"  # one section of one child built from its sources' records
BACKEND_SPAN = "ucgw.backend"  # one call to ORR, ICE or EOIR, retries included (sources/client.py)
AUDIT_SPAN = "ucgw.audit.commit"  # one request's reads written to the audit trail (resolvers/audit_reads.py)

_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent / tracestate; stateless


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing request headers."""
    _PROPAGATOR.inject(headers)


def extract_context(carrier: dict[str, str]) -> Any:
    """The OpenTelemetry context of a caller's `traceparent` (an empty context when absent or malformed)."""
    return _PROPAGATOR.extract(carrier)


def recorded(tracer: Tracer | None) -> Tracer | None:
    """`tracer` when the current span is recorded, else None: the parts of a request its sampler left out (and
    work outside any request) make no spans of their own, which would be recorded nowhere or as orphans; the
    request's trace id still reaches the backends through the unsampled span's `traceparent`."""
    if tracer is None or not trace.get_current_span().is_recording():
        return None
    return tracer


def current_trace_id() -> str | None:
    """The trace id (32 lower-case hex digits) of the span current in this task, None outside any recorded or
    propagated trace (and always None when tracing is off). For log lines: it is a random id, no PII."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
