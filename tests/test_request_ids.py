"""Request ids (issue 28): every HTTP answer carries `X-Request-Id` (the caller's when well-formed, else a new
one), every GraphQL error carries it in `extensions.requestId` (through GraphQL, from a stored answer, from the
guard and the edge), the request's audit events carry it, and UCGW_LOG_FORMAT=json writes JSON lines with it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from testing.access import gateway_env
from testing.gateway import ROOT, GatewayProcess, http, mint
from testing.rawhttp import answer, exchange

STATUS = """query($a: ID!) { child(aNumber: $a) { aNumber
  location { status address { street city zip } } sponsor { name phone category }
  nta { status fieldOffice } hearing { caseStatus } } }"""
EVENTS = """query($a: ID, $s: String) { auditEvents(aNumber: $a, subject: $s, first: 100) {
  requestId subject outcome } }"""
GENERATED = re.compile(r"[0-9a-f]{32}")
LOG_KEYS = {"time", "level", "logger", "message", "request_id", "trace_id"}


@pytest.fixture(scope="module")
def gw(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path_factory.mktemp("rid")),
                                         UCGW_CACHE_TTL_SECONDS="300", UCGW_LOG_FORMAT="json",
                                         UCGW_MAX_BODY_BYTES="4096"))
    yield gateway
    gateway.stop()


def post(gw: GatewayProcess, query: str, variables: dict[str, Any], request_id: str | None = None,
         token: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    extra = {"X-Request-Id": request_id} if request_id is not None else {}
    status, headers, body = http("POST", f"{gw.url}/graphql", {"query": query, "variables": variables},
                                 headers=gw.headers(token, extra))
    return status, headers, json.loads(body)


def hits(gw: GatewayProcess) -> int:
    return int(json.loads(http("GET", f"{gw.admin_url}/readyz")[2])["answerCache"]["hits"])


def test_a_well_formed_caller_id_is_kept_anything_else_replaced(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    for given in ("ticket-42", "a.b_c:d-E9", "x" * 128):
        status, headers, _ = post(gw, STATUS, {"a": a}, given)
        assert (status, headers["x-request-id"]) == (200, given)
    seen = set()
    for given in ("", "has space", "x" * 129, "semi;colon", "ü", None):
        status, headers, _ = post(gw, STATUS, {"a": a}, given)
        assert status == 200 and GENERATED.fullmatch(headers["x-request-id"]), (given, headers.get("x-request-id"))
        seen.add(headers["x-request-id"])
    assert len(seen) == 6  # a new id each time


def test_every_answer_carries_an_id(gw: GatewayProcess) -> None:
    for method, path, extra in (("GET", "/healthz", {}), ("GET", "/readyz", {}), ("GET", "/nowhere", {}),
                                ("GET", "/graphql", {"Accept": "text/html"})):
        status, headers, _ = http(method, gw.url + path, headers={"X-Request-Id": f"probe{path.replace('/', '.')}",
                                                                  **extra})
        assert headers.get("x-request-id") == f"probe{path.replace('/', '.')}", (path, status)
    assert http("GET", gw.url + "/nowhere")[0] == 404
    # refusals of the guard and of strawberry: the id in the header and in the error
    refusals = [
        (401, {"query": "{ sources { source } }"}, {"Authorization": "Bearer nonsense"}, None),
        (413, {"query": "{ sources { source } }", "pad": "x" * 5000}, gw.headers(), None),
        (415, None, {**gw.headers(), "Content-Type": "text/plain"}, b"{ sources { source } }"),
        (400, None, {**gw.headers(), "Content-Type": "application/json"}, b"[1, 2"),
    ]
    for i, (expected, body, headers, raw) in enumerate(refusals):
        status, got, text = http("POST", f"{gw.url}/graphql", body, headers={**headers, "X-Request-Id": f"r{i}"},
                                 raw=raw)
        assert status == expected
        assert got["x-request-id"] == f"r{i}"
        assert [e["extensions"]["requestId"] for e in json.loads(text)["errors"]] == [f"r{i}"]


def test_edge_refusals_and_doubled_ids_get_a_new_id(gw: GatewayProcess) -> None:
    # refused by the edge before the app (431, 400): a new id, in the header and the error
    for request, expected in ((b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: edge-1\r\nX-Big: "
                               + b"y" * 40_000 + b"\r\n\r\n", 431),
                              (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2"
                               b"\r\n\r\n", 400)):
        status, headers, body = answer(exchange(gw.port, request))
        assert status == expected
        assert GENERATED.fullmatch(headers["x-request-id"])
        assert body["errors"][0]["extensions"]["requestId"] == headers["x-request-id"]
    # two ids for one request: neither is taken
    status, headers, _ = answer(exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\n"
                                                  b"X-Request-Id: two\r\nConnection: close\r\n\r\n"))
    assert status == 200 and GENERATED.fullmatch(headers["x-request-id"])


def test_errors_carry_the_id_through_graphql_and_from_stored_answers(gw: GatewayProcess,
                                                                    mock_services: Any) -> None:
    a = mock_services.sample(40, "missed_hearing")[5]
    partner = mint("partner")  # sees the child, but not the sponsor: FORBIDDEN errors
    before = hits(gw)
    answers = [post(gw, STATUS, {"a": a}, f"partner-{i}", token=partner) for i in range(3)]
    assert hits(gw) == before + 2  # the first ran GraphQL, the next two were stored answers
    for i, (status, headers, body) in enumerate(answers):
        assert status == 200 and headers["x-request-id"] == f"partner-{i}"
        assert body["errors"] and {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
        assert {e["extensions"]["requestId"] for e in body["errors"]} == {f"partner-{i}"}
    strip = [[{**e, "extensions": {"code": e["extensions"]["code"]}} for e in b["errors"]] for _, _, b in answers]
    assert strip[0] == strip[1] == strip[2]  # otherwise the same errors
    # an unexpected variable is the request's error, with the id too
    status, headers, body = post(gw, STATUS, {"a": {"not": "an id"}}, "bad-var")
    assert status == 400 and [e["extensions"]["requestId"] for e in body["errors"]] == ["bad-var"]


def test_requests_waiting_for_an_identical_one_get_their_own_id_in_its_errors(gw: GatewayProcess,
                                                                             mock_services: Any) -> None:
    a = mock_services.sample(40, "missed_hearing")[11]
    partner = mint("partner", subject="rid-followers")
    before = json.loads(http("GET", f"{gw.admin_url}/readyz")[2])["answerCache"]["shared"]
    mock_services.reset()
    for source in ("orr", "ice", "eoir"):
        mock_services.admin_ok(source, "PUT", "/_admin/faults", {"latency_ms": 800})
    try:
        with ThreadPoolExecutor(max_workers=5) as pool:
            first = pool.submit(post, gw, STATUS, {"a": a}, "lead", partner)
            time.sleep(0.2)  # the first is waiting on the sources
            rest = [pool.submit(post, gw, STATUS, {"a": a}, f"follower-{i}", partner) for i in range(4)]
            answers = [first.result(), *(f.result() for f in rest)]
    finally:
        mock_services.reset()
    after = json.loads(http("GET", f"{gw.admin_url}/readyz")[2])["answerCache"]["shared"]
    assert after == before + 4  # the four were handed the first one's answer
    for given, (status, headers, body) in zip(["lead", *(f"follower-{i}" for i in range(4))], answers, strict=True):
        assert status == 200 and headers["x-request-id"] == given
        assert body["errors"] and {e["extensions"]["requestId"] for e in body["errors"]} == {given}


def test_the_audit_events_of_a_request_carry_its_id(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(40, "missed_hearing")[7]
    for i in range(2):  # through GraphQL, then from the stored answer
        assert post(gw, STATUS, {"a": a}, f"audit-{i}")[0] == 200
    generated = post(gw, STATUS, {"a": a})[1]["x-request-id"]
    stranger = mint("caseworker", subject="rid-stranger", secret="not-the-secret-" * 3)
    assert post(gw, STATUS, {"a": a}, "audit-refused", token=stranger)[0] == 401
    auditor = mint("auditor")
    _, _, body = post(gw, EVENTS, {"a": a}, token=auditor)
    ids = [e["requestId"] for e in body["data"]["auditEvents"]]
    assert "audit-0" in ids and "audit-1" in ids and generated in ids
    _, _, body = post(gw, EVENTS, {"s": "unverified:rid-stranger"}, token=auditor)
    assert [e["requestId"] for e in body["data"]["auditEvents"]] == ["audit-refused"]


def test_json_logs_carry_the_request_id(mock_services: Any, tmp_path: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path), UCGW_LOG_FORMAT="json"))
    try:
        assert post(gateway, "{ sources { source } }", {}, "log-probe", token=mint("caseworker", secret="x" * 40)
                    )[0] == 401
        status, headers, _ = answer(exchange(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1"
                                                           b"\r\nContent-Length: 2\r\n\r\n"))
        assert status == 400
        edge_id = headers["x-request-id"]
    finally:
        output = gateway.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines and all(set(line) == LOG_KEYS for line in lines), output[:2000]
    assert all(line["trace_id"] is None for line in lines)  # tracing is off here
    refused = [line for line in lines if line["message"].startswith("request refused")]
    assert [line["request_id"] for line in refused] == ["log-probe"]
    assert refused[0]["logger"] == "ucgw.guard" and refused[0]["level"] == "INFO"
    at_edge = [line for line in lines if line["logger"] == "ucgw.edge" and "refused" in line["message"]]
    assert [line["request_id"] for line in at_edge] == [edge_id]
    assert any(line["message"].startswith("ucgw gateway on http://") for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines)


def test_json_logs_name_the_trace_of_the_request_when_tracing_is_on(mock_services: Any, tmp_path: Any) -> None:
    """With tracing on, a log line written while a request is served carries that request's trace id: the
    caller's, when its `traceparent` is continued."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path), UCGW_LOG_FORMAT="json",
                                         UCGW_TRACING="true", OTEL_TRACES_EXPORTER="none"))
    try:
        status, _, _ = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                            headers={"Authorization": "Bearer " + mint("caseworker", secret="x" * 40),
                                     "X-Request-Id": "traced-probe",
                                     "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        assert status == 401
    finally:
        output = gateway.stop()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    refused = [line for line in lines if line["request_id"] == "traced-probe"]
    assert [line["trace_id"] for line in refused] == [trace], refused
    assert all(line["trace_id"] is None for line in lines if line["request_id"] is None)  # none outside requests


def test_an_unknown_log_format_is_refused_with_a_message(tmp_path: Any) -> None:
    env = {"UCGW_LOG_FORMAT": "xml", "UCGW_JWT_SECRET": "x" * 40, "UCGW_DATA_DIR": str(tmp_path),
           "UCGW_AUDIT_HMAC_KEY": "k" * 40, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "log_format" in done.stderr and "text, json" in done.stderr and "Traceback" not in done.stderr
