"""The audit trail: one event per child read, the right sections, durable across kill -9 (issue 5)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_settings
from resolvers.context import RequestContext
from resolvers.schema import build_schema
from rules.roles import Principal
from stores.audit_trail import AuditEvent, AuditFilter, SQLiteAuditStore
from sync.services import Services
from testing.access import FULL, audit_cli, gateway_env, raw, records
from testing.gateway import ROOT, GatewayProcess, http, mint

EVENTS = """query($s: String, $a: ID, $since: DateTime, $until: DateTime, $first: Int!, $after: ID) {
  auditEvents(subject: $s, aNumber: $a, since: $since, until: $until, first: $first, after: $after) {
    id time requestId subject role client aNumber outcome sectionsReturned sectionsDenied sectionsFailed purpose
  } }"""
PARTNER_DENIED = ["addressesOnFile", "followUpCall", "hearing.addressOfRecord", "identity.countryOfBirth",
                  "identity.dateOfBirth", "identity.firstName", "identity.lastName", "identity.orrCaseId",
                  "location.address", "nta.addressOnFile", "sponsor.address", "sponsor.category", "sponsor.name",
                  "sponsor.phone", "sponsor.relationship"]


@pytest.fixture(scope="module")
def gateway(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("audit-data")
    gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data)))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def known(mock_services: Any) -> list[str]:
    """Children every source knows; the first one released to a sponsor."""
    full, released = [], []
    for a in mock_services.sample(120):
        rec = records(mock_services, a)
        if all(rec.values()):
            (released if rec["orr"].get("release") else full).append(a)
    assert released and len(full) >= 2
    return [released[0], *full[:3]]


def who() -> str:
    """A subject no other test uses, so its events are exactly this test's."""
    return f"tester-{uuid.uuid4().hex[:8]}"


def events(gw: GatewayProcess, **filters: Any) -> list[dict[str, Any]]:
    """Audit events through GraphQL, as an auditor."""
    variables = {"first": 1000, **filters}
    status, body = gw.query(EVENTS, variables, token=mint("auditor"))
    assert status == 200 and "errors" not in body, body
    return list(body["data"]["auditEvents"])


def test_one_event_per_child_read_with_the_sections_returned(gateway: GatewayProcess, known: list[str]) -> None:
    a, subject = known[1], who()
    before = datetime.now(UTC)
    status, body = gateway.query("query($a: ID!) { child(aNumber: $a) { aNumber nta { status } hearing { caseStatus } "
                                 "} }", {"a": a}, token=mint(subject=subject, client="case-app"),
                                 headers={"X-Purpose": "hearing reminder, case 17"})
    assert status == 200 and "errors" not in body
    [event] = events(gateway, s=subject)
    assert event["aNumber"] == a and event["role"] == "caseworker" and event["subject"] == subject
    assert event["client"] == "case-app" and event["outcome"] == "OK"
    assert event["sectionsReturned"] == ["hearing", "nta"] and event["sectionsDenied"] == []
    assert event["purpose"] == "hearing reminder, case 17" and event["requestId"]
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(event["time"]) <= datetime.now(UTC)


def test_several_children_duplicates_and_aliases_make_one_event_each(gateway: GatewayProcess,
                                                                     known: list[str]) -> None:
    x, y, subject = known[1], known[2], who()
    unknown = "A999999997"
    typed_x = f"{x[1:4]}-{x[4:7]}-{x[7:]}"
    q = """query($as: [ID!]!, $x: ID!, $y: ID!) {
      many: children(aNumbers: $as) { aNumber sponsor { category } }
      again: child(aNumber: $y) { hearing { caseStatus } }
      twice: child(aNumber: $x) { nta { status } }
    }"""
    status, body = gateway.query(q, {"as": [x, y, typed_x, unknown, x], "x": x, "y": y}, token=mint(subject=subject))
    assert status == 200 and "errors" not in body
    got = {e["aNumber"]: e for e in events(gateway, s=subject)}
    assert sorted(got) == sorted([x, y, unknown])  # exactly one event per child
    assert len({e["requestId"] for e in got.values()}) == 1
    assert got[x]["sectionsReturned"] == ["nta", "sponsor"] and got[x]["outcome"] == "OK"
    assert got[y]["sectionsReturned"] == ["hearing", "sponsor"] and got[y]["outcome"] == "OK"
    assert got[unknown]["outcome"] == "NOT_FOUND" and got[unknown]["sectionsReturned"] == []


def test_partner_event_lists_denied_fields(gateway: GatewayProcess, known: list[str], mock_services: Any) -> None:
    a, subject = known[0], who()
    assert raw(mock_services, "orr", a)["release"]  # a released child: every section has a value
    status, body = gateway.query(FULL, {"a": a}, token=mint("partner", subject=subject))
    assert status == 200
    [event] = events(gateway, s=subject)
    assert event["outcome"] == "PARTIAL" and event["role"] == "partner"
    assert event["sectionsReturned"] == ["hearing", "identity", "location", "nta", "sponsor"]
    assert event["sectionsDenied"] == PARTNER_DENIED


def test_refused_reads_are_recorded_too(gateway: GatewayProcess, known: list[str], mock_services: Any) -> None:
    subject = who()
    gateway.query("query($a: ID!) { child(aNumber: $a) { nta { status } } }", {"a": known[1]},
                  token=mint("auditor", subject=subject))
    gateway.query("query($as: [ID!]!) { children(aNumbers: $as) { aNumber } }", {"as": [known[2], "bogus"]},
                  token=mint("auditor", subject=subject))
    got = events(gateway, s=subject)
    assert [(e["aNumber"], e["outcome"]) for e in got] == [(known[1], "FORBIDDEN"), (known[2], "FORBIDDEN")]
    # field-office scope
    offices = {a: raw(mock_services, "ice", a)["field_office"] for a in known}
    office = offices[known[1]]
    elsewhere = next((a for a in known if offices[a] != office), None)
    subject = who()
    token = mint("partner", subject=subject, field_offices=[office])
    gateway.query("query($a: ID!) { child(aNumber: $a) { nta { status } } }", {"a": known[1]}, token=token)
    if elsewhere:
        gateway.query("query($a: ID!) { child(aNumber: $a) { nta { status } } }", {"a": elsewhere}, token=token)
    got = {e["aNumber"]: e["outcome"] for e in events(gateway, s=subject)}
    assert got[known[1]] == "OK"
    if elsewhere:
        assert got[elsewhere] == "FORBIDDEN"


def test_the_purpose_is_kept_as_the_caller_wrote_it(gateway: GatewayProcess, known: list[str]) -> None:
    """X-Purpose sent as UTF-8 is kept as written ('revisión' was stored as 'revisiÃ³n'); tabs and line
    become spaces, and at most 200 characters are kept."""
    import http.client

    subject = who()
    body = json.dumps({"query": "query($a: ID!) { child(aNumber: $a) { aNumber } }", "variables": {"a": known[0]}})
    for purpose in ("revisión – 子供 🚸".encode(), b"tab\there", b"caf\xe9 (Latin-1)", b"x" * 300):
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        conn.putrequest("POST", "/graphql")
        for name, value in (("Content-Type", b"application/json"), ("Content-Length", str(len(body)).encode()),
                            ("Authorization", f"Bearer {mint(subject=subject)}".encode()), ("X-Purpose", purpose)):
            conn.putheader(name, value)
        conn.endheaders(body.encode())
        resp = conn.getresponse()
        assert resp.status == 200 and "errors" not in json.loads(resp.read())
        conn.close()
    assert [e["purpose"] for e in events(gateway, s=subject)] == [
        "revisión – 子供 🚸", "tab here", "café (Latin-1)", "x" * 200]


def test_malformed_a_numbers_are_not_reads(gateway: GatewayProcess) -> None:
    subject = who()
    for bad in ("12-34", "A01234567\u0664"):  # the second ends in an Arabic-Indic 4 (once audited as given)
        _, body = gateway.query("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": bad},
                                token=mint(subject=subject))
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert events(gateway, s=subject) == []


def test_an_after_that_is_no_event_id_is_bad_input(gateway: GatewayProcess) -> None:
    for after in ("9" * 23, str(2**63), "-5", "\u0664", "x"):  # the first two were an OverflowError
        status, body = gateway.query(EVENTS, {"first": 2, "after": after}, token=mint("auditor"))
        assert (status, body["data"], [(e["message"], e["extensions"]["code"]) for e in body["errors"]]) == (
            200, {"auditEvents": None},
            [("after must be an event id (the id of an event this query returned)", "BAD_USER_INPUT")],
        ), after


def test_a_failed_source_is_an_error_outcome(gateway: GatewayProcess, known: list[str], mock_services: Any) -> None:
    subject = who()
    mock_services.admin("ice", "PUT", "/_admin/faults", {"down": True})
    try:
        gateway.query("query($a: ID!) { child(aNumber: $a, maxAgeSeconds: 0) { nta { status } hearing { caseStatus }"
                      " } }", {"a": known[3]}, token=mint(subject=subject))
    finally:
        mock_services.reset()
    [event] = events(gateway, s=subject)
    assert event["outcome"] == "ERROR" and event["sectionsFailed"] == ["nta"]
    assert event["sectionsReturned"] == ["hearing"]


def test_graphql_filters_and_paging(gateway: GatewayProcess, known: list[str]) -> None:
    subject = who()
    start = datetime.now(UTC).isoformat()
    for a in known:
        gateway.query("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": a}, token=mint(subject=subject))
    end = datetime.now(UTC).isoformat()
    mine = events(gateway, s=subject)
    assert [e["aNumber"] for e in mine] == known
    assert [e["aNumber"] for e in events(gateway, s=subject, a=known[2])] == [known[2]]
    assert len(events(gateway, s=subject, since=start, until=end)) == len(known)
    assert events(gateway, s=subject, since=end) == [] and events(gateway, s=subject, until=start) == []
    first_two = events(gateway, s=subject, first=2)
    rest = events(gateway, s=subject, after=first_two[-1]["id"])
    assert [e["aNumber"] for e in first_two + rest] == known
    # typed forms of an A-number find the canonical one
    typed = known[2][1:]
    assert [e["aNumber"] for e in events(gateway, s=subject, a=typed)] == [known[2]]


def test_events_survive_kill_9_and_the_cli_reads_them(mock_services: Any, known: list[str], tmp_path: Path) -> None:
    subject, other = who(), who()
    gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path)))
    t0 = datetime.now(UTC)
    try:
        for a in known:
            status, _ = gw.query("query($a: ID!) { child(aNumber: $a) { nta { status } } }", {"a": a},
                                 token=mint(subject=subject))
            assert status == 200
        status, _ = gw.query("query($a: ID!) { child(aNumber: $a) { hearing { caseStatus } } }", {"a": known[0]},
                             token=mint("partner", subject=other))
        assert status == 200
    finally:
        gw.stop(signal.SIGKILL)  # no shutdown, no checkpoint: only what was committed remains
    assert gw.proc.returncode == -signal.SIGKILL
    t1 = datetime.now(UTC)
    mine = audit_cli(str(tmp_path), "--subject", subject)
    assert [e["a_number"] for e in mine] == known
    assert all(e["sections_returned"] == ["nta"] and e["outcome"] == "ok" for e in mine)
    assert len({e["request_id"] for e in mine}) == len(known)
    both = audit_cli(str(tmp_path), "--a-number", f"{known[0][1:4]} {known[0][4:]}")
    assert sorted(e["subject"] for e in both) == sorted([subject, other])
    assert audit_cli(str(tmp_path), "--a-number", known[0], "--subject", other)[0]["role"] == "partner"
    window = ("--since", (t0 - timedelta(seconds=1)).isoformat(), "--until", (t1 + timedelta(seconds=1)).isoformat())
    assert len(audit_cli(str(tmp_path), *window)) == len(known) + 1
    assert audit_cli(str(tmp_path), "--since", (t1 + timedelta(seconds=1)).isoformat()) == []
    assert audit_cli(str(tmp_path), "--until", t0.date().isoformat()) == []
    # a reader that stops early (`ucgw audit | head -c 10`) ends it quietly (it was a BrokenPipeError
    # traceback); 3,000 events are more than a pipe holds, so the reader is gone before they are written
    many = who()
    store = SQLiteAuditStore(tmp_path / "audit.sqlite3")
    store.append_sync([AuditEvent(time="2026-01-01T00:00:00.000000Z", request_id=f"r{i}", subject=many,
                                  role="caseworker", client="c", a_number=known[0], outcome="ok")
                       for i in range(3000)])
    store.close()
    cli = [sys.executable, "-m", "gateway.cli", "audit", "--subject", many]
    env = {**os.environ, "UCGW_DATA_DIR": str(tmp_path)}
    piped = subprocess.run(f"{shlex.join(cli)} | head -c 10", shell=True, cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60, executable="/bin/bash")
    assert (len(piped.stdout), piped.stderr) == (10, "")
    # the store refuses to change history
    import sqlite3

    db = sqlite3.connect(tmp_path / "audit.sqlite3")
    with pytest.raises(sqlite3.DatabaseError):
        db.execute("DELETE FROM audit_event")
    with pytest.raises(sqlite3.DatabaseError):
        db.execute("UPDATE audit_event SET subject = 'someone else'")
    db.close()


class FailingStore:
    """An audit store whose disk is gone; it counts the appends tried."""

    def __init__(self) -> None:
        self.appends = 0

    async def append(self, events: list[AuditEvent]) -> None:
        self.appends += 1
        raise OSError("disk full")

    async def query(self, where: AuditFilter) -> list[AuditEvent]:
        return []

    def facts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


def test_no_data_leaves_when_the_read_cannot_be_recorded(mock_services: Any, known: list[str]) -> None:
    settings = load_settings(environ=gateway_env(mock_services))
    schema = build_schema(settings)

    store = FailingStore()

    async def run() -> Any:
        services = Services(settings)
        await services.start()
        try:
            ctx = RequestContext(services=services, audit_store=store,
                                 principal=Principal(subject="t", role="caseworker", client="t", method="jwt"))
            return await asyncio.wait_for(  # the refusal comes at once; 30 s only bounds a hang
                schema.execute("query($a: ID!) { child(aNumber: $a) { aNumber nta { status } } }",
                               variable_values={"a": known[1]}, context_value=ctx), 30)
        finally:
            await services.close()

    result = asyncio.run(run())
    assert result.data is None
    assert [e.extensions["code"] for e in result.errors] == ["AUDIT_UNAVAILABLE"]
    assert store.appends == 1  # one failed append refused the read: no retry loop


def test_a_lone_client_on_one_connection_commits_without_the_writer_thread(gateway: GatewayProcess,
                                                                            known: list[str]) -> None:
    """Requests one after another over one keep-alive connection: the first after a pause (quiet) and
    every one once the connection has been the only sender for 100 ms commit on the event loop
    (gateway/guard.py InFlight.may_block); each request is still exactly one committed event."""
    def trail() -> dict[str, int]:
        status, _, body = http("GET", f"{gateway.admin_url}/readyz")
        return json.loads(body)["auditTrail"]

    conn = HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    body = json.dumps({"query": FULL, "variables": {"a": known[1]}})
    headers = {**gateway.headers(), "Content-Type": "application/json"}

    def ask() -> None:
        conn.request("POST", "/graphql", body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 200 and b'"errors"' not in response.read()

    try:
        ask()  # the connection is open; what follows counts from here
        time.sleep(0.05)
        before = trail()
        ask()
        first = trail()
        assert {k: first[k] - before[k] for k in before} == {"commits": 1, "rowsWritten": 1, "inlineCommits": 1,
                                                          "turnCommits": 0, "slowCommits": 0}
        began = time.monotonic()
        while time.monotonic() - began < 0.15:  # the only sender for more than 100 ms
            ask()
        steady = trail()
        ask()
        last = trail()
        assert {k: last[k] - steady[k] for k in steady} == {"commits": 1, "rowsWritten": 1, "inlineCommits": 1,
                                                          "turnCommits": 0, "slowCommits": 0}
    finally:
        conn.close()


def test_concurrent_clients_share_commits_made_on_the_event_loop(gateway: GatewayProcess, known: list[str]) -> None:
    """Eight clients at once: every read is one committed event, and every commit was made on the event loop
    (a lone request's at once, or a loop turn's appends together): none waited for the writer thread,
    which only takes appends while the connection is busy elsewhere."""
    def trail() -> dict[str, int]:
        return json.loads(http("GET", f"{gateway.admin_url}/readyz")[2])["auditTrail"]

    subject = f"turns-{uuid.uuid4().hex[:8]}"
    headers = {**gateway.headers(mint("caseworker", subject=subject)), "Content-Type": "application/json"}

    def client(i: int) -> list[str]:
        conn = HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        asked = []
        try:
            for j in range(6):
                a = known[(i + j) % len(known)]
                conn.request("POST", "/graphql", body=json.dumps({"query": FULL, "variables": {"a": a}}),
                             headers=headers)
                response = conn.getresponse()
                assert response.status == 200 and b'"errors"' not in response.read()
                asked.append(a)
        finally:
            conn.close()
        return asked

    before = trail()
    with ThreadPoolExecutor(8) as pool:
        asked = [a for per_client in pool.map(client, range(8)) for a in per_client]
    after = trail()
    made = {k: after[k] - before[k] for k in before}
    assert made["rowsWritten"] == 48 and made["commits"] <= 48
    if made["slowCommits"] == 0:  # a commit of 25 ms or more (a slow disk) sends the next ones to the writer
        assert made["commits"] == made["inlineCommits"] + made["turnCommits"]
    got = events(gateway, s=subject)
    assert sorted(e["aNumber"] for e in got) == sorted(asked) and {e["outcome"] for e in got} == {"OK"}
