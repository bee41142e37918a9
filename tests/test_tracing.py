"""OpenTelemetry tracing, end to end: real `ucgw serve` gateways export OTLP/HTTP to a receiver in this test (a
small HTTP server on a free port, decoding with the `opentelemetry-proto` package), over the real mocks, which
record the `traceparent` each route last received (`/_admin/stats`)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from testing.gateway import ROOT, TEST_AUDIT_HMAC_KEY, TEST_JWT_SECRET, GatewayProcess, free_port

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
BATCH_ROUTES = {"ORR": "/v1/children/batch", "ICE": "/v1/subjects/batch", "EOIR": "/v1/cases/batch"}
QUERY = """query ChildStatus($a: ID!) {
  child(aNumber: $a) { aNumber identity { firstName lastName dateOfBirth } location { status } hearing { caseStatus } }
}"""
A_NUMBER_LIKE = re.compile(r"[0-9]{8,9}")


class Receiver:
    """An OTLP/HTTP trace receiver: every span of every export, decoded, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests: list[str] = []  # path of each export
        received, lock = self.spans, threading.Lock()
        paths = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                export = ExportTraceServiceRequest.FromString(body)
                with lock:
                    paths.append(self.path)
                    for resource_spans in export.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            received.extend(scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def attrs(span: Span) -> dict[str, Any]:
    """A span's attributes as plain values (lists for array values)."""
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            out[kv.key] = getattr(value, kind)
    return out


def traced_gateway(mock_services: Any, receiver: Receiver, **env: str) -> GatewayProcess:
    return GatewayProcess(mock_services.gateway_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                                                    OTEL_BSP_SCHEDULE_DELAY="50", **env))


def test_one_child_query_is_one_span_tree_and_its_traceparent_reaches_each_backend(
        mock_services: Any, receiver: Receiver) -> None:
    mock_services.reset()
    a = mock_services.sample(3)[1]
    names = {str(v) for s in ("ice", "orr") for k, v in (mock_services.request(
        s, "POST", f"/v1/{'subjects' if s == 'ice' else 'children'}/batch", {"a_numbers": [a]}).json()
        ["records"] or [{}])[0].items() if k in ("first_name", "last_name", "date_of_birth") and v}
    mock_services.reset()
    gw = traced_gateway(mock_services, receiver)
    try:
        status, body = gw.query(QUERY, {"a": a}, headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
        assert status == 200 and "errors" not in body, body
        stats = {s: mock_services.stats(s.lower()) for s in BATCH_ROUTES}
    finally:
        gw.stop()  # the lifespan's end flushes the batch processor: every span is at the receiver now
    assert set(receiver.requests) == {"/v1/traces"}
    spans = [s for s in receiver.spans if s.trace_id.hex() == CALLER_TRACE]
    assert len(spans) == len(receiver.spans)  # the one request's trace, nothing else
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name.split(" ")[0], []).append(span)
    (request,) = by_name["graphql.request"]
    assert request.parent_span_id.hex() == CALLER_SPAN and request.kind == Span.SPAN_KIND_SERVER
    assert attrs(request) == {"http.request.method": "POST", "http.route": "/graphql",
                              "graphql.operation.name": "ChildStatus", "ucgw.role": "caseworker",
                              "http.response.status_code": 200, "ucgw.outcome": "ok"}
    (child,) = by_name["ucgw.child.sections"]
    assert child.parent_span_id == request.span_id
    assert attrs(child) == {"ucgw.sources": ["ORR", "ICE", "EOIR"]}
    backends = by_name["ucgw.backend"]
    assert sorted(s.name for s in backends) == ["ucgw.backend EOIR", "ucgw.backend ICE", "ucgw.backend ORR"]
    for span in backends:
        source = span.name.split(" ")[1]
        assert span.parent_span_id == child.span_id and span.kind == Span.SPAN_KIND_CLIENT
        assert attrs(span) == {"ucgw.source": source, "http.request.method": "POST",
                               "http.route": BATCH_ROUTES[source], "ucgw.cache.result": "MISS",
                               "ucgw.records.asked": 1, "http.response.status_code": 200, "ucgw.retries": 0}
        # the backend saw this call's span as its parent, in the caller's trace
        route = f"POST {BATCH_ROUTES[source]}"
        assert stats[source]["traceparent"] == {route: f"00-{CALLER_TRACE}-{span.span_id.hex()}-01"}
    sections = by_name["ucgw.section"]
    assert sorted(attrs(s)["ucgw.section"] for s in sections) == ["hearing", "identity", "location"]
    for span in sections:
        assert span.parent_span_id == request.span_id
        assert attrs(span)["ucgw.outcome"] == "ok" and set(attrs(span)["ucgw.cache.results"]) == {"MISS"}
    (audit,) = by_name["ucgw.audit.commit"]
    assert audit.parent_span_id == request.span_id
    assert attrs(audit) == {"ucgw.audit.events": 1, "ucgw.outcome": "ok"}
    assert len(spans) == 1 + 1 + 3 + 3 + 1
    # nothing about the child in any attribute: no A-number (nor its digits), name or birth date
    texts = [str(v) for span in spans for v in attrs(span).values()]
    assert not [t for t in texts if A_NUMBER_LIKE.search(t) or a in t or any(n in t for n in names)], texts


def test_sampling_keeps_the_callers_decision_and_redacts_operation_names_like_data(
        mock_services: Any, receiver: Receiver) -> None:
    """10% sampling written as OTEL_TRACES_SAMPLER=parentbased_traceidratio; with a ratio of 0, only a request
    whose caller sampled its trace is recorded, and the backends still learn each request's trace."""
    mock_services.reset()
    kept, dropped = mock_services.sample(5)[2:4]
    gw = traced_gateway(mock_services, receiver, OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                        OTEL_TRACES_SAMPLER_ARG="0")
    try:
        named_like_data = QUERY.replace("ChildStatus", "A201234567")
        status, body = gw.query(named_like_data, {"a": kept},
                                headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
        assert status == 200 and "errors" not in body, body
        status, body = gw.query(QUERY, {"a": dropped})
        assert status == 200 and "errors" not in body, body
        orr = mock_services.stats("orr")["traceparent"]["POST /v1/children/batch"]
    finally:
        gw.stop()
    assert {s.trace_id.hex() for s in receiver.spans} == {CALLER_TRACE}
    (request,) = [s for s in receiver.spans if s.name == "graphql.request"]
    assert attrs(request)["graphql.operation.name"] == "redacted"
    version, trace_id, _parent, flags = orr.split("-")  # the unsampled request's, sent all the same
    assert version == "00" and int(flags, 16) & 1 == 0  # not sampled (the SDK may set the random-id bit, 02)
    assert trace_id != CALLER_TRACE and len(trace_id) == 32


def test_tracing_off_sends_no_traceparent(mock_services: Any, receiver: Receiver) -> None:
    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env())
    try:
        status, body = gw.query(QUERY, {"a": mock_services.sample(7)[5]},
                                headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
        assert status == 200 and "errors" not in body, body
        assert all(mock_services.stats(s)["traceparent"] == {} for s in ("orr", "ice", "eoir"))
        assert mock_services.stats("orr")["by_route"]["POST /v1/children/batch"] == 1  # the call went out, bare
    finally:
        gw.stop()
    assert receiver.spans == []


@pytest.mark.parametrize(("env", "message"), [
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes' is not one of"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"},
     "OTEL_TRACES_SAMPLER_ARG='10%' must be a number from 0 to 1"),
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER='jaeger' is not one of"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTLP protocol 'grpc' is not supported"),
])
def test_bad_tracing_settings_stop_the_start_with_a_clear_error(mock_services: Any, tmp_path: Path,
                                                                 env: dict[str, str], message: str) -> None:
    full = {**mock_services.gateway_env(UCGW_TRACING="true", **env), "UCGW_JWT_SECRET": TEST_JWT_SECRET,
            "UCGW_AUDIT_HMAC_KEY": TEST_AUDIT_HMAC_KEY, "UCGW_PORT": str(free_port()), "UCGW_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env={**os.environ, **full},
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and message in output, output
    assert "Traceback" not in output


def test_a_failing_backend_shows_its_retries_status_and_error_in_the_trace(mock_services: Any,
                                                                          receiver: Receiver) -> None:
    mock_services.reset()
    mock_services.admin_ok("eoir", "PUT", "/_admin/faults", {"down": True})
    gw = traced_gateway(mock_services, receiver, UCGW_RETRY_ATTEMPTS="2", UCGW_BREAKER_FAILURE_THRESHOLD="10")
    try:
        status, body = gw.query(QUERY, {"a": mock_services.sample(9)[7]})
        assert status == 200 and [e["path"] for e in body["errors"]] == [["child", "hearing"]], body
        eoir_calls = mock_services.stats("eoir")["by_route"]["POST /v1/cases/batch"]
    finally:
        mock_services.reset()
        gw.stop()
    spans = {s.name: s for s in receiver.spans if s.name != "ucgw.section"}
    eoir = attrs(spans["ucgw.backend EOIR"])
    assert eoir_calls == 3 and eoir["ucgw.retries"] == 2  # the first attempt and two retries, in one span
    assert (eoir["http.response.status_code"], eoir["ucgw.error.code"]) == (503, "SOURCE_UNAVAILABLE")
    assert spans["ucgw.backend EOIR"].status.code == 2  # STATUS_CODE_ERROR
    assert attrs(spans["ucgw.backend ORR"])["ucgw.retries"] == 0
    hearing = [attrs(s) for s in receiver.spans if s.name == "ucgw.section" and attrs(s)["ucgw.section"] == "hearing"]
    assert hearing == [{"ucgw.section": "hearing", "ucgw.section.sources": ["EOIR"], "ucgw.cache.results": ["ERROR"],
                        "ucgw.outcome": "error", "ucgw.error.code": "SOURCE_UNAVAILABLE"}]
    assert attrs(spans["graphql.request"])["ucgw.outcome"] == "partial"


def test_a_stored_answer_is_the_request_span_and_its_audit_commit(mock_services: Any, receiver: Receiver) -> None:
    mock_services.reset()
    a = mock_services.sample(11)[9]
    gw = traced_gateway(mock_services, receiver)
    try:
        first = gw.query(QUERY, {"a": a})
        second_trace = "0af7651916cd43dd8448eb211c80319c"
        again = gw.query(QUERY, {"a": a}, headers={"traceparent": f"00-{second_trace}-b7ad6b7169203331-01"})
        assert first == again and first[0] == 200
        assert mock_services.stats("orr")["by_route"]["POST /v1/children/batch"] == 1  # the second asked nobody
    finally:
        gw.stop()
    spans = sorted((s for s in receiver.spans if s.trace_id.hex() == second_trace), key=lambda s: s.name)
    assert [s.name for s in spans] == ["graphql.request", "ucgw.audit.commit"]
    request, audit = spans
    assert audit.parent_span_id == request.span_id
    assert attrs(audit) == {"ucgw.audit.events": 1, "ucgw.answer": "stored", "ucgw.outcome": "ok"}
    assert attrs(request)["ucgw.outcome"] == "ok" and attrs(request)["graphql.operation.name"] == "ChildStatus"
