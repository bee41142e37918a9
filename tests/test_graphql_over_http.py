"""GraphQL over HTTP (the GraphQL Foundation's spec): media types by Accept, status codes, no `data` for
requests that never reached execution; and the `graphql-http` package's own server audits, run with Node
against a live gateway (tests/clients/http_audits.mjs, packages from tests/clients/package-lock.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from testing.gateway import GatewayProcess, http
from testing.mockproc import MockProcess
from testing.node_clients import run_json

RESPONSE_JSON, JSON = "application/graphql-response+json", "application/json"
STATUS = "query S($a: ID!) { child(aNumber: $a) { aNumber location { status } } }"


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=27, children=30) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(world.gateway_env())
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def a_number(world: MockProcess) -> str:
    return world.sample(1)[0]


def post(gw: GatewayProcess, payload: object, accept: str | None) -> tuple[int, str, dict[str, object]]:
    headers = gw.headers(extra={"Content-Type": "application/json"})
    if accept is not None:
        headers["Accept"] = accept
    status, head, body = http("POST", f"{gw.url}/graphql", raw=json.dumps(payload).encode(), headers=headers)
    return status, head.get("content-type", ""), json.loads(body)


@pytest.mark.parametrize(("accept", "media"), [
    (RESPONSE_JSON, RESPONSE_JSON),
    (JSON, JSON),
    (None, JSON),  # the legacy watershed: a client that sends no Accept reads application/json
    ("*/*", JSON),
    ("application/*", JSON),
    (f"{RESPONSE_JSON}, {JSON};q=0.9", RESPONSE_JSON),  # Apollo Client 4
    (f"{JSON}, {RESPONSE_JSON};q=0.5", JSON),
    (f"{RESPONSE_JSON};charset=utf-8", RESPONSE_JSON),
    ("text/html;q=0.9, */*;q=0.8", JSON),
])
def test_the_answer_comes_in_the_media_type_accept_prefers(gw: GatewayProcess, a_number: str, accept: str | None,
                                                          media: str) -> None:
    status, content_type, body = post(gw, {"query": STATUS, "variables": {"a": a_number}}, accept)
    assert status == 200 and content_type.split(";")[0] == media
    assert body["data"] == {"child": {"aNumber": a_number, "location": body["data"]["child"]["location"]}}  # type: ignore[index]


@pytest.mark.parametrize("accept", ["text/html", "application/xml", f"{JSON};q=0, text/plain", "image/png, text/*"])
def test_an_accept_the_gateway_cannot_satisfy_is_a_406(gw: GatewayProcess, accept: str) -> None:
    status, content_type, body = post(gw, {"query": "{ __typename }"}, accept)
    assert status == 406 and content_type == JSON
    assert body["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"  # type: ignore[index]


@pytest.mark.parametrize(("query", "variables", "code"), [
    ("{ child(aNumber: ", None, "GRAPHQL_PARSE_FAILED"),
    ("{ noSuchField }", None, "GRAPHQL_VALIDATION_FAILED"),
    (STATUS, {"a": {"x": 1}}, "BAD_USER_INPUT"),
])
def test_a_request_error_has_no_data_and_a_4xx_under_graphql_response_json(
        gw: GatewayProcess, query: str, variables: dict[str, object] | None, code: str) -> None:
    status, content_type, body = post(gw, {"query": query, "variables": variables}, RESPONSE_JSON)
    assert (status, content_type) == (400, RESPONSE_JSON)
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == code  # type: ignore[index]
    # application/json: 200 for parse and validation failures (the spec's legacy rule), 400 for variables
    status, content_type, body = post(gw, {"query": query, "variables": variables}, JSON)
    assert (status, content_type) == (400 if code == "BAD_USER_INPUT" else 200, JSON)
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == code  # type: ignore[index]


def test_a_field_error_keeps_its_data_and_a_200(gw: GatewayProcess) -> None:
    status, content_type, body = post(gw, {"query": '{ child(aNumber: "nonsense") { aNumber } }'}, RESPONSE_JSON)
    assert (status, content_type) == (200, RESPONSE_JSON)
    assert body["data"] == {"child": None} and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # type: ignore[index]


def test_a_get_query_and_a_refused_get_mutation_follow_accept(gw: GatewayProcess, a_number: str) -> None:
    query = urlencode({"query": STATUS, "variables": json.dumps({"a": a_number})})
    status, head, body = http("GET", f"{gw.url}/graphql?{query}", headers=gw.headers(extra={"Accept": RESPONSE_JSON}))
    assert (status, head["content-type"]) == (200, RESPONSE_JSON)
    assert json.loads(body)["data"]["child"]["aNumber"] == a_number
    mutation = urlencode({"query": 'mutation { acknowledgeSafetyConcern(id: "x", note: "n") { id } }'})
    status, head, body = http("GET", f"{gw.url}/graphql?{mutation}",
                              headers=gw.headers(extra={"Accept": RESPONSE_JSON}))
    assert status == 405 and head["content-type"] == RESPONSE_JSON
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


AUDITS = 61  # serverAudits of graphql-http 1.23.1 (tests/clients/package-lock.json)


def test_graphql_http_server_audits_every_must_and_should_passes(gw: GatewayProcess) -> None:
    results = run_json("http_audits.mjs", f"{gw.url}/graphql", gw.token or "")
    assert len(results) == AUDITS
    levels = {level: [r for r in results if r["name"].startswith(level)] for level in ("MUST", "SHOULD", "MAY")}
    assert sum(map(len, levels.values())) == AUDITS  # every audit is one of the three
    failed = [(r["name"], r["reason"]) for r in levels["MUST"] + levels["SHOULD"] if r["status"] != "ok"]
    assert failed == []
    assert len(levels["MUST"]) > 10 and len(levels["SHOULD"]) > 20
