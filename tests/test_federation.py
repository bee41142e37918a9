"""Federation v2 subgraph mode (`UCGW_FEDERATION=true`): `_service { sdl }` is the committed
schema.federation.graphql, `_entities` reads children under the `child` query's rules and audit, and a real
router (Apollo's composition library and Apollo Gateway, tests/clients/federation/) composes this subgraph
with a legal-services subgraph extending `Child` and answers queries that cross both."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing import node
from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = """query($r: [_Any!]!) { _entities(representations: $r) { ... on Child { aNumber
  identity { firstName } } } }"""
EVENTS = "query($a: ID) { auditEvents(aNumber: $a, first: 1000) { subject aNumber outcome sectionsReturned } }"


@pytest.fixture(scope="module")
def gw(mock_services: MockProcess) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(mock_services.gateway_env(UCGW_FEDERATION="true"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def children(mock_services: MockProcess) -> list[tuple[str, str]]:
    """Two children with ICE records: (A-number, first name)."""
    out = []
    for a in mock_services.sample(60):
        r = mock_services.request("ice", "GET", f"/_admin/records/{a}")
        if r.status == 200:
            out.append((a, r.json()["first_name"]))
        if len(out) == 2:
            return out
    raise AssertionError("too few children with ICE records")


def rep(a: str) -> dict[str, str]:
    return {"__typename": "Child", "aNumber": a}


def audit(gw: GatewayProcess, a: str, subject: str) -> list[tuple[str, list[str]]]:
    events = gw.query(EVENTS, {"a": a}, token=mint("auditor"))[1]["data"]["auditEvents"]
    return [(e["outcome"], e["sectionsReturned"]) for e in events if e["subject"] == subject]


def test_committed_subgraph_sdl_is_what_is_served(gw: GatewayProcess) -> None:
    committed = (ROOT / "schema.federation.graphql").read_text()
    exported = subprocess.run([sys.executable, "-m", "gateway.cli", "export-schema", "--federation"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    assert exported == committed, "run: ucgw export-schema --federation > schema.federation.graphql"
    status, body = gw.query("{ _service { sdl } }")
    assert status == 200 and body["data"]["_service"]["sdl"] + "\n" == committed
    assert 'type Child @key(fields: "aNumber"' in committed
    plain = (ROOT / "schema.graphql").read_text()
    assert "@key" not in plain and "_entities" not in plain and "_service" not in plain


def test_entities_read_children_as_child_does(gw: GatewayProcess, children: list[tuple[str, str]]) -> None:
    (a, first), (b, _) = children
    token = mint("caseworker", subject="entities-caseworker")
    status, body = gw.query(ENTITIES, {"r": [rep(a), rep("A000000001"), {"__typename": "Child"}]}, token=token)
    assert status == 200
    assert body["data"]["_entities"] == [{"aNumber": a, "identity": {"firstName": first}}, None, None]
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [(["_entities", 2], "BAD_USER_INPUT")]
    assert audit(gw, a, "entities-caseworker") == [("OK", ["identity"])]
    # the field capabilities hold: a partner sees statuses, not names
    status, body = gw.query(ENTITIES, {"r": [rep(a)]}, token=mint("partner", subject="entities-partner"))
    assert body["data"]["_entities"] == [{"aNumber": a, "identity": {"firstName": None}}]
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    # a role without child:status reads nothing, and the refusal is audited against the child
    status, body = gw.query(ENTITIES, {"r": [rep(b)]}, token=mint("auditor", subject="entities-auditor"))
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert [o for o, _ in audit(gw, b, "entities-auditor")] == ["FORBIDDEN"]
    # no credentials, no entities
    status, _, raw = http("POST", f"{gw.url}/graphql", {"query": ENTITIES, "variables": {"r": [rep(a)]}})
    assert status == 401 and json.loads(raw)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_router_composes_the_subgraph_and_crosses_it(gw: GatewayProcess, children: list[tuple[str, str]]) -> None:
    (a, first), (b, second) = children
    router_proc = node.start("federation", "supergraph.mjs", f"{gw.url}/graphql",
                             f"Bearer {mint('caseworker')}", [a, b])
    try:
        line = router_proc.stdout.readline()  # type: ignore[union-attr]
        assert line, router_proc.stderr.read()  # type: ignore[union-attr]
        started = json.loads(line)
        assert "router" in started, started
        router = started["router"]

        def ask(query: str, token: str | None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            status, _, raw = http("POST", router, {"query": query}, headers={**headers,
                                                                              "apollo-require-preflight": "1"})
            assert status == 200, raw
            return json.loads(raw)

        token = mint("caseworker", subject="router-caseworker")
        # from this gateway into the legal directory
        body = ask(f'{{ child(aNumber: "{a}") {{ aNumber identity {{ firstName }} '
                   "legalRepresentation { provider attorney } } }", token)
        assert body == {"data": {"child": {"aNumber": a, "identity": {"firstName": first}, "legalRepresentation": {
            "provider": "Kids in Need of Defense", "attorney": f"Attorney for {a[-4:]}"}}}}
        # from the legal directory into this gateway: the router calls `_entities` with the caller's token
        body = ask("{ representedChildren { aNumber identity { firstName } legalRepresentation { provider } } }",
                   token)
        assert [(c["aNumber"], c["identity"]["firstName"]) for c in body["data"]["representedChildren"]] == [
            (a, first), (b, second)]
        assert audit(gw, b, "router-caseworker") == [("OK", ["identity"])]
        assert [o for o, _ in audit(gw, a, "router-caseworker")] == ["OK", "OK"]
        # a partner's token reaches the subgraph as the partner's: statuses, not names
        body = ask("{ representedChildren { aNumber identity { firstName } } }", mint("partner"))
        assert [c["identity"]["firstName"] for c in body["data"]["representedChildren"]] == [None, None]
        assert {e["extensions"]["code"] for e in body["errors"]} >= {"FORBIDDEN"}
    finally:
        router_proc.stdin.close()  # type: ignore[union-attr]
        try:
            router_proc.wait(timeout=20)
        finally:
            router_proc.kill()
