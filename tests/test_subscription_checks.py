"""Subscriptions over real graphql-transport-ws and HTTP against the mocks: one audit event per child per
delivered event of each operation, arguments checked as the queries check them, text frames, and a
subscription sent over HTTP refused as a client error.

The mock world is our own (records are staged here); helpers come from tests/test_safety_and_push.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import websockets

from testing.gateway import GatewayProcess, http, mint, without
from testing.mockproc import SOURCES, MockProcess
from tests.test_safety_and_push import PUSH, WS, Subscriber, known_child, ok, record, settle

SEED, CHILDREN = 29, 300
HEARING_OF_CHILD = """subscription($a: ID!) { childStatusChanged(aNumber: $a) {
  aNumber source child { hearing { caseStatus } } } }"""
HEARING_OF_OFFICE = """subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) {
  aNumber source child { hearing { caseStatus } } } }"""
CASELOAD = "subscription($f: CaseloadFilter!) { caseloadChanges(filter: $f) { aNumber } }"
OFFICE = "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) { aNumber } }"
ALERTS = "subscription($o: String) { courtAlerts(fieldOffice: $o) { aNumber } }"
AUDIT = """query($s: String) { auditEvents(subject: $s, first: 100) { subject role aNumber outcome
  sectionsReturned sectionsDenied } }"""
CASELOAD_QUERY = "query($f: CaseloadFilter) { caseload(filter: $f, first: 5) { totalCount edges { cursor } } }"
HTTP_SUBSCRIPTION = 'subscription{childStatusChanged(aNumber:"A040446731"){aNumber}}'
OVER_HTTP = ("subscriptions need a websocket (graphql-transport-ws) on /graphql or server-sent events (graphql-sse) "
             "on /graphql/stream")
BLANK_OFFICE = 'fieldOffice must name a field office (e.g. "San Antonio") or be omitted, not be blank'
BLANK_FILTER_OFFICE = f"filter.{BLANK_OFFICE}"


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    """A mock world of our own: records are staged here."""
    with MockProcess(seed=SEED, children=CHILDREN) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway following the mocks' change feeds."""
    gateway = GatewayProcess({**world.gateway_env(), **PUSH,
                              "UCGW_DATA_DIR": str(tmp_path_factory.mktemp("subscription-checks"))})
    yield gateway
    gateway.stop()


def patch_eoir(world: MockProcess, a: str) -> dict[str, Any]:
    """Stage one change of the child's EOIR record (a field no alert rests on)."""
    current = record(world, "eoir", a)
    assert current is not None
    filed = "2024-02-03" if current["change_of_address_filed_on"] != "2024-02-03" else "2024-02-04"
    return world.admin_ok("eoir", "PATCH", f"/_admin/records/{a}", {"change_of_address_filed_on": filed})


def child_with_court_case(world: MockProcess) -> str:
    """A child known to ICE (so it has a field office) and to EOIR."""
    skip: set[str] = set()
    while True:
        a = known_child(world, skip=skip)
        if record(world, "eoir", a) is not None:
            return a
        skip.add(a)


# ---------------------------------------------------------------------------------------------- audit


def test_each_subscription_on_one_socket_writes_its_own_audit_event(gw: GatewayProcess, world: MockProcess) -> None:
    """Two childStatusChanged and one fieldOfficeChanges on one socket, one EOIR change: three `next`
    messages with child data, three audit events, each committed before its message was sent."""
    a = child_with_court_case(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    subject = "lsp-audit-socket"
    auditor = mint("auditor")

    async def run() -> list[dict[str, Any]]:
        async with Subscriber(gw, mint("partner", subject=subject)) as sub:
            await sub.subscribe("one", HEARING_OF_CHILD, {"a": a})
            await sub.subscribe("two", HEARING_OF_CHILD, {"a": a})
            await sub.subscribe("office", HEARING_OF_OFFICE, {"o": office})
            await settle()
            assert ok(gw, AUDIT, {"s": subject}, auditor)["auditEvents"] == []
            await asyncio.to_thread(patch_eoir, world, a)
            got = [await sub.until("one", lambda p: p["data"]["childStatusChanged"]["source"] == "EOIR"),
                   await sub.until("two", lambda p: p["data"]["childStatusChanged"]["source"] == "EOIR"),
                   await sub.until("office", lambda p: p["data"]["fieldOfficeChanges"]["aNumber"] == a)]
            # read at once: each event's audit record was committed before the event was sent
            events = await asyncio.to_thread(ok, gw, AUDIT, {"s": subject}, auditor)
            for payload, field in zip(got, ("childStatusChanged", "childStatusChanged", "fieldOfficeChanges"),
                                      strict=True):
                assert payload["data"][field]["child"]["hearing"]["caseStatus"], payload
                assert "errors" not in payload, payload
            return events["auditEvents"]  # type: ignore[no-any-return]

    events = asyncio.run(run())
    assert len(events) == 3, events
    assert [(e["aNumber"], e["subject"], e["role"], e["outcome"], e["sectionsReturned"], e["sectionsDenied"])
            for e in events] == [(a, subject, "partner", "OK", ["hearing"], [])] * 3


def test_an_event_naming_the_child_is_audited_without_a_child_selection(gw: GatewayProcess,
                                                                        world: MockProcess) -> None:
    """An event that sends only the A-number and what changed still tells the caller about that child:
    one audit event, with no section returned (it wrote none); one that names no child writes none."""
    a = child_with_court_case(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    subject = "lsp-audit-bare"
    auditor = mint("auditor")
    bare = "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber changedFields } }"
    anonymous = "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) { source sequence } }"

    async def run() -> list[dict[str, Any]]:
        async with Subscriber(gw, mint("partner", subject=subject)) as sub:
            await sub.subscribe("bare", bare, {"a": a})
            await sub.subscribe("anonymous", anonymous, {"o": office})
            await settle()
            await asyncio.to_thread(patch_eoir, world, a)
            got = await sub.until("bare", lambda p: True)
            await sub.until("anonymous", lambda p: True)
            assert got["data"]["childStatusChanged"] == {"aNumber": a, "changedFields": ["change_of_address_filed_on"]}
            return (await asyncio.to_thread(ok, gw, AUDIT, {"s": subject}, auditor))["auditEvents"]  # type: ignore

    events = asyncio.run(run())
    assert [(e["aNumber"], e["outcome"], e["sectionsReturned"]) for e in events] == [(a, "OK", [])]


# ---------------------------------------------------------------------------------------------- arguments


def test_subscription_arguments_are_checked_as_the_queries_check_them(gw: GatewayProcess) -> None:
    """Refused with a graphql-transport-ws `error` (BAD_USER_INPUT), the socket left open."""
    for bad, message in (({"hearingWithinDays": -5}, "hearingWithinDays must be between 0 and 3650 (got -5)"),
                         ({"fieldOffice": ""}, BLANK_FILTER_OFFICE)):
        status, body = gw.query(CASELOAD_QUERY, {"f": bad})  # what the query says, the subscription says
        assert [(e["message"], e["extensions"]["code"]) for e in body["errors"]] == [(message, "BAD_USER_INPUT")]
    # queries accept an office nobody knows (an empty caseload), so subscriptions do too
    assert ok(gw, CASELOAD_QUERY, {"f": {"fieldOffice": "Nowhere"}})["caseload"] == {"totalCount": 0, "edges": []}

    refused = {
        "days": (CASELOAD, {"f": {"hearingWithinDays": -5}}, "hearingWithinDays must be between 0 and 3650 (got -5)"),
        "days-high": (CASELOAD, {"f": {"hearingWithinDays": 3651}},
                      "hearingWithinDays must be between 0 and 3650 (got 3651)"),
        "caseload-empty": (CASELOAD, {"f": {"fieldOffice": ""}}, BLANK_FILTER_OFFICE),
        "caseload-blank": (CASELOAD, {"f": {"fieldOffice": "   "}}, BLANK_FILTER_OFFICE),
        "office-empty": (OFFICE, {"o": ""}, BLANK_OFFICE),
        "office-blank": (OFFICE, {"o": " \t"}, BLANK_OFFICE),
        "alerts-empty": (ALERTS, {"o": ""}, BLANK_OFFICE),
    }

    async def run() -> None:
        async with Subscriber(gw, mint("caseworker")) as sub:
            for op_id, (query, variables, _) in refused.items():
                await sub.subscribe(op_id, query, variables)
            for op_id, (_, _, message) in refused.items():
                msg = await sub.message(op_id)
                assert msg["type"] == "error", msg
                assert [(e["message"], e["extensions"]["code"]) for e in msg["payload"]] == [
                    (message, "BAD_USER_INPUT")], msg
            # accepted, as the query accepts it: no error, the operation runs (and hears nothing)
            await sub.subscribe("nowhere", OFFICE, {"o": "Nowhere"})
            await sub.subscribe("caseload-nowhere", CASELOAD, {"f": {"fieldOffice": "Nowhere", "hearingWithinDays": 0}})
            for op_id in ("nowhere", "caseload-nowhere"):
                with pytest.raises(asyncio.TimeoutError):
                    await sub.message(op_id, timeout=1.0)

    asyncio.run(run())


# ---------------------------------------------------------------------------------------------- frames


def test_websocket_messages_are_text_frames(gw: GatewayProcess, world: MockProcess) -> None:
    """connection_ack, next, error and pong arrive as text frames (browsers' graphql-ws expects them)."""
    a = child_with_court_case(world)

    async def frame(ws: Any) -> tuple[type, dict[str, Any]]:
        raw = await asyncio.wait_for(ws.recv(), 10)
        return type(raw), json.loads(raw)

    async def run() -> None:
        async with websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init",
                                      "payload": {"Authorization": f"Bearer {mint('caseworker')}"}}))
            kind, msg = await frame(ws)
            assert (kind, msg["type"]) == (str, "connection_ack")
            await ws.send(json.dumps({"type": "ping"}))
            assert await frame(ws) == (str, {"type": "pong"})
            await ws.send(json.dumps({"id": "bad", "type": "subscribe",
                                      "payload": {"query": OFFICE, "variables": {"o": ""}}}))
            kind, msg = await frame(ws)
            assert (kind, msg["id"], msg["type"]) == (str, "bad", "error")
            await ws.send(json.dumps({"id": "c", "type": "subscribe",
                                      "payload": {"query": HEARING_OF_CHILD, "variables": {"a": a}}}))
            await settle()
            await asyncio.to_thread(patch_eoir, world, a)
            kind, msg = await frame(ws)
            assert (kind, msg["id"], msg["type"]) == (str, "c", "next")
            assert msg["payload"]["data"]["childStatusChanged"]["aNumber"] == a

    asyncio.run(run())
    # HTTP answers are still orjson's compact bytes
    status, _, body = http("POST", f"{gw.url}/graphql", {"query": "{ sources { source } }"}, headers=gw.headers())
    assert status == 200 and body.startswith(b'{"data":{"sources":[{"source":"')


# ---------------------------------------------------------------------------------------------- over HTTP


def test_subscription_over_http_is_a_client_error(tmp_path: Any) -> None:
    """400 BAD_REQUEST with the gateway's JSON body, nothing run, no backend call, no ERROR in the log.

    Mocks of its own, and no change-feed polling, so every backend call counted is one of these requests."""
    expected = {"errors": [{"message": OVER_HTTP, "extensions": {"code": "BAD_REQUEST"}}]}
    with MockProcess(seed=SEED, children=50) as world:
        gateway = GatewayProcess({**world.gateway_env(), "UCGW_CHANGE_FEED_POLL_SECONDS": "0",
                                  "UCGW_DATA_DIR": str(tmp_path)})
        try:
            world.reset()
            _refused_over_http(gateway, world, expected)
        finally:
            log = gateway.stop()
    assert "Traceback" not in log and " ERROR " not in log, log


def _refused_over_http(gateway: GatewayProcess, world: MockProcess, expected: dict[str, Any]) -> None:
    """GET, POST, a field-office-scoped caller and a chosen subscription in a document with a query."""
    scoped = gateway.headers(mint("partner", field_offices=["Houston"]))  # scope checks would call ICE
    answers = [
        http("GET", f"{gateway.url}/graphql?{urlencode({'query': HTTP_SUBSCRIPTION})}", headers=gateway.headers()),
        http("POST", f"{gateway.url}/graphql", {"query": HTTP_SUBSCRIPTION}, headers=gateway.headers()),
        http("POST", f"{gateway.url}/graphql", {"query": HTTP_SUBSCRIPTION}, headers=scoped),
        http("POST", f"{gateway.url}/graphql", {"query": "query Q { sources { source } } subscription S "
                                                + HTTP_SUBSCRIPTION.removeprefix("subscription"),
                                                "operationName": "S"}, headers=gateway.headers()),
    ]
    for status, headers, body in answers:
        assert (status, headers["content-type"], without(json.loads(body), "requestId")) == (400, "application/json",
                                                                                             expected)
    assert [world.stats(s)["total"] for s in SOURCES] == [0, 0, 0]
    status, body = gateway.query("query Q { sources { source } }")  # a query is still answered
    assert status == 200 and "errors" not in body
