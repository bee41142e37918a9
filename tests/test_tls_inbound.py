"""TLS on the public listener (issue 31): `ucgw serve` with UCGW_TLS_CERT_FILE / UCGW_TLS_KEY_FILE answers
HTTPS and wss with a certificate the test's own CA issued, sends HSTS, refuses plain HTTP on its port without
hanging, and keeps the edge's deadlines and caps working over TLS."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from testing.access import gateway_env
from testing.gateway import ROOT, GatewayProcess, free_port, http
from testing.rawhttp import answer, code_of, read_all
from testing.tls import TestCA

WS = "graphql-transport-ws"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("tls-in"), "gateway CA")


@pytest.fixture(scope="module")
def gw(mock_services: Any, ca: TestCA) -> Any:
    server = ca.issue("gateway")
    env = gateway_env(mock_services, UCGW_TLS_CERT_FILE=server.cert, UCGW_TLS_KEY_FILE=server.key,
                      UCGW_HSTS_MAX_AGE_SECONDS="600", UCGW_HEADER_TIMEOUT_SECONDS="1",
                      UCGW_MAX_HEADER_BYTES="4096")
    gateway = GatewayProcess(env, context=ca.client_context())
    yield gateway
    gateway.stop()


def tls_socket(gw: GatewayProcess, ca: TestCA) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    return ca.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_https_query_answers_with_hsts_and_a_certificate_the_ca_issued(gw: GatewayProcess, ca: TestCA) -> None:
    assert gw.url.startswith("https://")
    status, body = gw.query("{ sources { source breakerState } }")
    assert status == 200 and [s["source"] for s in body["data"]["sources"]] == ["ORR", "ICE", "EOIR"]
    status, headers, _ = http("GET", f"{gw.url}/healthz", context=ca.client_context())
    assert status == 200 and headers["strict-transport-security"] == "max-age=600"
    with tls_socket(gw, ca) as sock:  # the certificate verified against the test's CA, for 127.0.0.1
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert dict(x[0] for x in sock.getpeercert()["subject"])["commonName"] == "gateway"
    # a client that does not trust the CA is refused by its own verification, not served
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        http("GET", f"{gw.url}/healthz", context=ssl.create_default_context())


def test_plain_http_to_the_tls_port_is_closed_without_an_answer_and_the_port_goes_on(gw: GatewayProcess,
                                                                                        ca: TestCA) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_all(sock) == b""  # the handshake failed: closed (no plaintext answer, no hang)
    status, _, _ = http("GET", f"{gw.url}/healthz", context=ca.client_context())
    assert status == 200


def test_the_edge_deadlines_and_header_caps_hold_over_tls(gw: GatewayProcess, ca: TestCA) -> None:
    with tls_socket(gw, ca) as sock:  # headers never finished: 408 after the 1 s header deadline
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = answer(read_all(sock))
    assert (status, code_of(body), headers["connection"]) == (408, "REQUEST_TIMEOUT", "close")
    with tls_socket(gw, ca) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        status, _, body = answer(read_all(sock))
    assert (status, code_of(body)) == (431, "HEADERS_TOO_LARGE")


def test_a_subscription_socket_works_over_wss(gw: GatewayProcess, ca: TestCA) -> None:
    async def run() -> list[dict[str, Any]]:
        url = gw.url.replace("https://", "wss://") + "/graphql"
        async with websockets.connect(url, subprotocols=[WS], ssl=ca.client_context()) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {gw.token}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": "{ sources { source } }"}}))
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]

    answered, completed = asyncio.run(run())
    assert answered["type"] == "next" and len(answered["payload"]["data"]["sources"]) == 3
    assert completed == {"id": "1", "type": "complete"}


def test_a_certificate_without_its_key_or_an_unreadable_one_stops_the_start(tmp_path: Path, ca: TestCA) -> None:
    server = ca.issue("half")
    base = {"UCGW_JWT_SECRET": "x" * 40, "UCGW_AUDIT_HMAC_KEY": "y" * 40, "UCGW_DATA_DIR": str(tmp_path),
            "UCGW_PORT": str(free_port()), "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}
    for extra, said in (({"UCGW_TLS_CERT_FILE": server.cert}, "set both UCGW_TLS_CERT_FILE and UCGW_TLS_KEY_FILE"),
                        ({"UCGW_TLS_CERT_FILE": server.cert, "UCGW_TLS_KEY_FILE": str(tmp_path / "none.key")},
                         "cannot use UCGW_TLS_CERT_FILE / UCGW_TLS_KEY_FILE")):
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env={**base, **extra},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
