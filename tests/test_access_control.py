"""Authentication, field-level authorization and field-office scoping over real HTTP (issue 5)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.http.auth import ONE_CREDENTIAL
from testing.access import FULL, backend_calls, error_paths, gateway_env, records, strings, ucgw
from testing.access import by_office as sample_by_office
from testing.gateway import TEST_JWT_SECRET, GatewayProcess, http, mint

STATUS_ONLY = "query($a: ID!) { child(aNumber: $a) { aNumber hearing { caseStatus } } }"
PARTNER_DENIED = {
    "child.identity.firstName", "child.identity.lastName", "child.identity.dateOfBirth", "child.identity.orrCaseId",
    "child.identity.countryOfBirth", "child.sponsor.category", "child.location.address", "child.sponsor.name",
    "child.sponsor.relationship", "child.sponsor.phone",
    "child.sponsor.address", "child.followUpCall", "child.nta.addressOnFile", "child.hearing.addressOfRecord",
    "child.addressesOnFile",
}


def _new_key(client: str, role: str, offices: str | None = None) -> tuple[str, str]:
    """(key, keys-file entry) made by `ucgw apikey`."""
    args = ["apikey", "--client", client, "--role", role] + (["--field-offices", offices] if offices else [])
    done = ucgw(*args)
    assert done.returncode == 0, done.stderr
    key = re.search(r"(ucgw_\S+)", done.stderr)
    assert key, done.stderr
    return key.group(1), done.stdout


@pytest.fixture(scope="module")
def released(mock_services: Any) -> list[str]:
    """Children every source knows, released to a sponsor with a phone, with addresses at ICE and EOIR."""
    out = []
    for a in mock_services.sample(150):
        rec = records(mock_services, a)
        orr, ice, eoir = rec["orr"], rec["ice"], rec["eoir"]
        if not (orr and ice and eoir and orr.get("release")):
            continue
        sponsor = orr["release"]["sponsor"]
        if sponsor.get("phone") and sponsor["address"].get("street") and (ice.get("address_on_file") or {}).get(
                "street") and eoir["address_of_record"].get("street") and eoir.get("hearings"):
            out.append(a)
        if len(out) == 4:
            break
    assert len(out) >= 2, "the mock world should hold released children with full records"
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three API keys written to a keys file the way an operator would (with `ucgw apikey`)."""
    partner, p_entry = _new_key("legal-aid-portal", "partner")
    caseworker, c_entry = _new_key("case-management-app", "caseworker")
    path = tmp_path_factory.mktemp("keys") / "api_keys.toml"
    path.write_text(p_entry + "\n" + c_entry, encoding="utf-8")
    assert partner not in path.read_text() and caseworker not in path.read_text()  # only hashes are stored
    return {"file": str(path), "partner": partner, "caseworker": caseworker}


@pytest.fixture(scope="module")
def gateway(mock_services: Any, keys: dict[str, Any]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(gateway_env(mock_services, UCGW_API_KEYS_FILE=keys["file"]))
    yield gw
    gw.stop()


def test_missing_or_bad_credentials_are_refused_before_any_backend_call(gateway: GatewayProcess,
                                                                        mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    bad: dict[str, dict[str, str]] = {
        "no credentials": {},
        "expired": {"Authorization": f"Bearer {mint(ttl=-120)}"},
        "wrong signature": {"Authorization": f"Bearer {mint(secret='another-secret-of-the-same-length-000000')}"},
        "wrong audience": {"Authorization": f"Bearer {mint(audience='some-other-api')}"},
        "wrong issuer": {"Authorization": f"Bearer {mint(issuer='someone-else')}"},
        "unknown role": {"Authorization": f"Bearer {mint(role='admin')}"},
        "malformed token": {"Authorization": "Bearer abc.def.ghi"},
        "unknown API key": {"X-API-Key": "ucgw_not-a-key-anyone-was-given"},
        "unknown API key (ApiKey scheme)": {"Authorization": "ApiKey ucgw_not-a-key-anyone-was-given"},
        "unsupported scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    }
    mock_services.reset()
    for name, headers in bad.items():
        status, resp_headers, body = http("POST", f"{gateway.url}/graphql", {"query": STATUS_ONLY,
                                                                             "variables": {"a": a}}, headers=headers)
        assert status == 401, name
        doc = json.loads(body)
        assert "data" not in doc, name
        assert doc["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", name
        assert {k.lower(): v for k, v in resp_headers.items()}["www-authenticate"].startswith("Bearer"), name
    messages = {name: json.loads(http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                                      headers=h)[2])["errors"][0]["message"] for name, h in bad.items()}
    assert "expired" in messages["expired"] and "signature" in messages["wrong signature"]
    assert "audience" in messages["wrong audience"] and "unknown API key" == messages["unknown API key"]
    # a GET query needs credentials too
    status, _, _ = http("GET", f"{gateway.url}/graphql?query=%7B__typename%7D", headers={"Accept": "application/json"})
    assert status == 401
    assert backend_calls(mock_services) == 0


def _post_raw_headers(gateway: GatewayProcess, header_lines: list[str]) -> tuple[int, dict[str, Any]]:
    """POST `{ __typename }` with exactly these header lines (repeats included, which a dict cannot hold)."""
    body = b'{"query": "{ __typename }"}'
    head = "".join(f"{line}\r\n" for line in ["POST /graphql HTTP/1.1", f"Host: 127.0.0.1:{gateway.port}",
                                                "Content-Type: application/json", f"Content-Length: {len(body)}",
                                                "Connection: close", *header_lines])
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def test_one_credential_naming_a_real_subject_or_none(gateway: GatewayProcess, keys: dict[str, Any],
                                                       mock_services: Any) -> None:
    """Two credentials are refused, not resolved by order; a credential is at most 8192 characters; `sub`
    and `client` must name someone (they go to every audit event) and `exp` must be a number."""
    now = int(time.time())
    refused = {
        "empty sub": ([f"Authorization: Bearer {mint(sub='')}"], "token 'sub' must be a non-blank string of at "
                                                                 "most 256 printable characters"),
        "blank sub": ([f"Authorization: Bearer {mint(sub='   ')}"], "token 'sub' must be a non-blank string of "
                                                                   "at most 256 printable characters"),
        "sub with a control character": (["Authorization: Bearer " + mint(sub="alice\u0007")],
                                         "token 'sub' must be a non-blank string of at most 256 printable "
                                         "characters"),
        "client not a string": ([f"Authorization: Bearer {mint(client={'x': 1})}"], "token 'client' must be a "
                                "non-blank string of at most 256 printable characters"),
        "client of 5,000 characters": ([f"Authorization: Bearer {mint(client='c' * 5000)}"], "token 'client' must "
                                       "be a non-blank string of at most 256 printable characters"),
        "exp as a string": ([f"Authorization: Bearer {mint(exp=str(now + 3600))}"],
                            "token 'exp' must be a number (seconds since the epoch)"),
        "a key and a token": ([f"X-API-Key: {keys['partner']}", f"Authorization: Bearer {mint()}"],
                              ONE_CREDENTIAL),
        "two Authorization headers": ([f"Authorization: Bearer {mint()}", f"Authorization: Bearer {mint('partner')}"],
                                      ONE_CREDENTIAL),
        "two X-API-Key headers": ([f"X-API-Key: {keys['partner']}", f"X-API-Key: {keys['caseworker']}"],
                                  ONE_CREDENTIAL),
        "a signed token over 8192 characters": ([f"Authorization: Bearer {mint(pad='x' * 9000)}"],
                                                "credential longer than 8192 characters"),
        "a key over 8192 characters": (["X-API-Key: " + "k" * 9000], "credential longer than 8192 characters"),
    }
    mock_services.reset()
    for name, (lines, message) in refused.items():
        status, doc = _post_raw_headers(gateway, lines)
        assert (status, [(e["message"], e["extensions"]["code"]) for e in doc["errors"]]) \
            == (401, [(message, "UNAUTHENTICATED")]), name
    # a token of 8 MB passes the header cap (UCGW_MAX_HEADER_BYTES): the edge refuses it before authentication
    status, doc = _post_raw_headers(gateway, ["Authorization: Bearer a." + "A" * 8_000_000 + ".b"])
    assert (status, [e["extensions"]["code"] for e in doc["errors"]]) == (431, ["HEADERS_TOO_LARGE"])
    status, doc = _post_raw_headers(gateway, [f"Authorization: Bearer {mint(sub='alice', client='case-app')}"])
    assert (status, doc) == (200, {"data": {"__typename": "Query"}})
    assert backend_calls(mock_services) == 0


def test_graphiql_page_loads_without_a_token(gateway: GatewayProcess) -> None:
    status, headers, page = http("GET", f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html") and b"ucgw-token" in page


def test_valid_credentials_of_each_kind(gateway: GatewayProcess, keys: dict[str, Any], mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    ways = {
        "bearer jwt": {"Authorization": f"Bearer {mint('partner')}"},
        "x-api-key": {"X-API-Key": keys["partner"]},
        "apikey scheme": {"Authorization": f"ApiKey {keys['partner']}"},
        "api key as bearer (GraphiQL's token bar)": {"Authorization": f"Bearer {keys['caseworker']}"},
    }
    for name, headers in ways.items():
        status, body = gateway.query(STATUS_ONLY, {"a": a}, token="", headers=headers)
        assert status == 200 and "errors" not in body, (name, body)
        assert body["data"]["child"]["aNumber"] == a


def _sensitive(rec: dict[str, dict[str, Any] | None]) -> set[str]:
    """Values a partner must never receive, less any that also sit in data a partner may read."""
    orr, ice, eoir = rec["orr"] or {}, rec["ice"] or {}, rec["eoir"] or {}
    values: set[str] = set()
    for person in (orr, ice, eoir):
        values |= {person.get("first_name"), person.get("last_name"), person.get("date_of_birth")}
    sponsor = (orr.get("release") or {}).get("sponsor") or {}
    values |= {sponsor.get("name"), sponsor.get("phone"), sponsor.get("relationship"), orr.get("orr_case_id")}
    for address in (sponsor.get("address"), ice.get("address_on_file"), eoir.get("address_of_record")):
        values |= {(address or {}).get("street"), (address or {}).get("unit"), (address or {}).get("zip")}
    allowed = set(strings(eoir.get("hearings"))) | set(strings(orr.get("custody_episodes")))
    allowed |= {ice.get("field_office"), ice.get("country_of_birth")}
    allowed |= set(strings(ice.get("nta"))) | {(orr.get("release") or {}).get("released_at")}
    return {v for v in values if v and not any(v in ok for ok in allowed if ok)}


def test_partner_gets_forbidden_on_identity_and_contact_fields_and_never_their_values(
        gateway: GatewayProcess, released: list[str], mock_services: Any) -> None:
    for a in released:
        rec = records(mock_services, a)
        secret_values = _sensitive(rec)
        status, body = gateway.query(FULL, {"a": a}, token=mint("partner"))
        assert status == 200
        assert error_paths(body, "FORBIDDEN") == PARTNER_DENIED
        assert all(e["extensions"]["code"] == "FORBIDDEN" for e in body["errors"])
        child = body["data"]["child"]
        for path in PARTNER_DENIED:
            node: Any = body["data"]
            for key in path.split("."):
                node = node[key]
            assert node is None, path
        text = json.dumps(body, ensure_ascii=False)
        leaked = {v for v in secret_values if v in text or any(v in s for s in strings(body))}
        assert not leaked, f"partner response leaks {len(leaked)} sensitive value(s)"
        # what a partner may read is there, and right
        assert child["nta"]["status"].lower().replace("filed_with_court", "filed") == rec["ice"]["nta"]["status"]
        assert child["nta"]["fieldOffice"] == rec["ice"]["field_office"]
        assert child["hearing"]["caseStatus"].lower() == rec["eoir"]["case_status"]
        assert child["location"]["status"] == "RELEASED_TO_SPONSOR" or rec["ice"]["custody_status"] in (
            "in_ice_custody", "removed")
        assert child["sponsor"]["releasedAt"]  # the release itself is status; the category is not (security #3)
        upcoming = child["hearing"]["nextHearing"]
        if upcoming is not None:
            court = next(h for h in rec["eoir"]["hearings"] if h["starts_at"].replace("Z", "+00:00") ==
                         upcoming["startsAt"].replace("Z", "+00:00"))
            assert upcoming["courtAddress"]["street"] == court["court_address"]["street"]
            assert upcoming["courtName"] == court["court_name"]
        # the same query as a caseworker carries those values: the check above is not vacuous
        status, full = gateway.query(FULL, {"a": a})
        assert status == 200 and "errors" not in full
        shown = json.dumps(full, ensure_ascii=False)
        sponsor = rec["orr"]["release"]["sponsor"]
        for must in (sponsor["name"], sponsor["phone"], sponsor["address"]["street"], rec["ice"]["first_name"],
                     rec["ice"]["date_of_birth"], rec["eoir"]["address_of_record"]["street"]):
            assert must in shown


def test_partner_api_key_is_a_partner(gateway: GatewayProcess, keys: dict[str, Any], released: list[str]) -> None:
    status, body = gateway.query(FULL, {"a": released[0]}, token="", headers={"X-API-Key": keys["partner"]})
    assert status == 200 and error_paths(body, "FORBIDDEN") == PARTNER_DENIED


def test_refused_sections_cost_no_backend_call(gateway: GatewayProcess, released: list[str],
                                               mock_services: Any) -> None:
    q = "query($a: ID!) { child(aNumber: $a, maxAgeSeconds: 0) { followUpCall { outcome } nta { status } } }"
    mock_services.reset()
    status, body = gateway.query(q, {"a": released[0]}, token=mint("partner"))
    assert status == 200 and error_paths(body) == {"child.followUpCall"}
    assert mock_services.stats("orr")["total"] == 0 and mock_services.stats("ice")["total"] == 1


def test_auditor_reads_health_and_audit_but_no_child_data(gateway: GatewayProcess, released: list[str],
                                                          mock_services: Any) -> None:
    auditor = mint("auditor")
    mock_services.reset()
    status, body = gateway.query(FULL, {"a": released[0]}, token=auditor)
    assert status == 200 and body["data"] == {"child": None}
    assert error_paths(body, "FORBIDDEN") == {"child"}
    status, body = gateway.query("query($as: [ID!]!) { children(aNumbers: $as) { aNumber nta { status } } }",
                                 {"as": released}, token=auditor)
    assert body["data"] is None and error_paths(body, "FORBIDDEN") == {"children"}
    assert backend_calls(mock_services) == 0
    status, body = gateway.query("{ sources { source breakerState } auditEvents(first: 5) { aNumber outcome } }",
                                 token=auditor)
    assert status == 200 and "errors" not in body
    assert {s["source"] for s in body["data"]["sources"]} == {"ORR", "ICE", "EOIR"}
    for role in ("caseworker", "partner"):
        status, body = gateway.query("{ auditEvents { aNumber } }", token=mint(role))
        assert body["data"] == {"auditEvents": None} and error_paths(body, "FORBIDDEN") == {"auditEvents"}


@pytest.fixture(scope="module")
def by_office(mock_services: Any) -> dict[str, list[str]]:
    """Sample A-numbers by the office ICE holds responsible."""
    return sample_by_office(mock_services)


def test_field_office_scope_hides_other_offices_children(gateway: GatewayProcess, by_office: dict[str, list[str]],
                                                         mock_services: Any) -> None:
    office = Counter({o: len(v) for o, v in by_office.items()}).most_common(1)[0][0]
    other = next(o for o in by_office if o != office)
    mine, theirs = by_office[office][:3], by_office[other][:2]
    asked = [mine[0], theirs[0], mine[1], "A999999998", theirs[1], mine[-1]]
    token = mint("partner", field_offices=[office.lower()])  # offices match case-insensitively
    q = "query($as: [ID!]!) { children(aNumbers: $as, maxAgeSeconds: 0) { aNumber hearing { caseStatus } } }"
    mock_services.reset()
    status, body = gateway.query(q, {"as": asked}, token=token)
    assert status == 200
    got = body["data"]["children"]
    assert [c["aNumber"] if c else None for c in got] == [mine[0], None, mine[1], None, None, mine[-1]]
    # security #7: outside the scope and unknown answer alike (null and NOT_FOUND), so existence does not show
    assert error_paths(body, "NOT_FOUND") == {"children.1", "children.3", "children.4"} and "FORBIDDEN" not in str(body)
    # the scope check reads ICE through the request's batch: one ICE call, though only EOIR was selected
    assert mock_services.stats("ice")["by_route"].get("POST /v1/subjects/batch", 0) == 1
    assert mock_services.stats("ice")["total"] == 1
    status, body = gateway.query(STATUS_ONLY, {"a": theirs[0]}, token=token)
    assert body["data"] == {"child": None} and error_paths(body, "NOT_FOUND") == {"child"}
    status, body = gateway.query(STATUS_ONLY, {"a": mine[0]}, token=token)
    assert body["data"]["child"]["aNumber"] == mine[0] and "errors" not in body
    # a claim spelled otherwise (accents, dots, spacing) names the same office, as the lists' filters do
    variant = "  " + "  ".join(office.upper().replace(".", "").replace("A", "\u00c1").split()) + ". "
    status, body = gateway.query(q, {"as": asked}, token=mint("partner", field_offices=[variant]))
    assert [c["aNumber"] if c else None for c in body["data"]["children"]] \
        == [mine[0], None, mine[1], None, None, mine[-1]], variant
    # an unscoped token sees both
    status, body = gateway.query(q, {"as": asked}, token=mint("partner"))
    assert [c is not None for c in body["data"]["children"]] == [True, True, True, False, True, True]


def test_field_office_scope_from_an_api_key(mock_services: Any, by_office: dict[str, list[str]],
                                            tmp_path: Path) -> None:
    office, other = list(by_office)[:2]
    key, entry = _new_key("county-legal-aid", "partner", office)
    (tmp_path / "keys.toml").write_text(entry, encoding="utf-8")
    gw = GatewayProcess(gateway_env(mock_services, UCGW_API_KEYS_FILE=str(tmp_path / "keys.toml")))
    try:
        hdr = {"X-API-Key": key}
        _, body = gw.query(STATUS_ONLY, {"a": by_office[office][0]}, token="", headers=hdr)
        assert body["data"]["child"]["aNumber"] == by_office[office][0]
        _, body = gw.query(STATUS_ONLY, {"a": by_office[other][0]}, token="", headers=hdr)
        assert body["data"]["child"] is None and error_paths(body, "NOT_FOUND") == {"child"}
    finally:
        gw.stop()


def _rsa() -> tuple[Any, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


def _rs256(key: Any, kid: str | None = None, **claims: Any) -> str:
    import time

    body = {"sub": "rs-user", "role": "caseworker", "aud": "uc-status-gateway", "iss": "ucgw-demo",
            "iat": int(time.time()), "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def test_rs256_with_a_public_key_file_and_with_jwks(mock_services: Any, tmp_path: Path) -> None:
    a = mock_services.sample(3)[0]
    signer, pem = _rsa()
    stranger, _ = _rsa()
    (tmp_path / "pub.pem").write_bytes(pem)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    for name, extra in (("pem", {"UCGW_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem")}),
                        ("jwks", {"UCGW_JWT_JWKS_FILE": str(tmp_path / "jwks.json")})):
        gw = GatewayProcess(gateway_env(mock_services, UCGW_JWT_SECRET="", **extra), token="")
        try:
            status, body = gw.query(STATUS_ONLY, {"a": a}, token=_rs256(signer, "k1"))
            assert status == 200 and body["data"]["child"]["aNumber"] == a, (name, body)
            refused = {
                "other key": _rs256(stranger, "k1"),
                "expired": _rs256(signer, "k1", exp=1),
                "HS256 while only RS256 is configured": mint(),
                "HS256 signed with the public key (algorithm confusion)": _confused(pem),
            }
            if name == "jwks":
                refused["unknown kid"] = _rs256(signer, "k2")
            for why, token in refused.items():
                status, body = gw.query(STATUS_ONLY, {"a": a}, token=token)
                assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (name, why)
        finally:
            gw.stop()


def _confused(pem: bytes) -> str:
    """An HS256 token whose HMAC key is the RSA public key's PEM text (PyJWT refuses to make one)."""
    import base64
    import hashlib
    import hmac
    import time

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "x", "role": "caseworker", "aud": "uc-status-gateway", "iss": "ucgw-demo",
                             "exp": int(time.time()) + 600}).encode())
    sig = hmac.new(pem, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64(sig)}"


def test_token_command_mints_a_working_token(gateway: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    done = ucgw("token", "--role", "partner", "--ttl", "120", "--subject", "jo",
                env={"UCGW_JWT_SECRET": TEST_JWT_SECRET})
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"], audience="uc-status-gateway")
    assert claims["role"] == "partner" and claims["sub"] == "jo" and claims["exp"] - claims["iat"] == 120
    status, body = gateway.query(FULL, {"a": a}, token=token)
    assert status == 200 and "child.identity.firstName" in error_paths(body, "FORBIDDEN")
    assert ucgw("token", "--role", "janitor").returncode != 0


def test_logs_hold_no_personal_data_or_a_numbers(mock_services: Any, released: list[str]) -> None:
    gw = GatewayProcess(gateway_env(mock_services))
    try:
        for role in ("caseworker", "partner", "auditor"):
            for a in released:
                gw.query(FULL, {"a": a}, token=mint(role), headers={"X-Purpose": "court date check"})
        gw.query("query($as: [ID!]!) { children(aNumbers: $as) { aNumber sponsor { name } } }",
                 {"as": released + ["012-345-678", "not-an-a-number"]})
        gw.query(FULL, {"a": released[0]}, token=mint(ttl=-300))
        gw.query(FULL, {"a": released[0]}, token=mint(secret="x" * 40))
    finally:
        output = gw.stop()
    # the request ids the lines end with are the gateway's own hex digits: a zip code or A-number's digits may
    # occur inside one by chance, so they are taken out before the search
    assert " request_id=" in output
    output = re.sub(r" request_id=[0-9a-f]{32}\b", "", output)
    for a in released:
        assert a not in output and a[1:] not in output
        for value in _sensitive(records(mock_services, a)):
            assert value not in output, "a personal value reached the application log"
    assert "court date check" not in output  # the stated purpose goes to the audit trail only


def test_a_remembered_token_still_expires(gateway: GatewayProcess) -> None:
    """Verified tokens are remembered (no signature check per request) only until `exp` plus the 30 s leeway."""
    time.sleep(1.01 - time.time() % 1)  # just past a whole second: `exp` is whole seconds
    token = mint(ttl=-29)  # expired 29 s ago: inside the leeway for about one more second
    headers = {"Authorization": f"Bearer {token}"}
    answers = [http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"}, headers=headers)[0]
               for _ in range(3)]
    assert answers == [200, 200, 200]
    time.sleep(1.6)
    status, _, body = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"}, headers=headers)
    assert status == 401 and "expired" in json.loads(body)["errors"][0]["message"]
