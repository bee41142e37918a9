"""Every error the gateway or strawberry emits carries `extensions.code`: each path that produces one is run
here against a live gateway (HTTP refusals at the edge, the guard and the view; GraphQL request, field and
source errors; persisted documents; websocket operation errors), and every error of every answer is checked.
Each case names the code it must produce, so a case that stopped reaching its path fails too."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess
from tests.test_safety_and_push import WS

LIMITS = {"UCGW_MAX_BODY_BYTES": "20000", "UCGW_REQUEST_DEADLINE_SECONDS": "2", "UCGW_WS_OPERATIONS_PER_SOCKET": "1",
          "UCGW_MAX_QUERY_DEPTH": "3"}
STATUS = "query S($a: ID!) { child(aNumber: $a) { aNumber hearing { caseStatus } } }"
REPORT = """mutation($i: ReportSafetyConcernInput!) { reportSafetyConcern(input: $i) { id } }"""
RESOLVE = """mutation($id: ID!) { resolveSafetyConcern(id: $id, resolution: "done") { id status } }"""


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=31, children=30) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess({**world.gateway_env(), **LIMITS})
    yield gateway
    gateway.stop()


def coded(body: dict[str, Any]) -> list[str]:
    """The code of every error in an answer; fails on an error without one."""
    errors = body.get("errors")
    if errors is None and isinstance(body.get("error"), dict):  # the webhook's refusals
        errors = [body["error"] | {"extensions": {"code": body["error"].get("code")}}]
    assert errors, body
    found = []
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        assert isinstance(code, str) and code.isupper(), error
        found.append(code)
    return found


def send(gw: GatewayProcess, method: str = "POST", path: str = "/graphql", payload: Any = None,
         headers: dict[str, str] | None = None, raw: bytes | None = None, query: str = "") -> tuple[int, list[str]]:
    head = gw.headers() if headers is None else headers
    if raw is None and payload is not None:
        raw = json.dumps(payload).encode()
        head = {"Content-Type": "application/json", **head}
    status, _, body = http(method, f"{gw.url}{path}{query}", raw=raw, headers=head)
    return status, coded(json.loads(body))


def test_every_http_refusal_carries_a_code(gw: GatewayProcess, world: MockProcess) -> None:
    a = world.sample(1)[0]
    partner = {"Authorization": f"Bearer {mint('partner')}"}
    cases: list[tuple[str, tuple[int, list[str]], tuple[int, list[str]]]] = [
        ("no credentials", send(gw, payload={"query": "{ __typename }"}, headers={}), (401, ["UNAUTHENTICATED"])),
        ("bad token", send(gw, payload={"query": "{ __typename }"}, headers={"Authorization": "Bearer x.y.z"}),
         (401, ["UNAUTHENTICATED"])),
        ("too large", send(gw, payload={"query": "{ __typename }", "variables": {"x": "y" * 30000}}),
         (413, ["PAYLOAD_TOO_LARGE"])),
        ("not acceptable", send(gw, payload={"query": "{ __typename }"},
                                headers={**gw.headers(), "Accept": "text/csv"}),
         (406, ["NOT_ACCEPTABLE"])),
        ("not JSON", send(gw, raw=b"{nope", headers={**gw.headers(), "Content-Type": "application/json"}),
         (400, ["BAD_REQUEST"])),
        ("other type", send(gw, raw=b"query=x", headers={**gw.headers(), "Content-Type": "text/plain"}),
         (415, ["UNSUPPORTED_MEDIA_TYPE"])),
        ("batch", send(gw, payload=[{"query": "{ __typename }"}]), (400, ["BAD_REQUEST"])),
        ("query not a string", send(gw, payload={"query": 5}), (400, ["BAD_REQUEST"])),
        ("no query", send(gw, payload={"variables": {}}), (400, ["BAD_REQUEST"])),
        ("subscription over HTTP", send(gw, payload={"query": 'subscription { fieldOfficeChanges(fieldOffice: "x") '
                                                              "{ aNumber } }"}), (400, ["BAD_REQUEST"])),
        ("mutation over GET", send(gw, "GET", query="?query=mutation%20%7B%20__typename%20%7D"),
         (405, ["METHOD_NOT_ALLOWED"])),
        ("another method", send(gw, "PUT", payload={"query": "{ __typename }"}), (405, ["METHOD_NOT_ALLOWED"])),
        ("unknown path", send(gw, "GET", path="/nothing-here"), (404, ["NOT_FOUND"])),
        ("parse", send(gw, payload={"query": "{ child("}), (200, ["GRAPHQL_PARSE_FAILED"])),
        ("validation", send(gw, payload={"query": "{ nope }"}), (200, ["GRAPHQL_VALIDATION_FAILED"])),
        ("variables", send(gw, payload={"query": STATUS, "variables": {"a": [1]}}), (400, ["BAD_USER_INPUT"])),
        ("too deep", send(gw, payload={"query": '{ child(aNumber: "A012345678") { nta { addressOnFile { address '
                                                "{ street } } } } }"}), (200, ["QUERY_TOO_COMPLEX"])),
        ("bad A-number", send(gw, payload={"query": '{ child(aNumber: "x") { aNumber } }'}), (200, ["BAD_USER_INPUT"])),
        ("forbidden field", send(gw, payload={"query": STATUS.replace("hearing { caseStatus }",
                                                                      "identity { firstName }"),
                                              "variables": {"a": a}}, headers=partner), (200, ["FORBIDDEN"])),
        ("scan too fresh", send(gw, payload={"query": "{ oversightSummary(maxAgeSeconds: 0) { asOf } }"}),
         (200, ["MAX_AGE_TOO_LOW"])),
        ("persisted unknown", send(gw, payload={"documentId": "sha256:" + "a" * 64}),
         (200, ["PERSISTED_QUERY_NOT_FOUND"])),
        ("persisted mismatch", send(gw, payload={"query": "{ __typename }", "extensions": {
            "persistedQuery": {"version": 1, "sha256Hash": "b" * 64}}}), (400, ["PERSISTED_QUERY_HASH_MISMATCH"])),
        ("trusted only", send(gw, payload={"query": "{ __typename }"}, headers={
            "Authorization": f"Bearer {mint('partner', trusted_documents_only=True)}"}),
         (403, ["PERSISTED_QUERY_NOT_ALLOWED"])),
        ("webhook unsigned", send(gw, path="/hooks/changes", payload={"changes": []}, headers={}),
         (404, ["NOT_FOUND"])),  # no UCGW_WEBHOOK_SECRET here: the route answers as unknown
    ]
    concern = send_ok(gw, REPORT, {"i": {"aNumber": a, "severity": "LOW", "category": "OTHER", "description": "t"}})
    concern_id = concern["reportSafetyConcern"]["id"]
    send_ok(gw, RESOLVE, {"id": concern_id})
    cases.append(("conflict", send(gw, payload={"query": RESOLVE, "variables": {"id": concern_id}}),
                  (200, ["CONFLICT"])))
    world.admin_ok("eoir", "PUT", "/_admin/faults", {"down": True})
    try:
        cases.append(("source down", send(gw, payload={"query": STATUS.replace("S(", "Down("), "variables": {"a": a}}),
                      (200, ["SOURCE_UNAVAILABLE"])))
    finally:
        world.admin_ok("eoir", "POST", "/_admin/reset")
    cases.append(("body timeout", _body_never_sent(gw), (408, ["REQUEST_TIMEOUT"])))
    assert [(label, got) for label, got, _ in cases] == [(label, want) for label, _, want in cases]


def send_ok(gw: GatewayProcess, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    status, body = gw.query(query, variables)
    assert status == 200 and "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def _body_never_sent(gw: GatewayProcess) -> tuple[int, list[str]]:
    """A POST whose declared body never comes: the guard gives up at the request deadline."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(f"POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), coded(json.loads(body))


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def test_rate_limited_and_refused_keys_carry_a_code(world: MockProcess) -> None:
    gateway = GatewayProcess({**world.gateway_env(), "UCGW_RATE_LIMIT_RPS": "0.01", "UCGW_RATE_LIMIT_BURST": "1"})
    try:
        status, _, _ = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"}, headers=gateway.headers())
        assert status == 200  # the bucket's one token
        assert send(gateway, payload={"query": "{ __typename }"}) == (429, ["RATE_LIMITED"])
    finally:
        gateway.stop()


def test_websocket_operation_errors_carry_a_code(gw: GatewayProcess) -> None:
    async def run() -> list[tuple[str, list[str]]]:
        seen: list[tuple[str, list[str]]] = []
        url = gw.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=[WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {gw.token}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for op_id, query in (("parse", "subscription {"), ("tokens", "subscription { " + "a " * 3000 + "}"),
                                 ("validation", "subscription { nope }"),
                                 ("blank office", 'subscription { fieldOfficeChanges(fieldOffice: " ") { aNumber } }'),
                                 ("held", 'subscription { fieldOfficeChanges(fieldOffice: "Miami") { aNumber } }'),
                                 ("second", 'subscription { fieldOfficeChanges(fieldOffice: "Boston") { aNumber } }')):
                await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}}))
                if op_id == "held":
                    continue  # it stays open and holds the socket's one operation
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message.get("id") == op_id:
                        break
                assert message["type"] == "error", message
                seen.append((op_id, coded({"errors": message["payload"]})))
        return seen

    assert asyncio.run(run()) == [("parse", ["GRAPHQL_PARSE_FAILED"]), ("tokens", ["QUERY_TOO_COMPLEX"]),
                                  ("validation", ["GRAPHQL_VALIDATION_FAILED"]),
                                  ("blank office", ["BAD_USER_INPUT"]), ("second", ["TOO_MANY_OPERATIONS"])]
