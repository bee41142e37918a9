"""Partial answers, deadlines, retries, circuit breaking, stale-if-error and health (issue 4)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testing.gateway import GatewayProcess, http, without
from testing.mockproc import MockProcess

SECTIONS = {"ORR": ["sponsor", "followUpCall"], "ICE": ["nta"], "EOIR": ["hearing"]}
FULL = """query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { aNumber
  location { status provenance { source cacheStatus } }
  sponsor { relationship provenance { source cacheStatus stale ageSeconds } }
  followUpCall { outcome }
  nta { status fieldOffice provenance { source cacheStatus stale ageSeconds } }
  hearing { caseStatus missedHearingCount provenance { source cacheStatus stale ageSeconds } }
} }"""
NTA = "query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { nta { status " \
      "provenance { source cacheStatus stale ageSeconds fetchedAt } } } }"
SOURCES = "{ sources { source breakerState usable calls retries lastError lastSuccessAt latencyP50Ms } }"
FAST = {
    "UCGW_SOURCE_TIMEOUT_SECONDS": "0.4",
    "UCGW_REQUEST_DEADLINE_SECONDS": "1.2",
    "UCGW_RETRY_ATTEMPTS": "2",
    "UCGW_RETRY_BACKOFF_SECONDS": "0.02",
    "UCGW_BREAKER_FAILURE_THRESHOLD": "3",
    "UCGW_BREAKER_RESET_SECONDS": "1",
    "UCGW_CACHE_TTL_SECONDS": "1",
    "UCGW_MAX_STALE_SECONDS": "60",
}
COLLECTIONS = {"ORR": "children", "ICE": "subjects", "EOIR": "cases"}


@pytest.fixture
def gw(mock_services: Any) -> Iterator[GatewayProcess]:
    mock_services.reset()
    gateway = GatewayProcess(mock_services.gateway_env(**FAST))
    yield gateway
    gateway.stop()
    mock_services.reset()


def fault(mock_services: Any, source: str, **knobs: Any) -> None:
    status, body = mock_services.admin(source.lower(), "PUT", "/_admin/faults", knobs)
    assert status == 200, body


def errors_by_path(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each error by its path, without its request id (every request's own)."""
    return {"/".join(map(str, e["path"])): without(e, "requestId") for e in body.get("errors", [])}


def batches(mock_services: Any, source: str) -> int:
    """Batch reads one source has been asked for since the last reset (the change-feed polls are not counted)."""
    return mock_services.stats(source.lower())["by_route"].get(f"POST /v1/{COLLECTIONS[source]}/batch", 0)


def ice_batches(mock_services: Any) -> int:
    """Batch reads ICE has been asked for since the last reset."""
    return batches(mock_services, "ICE")


def all_batches(mock_services: Any) -> dict[str, int]:
    return {source: batches(mock_services, source) for source in COLLECTIONS}


def finished(mock_services: Any, source: str) -> int:
    """Data requests one source has finished answering since the last reset: those it counted, less those in flight.

    Read until two reads agree, so that a request that arrived before a fault was set has finished."""
    def read() -> int:
        stats = mock_services.stats(source.lower())
        return int(stats["total"] - stats["in_flight"])
    last, now = -1, read()
    while now != last:
        last, now = now, read()
    return now


def without_provenance(section: Any) -> Any:
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if k != "provenance"}


def source_facts(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    _, body = gw.query(SOURCES)
    return {s["source"]: s for s in body["data"]["sources"]}


@pytest.mark.parametrize("down", ["ORR", "ICE", "EOIR"])
def test_one_source_down_leaves_only_its_sections_null(gw: GatewayProcess, mock_services: Any, down: str) -> None:
    a = mock_services.sample(30)[3]
    _, healthy = gw.query(FULL, {"a": a})
    assert "errors" not in healthy
    fault(mock_services, down, down=True)
    before = all_batches(mock_services)
    status, body = gw.query(FULL, {"a": a, "m": 0})
    assert status == 200
    # the answer came after the down source's 1 try + 2 retries, and one read of each other source, no more
    calls = {s: n - before[s] for s, n in all_batches(mock_services).items()}
    assert calls == {s: 3 if s == down else 1 for s in SECTIONS}, calls
    child = body["data"]["child"]
    errors = errors_by_path(body)
    for source, sections in SECTIONS.items():
        for section in sections:
            path = f"child/{section}"
            if source == down:
                assert child[section] is None
                assert errors[path]["extensions"] == {"code": "SOURCE_UNAVAILABLE", "source": down}
            else:
                assert without_provenance(child[section]) == without_provenance(healthy["data"]["child"][section])
                assert path not in errors
    # location joins ORR and ICE: null only when one of them is down
    assert (child["location"] is None) == (down in ("ORR", "ICE"))


def test_all_sources_down_still_answers_with_errors_and_readyz_fails(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[4]
    for source in SECTIONS:
        fault(mock_services, source, down=True)
    status, body = gw.query(FULL, {"a": a})
    assert status == 200
    assert all_batches(mock_services) == {"ORR": 3, "ICE": 3, "EOIR": 3}  # 1 try + 2 retries each, then the answer
    assert body["data"]["child"]["aNumber"] == a
    codes = {(e["path"][1], e["extensions"]["code"], e["extensions"]["source"]) for e in body["errors"]}
    assert {("sponsor", "SOURCE_UNAVAILABLE", "ORR"), ("nta", "SOURCE_UNAVAILABLE", "ICE"),
            ("hearing", "SOURCE_UNAVAILABLE", "EOIR")} <= codes
    gw.query(FULL, {"a": a, "m": 0})  # second failure of each source
    gw.query(FULL, {"a": a, "m": 0})
    status, _, raw = http("GET", f"{gw.url}/readyz")  # the public answer: not ready, and nothing more
    assert status == 503 and json.loads(raw) == {"ready": False, "status": "degraded"}
    status, _, raw = http("GET", f"{gw.admin_url}/readyz")  # the details, for operators
    ready = json.loads(raw)
    assert status == 503 and ready["ready"] is False
    assert {s["source"]: s["breaker_state"] for s in ready["sources"]} == {"ORR": "OPEN", "ICE": "OPEN", "EOIR": "OPEN"}
    assert http("GET", f"{gw.url}/healthz")[0] == 200


def test_latency_above_timeout_is_source_timeout_within_deadline(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[5]
    fault(mock_services, "EOIR", latency_ms=5000)
    done = finished(mock_services, "EOIR")
    status, body = gw.query(FULL, {"a": a})
    assert status == 200
    # EOIR was asked, and the answer came while every EOIR request was still held by its latency: none finished
    assert batches(mock_services, "EOIR") >= 1 and finished(mock_services, "EOIR") == done
    errors = errors_by_path(body)
    assert errors["child/hearing"]["extensions"] == {"code": "SOURCE_TIMEOUT", "source": "EOIR"}
    assert body["data"]["child"]["nta"] is not None and body["data"]["child"]["location"] is not None


def test_hanging_source_is_cut_at_the_deadline(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[6]
    fault(mock_services, "ICE", timeout_rate=1.0)
    status, body = gw.query(FULL, {"a": a})
    assert status == 200
    # ICE never answers a hung call: the gateway gave up on each of its tries (at most 1 + 2 retries) to answer
    assert 1 <= batches(mock_services, "ICE") <= 3
    assert errors_by_path(body)["child/nta"]["extensions"] == {"code": "SOURCE_TIMEOUT", "source": "ICE"}
    assert body["data"]["child"]["hearing"] is not None


def test_a_caseload_page_keeps_the_request_deadline(mock_services: Any) -> None:
    """One caseload page is one listing call: it has the request's deadline, not the whole-world scans' (it
    had, so its retries ran on past the request deadline: 6.2 s for a 5 s deadline). With a 1 s deadline
    and 0.4 s per try, at most 3 tries fit; 6 would with the scans' 10 s."""
    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env(**{**FAST, "UCGW_REQUEST_DEADLINE_SECONDS": "1",
                                                     "UCGW_RETRY_ATTEMPTS": "5", "UCGW_SCAN_DEADLINE_SECONDS": "10",
                                                     "UCGW_BREAKER_FAILURE_THRESHOLD": "50",
                                                     "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}))
    try:
        fault(mock_services, "ICE", latency_ms=1000)
        status, body = gw.query("{ caseload(first: 5) { edges { node { aNumber } } } }")
        listings = mock_services.stats("ice")["by_route"].get("GET /v1/subjects", 0)
    finally:
        gw.stop()
        mock_services.reset()
    assert status == 200 and body["data"] == {"caseload": None}
    assert [without(e["extensions"], "requestId") for e in body["errors"]] == [{"code": "SOURCE_TIMEOUT",
                                                                                  "source": "ICE"}]
    assert 1 <= listings <= 3, listings


def test_retries_on_errors_are_counted_exactly(mock_services: Any) -> None:
    mock_services.reset()
    env = {**FAST, "UCGW_BREAKER_FAILURE_THRESHOLD": "1000", "UCGW_RETRY_ATTEMPTS": "3"}
    gw = GatewayProcess(mock_services.gateway_env(**env))
    try:
        fault(mock_services, "ICE", error_rate=0.3)
        a_numbers = mock_services.sample(60)
        answered = failed = 0
        for a in a_numbers:
            _, body = gw.query(NTA, {"a": a, "m": 0})
            if body["data"]["child"] and body["data"]["child"]["nta"]:
                answered += 1
            else:
                failed += 1
                assert body["errors"][0]["extensions"]["code"] == "SOURCE_UNAVAILABLE"
        facts = source_facts(gw)["ICE"]
        mock_total = mock_services.stats("ice")["by_route"].get("POST /v1/subjects/batch", 0)
    finally:
        gw.stop()
        mock_services.reset()
    assert answered + failed == 60
    assert facts["retries"] > 0
    # every attempt reached the mock: the first try of each request plus each retry
    assert mock_total == facts["calls"] == 60 + facts["retries"]
    # with 3 retries at 30% errors nearly every request succeeds; a failure needs 4 errors in a row
    assert answered >= 55
    assert facts["retries"] <= 3 * 60


def test_flapping_source_opens_and_closes_the_breaker(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[7]
    fault(mock_services, "ICE", down=True)
    _, body = gw.query(NTA, {"a": a, "m": 0})  # 1 try + 2 retries = 3 failures: opens
    assert body["errors"][0]["extensions"]["code"] == "SOURCE_UNAVAILABLE"
    assert source_facts(gw)["ICE"]["breakerState"] == "OPEN"
    calls_when_opened = ice_batches(mock_services)
    _, body = gw.query(NTA, {"a": a, "m": 0})
    assert "circuit breaker open" in body["errors"][0]["message"]
    assert ice_batches(mock_services) == calls_when_opened == 3  # failed fast, no backend call
    fault(mock_services, "ICE", down=False)
    time.sleep(1.1)
    assert source_facts(gw)["ICE"]["breakerState"] == "HALF_OPEN"
    _, body = gw.query(NTA, {"a": a, "m": 0})
    assert body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "MISS"
    assert source_facts(gw)["ICE"]["breakerState"] == "CLOSED"
    assert ice_batches(mock_services) == calls_when_opened + 1


def test_a_probe_cut_short_does_not_leave_the_breaker_half_open(mock_services: Any) -> None:
    """The half-open probe taken by a scan that then stops (its other calls refused by the breaker, so the
    probe is cancelled) used to leave the breaker waiting for that probe for ever: every ICE read failed
    fast although ICE was answering. The next call probes instead."""
    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env(**FAST, UCGW_CHANGE_FEED_POLL_SECONDS="0"))
    try:
        a = mock_services.sample(30)[15]
        fault(mock_services, "ICE", down=True)
        gw.query(NTA, {"a": a, "m": 0})  # 3 failures: opens
        assert source_facts(gw)["ICE"]["breakerState"] == "OPEN"
        fault(mock_services, "ICE", down=False)
        time.sleep(1.1)  # past the 1 s reset: half-open
        gw.query("{ ntaBacklog { totals { total } items(first: 20) { totalCount } } }")
        _, body = gw.query(NTA, {"a": a, "m": 0})
        facts = source_facts(gw)["ICE"]
    finally:
        gw.stop()
        mock_services.reset()
    assert "errors" not in body, body
    assert body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "MISS"
    assert facts["breakerState"] == "CLOSED"


def test_stale_if_error_serves_marked_data_and_max_age_refuses_it(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[8]
    _, fresh = gw.query(NTA, {"a": a})
    fresh_prov = fresh["data"]["child"]["nta"]["provenance"][0]
    assert fresh_prov["cacheStatus"] == "MISS"
    time.sleep(1.3)  # past the 1 s TTL
    fault(mock_services, "ICE", down=True)
    _, body = gw.query(NTA, {"a": a})
    nta = body["data"]["child"]["nta"]
    prov = nta["provenance"][0]
    assert nta["status"] == fresh["data"]["child"]["nta"]["status"]
    assert prov["cacheStatus"] == "STALE" and prov["stale"] is True
    assert prov["fetchedAt"] == fresh_prov["fetchedAt"] and prov["ageSeconds"] >= 1.3
    assert "errors" not in body
    warning = body["extensions"]["warnings"][0]
    assert warning["source"] == "ICE" and warning["code"] == "SOURCE_UNAVAILABLE"
    # a caller's maxAgeSeconds is a hard bound: too-old data is refused, the error is returned instead
    _, body = gw.query(NTA, {"a": a, "m": 1})
    assert body["data"]["child"]["nta"] is None
    assert without(body["errors"][0]["extensions"], "requestId") == {"code": "SOURCE_UNAVAILABLE", "source": "ICE"}
    _, body = gw.query(NTA, {"a": a, "m": 120})
    assert body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "STALE"


def test_stale_while_revalidate_serves_at_once_and_refreshes_once(mock_services: Any) -> None:
    """An expired record is answered while its one refresh is still with the source (an order of events, not a
    timing: the mock counts the data requests it is answering), and the refreshed record is a HIT after."""
    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env(**{
        **FAST, "UCGW_STALE_WHILE_REVALIDATE_SECONDS": "30", "UCGW_SOURCE_TIMEOUT_SECONDS": "5",
        "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}))  # no change-feed polls: ICE's only data request is the refresh
    try:
        a = mock_services.sample(30)[9]
        _, first = gw.query(NTA, {"a": a})
        time.sleep(1.2)  # past the 1 s TTL
        fault(mock_services, "ICE", latency_ms=1500)
        before = ice_batches(mock_services)
        _, body = gw.query(NTA, {"a": a})
        prov = body["data"]["child"]["nta"]["provenance"][0]
        assert prov["cacheStatus"] == "STALE" and prov["stale"] is True
        stats = mock_services.stats("ice")
        assert stats["in_flight"] == 1  # answered while the source still holds its refresh
        assert stats["by_route"]["POST /v1/subjects/batch"] == before + 1
        deadline = time.monotonic() + 10
        while mock_services.stats("ice")["in_flight"]:
            assert time.monotonic() < deadline, "the refresh never ended"
            time.sleep(0.02)
        assert ice_batches(mock_services) == before + 1  # one background refresh
        _, body = gw.query(NTA, {"a": a})
        prov = body["data"]["child"]["nta"]["provenance"][0]
        assert prov["cacheStatus"] == "HIT"
        assert prov["fetchedAt"] > first["data"]["child"]["nta"]["provenance"][0]["fetchedAt"]
    finally:
        gw.stop()
        mock_services.reset()


def test_stale_while_revalidate_does_not_outlast_max_stale_while_the_source_fails(mock_services: Any) -> None:
    """With the source down, stale-while-revalidate serves an expired record at once only until the source
    has failed a call; then, as without it, a record is served at most UCGW_MAX_STALE_SECONDS past its TTL,
    with a warning, and after that the section is an error (before: STALE for the whole 30 s window,
    unwarned)."""
    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env(**{**FAST, "UCGW_STALE_WHILE_REVALIDATE_SECONDS": "30",
                                                     "UCGW_CACHE_TTL_SECONDS": "1", "UCGW_MAX_STALE_SECONDS": "2",
                                                     "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}))
    try:
        a = mock_services.sample(30)[14]
        _, first = gw.query(NTA, {"a": a})
        fetched = time.time()
        fault(mock_services, "ICE", down=True)
        time.sleep(1.3)
        _, served = gw.query(NTA, {"a": a})  # the source answered its last call: served at once, refreshed
        time.sleep(0.3)
        _, warned = gw.query(NTA, {"a": a})  # the refresh failed: waits for ICE, then stale-if-error
        time.sleep(max(0.0, fetched + 3.6 - time.time()))
        _, refused = gw.query(NTA, {"a": a})
    finally:
        gw.stop()
        mock_services.reset()
    assert first["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "MISS"
    assert served["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "STALE"
    assert warned["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "STALE"
    assert warned["data"]["child"]["nta"]["provenance"][0]["ageSeconds"] < 3  # within the 1 s TTL + 2 s max stale
    assert [w["source"] for w in warned["extensions"]["warnings"]] == ["ICE"], warned
    assert refused["data"]["child"]["nta"] is None
    assert without(refused["errors"][0]["extensions"], "requestId") == {"code": "SOURCE_UNAVAILABLE",
                                                                        "source": "ICE"}


def test_malformed_backend_answers_are_source_errors(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[10]
    fault(mock_services, "EOIR", malformed_rate=1.0)
    status, body = gw.query(FULL, {"a": a, "m": 0})
    assert status == 200
    assert errors_by_path(body)["child/hearing"]["extensions"] == {"code": "SOURCE_BAD_RESPONSE", "source": "EOIR"}
    assert body["data"]["child"]["nta"] is not None


def test_schema_drifted_record_is_a_source_error(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(30)[11]
    fault(mock_services, "ICE", drift_rate=1.0)
    status, body = gw.query(FULL, {"a": a, "m": 0})
    assert status == 200
    assert errors_by_path(body)["child/nta"]["extensions"] == {"code": "SOURCE_BAD_RESPONSE", "source": "ICE"}
    assert body["data"]["child"]["hearing"] is not None
    # the record it could not read is not kept: once ICE is right again the next request asks it (before,
    # the drifted record was served from the cache, and refused, until its TTL ran out)
    fault(mock_services, "ICE", drift_rate=0.0)
    before = ice_batches(mock_services)
    status, body = gw.query(FULL, {"a": a})
    assert status == 200 and "errors" not in body, body
    assert body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "MISS"
    assert ice_batches(mock_services) == before + 1


def test_graceful_shutdown_finishes_in_flight_requests(mock_services: Any) -> None:
    import threading

    mock_services.reset()
    gw = GatewayProcess(mock_services.gateway_env(**FAST))
    fault(mock_services, "ICE", latency_ms=250)  # under the 0.4 s source timeout
    result: dict[str, Any] = {}
    a = mock_services.sample(30)[12]
    worker = threading.Thread(target=lambda: result.update(answer=gw.query(NTA, {"a": a})))
    worker.start()
    time.sleep(0.15)
    output = gw.stop()
    worker.join(5)
    mock_services.reset()
    status, body = result["answer"]
    assert status == 200 and body["data"]["child"]["nta"]["status"], (body, output)
    assert gw.proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert "ERROR" not in output and "Traceback" not in output


def test_a_4xx_answer_is_not_retried_and_never_opens_the_breaker(mock_services: Any) -> None:
    """A backend refusing the request (HTTP 400) is asked once: retrying cannot help. It is up, so its
    refusals (which a caller's input can cause) do not open its breaker for everybody else."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            body = b'{"error": {"code": "BAD_REQUEST", "message": "refused"}}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = mock_services.gateway_env(**FAST, UCGW_ICE_URL=f"http://127.0.0.1:{server.server_port}",
                                    UCGW_CHANGE_FEED_POLL_SECONDS="0")
    gw = GatewayProcess(env)
    try:
        answers = [gw.query(NTA, {"a": a}) for a in mock_services.sample(30)[10:15]]  # 5 > the threshold of 3
        facts = source_facts(gw)["ICE"]
    finally:
        out = gw.stop()
        server.shutdown()
    for status, body in answers:
        assert status == 200
        assert without(body["errors"][0]["extensions"], "requestId") == {"code": "SOURCE_BAD_RESPONSE",
                                                                         "source": "ICE"}
        assert body["errors"][0]["message"] == "ICE refused the request: HTTP 400 BAD_REQUEST"
    assert hits == ["/v1/subjects/batch"] * 5  # every one asked: the breaker stayed closed
    assert (facts["breakerState"], facts["usable"], facts["retries"], facts["calls"]) == ("CLOSED", True, 0, 5)
    assert out.count("source ICE refused a request: HTTP 400 BAD_REQUEST") == 5 and "opened" not in out


@pytest.mark.parametrize("keepalive", ["0.25", "0"])
def test_idle_backend_connections_are_given_up_before_the_backend_closes_them(keepalive: str) -> None:
    """The mocks close a connection idle 0.3 s (as uvicorn does at 5 s). Back-to-back calls share one pooled
    connection; a call after an idle pause around the backend's close goes out on a new one, so none is
    lost, even with no retry and a breaker that opens on the first failure (with aiohttp's own default of
    15 s, some of these calls go out on a connection the mocks are closing, and fail). With keep-alive 0
    every call has a connection of its own."""
    with MockProcess(seed=7, children=300, extra_args=["--keep-alive-seconds", "0.3"]) as mocks:
        gw = GatewayProcess(mocks.gateway_env(UCGW_SOURCE_KEEPALIVE_SECONDS=keepalive, UCGW_RETRY_ATTEMPTS="0",
                                              UCGW_BREAKER_FAILURE_THRESHOLD="1", UCGW_CHANGE_FEED_POLL_SECONDS="0"))
        try:
            a = mocks.sample(30)[13]
            for _ in range(3):
                status, body = gw.query(NTA, {"a": a, "m": 0})
                assert status == 200 and "errors" not in body
            back_to_back = mocks.stats("ice")
            idles = [0.27 + 0.0015 * k for k in range(21)]  # around the moment the mocks close the connection
            answers = []
            for idle in idles:
                time.sleep(idle)
                answers.append(gw.query(NTA, {"a": a, "m": 0}))
            after = mocks.stats("ice")
        finally:
            gw.stop()
    assert back_to_back["by_route"] == {"POST /v1/subjects/batch": 3}
    assert back_to_back["connections"] == (1 if keepalive != "0" else 3)
    assert [(status, body.get("errors")) for status, body in answers] == [(200, None)] * len(idles)
    assert after["by_route"] == {"POST /v1/subjects/batch": 3 + len(idles)}
    assert after["connections"] == back_to_back["connections"] + len(idles)
