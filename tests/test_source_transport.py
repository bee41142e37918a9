"""TLS and our own credentials at each source (issue 31): the mocks demand HTTPS with a certificate from a CA
the test makes, a client certificate (mTLS), or a Bearer token from their own OAuth2 token endpoint, and the
gateway meets each. A wrong CA, a missing client certificate, bad client credentials and a refused token are
each answered at once with SOURCE_UNAVAILABLE and a reason that names the problem, in the GraphQL error, the
`sources` query and the log."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.gateway import GatewayProcess
from testing.mockproc import MockProcess
from testing.tls import TestCA

SOURCES = ("orr", "ice", "eoir")
CHILD = """query($a: ID!) { child(aNumber: $a) { aNumber location { status } nta { status }
  hearing { caseStatus } } }"""
HEALTH = "{ sources { source usable lastError } }"
CLIENT_SECRET = "test-only-mock-client-secret-0123456789"  # not a real secret: tests only
FAST = {"UCGW_SOURCE_TIMEOUT_SECONDS": "2", "UCGW_RETRY_BACKOFF_SECONDS": "0.02"}


def source_env(mocks: MockProcess, **per_source: str) -> dict[str, str]:
    """The mocks' URLs plus, for every source, each `per_source` setting (`ca_file="..."` gives
    UCGW_ORR_CA_FILE, UCGW_ICE_CA_FILE and UCGW_EOIR_CA_FILE)."""
    env = {**mocks.gateway_env(), **FAST}
    for source in SOURCES:
        for name, value in per_source.items():
            env[f"UCGW_{source.upper()}_{name.upper()}"] = value
    return env


def errors_by_source(body: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for error in body.get("errors", []):
        assert error["extensions"]["code"] == "SOURCE_UNAVAILABLE", error
        out.setdefault(error["extensions"]["source"], set()).add(error["message"])
    return out


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TestCA]:
    root = tmp_path_factory.mktemp("tls-out")
    return {"agency": TestCA(root / "agency", "agency CA"), "other": TestCA(root / "other", "other CA"),
            "clients": TestCA(root / "clients", "gateway clients CA")}


@pytest.fixture(scope="module")
def mtls_mocks(cas: dict[str, TestCA]) -> Iterator[MockProcess]:
    """Mocks on HTTPS (a certificate from the agency CA) that demand a client certificate from the clients CA."""
    server = cas["agency"].issue("agency")
    tester = cas["clients"].issue("tester", client=True)
    mocks = MockProcess(children=200, context=cas["agency"].client_context(tester),
                        extra_args=["--tls-cert", server.cert, "--tls-key", server.key,
                                    "--client-ca", cas["clients"].cert])
    with mocks:
        yield mocks


def test_mtls_sources_answer_a_gateway_with_their_ca_and_a_client_certificate(
        mtls_mocks: MockProcess, cas: dict[str, TestCA]) -> None:
    assert all(mtls_mocks.urls[s].startswith("https://") for s in SOURCES)
    client = cas["clients"].issue("gateway", client=True)
    gw = GatewayProcess(source_env(mtls_mocks, ca_file=cas["agency"].cert, client_cert_file=client.cert,
                                   client_key_file=client.key))
    try:
        a = mtls_mocks.sample(5)[0]
        status, body = gw.query(CHILD, {"a": a})
        assert status == 200 and "errors" not in body, body
        assert body["data"]["child"]["aNumber"] == a and body["data"]["child"]["location"] is not None
        for source in SOURCES:  # the change feed reads over the same TLS: its first read is in
            deadline = time.monotonic() + 30
            while "GET /v1/changes" not in mtls_mocks.stats(source)["by_route"]:
                assert time.monotonic() < deadline, f"{source}: no change-feed read over mTLS"
                time.sleep(0.1)
        _, health = gw.query(HEALTH)
        assert [(s["usable"], s["lastError"]) for s in health["data"]["sources"]] == [(True, None)] * 3
    finally:
        gw.stop()


@pytest.mark.parametrize("case", ["wrong CA", "no client certificate"])
def test_a_wrong_ca_or_a_missing_client_certificate_is_refused_with_its_reason(
        case: str, mtls_mocks: MockProcess, cas: dict[str, TestCA]) -> None:
    if case == "wrong CA":
        client = cas["clients"].issue("gateway-2", client=True)
        env = source_env(mtls_mocks, ca_file=cas["other"].cert, client_cert_file=client.cert,
                         client_key_file=client.key)
        reason = "TLS: the source's certificate is not trusted"
    else:
        env = source_env(mtls_mocks, ca_file=cas["agency"].cert)
        # the mocks' server closes without a TLS alert, so the gateway can only name the likely cause
        reason = "we present no client certificate: if the source requires mTLS, set UCGW_"
    gw = GatewayProcess({**env, "UCGW_CHANGE_FEED_POLL_SECONDS": "0"})
    try:
        started = time.monotonic()
        status, body = gw.query(CHILD, {"a": mtls_mocks.sample(5)[1]})
        assert time.monotonic() - started < 30  # answered, not hung (the deadline is 5 s)
        assert status == 200
        messages = errors_by_source(body)
        assert set(messages) == {"ORR", "ICE", "EOIR"}
        assert all(any(reason in m for m in found) for found in messages.values()), messages
        _, health = gw.query(HEALTH)
        assert all(reason in s["lastError"] and s["lastError"].startswith("SOURCE_UNAVAILABLE")
                   for s in health["data"]["sources"]), health
    finally:
        output = gw.stop()
    assert any("source ORR failed: SOURCE_UNAVAILABLE: " in line and reason in line for line in output.splitlines())
    assert "Traceback" not in output


@pytest.fixture(scope="module")
def token_mocks() -> Iterator[MockProcess]:
    mocks = MockProcess(children=200, extra_args=["--require-token"],
                        env={"UCGW_MOCK_CLIENT_SECRET": CLIENT_SECRET})
    with mocks:
        yield mocks


def tokens(mocks: MockProcess, source: str, **change: Any) -> dict[str, Any]:
    if change:
        return mocks.admin_ok(source, "POST", "/_admin/tokens", change)
    return mocks.admin_ok(source, "GET", "/_admin/tokens")


def token_env(mocks: MockProcess, secret: str = CLIENT_SECRET) -> dict[str, str]:
    env = {**mocks.gateway_env(), **FAST, "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}
    for source in SOURCES:
        prefix = f"UCGW_{source.upper()}"
        env |= {f"{prefix}_TOKEN_URL": f"{mocks.urls[source]}/oauth/token", f"{prefix}_CLIENT_ID": "ucgw-gateway",
                f"{prefix}_CLIENT_SECRET": secret, f"{prefix}_SCOPE": "records.read"}
    return env


def test_a_token_is_fetched_once_cached_renewed_after_a_401_and_before_it_expires(token_mocks: MockProcess) -> None:
    for source in SOURCES:
        tokens(token_mocks, source, revoke_all=True, refuse_all=False, ttl_seconds=300)
    before = {s: tokens(token_mocks, s) for s in SOURCES}
    gw = GatewayProcess(token_env(token_mocks))
    try:
        sample = iter(token_mocks.sample(12))
        for _ in range(3):  # three queries, each a cache miss at every source: one token per source
            status, body = gw.query(CHILD, {"a": next(sample)})
            assert status == 200 and "errors" not in body, body
        now = {s: tokens(token_mocks, s) for s in SOURCES}
        assert {s: now[s]["issued"] - before[s]["issued"] for s in SOURCES} == {"orr": 1, "ice": 1, "eoir": 1}
        assert {s: now[s]["refused"] - before[s]["refused"] for s in SOURCES} == {"orr": 0, "ice": 0, "eoir": 0}

        tokens(token_mocks, "ice", revoke_all=True)  # ICE forgets our token: one 401, a new token, one retry
        status, body = gw.query(CHILD, {"a": next(sample)})
        assert status == 200 and "errors" not in body, body
        after = tokens(token_mocks, "ice")
        assert (after["issued"] - now["ice"]["issued"], after["refused"] - now["ice"]["refused"]) == (1, 1)

        # tokens that live 2 s: the gateway replaces one before it expires, so no call is refused for it
        tokens(token_mocks, "eoir", ttl_seconds=2, revoke_all=True)
        gw.query(CHILD, {"a": next(sample)})  # a 401, then a token that lives 2 s
        short = tokens(token_mocks, "eoir")
        time.sleep(2.2)  # past that token's expiry
        status, body = gw.query(CHILD, {"a": next(sample)})
        assert status == 200 and "errors" not in body, body
        renewed = tokens(token_mocks, "eoir")
        assert (renewed["issued"] - short["issued"], renewed["refused"] - short["refused"]) == (1, 0)
        _, health = gw.query(HEALTH)
        assert [s["usable"] for s in health["data"]["sources"]] == [True] * 3
    finally:
        output = gw.stop()
    assert CLIENT_SECRET not in output


def test_bad_client_credentials_and_a_refused_token_are_source_unavailable_with_the_reason(
        token_mocks: MockProcess) -> None:
    gw = GatewayProcess(token_env(token_mocks, secret="test-only-a-wrong-client-secret-0123456789"))
    try:
        status, body = gw.query(CHILD, {"a": token_mocks.sample(5)[2]})
        assert status == 200
        reason = "token endpoint refused our client credentials (HTTP 401 invalid_client)"
        assert all(any(reason in m for m in found) for found in errors_by_source(body).values()), body
        _, health = gw.query(HEALTH)
        assert all(s["lastError"] == f"SOURCE_UNAVAILABLE: {reason}" for s in health["data"]["sources"]), health
    finally:
        output = gw.stop()
    assert f"source ICE failed: SOURCE_UNAVAILABLE: {reason}" in output

    tokens(token_mocks, "orr", refuse_all=True)  # ORR takes no token at all, a fresh one neither
    before = tokens(token_mocks, "orr")
    gw = GatewayProcess(token_env(token_mocks))
    try:
        status, body = gw.query(CHILD, {"a": token_mocks.sample(5)[3]})
        found = errors_by_source(body)
        assert set(found) == {"ORR"}, body  # ICE and EOIR answered
        assert any("refused our access token (HTTP 401), a new one too" in m for m in found["ORR"]), found
        after = tokens(token_mocks, "orr")
        # per attempt: a 401, one new token, one retry refused again; no retry beyond that (not retryable)
        assert (after["issued"] - before["issued"], after["refused"] - before["refused"]) == (2, 2)
    finally:
        tokens(token_mocks, "orr", refuse_all=False)
        gw.stop()


def test_a_ca_file_that_cannot_be_read_stops_the_start(token_mocks: MockProcess, tmp_path: Path) -> None:
    env = {**token_mocks.gateway_env(), "UCGW_ICE_CA_FILE": str(tmp_path / "missing.pem")}
    with pytest.raises(RuntimeError, match="cannot use UCGW_ICE_CA_FILE"):
        GatewayProcess(env)
