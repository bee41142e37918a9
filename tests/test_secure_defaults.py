"""Secure by default (issue 22, items 1, 8, 11 and 13's token lifetime), proven against real `ucgw serve` and
`ucgw demo` processes over HTTP and websockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets

from gateway.http.auth import hash_api_key
from testing.access import gateway_env
from testing.gateway import ROOT, TEST_AUDIT_HMAC_KEY, TEST_JWT_SECRET, GatewayProcess, free_port, http, mint

DEMO_SECRET = "demo-only-secret-not-for-production"  # the secret the README used to print, as an attacker has it
STATUS = "query($a: ID!) { child(aNumber: $a) { aNumber nta { status } } }"
CREDENTIAL_SETTINGS = ("UCGW_JWT_SECRET", "UCGW_JWT_PUBLIC_KEY_FILE", "UCGW_JWT_JWKS_FILE", "UCGW_API_KEYS_FILE")
WS = "graphql-transport-ws"


def _serve(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`ucgw serve` with exactly `env` (no UCGW_* from the outside), expected to exit by itself."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
    full.update({"UCGW_PORT": str(free_port()), "UCGW_HOST": "127.0.0.1", **env})
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout)


def _ucgw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env={**full, **env},
                          capture_output=True, text=True, timeout=60)


def _codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


@pytest.fixture(scope="module")
def gw(mock_services: Any) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(gateway_env(mock_services))
    yield gateway
    gateway.stop()


# ---------------------------------------------------------------- item 1: the demo secret and credentials


@pytest.mark.parametrize("env_name", ["", "development", "test", "production"])
def test_serve_without_credentials_exits_saying_what_to_set(mock_services: Any, tmp_path: Path,
                                                            env_name: str) -> None:
    env = {**gateway_env(mock_services), "UCGW_DATA_DIR": str(tmp_path)}
    if env_name:
        env["UCGW_ENV"] = env_name
    done = _serve(env)
    out = done.stderr + done.stdout
    assert done.returncode == 2, out
    assert "no credentials configured" in out
    assert all(name in out for name in CREDENTIAL_SETTINGS), out
    assert "Traceback" not in out


@pytest.mark.parametrize("env_name", ["development", "test", "production"])
def test_serve_refuses_the_demo_secret_and_short_secrets_in_every_environment(mock_services: Any, tmp_path: Path,
                                                                              env_name: str) -> None:
    env = {**gateway_env(mock_services), "UCGW_DATA_DIR": str(tmp_path), "UCGW_ENV": env_name}
    done = _serve({**env, "UCGW_JWT_SECRET": DEMO_SECRET})
    assert done.returncode == 2 and "demo JWT secret" in done.stderr, done.stderr + done.stdout
    done = _serve({**env, "UCGW_JWT_SECRET": "x" * 31})
    assert done.returncode == 2 and "at least 32 bytes" in done.stderr, done.stderr + done.stdout


@pytest.mark.parametrize("env_name", ["", "development", "test", "production"])
def test_a_token_signed_with_the_demo_secret_gets_401_in_every_environment(mock_services: Any, tmp_path: Path,
                                                                           env_name: str) -> None:
    """A gateway configured with API keys only (no UCGW_JWT_SECRET in its environment at all) used to fall back
    to the demo secret, so anyone could mint a caseworker token from the README."""
    a = mock_services.sample(3)[0]
    key = "ucgw_test-key-of-a-partner-application-0123456789"
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[api_key]]\nclient = "legal-aid"\nrole = "partner"\nsha256 = "{hash_api_key(key)}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
    env.update(gateway_env(mock_services, UCGW_API_KEYS_FILE=str(keys), UCGW_DATA_DIR=str(tmp_path / "data"),
                           UCGW_PORT=str(port), UCGW_HOST="127.0.0.1", UCGW_AUDIT_HMAC_KEY=TEST_AUDIT_HMAC_KEY))
    if env_name:
        env["UCGW_ENV"] = env_name
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if http("GET", f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        for role in ("caseworker", "partner", "auditor"):
            status, _, raw = http("POST", url, {"query": STATUS, "variables": {"a": a}},
                                  headers={"Authorization": f"Bearer {mint(role, secret=DEMO_SECRET)}"})
            assert status == 401 and _codes(json.loads(raw)) == ["UNAUTHENTICATED"], (role, raw)
        status, _, raw = http("POST", url, {"query": STATUS, "variables": {"a": a}}, headers={"X-API-Key": key})
        assert status == 200 and json.loads(raw)["data"]["child"]["aNumber"] == a, raw
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_auth_not_required_makes_an_anonymous_caller_with_no_capability(mock_services: Any) -> None:
    """UCGW_AUTH_REQUIRED=false used to make every caller without credentials a caseworker."""
    a = mock_services.sample(3)[0]
    gw = GatewayProcess(gateway_env(mock_services, UCGW_AUTH_REQUIRED="false"), token="")
    try:
        reads = {
            "child": (STATUS, {"a": a}),
            "children": ("query($a: ID!) { children(aNumbers: [$a]) { aNumber } }", {"a": a}),
            "sources": ("{ sources { source } }", {}),
            "auditEvents": ("{ auditEvents(first: 1) { subject } }", {}),
            "caseload": ("{ caseload(first: 1) { edges { node { aNumber } } } }", {}),
            "ntaBacklog": ("{ ntaBacklog { asOf } }", {}),
            "safetyConcerns": ("{ safetyConcerns(first: 1) { edges { node { id } } } }", {}),
            "gatewayHealth": ("{ gatewayHealth { ready } }", {}),
        }
        for name, (query, variables) in reads.items():
            status, body = gw.query(query, variables)
            assert status == 200 and (body.get("data") or {}).get(name) is None, (name, body)
            assert "FORBIDDEN" in _codes(body), (name, body)
        status, body = gw.query("mutation($a: ID!) { reportSafetyConcern(input: {aNumber: $a, category: OTHER, "
                                'severity: LOW, description: "x"}) { id } }', {"a": a})
        assert status == 200 and (body["data"] or {}).get("reportSafetyConcern") is None, body
        assert "FORBIDDEN" in _codes(body), body
        assert http("GET", f"{gw.url}/healthz")[0] == 200
        status, _, raw = http("GET", f"{gw.url}/readyz")
        assert status == 200 and json.loads(raw) == {"ready": True, "status": "ok"}

        async def subscribe() -> dict[str, Any]:
            async with websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS]) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                    "query": "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber } }",
                    "variables": {"a": a}}}))
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

        msg = asyncio.run(subscribe())
        assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN", msg
    finally:
        log = gw.stop()
    assert "Traceback" not in log


def test_demo_prints_tokens_of_a_random_secret_that_work(tmp_path: Path) -> None:
    """`ucgw demo` makes its own secret each run: its tokens work on it and are not signed with the old demo
    secret (nor with each other's: two runs, two secrets)."""
    seen: list[str] = []
    for run in range(2):
        port = free_port()
        log_path = tmp_path / f"demo{run}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--orr-port", "0",
                 "--ice-port", "0", "--eoir-port", "0", "--children", "60"],
                cwd=ROOT, env={**full, "UCGW_DATA_DIR": str(tmp_path / f"data{run}")}, stdout=log,
                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            tokens: dict[str, str] = {}
            while time.monotonic() < deadline and proc.poll() is None:
                text = log_path.read_text()
                tokens = dict(re.findall(r"^\s+(caseworker|partner|auditor|operator)\s+(eyJ[\w.-]+)", text, re.M))
                if len(tokens) == 4 and "Sample A-numbers: " in text:
                    try:
                        if http("GET", f"http://127.0.0.1:{port}/healthz", timeout=1)[0] == 200:
                            break
                    except OSError:
                        pass
                time.sleep(0.1)
            text = log_path.read_text()
            assert len(tokens) == 4, text
            a = re.search(r"Sample A-numbers: (A\d{9})", text).group(1)  # type: ignore[union-attr]
            for token in tokens.values():
                with pytest.raises(jwt.InvalidSignatureError):
                    jwt.decode(token, DEMO_SECRET, algorithms=["HS256"], audience="uc-status-gateway")
            url, body = f"http://127.0.0.1:{port}/graphql", {"query": STATUS, "variables": {"a": a}}
            status, _, raw = http("POST", url, body, headers={"Authorization": f"Bearer {tokens['caseworker']}"})
            assert status == 200 and json.loads(raw)["data"]["child"]["aNumber"] == a, raw
            demo_token = mint("caseworker", secret=DEMO_SECRET)
            assert http("POST", url, body, headers={"Authorization": f"Bearer {demo_token}"})[0] == 401
            seen.append(tokens["caseworker"])
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    first = seen[0]
    assert jwt.decode(first, options={"verify_signature": False})["role"] == "caseworker"
    with pytest.raises(jwt.InvalidSignatureError):  # the second run's secret is another
        header, claims, _ = seen[1].split(".")
        jwt.decode(f"{header}.{claims}.{first.split('.')[2]}", "x" * 32, algorithms=["HS256"],
                   audience="uc-status-gateway")


# ---------------------------------------------------------------- item 8: /readyz and the admin listener

DETAIL_KEYS = {"ready", "status", "sources", "answerCache", "earlyFetch", "persistedDocuments", "auditTrail",
               "websockets", "scans", "fetches", "connections", "database", "redis", "changeFeed"}


def test_public_readyz_says_only_whether_ready(gw: GatewayProcess) -> None:
    status, _, raw = http("GET", f"{gw.url}/readyz")
    assert status == 200 and json.loads(raw) == {"ready": True, "status": "ok"}
    assert http("GET", f"{gw.url}/admin/readyz")[0] == 404


def test_admin_listener_serves_the_details_on_its_own_port_only(gw: GatewayProcess) -> None:
    assert gw.admin_url is not None and gw.admin_url.startswith("http://127.0.0.1:") and gw.admin_url != gw.url
    status, _, raw = http("GET", f"{gw.admin_url}/readyz")
    details = json.loads(raw)
    assert status == 200 and set(details) == DETAIL_KEYS, details
    assert details["ready"] is True and details["status"] == "ok"
    assert {s["source"] for s in details["sources"]} == {"ORR", "ICE", "EOIR"}
    assert {"commits", "rowsWritten"} <= set(details["auditTrail"]), details["auditTrail"]
    assert http("GET", f"{gw.admin_url}/graphql")[0] == 404  # the admin port serves no data


def test_admin_listener_is_off_unless_configured(mock_services: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_ADMIN_PORT=""))
    try:
        assert gateway.admin_url is None
        assert json.loads(http("GET", f"{gateway.url}/readyz")[2]) == {"ready": True, "status": "ok"}
    finally:
        log = gateway.stop()
    assert "admin" not in log.lower()


def test_gateway_health_query_is_for_operators_only(gw: GatewayProcess) -> None:
    query = "{ gatewayHealth { ready status details } }"
    status, body = gw.query(query, token=mint("operator"))
    assert status == 200 and "errors" not in body, body
    health = body["data"]["gatewayHealth"]
    assert health["ready"] is True and health["status"] == "ok"
    assert set(json.loads(health["details"])) == DETAIL_KEYS
    for role in ("caseworker", "partner", "auditor"):
        status, body = gw.query(query, token=mint(role))
        assert status == 200 and body["data"]["gatewayHealth"] is None, (role, body)
        assert _codes(body) == ["FORBIDDEN"] and body["errors"][0]["extensions"]["capability"] == "health:admin"
    # partners keep the sources' breaker states, nothing more
    status, body = gw.query("{ sources { source breakerState usable } }", token=mint("partner"))
    assert status == 200 and [s["source"] for s in body["data"]["sources"]] == ["ORR", "ICE", "EOIR"], body
    # an operator reads gateway health, no child data
    status, body = gw.query("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": "A000000001"},
                            token=mint("operator"))
    assert body["data"]["child"] is None and _codes(body) == ["FORBIDDEN"], body


def test_readyz_is_degraded_while_a_source_is_unusable(mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_EOIR_URL=dead, UCGW_BREAKER_FAILURE_THRESHOLD="1",
                                         UCGW_RETRY_ATTEMPTS="0", UCGW_BREAKER_RESET_SECONDS="600"))
    try:
        status, body = gateway.query("query($a: ID!) { child(aNumber: $a) { hearing { caseStatus } } }", {"a": a})
        assert status == 200 and "SOURCE_UNAVAILABLE" in _codes(body), body
        status, _, raw = http("GET", f"{gateway.url}/readyz")
        assert status == 200 and json.loads(raw) == {"ready": True, "status": "degraded"}
        details = json.loads(http("GET", f"{gateway.admin_url}/readyz")[2])
        assert details["status"] == "degraded"
        assert {s["source"]: s["usable"] for s in details["sources"]} == {"ORR": True, "ICE": True, "EOIR": False}
    finally:
        gateway.stop()


# ---------------------------------------------------------------- item 11: no "Did you mean" in production

MISTAKES = {
    "field": ('{ sources { sorce } }', {}, "Cannot query field 'sorce' on type 'SourceStatus'."),
    "argument": ('{ child(aNumbr: "A000000001") { aNumber } }', {},
                 "Unknown argument 'aNumbr' on field 'Query.child'."),
    "type": ("query($a: Chld) { __typename }", {}, "Unknown type 'Chld'."),
    "enum literal": ("{ safetyConcerns(status: OPN, first: 1) { totalCount } }", {}, None),
    "enum variable": ("query($s: ConcernStatus) { safetyConcerns(status: $s, first: 1) { totalCount } }",
                      {"s": "OPN"}, None),
}


@pytest.fixture(scope="module")
def prod(mock_services: Any) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_ENV="production"))
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("name", list(MISTAKES))
def test_production_sends_no_suggestions(gw: GatewayProcess, prod: GatewayProcess, name: str) -> None:
    query, variables, message = MISTAKES[name]
    _, dev_body = gw.query(query, variables)
    assert "Did you mean" in json.dumps(dev_body), dev_body  # development still helps the developer
    status, body = prod.query(query, variables)
    assert status in (200, 400) and body.get("errors"), body
    text = json.dumps(body)
    assert "Did you mean" not in text and "OPEN" not in text and "source'" not in text, body
    if message is not None:
        assert message in [e["message"] for e in body["errors"]], body
    assert all(e["extensions"]["code"] for e in body["errors"]), body


# ---------------------------------------------------------------- item 13: token lifetime


def test_tokens_need_iat_and_a_lifetime_within_the_maximum(gw: GatewayProcess, mock_services: Any) -> None:
    a = mock_services.sample(3)[0]
    now = int(time.time())
    no_iat = jwt.encode({"sub": "x", "role": "caseworker", "aud": "uc-status-gateway", "iss": "ucgw-demo",
                         "exp": now + 600}, TEST_JWT_SECRET, algorithm="HS256")
    status, body = gw.query(STATUS, {"a": a}, token=no_iat)
    assert status == 401 and body["errors"][0]["message"] == "token lacks the 'iat' claim", body
    status, body = gw.query(STATUS, {"a": a}, token=mint(ttl=12 * 3600 + 1))
    assert status == 401 and body["errors"][0]["message"] == (
        "token lifetime (exp - iat) exceeds 43200 seconds (UCGW_JWT_MAX_TTL_SECONDS)"), body
    backdated = mint(iat=now - 13 * 3600, exp=now + 600)  # still a lifetime above 12 h, however little is left
    assert gw.query(STATUS, {"a": a}, token=backdated)[0] == 401
    status, body = gw.query(STATUS, {"a": a}, token=mint(iat="yesterday"))
    assert status == 401 and _codes(body) == ["UNAUTHENTICATED"], body
    status, body = gw.query(STATUS, {"a": a}, token=mint(ttl=12 * 3600))
    assert status == 200 and body["data"]["child"]["aNumber"] == a, body


def test_token_command_and_gateway_agree_on_the_maximum_lifetime(mock_services: Any) -> None:
    env = {"UCGW_JWT_SECRET": TEST_JWT_SECRET, "UCGW_JWT_MAX_TTL_SECONDS": "600"}
    done = _ucgw("token", "--role", "caseworker", "--ttl", "601", env=env)
    assert done.returncode == 2 and done.stdout == "", done
    assert "600" in done.stderr and "UCGW_JWT_MAX_TTL_SECONDS" in done.stderr and "Traceback" not in done.stderr
    done = _ucgw("token", "--role", "caseworker", "--ttl", "50000", env={"UCGW_JWT_SECRET": TEST_JWT_SECRET})
    assert done.returncode == 2 and "43200" in done.stderr, done  # the default maximum, 12 h
    done = _ucgw("token", "--role", "caseworker", "--ttl", "600", env=env)
    assert done.returncode == 0, done.stderr
    a = mock_services.sample(3)[0]
    gateway = GatewayProcess(gateway_env(mock_services, **env))
    try:
        status, body = gateway.query(STATUS, {"a": a}, token=done.stdout.strip())
        assert status == 200 and body["data"]["child"]["aNumber"] == a, body
        status, body = gateway.query(STATUS, {"a": a}, token=mint(ttl=601))
        assert status == 401 and "exceeds 600 seconds" in body["errors"][0]["message"], body
    finally:
        gateway.stop()
    done = _ucgw("token", "--role", "caseworker", env={})
    assert done.returncode == 2 and "UCGW_JWT_SECRET" in done.stderr, done  # no secret, no token


def test_a_jwt_websocket_must_carry_a_bounded_token(gw: GatewayProcess) -> None:
    async def refused(token: str) -> int:
        async with websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd.code  # type: ignore[union-attr]

    assert asyncio.run(refused(mint(ttl=86_400))) == 4403
