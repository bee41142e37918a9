"""Persisted operations: Apollo's automatic persisted queries (proved with Apollo Client's PersistedQueryLink,
POST and GET), documents named by `documentId` or Relay's `doc_id`, and trusted documents: a credential
marked `trusted_documents_only` (API-key entry or JWT claim) runs only its client's manifest."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from testing.access import ucgw
from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess
from testing.node_clients import run_json

STATUS = "query PartnerStatus($a: ID!) { child(aNumber: $a) { aNumber location { status } } }"
OTHER = "query Other($a: ID!) { child(aNumber: $a) { aNumber hearing { caseStatus } } }"
TRUSTED_KEY, OPEN_KEY = "ucgw_test-only-trusted-partner-key", "ucgw_test-only-open-partner-key"  # test values
CLIENT = "legal-aid-app"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=29, children=30) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def data_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ucgw-persisted-") as path:
        yield path


@pytest.fixture(scope="module")
def gw(world: MockProcess, data_dir: str) -> Iterator[GatewayProcess]:
    keys = Path(data_dir) / "keys.toml"
    keys.write_text(
        f'[[api_key]]\nclient = "{CLIENT}"\nrole = "partner"\nsha256 = "{sha(TRUSTED_KEY)}"\n'
        "trusted_documents_only = true\n\n"
        f'[[api_key]]\nclient = "open-app"\nrole = "partner"\nsha256 = "{sha(OPEN_KEY)}"\n')
    manifest = Path(data_dir) / "status.graphql"
    manifest.write_text(STATUS)
    added = ucgw("documents", "add", "--client", CLIENT, "--data-dir", data_dir, str(manifest))
    assert added.returncode == 0, added.stderr
    assert added.stdout.split("\t")[0] == f"sha256:{sha(STATUS)}"
    gateway = GatewayProcess({**world.gateway_env(), "UCGW_DATA_DIR": data_dir, "UCGW_API_KEYS_FILE": str(keys)})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def a_number(world: MockProcess) -> str:
    return world.sample(1)[0]


def post(gw: GatewayProcess, payload: dict[str, Any], headers: dict[str, str] | None = None,
         accept: str = "application/json") -> tuple[int, dict[str, Any]]:
    head = headers if headers is not None else gw.headers()
    status, _, body = http("POST", f"{gw.url}/graphql", raw=json.dumps(payload).encode(),
                           headers={**head, "Content-Type": "application/json", "Accept": accept})
    return status, json.loads(body)


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def apq(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


@pytest.mark.parametrize("mode", ["post", "get"])
def test_apollo_persisted_query_link_registers_then_sends_the_hash_alone(gw: GatewayProcess, a_number: str,
                                                                        mode: str) -> None:
    # each mode's operation has its own name, so its first request's hash is unknown to the gateway
    out = run_json("apollo_apq.mjs", f"{gw.url}/graphql", gw.token or "", a_number, mode)
    method = mode.upper()
    sequence = [(r["method"], r["hash"] is not None, r["query"], r["status"], r["codes"]) for r in out["requests"]]
    assert sequence == [
        # hash only: unknown (Apollo Client 4 accepts graphql-response+json: a 400 there, 200 in application/json)
        (method, True, False, 400, ["PERSISTED_QUERY_NOT_FOUND"]),
        ("POST", True, True, 200, []),  # hash and query (a registration always goes by POST): registered and run
        (method, True, False, 200, []),  # the second client: hash only, served
    ]
    hashes = {r["hash"] for r in out["requests"]}
    assert len(hashes) == 1
    assert out["first"]["child"]["aNumber"] == a_number and out["second"] == out["first"]


def test_a_hash_only_status_query_is_answered_from_stored_answers(gw: GatewayProcess, a_number: str) -> None:
    text = STATUS.replace("PartnerStatus", "StoredStatus")
    assert post(gw, {"query": text, "variables": {"a": a_number}, "extensions": apq(sha(text))})[0] == 200
    before = _details(gw)
    for _ in range(3):
        status, body = post(gw, {"variables": {"a": a_number}, "extensions": apq(sha(text))})
        assert status == 200 and body["data"]["child"]["aNumber"] == a_number
    after = _details(gw)
    assert after["answerCache"]["hits"] - before["answerCache"]["hits"] == 3
    assert after["persistedDocuments"]["served"] - before["persistedDocuments"]["served"] == 3


def _details(gw: GatewayProcess) -> dict[str, Any]:
    status, _, body = http("GET", f"{gw.admin_url}/readyz")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def test_a_hash_that_is_not_the_querys_is_refused_and_runs_nothing(gw: GatewayProcess, world: MockProcess,
                                                                   a_number: str) -> None:
    text = STATUS.replace("PartnerStatus", "Mismatched")
    before = sum(int(world.stats(s)["total"]) for s in ("orr", "ice", "eoir"))
    for accept, expected in (("application/json", 400), ("application/graphql-response+json", 400)):
        status, body = post(gw, {"query": text, "variables": {"a": a_number}, "extensions": apq(sha(STATUS))},
                            accept=accept)
        assert (status, codes(body)) == (expected, ["PERSISTED_QUERY_HASH_MISMATCH"]) and "data" not in body
    assert sum(int(world.stats(s)["total"]) for s in ("orr", "ice", "eoir")) == before
    # and it was not registered under that hash: the hash still names the text it is the hash of, or nothing
    status, body = post(gw, {"variables": {"a": a_number}, "extensions": apq(sha(text))})
    assert codes(body) == ["PERSISTED_QUERY_NOT_FOUND"]


def test_only_a_valid_document_is_registered(gw: GatewayProcess, a_number: str) -> None:
    for text, code in (("query Broken { child(", "GRAPHQL_PARSE_FAILED"), ("query Invalid { nope }",
                                                                           "GRAPHQL_VALIDATION_FAILED")):
        status, body = post(gw, {"query": text, "extensions": apq(sha(text))})
        assert (status, codes(body)) == (200, [code])
        status, body = post(gw, {"extensions": apq(sha(text))})
        assert codes(body) == ["PERSISTED_QUERY_NOT_FOUND"]  # never stored: the store holds only operations that ran
    text = STATUS.replace("PartnerStatus", "BadVariables")
    assert codes(post(gw, {"query": text, "variables": {"a": [1]}, "extensions": apq(sha(text))})[1]) == [
        "BAD_USER_INPUT"]
    assert codes(post(gw, {"variables": {"a": a_number}, "extensions": apq(sha(text))})[1]) == [
        "PERSISTED_QUERY_NOT_FOUND"]
    assert post(gw, {"query": text, "variables": {"a": a_number}, "extensions": apq(sha(text))})[0] == 200
    status, body = post(gw, {"variables": {"a": a_number}, "extensions": apq(sha(text))})
    assert status == 200 and body["data"]["child"]["aNumber"] == a_number


@pytest.mark.parametrize(("payload", "code"), [
    ({"documentId": "sha256:" + "0" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
    ({"doc_id": "1" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
    ({"documentId": "0" * 64}, "BAD_REQUEST"),  # no sha256: prefix
    ({"doc_id": "abc"}, "BAD_REQUEST"),
    ({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}}, "PERSISTED_QUERY_NOT_SUPPORTED"),
    ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "XYZ"}}}, "BAD_REQUEST"),
])
def test_malformed_or_unknown_ids_get_a_coded_refusal(gw: GatewayProcess, payload: dict[str, Any], code: str) -> None:
    status, body = post(gw, {**payload, "variables": {}}, accept="application/graphql-response+json")
    assert status == 400 and codes(body) == [code] and "data" not in body


def test_any_caller_may_name_a_trusted_document_by_document_id(gw: GatewayProcess, a_number: str) -> None:
    status, body = post(gw, {"documentId": f"sha256:{sha(STATUS)}", "variables": {"a": a_number}})
    assert status == 200 and body["data"]["child"]["aNumber"] == a_number
    query = urlencode({"documentId": f"sha256:{sha(STATUS)}", "variables": json.dumps({"a": a_number})})
    status, _, raw = http("GET", f"{gw.url}/graphql?{query}", headers=gw.headers())
    assert status == 200 and json.loads(raw)["data"]["child"]["aNumber"] == a_number


def test_relay_persisted_ids_run_the_manifests_operations(gw: GatewayProcess, a_number: str) -> None:
    for form in ("doc_id", "documentId"):
        out = run_json("relay_doc_id.mjs", f"{gw.url}/graphql", "x-api-key", TRUSTED_KEY, sha(STATUS),
                       json.dumps({"a": a_number}), form)
        assert out["status"] == 200 and out["contentType"] == "application/graphql-response+json"
        assert out["body"]["data"]["child"] == {"aNumber": a_number,
                                                "location": out["body"]["data"]["child"]["location"]}
        assert out["body"]["data"]["child"]["location"]["status"]


def test_a_trusted_documents_only_key_runs_nothing_else(gw: GatewayProcess, a_number: str) -> None:
    trusted = {"X-API-Key": TRUSTED_KEY}
    # a plain query, even the manifest's own text without its id
    for payload in ({"query": STATUS, "variables": {"a": a_number}},
                    {"query": OTHER, "variables": {"a": a_number}}):
        status, body = post(gw, payload, trusted)
        assert (status, codes(body)) == (403, ["PERSISTED_QUERY_NOT_ALLOWED"]) and "data" not in body
    # a document another caller registered (APQ) is not in this client's manifest
    assert post(gw, {"query": OTHER, "variables": {"a": a_number}, "extensions": apq(sha(OTHER))})[0] == 200
    for payload in ({"extensions": apq(sha(OTHER))}, {"documentId": f"sha256:{sha(OTHER)}"},
                    {"query": OTHER, "extensions": apq(sha(OTHER))}):
        status, body = post(gw, {**payload, "variables": {"a": a_number}}, trusted)
        assert (status, codes(body)) == (403, ["PERSISTED_QUERY_NOT_ALLOWED"])
    # the manifest's operation, by each of the three names, and by GET
    for payload in ({"extensions": apq(sha(STATUS))}, {"documentId": f"sha256:{sha(STATUS)}"},
                    {"doc_id": sha(STATUS)}, {"query": STATUS, "extensions": apq(sha(STATUS))}):
        status, body = post(gw, {**payload, "variables": {"a": a_number}}, trusted)
        assert status == 200 and body["data"]["child"]["aNumber"] == a_number, payload
    query = urlencode({"query": OTHER, "variables": json.dumps({"a": a_number})})
    status, _, raw = http("GET", f"{gw.url}/graphql?{query}", headers=trusted)
    assert status == 403 and codes(json.loads(raw)) == ["PERSISTED_QUERY_NOT_ALLOWED"]
    # the same key without the mark would run it: the open key does
    status, body = post(gw, {"query": OTHER, "variables": {"a": a_number}}, {"X-API-Key": OPEN_KEY})
    assert status == 200 and body["data"]["child"]["aNumber"] == a_number


def test_the_jwt_claim_marks_a_token_trusted_documents_only(gw: GatewayProcess, a_number: str, data_dir: str) -> None:
    token = mint("partner", client=CLIENT, trusted_documents_only=True)
    headers = {"Authorization": f"Bearer {token}"}
    status, body = post(gw, {"query": OTHER, "variables": {"a": a_number}}, headers)
    assert (status, codes(body)) == (403, ["PERSISTED_QUERY_NOT_ALLOWED"])
    status, body = post(gw, {"documentId": f"sha256:{sha(STATUS)}", "variables": {"a": a_number}}, headers)
    assert status == 200 and body["data"]["child"]["aNumber"] == a_number
    # another client's token with the claim: not its manifest
    other = {"Authorization": f"Bearer {mint('partner', client='someone-else', trusted_documents_only=True)}"}
    status, body = post(gw, {"documentId": f"sha256:{sha(STATUS)}", "variables": {"a": a_number}}, other)
    assert (status, codes(body)) == (403, ["PERSISTED_QUERY_NOT_ALLOWED"])
    # a document added to the manifest while the gateway runs applies at once
    extra = Path(data_dir) / "other.graphql"
    extra.write_text(OTHER)
    done = ucgw("documents", "add", "--client", "someone-else", "--data-dir", data_dir, str(extra))
    assert done.returncode == 0, done.stderr
    status, body = post(gw, {"documentId": f"sha256:{sha(OTHER)}", "variables": {"a": a_number}}, other)
    assert status == 200 and body["data"]["child"]["aNumber"] == a_number
    bad = {"Authorization": f"Bearer {mint('partner', client=CLIENT, trusted_documents_only='yes')}"}
    status, body = post(gw, {"documentId": f"sha256:{sha(STATUS)}", "variables": {"a": a_number}}, bad)
    assert (status, codes(body)) == (401, ["UNAUTHENTICATED"])


def test_documents_cli_reads_relay_codegen_and_apollo_manifests(tmp_path: Path) -> None:
    relay = tmp_path / "persisted_queries.json"
    relay.write_text(json.dumps({sha(STATUS): STATUS, sha(OTHER): OTHER}))
    apollo = tmp_path / "apollo.json"
    apollo.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": [
        {"id": sha(OTHER), "name": "Other", "type": "query", "body": OTHER}]}))
    done = ucgw("documents", "add", "--client", "c1", "--data-dir", str(tmp_path), str(relay), str(apollo))
    assert done.returncode == 0, done.stderr
    listed = ucgw("documents", "list", "--client", "c1", "--data-dir", str(tmp_path))
    assert sorted(listed.stdout.splitlines()) == sorted([f"sha256:{sha(OTHER)}\tOther",
                                                         f"sha256:{sha(STATUS)}\tPartnerStatus"])
    md5 = tmp_path / "md5.json"
    md5.write_text(json.dumps({hashlib.md5(STATUS.encode()).hexdigest(): STATUS}))  # noqa: S324 - Relay's default
    refused = ucgw("documents", "add", "--client", "c1", "--data-dir", str(tmp_path), str(md5))
    assert refused.returncode == 2 and "is not the SHA-256 of its document" in refused.stderr
    broken = tmp_path / "broken.graphql"
    broken.write_text("query {")
    refused = ucgw("documents", "add", "--client", "c1", "--data-dir", str(tmp_path), str(broken))
    assert refused.returncode == 2 and "is not GraphQL" in refused.stderr


@pytest.mark.parametrize("store", ["memory", "off"])
def test_the_apq_store_setting(world: MockProcess, data_dir: str, a_number: str, store: str) -> None:
    """`memory` registers in the process; `off` answers a hash alone with PERSISTED_QUERY_NOT_SUPPORTED (Apollo's
    link then sends plain queries), still runs a query sent with its hash, and still serves trusted documents."""
    with tempfile.TemporaryDirectory(prefix="ucgw-apq-") as own:
        added = ucgw("documents", "add", "--client", CLIENT, "--data-dir", own, str(Path(data_dir) / "status.graphql"))
        assert added.returncode == 0, added.stderr
        gateway = GatewayProcess({**world.gateway_env(), "UCGW_DATA_DIR": own, "UCGW_PERSISTED_QUERIES": store})
        try:
            text = OTHER.replace("Other", "Setting")
            status, body = post(gateway, {"query": text, "variables": {"a": a_number}, "extensions": apq(sha(text))})
            assert status == 200 and body["data"]["child"]["aNumber"] == a_number
            status, body = post(gateway, {"variables": {"a": a_number}, "extensions": apq(sha(text))})
            if store == "memory":
                assert status == 200 and body["data"]["child"]["aNumber"] == a_number
            else:
                assert (status, codes(body)) == (400, ["PERSISTED_QUERY_NOT_SUPPORTED"])
                assert body["errors"][0]["message"] == "PersistedQueryNotSupported"
            status, body = post(gateway, {"documentId": f"sha256:{sha(STATUS)}", "variables": {"a": a_number}})
            assert status == 200 and body["data"]["child"]["aNumber"] == a_number
        finally:
            gateway.stop()
