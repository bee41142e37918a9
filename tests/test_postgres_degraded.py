"""PostgreSQL unreachable (issue 24): reads that must be audited are refused with HTTP 503, Retry-After and
AUDIT_UNAVAILABLE (fail closed: every answer with data has its audit row), safety changes with
STORE_UNAVAILABLE, the public /readyz says "degraded" with 200, and all of it recovers by itself when the
server returns. The server here is a throwaway of this test's own (testing/servers.py), stopped mid-load."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from testing.databases import database_env, runtime_role
from testing.gateway import GatewayProcess, http
from testing.mockproc import MockProcess
from testing.servers import PostgresServer, fresh_database

CHILD = """query($a: ID!) { child(aNumber: $a) { aNumber identity { firstName } } }"""
REPORT = """mutation($i: ReportSafetyConcernInput!) { reportSafetyConcern(input: $i) { id status } }"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(0.2)


def read(gw: GatewayProcess, a: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = http("POST", f"{gw.url}/graphql", {"query": CHILD, "variables": {"a": a}},
                                 headers=gw.headers(), timeout=30)
    return status, headers, json.loads(body)


def public_readyz(gw: GatewayProcess) -> tuple[int, dict[str, Any]]:
    status, _, body = http("GET", f"{gw.url}/readyz")
    return status, json.loads(body)


def test_postgres_stopped_mid_load_fails_closed_and_recovers(mock_services: MockProcess) -> None:
    with PostgresServer() as server:
        owner = fresh_database(server.url)
        gw = GatewayProcess({**mock_services.gateway_env(), **database_env(owner, runtime_role(owner)),
                             "UCGW_CHANGE_FEED_POLL_SECONDS": "0", "UCGW_DATABASE_TIMEOUT_SECONDS": "1"})
        a_numbers = mock_services.sample(20)
        answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        stop = threading.Event()

        def load() -> None:  # reads go on all through the outage
            i = 0
            while not stop.is_set():
                answers.append(read(gw, a_numbers[i % len(a_numbers)]))
                i += 1

        try:
            assert read(gw, a_numbers[0])[0] == 200
            assert public_readyz(gw) == (200, {"ready": True, "status": "ok"})
            workers = [threading.Thread(target=load) for _ in range(4)]
            for w in workers:
                w.start()
            wait_for("answers before the outage", lambda: len(answers) >= 20)
            server.stop()  # PostgreSQL goes away mid-load

            status, headers, body = wait_for("a refused read", lambda: (r := read(gw, a_numbers[1]))[0] == 503 and r)
            assert headers["retry-after"] == "2"
            assert body["data"] is None
            assert [e["extensions"]["code"] for e in body["errors"]] == ["AUDIT_UNAVAILABLE"]
            assert public_readyz(gw) == (200, {"ready": True, "status": "degraded"})
            status, headers, body = http_report(gw, a_numbers[2])
            assert status == 503 and headers["retry-after"] == "2"
            assert [e["extensions"]["code"] for e in body["errors"]] == ["STORE_UNAVAILABLE"]
            _, _, admin = http("GET", f"{gw.admin_url}/readyz")
            assert json.loads(admin)["database"]["reachable"] is False
            outage = len(answers)
            wait_for("refusals under load", lambda: len(answers) >= outage + 20)

            server.start()  # same port, same data
            wait_for("reads answered again", lambda: read(gw, a_numbers[3])[0] == 200)
            wait_for("/readyz ok again", lambda: public_readyz(gw) == (200, {"ready": True, "status": "ok"}))
            assert http_report(gw, a_numbers[2])[0] == 200
            stop.set()
            for w in workers:
                w.join()
        finally:
            stop.set()
            gw.stop()
        statuses = {s for s, _, _ in answers}
        assert statuses == {200, 503}, statuses  # nothing else: no 500, no unaudited 200
        with psycopg.connect(owner, autocommit=True) as conn:
            audited = {r[0] for r in conn.execute("SELECT request_id FROM audit_event")}
        answered = [(h["x-request-id"], b) for s, h, b in answers if s == 200]
        refused = [b for s, _, b in answers if s == 503]
        assert all(b["data"]["child"] is not None for _, b in answered)
        assert all(request_id in audited for request_id, _ in answered)  # every answer with data was audited
        assert refused and all(b["data"] is None and b["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
                               for b in refused)


def http_report(gw: GatewayProcess, a: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = http("POST", f"{gw.url}/graphql", {"query": REPORT, "variables": {"i": {
        "aNumber": a, "severity": "HIGH", "category": "NOT_ENROLLED_IN_SCHOOL", "description": "Kept home"}}},
        headers=gw.headers(), timeout=30)
    return status, headers, json.loads(body)
