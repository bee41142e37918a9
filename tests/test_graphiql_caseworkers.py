"""Issue 30, server side: GraphiQL and introspection in production by capability, the `viewer` query, and
sign-in through a real OpenID Connect provider (oidc-provider-mock in a subprocess), key rotation included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import get_introspection_query

from testing.access import gateway_env
from testing.gateway import GatewayProcess, http, mint
from testing.oidc_provider import OidcProvider

VIEWER = "{ viewer { subject role capabilities fieldOffices } }"


@pytest.fixture(scope="module")
def prod(mock_services: Any) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_ENV="production"))
    yield gateway
    gateway.stop()


def test_production_serves_the_page_and_its_assets_from_the_gateway(prod: GatewayProcess) -> None:
    status, headers, page = http("GET", f"{prod.url}/graphql", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    policy = headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert headers["x-frame-options"] == "DENY"
    html = page.decode()
    assert "<script>" not in html and "https://" not in html  # no inline script, nothing from another host
    config = json.loads(html.split('id="ucgw-config">', 1)[1].split("</script>", 1)[0])
    assert [op["id"] for op in config["operations"]] == [
        "child_changes", "child_status", "office_caseload", "office_court_alerts", "office_nta_backlog",
        "report_safety_concern"]
    assert config["oidc"] is None and 'id="ucgw-signin"' not in html  # no provider configured
    for asset in ("ucgw-graphiql.js", "ucgw-graphiql.css"):
        assert f"/static/graphiql/{asset}" in html
        status, _, data = http("GET", f"{prod.url}/static/graphiql/{asset}")
        assert status == 200 and len(data) > 100_000


def test_production_answers_introspection_only_for_roles_holding_schema_read(prod: GatewayProcess) -> None:
    query = get_introspection_query()
    for role in ("caseworker", "auditor", "operator"):
        status, body = prod.query(query, token=mint(role))
        assert status == 200 and "errors" not in body, (role, body)
        assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    status, body = prod.query(query, token=mint("partner"))
    assert status == 200 and body.get("data") is None
    assert "introspection" in body["errors"][0]["message"].lower()
    _, body = prod.query('{ __type(name: "Child") { fields { name } } }', token=mint("partner"))
    assert body.get("data") is None and body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert prod.query("{ __typename }", token=mint("partner"))[1] == {"data": {"__typename": "Query"}}
    status, body = prod.query(query, token="")  # no credentials: refused before any GraphQL
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_viewer_says_who_the_caller_is_and_what_it_may_do(prod: GatewayProcess) -> None:
    token = mint("caseworker", subject="cw-7", field_offices=["San Antonio", "St. Paul"])
    assert prod.query(VIEWER, token=token)[1] == {"data": {"viewer": {
        "subject": "cw-7", "role": "caseworker", "fieldOffices": ["san antonio", "st paul"],
        "capabilities": ["child:contact", "child:identity", "child:status", "child:welfare", "health:read",
                         "schema:read"]}}}
    assert prod.query(VIEWER, token=mint("partner", subject="lsp-1"))[1] == {"data": {"viewer": {
        "subject": "lsp-1", "role": "partner", "fieldOffices": None,
        "capabilities": ["child:status", "health:read"]}}}


CLIENT_ID = "ucgw-graphiql"


def _forged(issuer: str, kid: str) -> str:
    """A token claiming the provider as issuer, signed by a key of our own naming `kid`."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"iss": issuer, "aud": CLIENT_ID, "sub": "mallory", "ucgw_role": "caseworker", "iat": now,
                       "exp": now + 600}, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider() as running:
        yield running


@pytest.fixture(scope="module")
def oidc_gateway(mock_services: Any, provider: OidcProvider) -> Iterator[GatewayProcess]:
    """A production gateway whose only credentials are the OIDC provider (no JWT secret, no key file), reading
    the role and offices from claims of its own naming."""
    gateway = GatewayProcess(gateway_env(
        mock_services, UCGW_ENV="production", UCGW_JWT_SECRET="", UCGW_OIDC_ISSUER=provider.issuer,
        UCGW_OIDC_CLIENT_ID=CLIENT_ID, UCGW_OIDC_ROLE_CLAIM="ucgw_role",
        UCGW_OIDC_OFFICES_CLAIM="ucgw_offices"), token="")
    yield gateway
    gateway.stop()


def test_a_token_from_the_provider_is_accepted_with_its_role_and_offices(
        oidc_gateway: GatewayProcess, provider: OidcProvider, mock_services: Any) -> None:
    provider.set_user("maria", {"ucgw_role": "caseworker", "ucgw_offices": ["Washington"]})
    provider.set_user("lsp", {"ucgw_role": "partner"})
    provider.set_user("nobody", {"email": "nobody@example.org"})  # no role claim
    token = provider.id_token("maria", CLIENT_ID)
    assert oidc_gateway.query(VIEWER, token=token)[1]["data"]["viewer"] == {
        "subject": "maria", "role": "caseworker", "fieldOffices": ["washington"],
        "capabilities": ["child:contact", "child:identity", "child:status", "child:welfare", "health:read",
                         "schema:read"]}
    status, body = oidc_gateway.query(get_introspection_query(), token=token)
    assert status == 200 and "errors" not in body
    partner = provider.id_token("lsp", CLIENT_ID)
    assert oidc_gateway.query(VIEWER, token=partner)[1]["data"]["viewer"]["role"] == "partner"
    status, body = oidc_gateway.query(VIEWER, token=provider.id_token("nobody", CLIENT_ID))
    assert status == 401 and "role must be one of" in body["errors"][0]["message"]
    status, body = oidc_gateway.query(VIEWER, token=provider.id_token("maria", "another-client"))
    assert status == 401 and body["errors"][0]["message"] == "token audience is not accepted"
    status, body = oidc_gateway.query(VIEWER, token=mint("caseworker", issuer=provider.issuer))  # HS256: never
    assert status == 401 and body["errors"][0]["message"] == "token algorithm is not accepted"
    status, _, page = http("GET", f"{oidc_gateway.url}/graphql", headers={"Accept": "text/html"})
    config = json.loads(page.decode().split('id="ucgw-config">', 1)[1].split("</script>", 1)[0])
    assert config["oidc"] == {"issuer": provider.issuer, "clientId": CLIENT_ID, "scope": "openid profile"}


def test_a_rotated_provider_key_is_read_again_rate_limited(
        oidc_gateway: GatewayProcess, provider: OidcProvider) -> None:
    """The provider restarted on its port signs with a new key; the gateway reads the key set again when a
    token fits no key it knows, at most once per interval however many such tokens arrive."""
    provider.set_user("maria", {"ucgw_role": "caseworker"})
    old = provider.id_token("maria", CLIENT_ID)
    assert oidc_gateway.query(VIEWER, token=old)[0] == 200
    reads_before = provider.jwks_reads()
    provider.stop()
    rotated = OidcProvider(port=provider.port).start()
    try:
        rotated.set_user("maria", {"ucgw_role": "caseworker", "ucgw_offices": "Houston"})
        new = rotated.id_token("maria", CLIENT_ID)
        accepted = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = oidc_gateway.query(VIEWER, token=new)
            if status == 200:
                accepted = body["data"]["viewer"]
                break
            assert status == 401 and "unknown key id" in body["errors"][0]["message"], body
            time.sleep(0.25)
        assert accepted == {"subject": "maria", "role": "caseworker", "fieldOffices": ["houston"],
                            "capabilities": accepted["capabilities"] if accepted else None}
        reads = rotated.jwks_reads()
        assert reads == 1 and reads_before >= 1, (reads, reads_before)
        # twenty tokens naming key ids the provider never published: each refused, and the key set is not read
        # once per token (at most once per 5 s)
        forged = [_forged(rotated.issuer, f"made-up-{i}") for i in range(20)]
        for token in forged:
            status, body = oidc_gateway.query(VIEWER, token=token)
            assert status == 401 and "unknown key id" in body["errors"][0]["message"], body
        assert rotated.jwks_reads() - 1 < len(forged) // 2, rotated.jwks_reads()
    finally:
        rotated.stop()
        provider.start()  # the module's provider again, for tests after this one
