"""`sources.tracing.current_trace_id`, which log lines carry: the current span's trace id, None outside a trace."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from sources.tracing import current_trace_id, extract_context, inject_traceparent


def test_trace_id_of_the_current_span_and_none_outside() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert current_trace_id() is None
    with tracer.start_as_current_span("outer") as span:
        expected = format(span.get_span_context().trace_id, "032x")
        assert current_trace_id() == expected and len(expected) == 32

        async def in_a_task() -> str | None:  # tasks inherit the span (contextvars)
            return current_trace_id()

        assert asyncio.run(in_a_task()) == expected
    assert current_trace_id() is None


def test_an_unsampled_trace_still_has_its_id_and_a_callers_traceparent_is_continued() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("unsampled"):
        assert current_trace_id() is not None
    caller = extract_context({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    with TracerProvider().get_tracer("test").start_as_current_span("server", context=caller) as span:
        assert current_trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736"
        headers: dict[str, str] = {}
        inject_traceparent(headers)
        own = format(span.get_span_context().span_id, "016x")
        assert headers["traceparent"] == f"00-4bf92f3577b34da6a3ce929d0e0e4736-{own}-01"
    malformed = extract_context({"traceparent": "00-not-a-trace-01"})  # ignored: the span starts a trace of its own
    with TracerProvider().get_tracer("test").start_as_current_span("server", context=malformed) as span:
        assert span.parent is None and current_trace_id() != "4bf92f3577b34da6a3ce929d0e0e4736"
