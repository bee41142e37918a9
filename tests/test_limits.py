"""Abuse limits and production hardening over real HTTP (issue 5).

Every rejection carries a code and touches no backend: the mocks' request counters must not move.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest
import websockets
from graphql import get_introspection_query, parse

from mocks.runner import signed_headers
from resolvers.complexity import INTROSPECTION_MAX_DEPTH, measure
from resolvers.schema import build_schema
from sources.settings import Settings
from testing.access import backend_calls, gateway_env
from testing.gateway import ROOT, TEST_JWT_SECRET, GatewayProcess, free_port, http, mint, without

CHILD_NTA = 'a{i}: child(aNumber: "{a}") {{ nta {{ status }} }}'
PER_CHILD = "aNumber nta { status provenance { source } } hearing { caseStatus provenance { source } } " \
            "location { status provenance { source } }"  # costs 7 per child: itself and 3 × (section + provenance)


def too_complex(body: dict[str, Any], limit: str) -> None:
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX" and error["extensions"]["limit"] == limit, error


@pytest.fixture(scope="module")
def gw(mock_services: Any) -> Iterator[GatewayProcess]:
    """A gateway with the default limits."""
    gateway = GatewayProcess(gateway_env(mock_services))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def tight(mock_services: Any) -> Iterator[GatewayProcess]:
    """A gateway with small limits, to reach each one with an ordinary query."""
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_MAX_QUERY_DEPTH="3", UCGW_MAX_QUERY_COST="100",
                                         UCGW_MAX_BODY_BYTES="3000"))
    yield gateway
    gateway.stop()


def rejected_without_backend_calls(gateway: GatewayProcess, mock_services: Any, query: str,
                                   variables: dict[str, Any] | None = None, status: int = 200) -> dict[str, Any]:
    mock_services.reset()
    got, body = gateway.query(query, variables)
    assert got == status, body
    assert backend_calls(mock_services) == 0  # refused before execution: not one source was asked
    return body


def test_alias_bomb(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    fields = " ".join(CHILD_NTA.format(i=i, a=a) for i in range(31))
    too_complex(rejected_without_backend_calls(gw, mock_services, "{ " + fields + " }"), "aliases")
    fields = " ".join(CHILD_NTA.format(i=i, a=a) for i in range(30))
    status, body = gw.query("{ " + fields + " }")
    assert status == 200 and "errors" not in body  # 30 is allowed


def test_fragment_bombs_are_measured_fast(gw: GatewayProcess, mock_services: Any) -> None:
    """Each fragment spreads the next twice: 2^30 fields from a few hundred tokens."""
    a = mock_services.sample(3)[0]
    n = 30
    aliases = "".join(f"fragment F{i} on Child {{ ...F{i + 1} ...F{i + 1} }} " for i in range(n))
    aliases += f"fragment F{n} on Child {{ x: aNumber }}"
    body = rejected_without_backend_calls(gw, mock_services, f'{{ child(aNumber: "{a}") {{ ...F0 }} }} {aliases}')
    too_complex(body, "aliases")
    assert body["errors"][0]["extensions"]["value"] == 2**n
    cost = "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }} " for i in range(n))
    cost += f'fragment F{n} on Query {{ child(aNumber: "{a}") {{ nta {{ status }} }} }}'
    too_complex(rejected_without_backend_calls(gw, mock_services, "{ ...F0 } " + cost), "cost")


def test_token_bomb(gw: GatewayProcess, mock_services: Any) -> None:
    query = "{ sources { source } " + "x: __typename " * 700 + "}"
    too_complex(rejected_without_backend_calls(gw, mock_services, query), "tokens")


@pytest.mark.parametrize("query, variables, code, status", [
    ("{ child(aNumber: ", None, "GRAPHQL_PARSE_FAILED", 200),
    ('{ child(aNumber: "A012345678") { nosuch } }', None, "GRAPHQL_VALIDATION_FAILED", 200),
    # variables that do not coerce are a malformed request (issue 33): 400, with the code
    ("query($a: ID!) { child(aNumber: $a) { aNumber } }", {}, "BAD_USER_INPUT", 400),
    ("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": None}, "BAD_USER_INPUT", 400),
    ("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": ["A012345678"]}, "BAD_USER_INPUT", 400),
    ("query($m: Int) { child(aNumber: \"A012345678\", maxAgeSeconds: $m) { aNumber } }", {"m": "x"},
     "BAD_USER_INPUT", 400),
])
def test_request_errors_carry_a_code(gw: GatewayProcess, mock_services: Any, query: str,
                                     variables: dict[str, Any] | None, code: str, status: int) -> None:
    body = rejected_without_backend_calls(gw, mock_services, query, variables, status)
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], body


def test_an_unknown_operation_name_is_a_400(gw: GatewayProcess) -> None:
    status, _, raw = http("POST", f"{gw.url}/graphql", {"query": "query A { __typename }", "operationName": "B"},
                          headers=gw.headers())
    assert status == 400
    assert without(json.loads(raw), "requestId") == {"errors": [{"message": 'Unknown operation named "B".',
                                           "extensions": {"code": "BAD_REQUEST"}}]}


def test_of_several_operations_the_named_one_runs_and_none_runs_unnamed(gw: GatewayProcess) -> None:
    """A mutation first and no operationName: refused before anything runs (strawberry ran the mutation)."""
    doc = ('mutation M { acknowledgeSafetyConcern(id: "no-such-concern") { id } } '
           "query Q { __typename }")
    status, _, raw = http("POST", f"{gw.url}/graphql", {"query": doc}, headers=gw.headers())
    assert (status, without(json.loads(raw), "requestId")) == (400, {"errors": [{
        "message": "Must provide operation name if query contains multiple operations.",
        "extensions": {"code": "BAD_REQUEST"}}]})
    status, _, raw = http("POST", f"{gw.url}/graphql", {"query": doc, "operationName": "Q"}, headers=gw.headers())
    assert (status, json.loads(raw)) == (200, {"data": {"__typename": "Query"}})
    status, _, raw = http("POST", f"{gw.url}/graphql", {"query": doc, "operationName": "M"}, headers=gw.headers())
    assert status == 200 and [e["extensions"]["code"] for e in json.loads(raw)["errors"]] == ["NOT_FOUND"]


def test_answers_are_not_stored_or_sniffed_and_the_page_is_not_framed(gw: GatewayProcess,
                                                                      mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    query = {"query": "query($a: ID!) { child(aNumber: $a) { aNumber } }", "variables": {"a": a}}
    answers = [http("POST", f"{gw.url}/graphql", query, headers=gw.headers()) for _ in range(2)]  # run, stored
    answers.append(http("POST", f"{gw.url}/graphql", {"query": "{ nope }"}, headers=gw.headers()))
    answers.append(http("POST", f"{gw.url}/graphql", {"query": "{ __typename }"}))  # 401 from the guard
    answers.append(http("GET", f"{gw.url}/graphql?query=%7B__typename%7D", headers={**gw.headers(),
                                                                                   "Accept": "application/json"}))
    assert [status for status, _, _ in answers] == [200, 200, 200, 401, 200]
    for _, headers, _ in answers:
        got = {k.lower(): v for k, v in headers.items()}
        assert (got["cache-control"], got["x-content-type-options"]) == ("no-store", "nosniff"), headers
    status, headers, _ = http("GET", f"{gw.url}/graphql", headers={"Accept": "text/html"})
    got = {k.lower(): v for k, v in headers.items()}
    assert (status, got["x-frame-options"], got["x-content-type-options"]) == (200, "DENY", "nosniff")
    assert "frame-ancestors 'none'" in got["content-security-policy"].split("; ")


def test_depth_limit(tight: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    q = 'query($a: ID!) { child(aNumber: $a) { hearing { nextHearing { courtAddress { city } } } } }'
    body = rejected_without_backend_calls(tight, mock_services, q, {"a": a})
    too_complex(body, "depth")
    assert body["errors"][0]["extensions"]["value"] == 4
    _, body = tight.query('query($a: ID!) { child(aNumber: $a) { hearing { caseStatus } } }', {"a": a})
    assert "errors" not in body


def test_children_cost_per_a_number_literal_or_variable(tight: GatewayProcess, gw: GatewayProcess,
                                                        mock_services: Any) -> None:
    many = mock_services.sample(40)
    fits = many[:14]  # 14 × 7 = 98 ≤ 100
    over = many[:15]  # 15 × 7 = 105 > 100
    by_variable = "query($as: [ID!]!) { children(aNumbers: $as) { " + PER_CHILD + " } }"
    body = rejected_without_backend_calls(tight, mock_services, by_variable, {"as": over})
    too_complex(body, "cost")
    assert body["errors"][0]["extensions"]["value"] == 105
    assert body["errors"][0]["message"] == (
        "query cost 105 exceeds the limit of 100 (a list costs per element it asks for: per A-number of "
        "`children`, per `first` of a page; ask for fewer elements or fewer fields)")
    literal = "{ children(aNumbers: " + json.dumps(over) + ") { " + PER_CHILD + " } }"
    too_complex(rejected_without_backend_calls(tight, mock_services, literal), "cost")
    for ok in (by_variable, "{ children(aNumbers: " + json.dumps(fits) + ") { " + PER_CHILD + " } }"):
        status, body = tight.query(ok, {"as": fits})
        assert status == 200 and "errors" not in body and len(body["data"]["children"]) == 14
    # the default limit (5000) refuses two full lists of 100 children with every section
    sections = ("identity { provenance { source } } location { facility { name } address { city } provenance "
                "{ source } } sponsor { address { city } provenance { source } } followUpCall { provenance { source"
                " } } nta { addressOnFile { address { city } } provenance { source } } hearing { nextHearing { "
                "courtAddress { city } } pastHearings { courtAddress { city } } inAbsentiaOrder { judge } decision { "
                "type } addressOfRecord { city } provenance { source } } addressesOnFile { address { city } }")
    q = f"query($as: [ID!]!) {{ a: children(aNumbers: $as) {{ {sections} }} b: children(aNumbers: $as) " \
        f"{{ {sections} }} }}"
    hundred = [f"A{i:09d}" for i in range(100)]
    too_complex(rejected_without_backend_calls(gw, mock_services, q, {"as": hundred}), "cost")


def test_children_list_length(gw: GatewayProcess, mock_services: Any) -> None:
    body = rejected_without_backend_calls(gw, mock_services, "query($as: [ID!]!) { children(aNumbers: $as) { "
                                          "aNumber } }", {"as": [f"A{i:09d}" for i in range(101)]})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_cost_is_measured_per_list_element() -> None:
    doc = parse("query($as: [ID!]!) { children(aNumbers: $as) { aNumber nta { status } } "
                "auditEvents(first: 7) { id } }")
    c = measure(doc, None, {"as": ["A000000001"] * 9})
    assert (c.depth, c.aliases, c.cost) == (2, 0, 9 * 2 + 7 * 1)
    full = measure(parse(get_introspection_query()), None, {})
    assert (full.depth, full.aliases, full.cost, full.introspection_depth) == (0, 0, 71, INTROSPECTION_MAX_DEPTH)


def _type_ref(levels: int) -> str:
    """A selection of `type` nesting `ofType` `levels` times."""
    return "type { " + "ofType { " * levels + "name" + " }" * levels + " }"


def test_limits_count_inside_introspection(gw: GatewayProcess, tight: GatewayProcess, mock_services: Any) -> None:
    """Aliases and cost inside `__schema`/`__type` count; the introspection depth limit admits the standard
    introspection query (every option on) and nothing deeper."""
    standard = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True,
                                       schema_description=True, input_value_deprecation=True)
    for gateway in (gw, tight):
        status, body = gateway.query(standard)
        assert status == 200 and "errors" not in body and body["data"]["__schema"]["queryType"]["name"] == "Query"
    assert INTROSPECTION_MAX_DEPTH == 14
    deepest = "{ __schema { types { fields { " + _type_ref(10) + " } } } }"  # 4 + 10 = 14
    status, body = gw.query(deepest)
    assert status == 200 and "errors" not in body and body["data"]["__schema"]["types"]
    deeper = "{ __schema { types { fields { " + _type_ref(11) + " } } } }"
    body = rejected_without_backend_calls(gw, mock_services, deeper)
    too_complex(body, "introspectionDepth")
    assert (body["errors"][0]["extensions"]["value"], body["errors"][0]["extensions"]["max"]) == (15, 14)
    aliased = "{ __schema { " + " ".join(f"t{i}: types {{ name }}" for i in range(31)) + " } }"
    too_complex(rejected_without_backend_calls(gw, mock_services, aliased), "aliases")
    twice = standard.replace("__schema {", "a: __schema { types { ...FullType } } b: __schema {", 1)
    cost = measure(parse(twice), None, {}).cost
    assert cost > 100
    body = rejected_without_backend_calls(tight, mock_services, twice)  # two walks of every type
    too_complex(body, "cost")
    assert body["errors"][0]["extensions"]["value"] == cost


def test_oversize_bodies_are_413(gw: GatewayProcess, tight: GatewayProcess, mock_services: Any) -> None:
    mock_services.reset()
    padding = "#" + "x" * 120_000 + "\n"
    status, _, body = http("POST", f"{gw.url}/graphql", {"query": padding + "{ __typename }"},
                           headers=gw.headers())
    assert status == 413 and json.loads(body)["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    # without a Content-Length (chunked), the body is cut off as it streams in
    conn = HTTPConnection("127.0.0.1", tight.port, timeout=10)
    chunks = iter([b'{"query": "', b"#" + b"y" * 2000, b"y" * 2000, b'\\n{ __typename }"}'])
    conn.request("POST", "/graphql", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json", **tight.headers()})
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    conn.close()
    # a GET query string counts as a body
    q = urllib.parse.quote("{ __typename }" + " " * 3500)
    status, _, _ = http("GET", f"{tight.url}/graphql?query={q}", headers={"Accept": "application/json",
                                                                           **tight.headers()})
    assert status == 413
    assert backend_calls(mock_services) == 0
    status, body = tight.query("{ __typename }")
    assert status == 200 and body["data"] == {"__typename": "Query"}


@pytest.mark.parametrize("raw, content_type, message", [
    (b"[" * 5000 + b"]" * 5000, "application/json", "Unable to parse request body as JSON"),
    (b'{"query": "\xff"}', "application/json", "Unable to parse request body as JSON"),
    (b"", "application/json", "Unable to parse request body as JSON"),
    (b'[{"query": "{ __typename }"}]', "application/json", "Batching is not enabled"),
    (b'{"query": 5}', "application/json", "The GraphQL operation's `query` must be a string or null, if provided."),
    (b'{"query": "{ __typename }", "variables": [1]}', "application/json",
     "The GraphQL operation's `variables` must be an object or null, if provided."),
    *[(raw, "application/json", 'the request body must be a JSON object: {"query": "...", "variables": {...}}')
      for raw in (b"null", b"5", b'"x"', b"true")],  # were an AttributeError in strawberry: a bare HTTP 500
    (b'{"query": "query B { sources { source } } query A { __typename }"}', "application/json",
     "Must provide operation name if query contains multiple operations."),  # strawberry ran the first
])
def test_requests_refused_before_graphql_get_a_json_error_with_a_code(
        gw: GatewayProcess, mock_services: Any, raw: bytes, content_type: str, message: str) -> None:
    mock_services.reset()
    status, headers, body = http("POST", f"{gw.url}/graphql", headers={**gw.headers(), "Content-Type": content_type},
                                 raw=raw)
    assert status == 400 and headers["content-type"] == "application/json"
    assert without(json.loads(body), "requestId") == {"errors": [{"message": message,
                                                                  "extensions": {"code": "BAD_REQUEST"}}]}
    assert backend_calls(mock_services) == 0


def test_rate_limit_answers_429_with_retry_after(mock_services: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_RATE_LIMIT_RPS="1", UCGW_RATE_LIMIT_BURST="3"))
    try:
        alice, bob = mint(subject="alice"), mint(subject="bob")
        statuses = [gateway.query("{ __typename }", token=alice)[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers, body = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                                     headers=gateway.headers(alice))
        assert status == 429
        error = json.loads(body)["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        retry = int({k.lower(): v for k, v in headers.items()}["retry-after"])
        assert 1 <= retry <= 2 and error["extensions"]["retryAfterSeconds"] == retry
        assert gateway.query("{ __typename }", token=bob)[0] == 200  # buckets are per client
        time.sleep(retry)
        assert gateway.query("{ __typename }", token=alice)[0] == 200
        # guessing credentials from one address is slowed down too
        refused = [http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                        headers={"X-API-Key": f"guess-{i}"})[0] for i in range(5)]
        assert refused[:3] == [401, 401, 401] and refused[-1] == 429
    finally:
        gateway.stop()


WS = "graphql-transport-ws"


def test_websockets_take_from_the_same_rate_limit(mock_services: Any) -> None:
    """Handshakes and every operation over a socket (queries too) cost a token, as HTTP requests do."""
    # 3 tokens each, one back every 50 s: no refill during the test
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_RATE_LIMIT_RPS="0.02", UCGW_RATE_LIMIT_BURST="3"))
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    alice, bob = mint(subject="alice"), mint(subject="bob")

    async def handshake_refused(headers: dict[str, str] | None = None) -> Any:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, subprotocols=[WS], additional_headers=headers)
        return refused.value.response

    async def run() -> None:
        # no credentials in the handshake: it costs the address a token; connection_init names alice
        async with websockets.connect(url, subprotocols=[WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {alice}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            answers = []
            for op in "abcd":
                await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": "{ __typename }"}}))
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                if answers[-1]["type"] == "next":
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"id": op, "type": "complete"}
            assert [m["type"] for m in answers] == ["next", "next", "next", "error"]
            assert [m["payload"] for m in answers[:3]] == [{"data": {"__typename": "Query"}}] * 3
            [error] = answers[3]["payload"]
            assert error["extensions"]["code"] == "RATE_LIMITED" and 1 <= error["extensions"]["retryAfterSeconds"] <= 50
            await ws.send(json.dumps({"type": "ping"}))  # refused, not disconnected
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
        # alice's HTTP requests share her bucket; bob's has its own
        assert gateway.query("{ __typename }", token=alice)[0] == 429
        assert gateway.query("{ __typename }", token=bob)[0] == 200
        # a handshake carrying alice's token is refused with 429 and Retry-After
        response = await handshake_refused({"Authorization": f"Bearer {alice}"})
        retry = int(response.headers["Retry-After"])
        body = json.loads(response.body)["errors"][0]
        assert response.status_code == 429 and 1 <= retry <= 50
        assert without(body["extensions"], "requestId") == {"code": "RATE_LIMITED", "retryAfterSeconds": retry}
        # the address's bucket: one token went above; bad credentials take the second, a bare handshake
        # the third, and the next handshake is refused
        with pytest.raises(websockets.InvalidStatus) as bad:
            await websockets.connect(url, subprotocols=[WS], additional_headers={"X-API-Key": "guess"})
        assert bad.value.response.status_code == 403
        async with websockets.connect(url, subprotocols=[WS]) as ws:
            assert ws.subprotocol == WS
        assert (await handshake_refused()).status_code == 429
        assert (await handshake_refused({"X-API-Key": "guess-2"})).status_code == 429

    try:
        asyncio.run(run())
        assert backend_calls(mock_services) == 0
    finally:
        gateway.stop()


def test_malformed_websocket_messages_close_with_4400(mock_services: Any) -> None:
    """Each malformed message closes its socket with 4400 and a reason; none leaves a traceback in the log."""
    gateway = GatewayProcess(gateway_env(mock_services))
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    subscribe = {"id": "1", "type": "subscribe"}
    cases = [
        ([1, 2], "Failed to parse message"),
        ("hello", "Failed to parse message"),
        ({"type": 5}, "Failed to parse message"),
        ({**subscribe, "payload": []}, "subscribe needs a payload with a string query"),
        ({**subscribe, "payload": {"query": 5}}, "subscribe needs a payload with a string query"),
        ({**subscribe, "id": 5, "payload": {"query": "{ __typename }"}}, "subscribe needs a string id"),
        ({**subscribe, "payload": {"query": "{ __typename }", "variables": [1]}},
         "subscribe payload's variables must be an object"),
        ({**subscribe, "payload": {"query": "{ __typename }", "operationName": 1}},
         "subscribe payload's operationName must be a string"),
    ]

    async def closing(message: Any) -> tuple[int, str]:
        async with websockets.connect(url, subprotocols=[WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {mint()}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            await ws.send(json.dumps(message))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code, closed.value.rcvd.reason  # type: ignore[union-attr]

    async def run() -> list[tuple[int, str]]:
        return [await closing(message) for message, _ in cases]

    try:
        assert asyncio.run(run()) == [(4400, reason) for _, reason in cases]
    finally:
        log = gateway.stop()
    assert "Traceback" not in log and " ERROR " not in log


def test_one_client_holds_at_most_its_cap_of_websockets(mock_services: Any) -> None:
    """The socket past a caller's cap is closed with 4429; a closed socket frees its place (/readyz counts)."""
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_WEBSOCKETS_PER_CLIENT="2"))
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    alice, bob = mint(subject="alice"), mint(subject="bob")

    def open_sockets() -> dict[str, int]:
        status, _, body = http("GET", f"{gateway.admin_url}/readyz")
        assert status == 200
        return json.loads(body)["websockets"]  # type: ignore[no-any-return]

    async def until_open(n: int) -> None:
        deadline = time.monotonic() + 10
        while open_sockets()["open"] != n:
            assert time.monotonic() < deadline, open_sockets()
            await asyncio.sleep(0.05)

    async def joined(token: str) -> Any:
        ws = await websockets.connect(url, subprotocols=[WS])
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        return ws

    async def run() -> None:
        first, second = await joined(alice), await joined(alice)
        assert open_sockets() == {"open": 2, "clients": 1, "perClientCap": 2}
        third = await joined(alice)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(third.recv(), 10)
        assert closed.value.rcvd.code == 4429  # type: ignore[union-attr]
        assert closed.value.rcvd.reason == "too many open websockets for this client (at most 2)"  # type: ignore[union-attr]
        other = await joined(bob)  # the cap is per caller
        assert open_sockets() == {"open": 3, "clients": 2, "perClientCap": 2}
        await first.close()
        await until_open(2)
        again = await joined(alice)
        await again.send(json.dumps({"id": "t", "type": "subscribe", "payload": {"query": "{ __typename }"}}))
        assert json.loads(await asyncio.wait_for(again.recv(), 10))["payload"] == {"data": {"__typename": "Query"}}
        for ws in (second, other, again):
            await ws.close()
        await until_open(0)
        assert open_sockets()["clients"] == 0

    try:
        asyncio.run(run())
    finally:
        log = gateway.stop()
    assert "Traceback" not in log


def test_webhook_posts_are_signed_fresh_once_and_every_change_is_checked(mock_services: Any) -> None:
    """POST /hooks/changes: HMAC-SHA256 signature over timestamp and body, 5 minutes' tolerance, replays
    refused, refusals slowed to the rate limit; every change's A-number, field names and sizes checked."""
    secret = "w" * 40
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_WEBHOOK_SECRET=secret, UCGW_RATE_LIMIT_RPS="0.02",
                                         UCGW_RATE_LIMIT_BURST="4"))
    url = f"{gateway.url}/hooks/changes"
    key = secret.encode()

    def post(data: Any, now: float | None = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        body = raw if raw is not None else json.dumps(data).encode()
        status, _, answer = http("POST", url, raw=body, headers=headers or signed_headers(key, body, now))
        return status, json.loads(answer)

    def change(a: str = "A012345678", **over: Any) -> dict[str, Any]:
        return {"seq": 1, "a_number": a, "updated_at": "2026-11-01T12:00:00Z", "fields": ["status"], **over}

    try:
        for raw in (b"[" * 200_000 + b"]" * 200_000, b'{"source": "orr", "changes": [{"seq": NaN}]}'):
            status, body = post(None, raw=raw)
            assert status == 400 and body["error"]["code"] == "BAD_USER_INPUT"
        # every change is checked; one bad change refuses the post, naming it
        bad = [
            (change("A012345678\n"), "changes[0].a_number must be 'A' and 9 digits"),
            (change("A01234567\u0664"), "changes[0].a_number must be 'A' and 9 digits"),
            (change(fields=["status", "hearings"]), "changes[0].fields names no field of the source's records: "
                                                    "'hearings'"),
            (change(fields=["status"] * 2), "changes[0].fields must be a list of distinct field names of the "
                                            "source's records"),
            (change(fields=[f"f{i}" for i in range(50)]), "changes[0].fields must be a list of distinct field "
                                                          "names of the source's records"),
            (change(seq=-1), "changes[0].seq must be a whole number in [0, 2^63)"),
            (change(updated_at="x" * 100), "changes[0].updated_at must be null or an ISO 8601 time"),
            ({**change(), "extra": 1}, "changes[0] has unknown member(s): extra"),
        ]
        for item, message in bad:
            assert post({"source": "orr", "changes": [item]}) == \
                (400, {"error": {"code": "BAD_USER_INPUT", "message": message}}), message
        status, body = post({"source": "orr", "changes": [change()] * 1001})
        assert (status, body["error"]["message"]) == (400, "at most 1000 changes per post")
        # a good post is accepted; sent again (a replay) it is refused
        good = json.dumps({"source": "orr", "changes": [change(), change("A012345679", seq=2)]}).encode()
        headers = signed_headers(key, good)
        assert post(None, raw=good, headers=headers) == (202, {"accepted": 2, "skipped": 0})
        replay = post(None, raw=good, headers=headers)
        assert replay == (401, {"error": {"code": "UNAUTHENTICATED",
                                          "message": "this signed post was accepted before (a replay)"}})
        # signed 6 minutes ago or ahead, with another secret, or with the old shared-secret header or ?token=
        empty = {"source": "orr", "changes": []}
        body = json.dumps(empty).encode()
        refusals = [
            post(empty, now=time.time() - 360),
            post(empty, now=time.time() + 360),
            post(empty, headers=signed_headers(b"g" * 40, body)),
        ]
        assert [r[0] for r in refusals] == [401, 401, 401]  # with the replay: the address's 4 tokens spent
        assert refusals[0][1]["error"]["message"] == "X-UCGW-Timestamp is more than 300 s from now"
        assert refusals[2][1]["error"]["message"] == "bad webhook signature"
        status, headers, answer = http("POST", f"{url}?token={secret}", empty,
                                       headers={"X-UCGW-Webhook-Secret": secret})
        retry = int(headers["retry-after"])
        assert status == 429 and 1 <= retry <= 50 and json.loads(answer)["error"]["code"] == "RATE_LIMITED"
        signed_at = time.time() - 10  # each post signed at another whole second (no replay), whatever the pace
        for i in range(5):  # a rightly signed post is never slowed
            assert post(empty, now=signed_at - i) == (202, {"accepted": 0, "skipped": 0})
    finally:
        log = gateway.stop()
    assert "Traceback" not in log and "A012345678" not in log


def test_webhook_secret_must_be_32_bytes(mock_services: Any) -> None:
    """A webhook secret shorter than 32 bytes stops the start, whatever the environment."""
    for env in ("development", "production"):
        run = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60,
                             env={**os.environ, **gateway_env(mock_services, UCGW_ENV=env, UCGW_WEBHOOK_SECRET="s" * 31,
                                                              UCGW_JWT_SECRET=TEST_JWT_SECRET,
                                                              UCGW_PORT=str(free_port()))})
        assert run.returncode != 0
        assert "UCGW_WEBHOOK_SECRET must be at least 32 bytes" in run.stdout + run.stderr


def test_a_body_that_does_not_arrive_is_a_408_within_the_deadline(mock_services: Any) -> None:
    """A client that sends its headers and then too little of its body (or none) holds nothing for long."""
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_REQUEST_DEADLINE_SECONDS="1"))
    head = (f"POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gateway.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    try:
        mock_services.reset()
        for partial in ('{"query"', ""):
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
                conn.sendall((head + partial).encode())
                # the gateway waits for the rest of the body: another client is answered meanwhile, this one not yet
                assert gateway.query("{ __typename }")[1] == {"data": {"__typename": "Query"}}
                conn.setblocking(False)
                with pytest.raises(BlockingIOError):
                    conn.recv(1)
                conn.settimeout(10)  # then the 408 comes (at the 1 s deadline), well within this
                answer = b""
                while chunk := conn.recv(65536):  # the gateway closes the connection after its answer
                    answer += chunk
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 408 Request Timeout", answer
            assert without(json.loads(rest.split(b"\r\n\r\n", 1)[1]), "requestId") == {"errors": [{
                "message": "the request body did not arrive within 1.0 s", "extensions": {"code": "REQUEST_TIMEOUT"}}]}
        assert gateway.query("{ __typename }")[1] == {"data": {"__typename": "Query"}}
        assert backend_calls(mock_services) == 0
    finally:
        log = gateway.stop()
    assert "Traceback" not in log


def _serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
    full.update({"UCGW_PORT": str(free_port()), "UCGW_HOST": "127.0.0.1", **env})
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout)


def test_production_refuses_the_demo_secret(mock_services: Any, tmp_path: Any) -> None:
    env = {**gateway_env(mock_services), "UCGW_ENV": "production", "UCGW_DATA_DIR": str(tmp_path)}
    env.pop("UCGW_JWT_SECRET", None)
    done = _serve(env)
    assert done.returncode == 2
    assert "no credentials configured" in done.stderr + done.stdout  # no secret is no secret: no demo fallback
    done = _serve({**env, "UCGW_JWT_SECRET": "demo-only-secret-not-for-production"})
    assert done.returncode == 2 and "demo JWT secret" in done.stderr + done.stdout
    done = _serve({**env, "UCGW_JWT_SECRET": "short-secret"})
    assert done.returncode == 2 and "at least 32" in done.stderr + done.stdout
    done = _serve({**env, "UCGW_JWT_SECRET": TEST_JWT_SECRET, "UCGW_AUTH_REQUIRED": "false"})
    assert done.returncode == 2


class _BrokenServices:
    """Services whose health report blows up with internals in the message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def health(self) -> list[dict[str, object]]:
        raise RuntimeError("secret internals: /var/lib/ucgw/db password=hunter2")


@pytest.mark.parametrize("env", ["production", "development"])
def test_unexpected_errors_are_masked(env: str) -> None:
    from resolvers.context import RequestContext
    from rules.roles import Principal

    settings = Settings(env=env)
    schema = build_schema(settings)
    ctx = RequestContext(services=_BrokenServices(settings),  # type: ignore[arg-type]
                         principal=Principal(subject="t", role="caseworker", client="t", method="jwt"))
    result = asyncio.run(schema.execute("{ sources { source } }", context_value=ctx))
    [error] = result.errors
    assert error.formatted["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in json.dumps(error.formatted) and "hunter2" not in json.dumps(error.formatted)
    assert error.message == ("internal error" if env == "production" else "internal error (RuntimeError)")


def test_routes_other_than_graphql_post_and_get_are_starlettes(gw: GatewayProcess, mock_services: Any) -> None:
    """POST/GET /graphql go straight to the guard (gateway/app.py GatewayApp); everything else is routed."""
    mock_services.reset()
    assert http("PUT", f"{gw.url}/graphql", {"query": "{ __typename }"}, headers=gw.headers())[0] == 405
    assert http("POST", f"{gw.url}/graphql/", {"query": "{ __typename }"}, headers=gw.headers())[0] == 307
    assert http("GET", f"{gw.url}/nowhere")[0] == 404
    assert http("POST", f"{gw.url}/graphql", {"query": "{ __typename }"})[0] == 401  # the guard, uncredentialed
    status, _, raw = http("GET", f"{gw.url}/graphql?query=%7B__typename%7D", headers=gw.headers())
    assert (status, json.loads(raw)) == (200, {"data": {"__typename": "Query"}})
    assert backend_calls(mock_services) == 0
