"""The edge holds (issue 33): slow, oversized and malformed requests get a coded answer or a deadline.

Every test talks to a real `ucgw serve` over loopback sockets; connection counts come from the gateway's
/readyz and the process's open file descriptors (psutil). Waits are generous; no duration is asserted.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from testing.access import gateway_env
from testing.gateway import GatewayProcess, free_port, http
from testing.malformed import CORPUS
from testing.rawhttp import answer, code_of, exchange, read_all

MB = 1024 * 1024
PROBE = b'{"query": "{ __typename }"}'


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"still not: {what}"
        time.sleep(0.2)


def connections(gw: GatewayProcess) -> dict[str, int]:
    """The public listener's connection counts, from the operators' /readyz on the admin listener."""
    status, _, body = http("GET", f"{gw.admin_url}/readyz", timeout=10)
    return json.loads(body)["connections"]  # type: ignore[no-any-return]


def probe(gw: GatewayProcess, source: str = "127.0.0.2", port: int | None = None) -> int:
    """A legitimate query from another address (to the gateway, or to `port`: a proxy in front); its status."""
    request = (b"POST /graphql HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + gw.token.encode()
               + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(PROBE)
               + PROBE)
    status, _, body = answer(exchange(port or gw.port, request, source=source))
    assert status != 200 or body == {"data": {"__typename": "Query"}}, body
    return status


@pytest.fixture(scope="module")
def gw(mock_services: Any) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(gateway_env(mock_services))
    yield gateway
    gateway.stop()


def auth_line(gw: GatewayProcess) -> bytes:
    return b"Authorization: Bearer " + gw.token.encode() + b"\r\n"


def test_fifty_oversized_bodies_in_a_row_each_get_their_413(gw: GatewayProcess) -> None:
    """The answer is sent before the body is read; the edge drains the rest, so no try ends in a reset."""
    sizes = random.Random(33).sample(range(2 * MB, 20 * MB), 50)
    codes = []
    for size in sizes:
        head = (b"POST /graphql HTTP/1.1\r\nHost: gw\r\n" + auth_line(gw)
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
        status, headers, body = answer(exchange(gw.port, head + b"x" * size))
        codes.append((status, code_of(body), headers.get("connection")))
    assert codes == [(413, "PAYLOAD_TOO_LARGE", "close")] * 50
    assert probe(gw) == 200


def test_fifty_oversized_headers_in_a_row_each_get_their_431(gw: GatewayProcess) -> None:
    sizes = random.Random(34).sample(range(2 * MB, 20 * MB), 50)
    codes = []
    for size in sizes:
        request = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Padding: " + b"p" * size + b"\r\n\r\n"
        status, _, body = answer(exchange(gw.port, request))
        codes.append((status, code_of(body)))
    assert codes == [(431, "HEADERS_TOO_LARGE")] * 50
    status, _, body = answer(exchange(gw.port, b"GET /" + b"u" * 20_000 + b" HTTP/1.1\r\nHost: gw\r\n\r\n"))
    assert (status, code_of(body)) == (414, "URI_TOO_LONG")
    assert probe(gw) == 200


def test_a_gigabyte_chunked_upload_is_refused_as_it_arrives(gw: GatewayProcess) -> None:
    """Counted as it arrives, never buffered whole: the gateway's memory stays where it was."""
    process = psutil.Process(gw.proc.pid)
    before = process.memory_info().rss
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
    sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: gw\r\n" + auth_line(gw)
                 + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % MB + b"c" * MB + b"\r\n"
    sent = 0

    def upload() -> None:
        nonlocal sent
        try:
            for _ in range(1024):
                sock.sendall(chunk)
                sent += 1
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway stopped draining: the upload was refused

    sender = threading.Thread(target=upload)
    sender.start()
    raw = read_all(sock)
    sender.join(timeout=120)
    sock.close()
    status, _, body = answer(raw)
    assert (status, code_of(body)) == (413, "PAYLOAD_TOO_LARGE")
    assert sent < 1024  # the gigabyte was not taken in
    assert process.memory_info().rss - before < 64 * MB
    assert probe(gw) == 200


@pytest.mark.parametrize("name, raw, status, code", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_requests_get_their_status_and_code(gw: GatewayProcess, name: str, raw: bytes, status: int,
                                                      code: str) -> None:
    got_status, _, body = answer(exchange(gw.port, raw.replace(b"{auth}", auth_line(gw))))
    assert (got_status, code_of(body)) == (status, code), body
    assert probe(gw) == 200  # and the gateway keeps serving


def test_variables_64_deep_are_still_served(gw: GatewayProcess) -> None:
    body = b'{"query": "query($v: String) { __typename }", "variables": {"w": ' + b"[" * 64 + b"]" * 64 + b"}}"
    status, _, got = http("POST", f"{gw.url}/graphql", headers={**gw.headers(), "Content-Type": "application/json"},
                          raw=body)
    assert status == 200


def test_connections_past_the_per_client_cap_are_refused_and_others_served(mock_services: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_MAX_CONNECTIONS_PER_CLIENT="5"))
    held: list[socket.socket] = []
    try:
        wait_for(lambda: connections(gateway)["open"] <= 1, "the start's connections closed")
        held = [socket.create_connection(("127.0.0.1", gateway.port), source_address=("127.0.0.1", 0))
                for _ in range(5)]
        wait_for(lambda: connections(gateway)["open"] >= 5, "five held")
        status, headers, body = answer(exchange(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"))
        assert (status, code_of(body), headers["retry-after"]) == (503, "TOO_MANY_CONNECTIONS", "1")
        assert probe(gateway, source="127.0.0.2") == 200
        assert connections(gateway)["refused"] >= 1
        for sock in held:
            sock.close()
        held = []
        wait_for(lambda: probe(gateway, source="127.0.0.1") == 200, "the address served again once it let go")
    finally:
        for sock in held:
            sock.close()
        gateway.stop()


def test_connections_past_the_total_cap_are_refused(mock_services: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_MAX_CONNECTIONS="4", UCGW_MAX_CONNECTIONS_PER_CLIENT="0"))
    held: list[socket.socket] = []
    try:
        held = [socket.create_connection(("127.0.0.1", gateway.port), source_address=(f"127.0.0.{3 + i}", 0))
                for i in range(4)]
        wait_for(lambda: probe(gateway, source="127.0.0.2") == 503, "the fifth connection refused")
        for sock in held:
            sock.close()
        held = []
        wait_for(lambda: probe(gateway, source="127.0.0.2") == 200, "served again")
    finally:
        for sock in held:
            sock.close()
        gateway.stop()


def slowhttptest() -> str:
    path = shutil.which("slowhttptest")
    assert path, "slowhttptest is missing: `make test` installs it (Debian package slowhttptest)"
    return path


@pytest.mark.parametrize("mode", ["-H", "-B"], ids=["slowloris", "slow-body"])
def test_a_thousand_slow_connections_are_closed_at_their_deadline(mock_services: Any, mode: str,
                                                                  tmp_path: Path) -> None:
    """slowhttptest holds 1,000 connections trickling headers (or a body); a probe from another address is
    answered throughout, each slow connection is closed once its deadline passes, and the gateway's open
    file descriptors return to their baseline."""
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_HEADER_TIMEOUT_SECONDS="3", UCGW_BODY_TIMEOUT_SECONDS="3",
                                         UCGW_MAX_CONNECTIONS_PER_CLIENT="0", UCGW_AUTH_REQUIRED="false"))
    try:
        process = psutil.Process(gateway.proc.pid)
        wait_for(lambda: connections(gateway)["open"] <= 1, "the start's connections closed")
        baseline = process.num_fds()
        expired_before = connections(gateway)["timedOut"]
        out = tmp_path / "slow"
        attack = subprocess.Popen(
            [slowhttptest(), mode, "-c", "1000", "-r", "1000", "-i", "1", "-x", "8", "-s", "65536", "-l", "15",
             "-p", "10", "-g", "-o", str(out), "-u", f"http://127.0.0.1:{gateway.port}/graphql"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probes = []
        try:
            while attack.poll() is None:
                probes.append(probe(gateway))
                time.sleep(0.25)
        finally:
            if attack.poll() is None:
                attack.kill()
            attack.wait()
        assert probes and set(probes) == {200}
        rows = list(csv.DictReader((tmp_path / "slow.csv").open()))
        assert max(int(row["Connected"]) for row in rows) >= 900, rows  # the attack did hold its connections
        # every slow connection was closed by the gateway at its deadline: it counts each expiry
        wait_for(lambda: connections(gateway)["timedOut"] - expired_before >= 1000, "1,000 deadlines expired")
        wait_for(lambda: process.num_fds() <= baseline + 2, "file descriptors back to their baseline")
    finally:
        gateway.stop()


HAPROXY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy" / "edge.cfg"


def haproxy_config(listen: int, gateway: int, header_seconds: int, stats: Path) -> str:
    """deploy/haproxy/edge.cfg as committed, pointed at these ports, with a shorter request deadline and a
    stats socket the test reads the proxy's counters from."""
    text = HAPROXY_CONFIG.read_text()
    for old, new in (("global\n", f"global\n    stats socket {stats} mode 600 level admin\n"),
                     ("bind 127.0.0.1:8080", f"bind 127.0.0.1:{listen}"),
                     ("server gw1 127.0.0.1:8000", f"server gw1 127.0.0.1:{gateway}"),
                     ("timeout http-request 10s", f"timeout http-request {header_seconds}s")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def haproxy_frontend(stats: Path) -> dict[str, int]:
    """The proxy's counters of the `ucgw` frontend (`show stat` on its stats socket)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        text = read_all(sock).decode()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    row = next(r for r in rows if r["pxname"] == "ucgw" and r["svname"] == "FRONTEND")
    return {name: int(row[name] or 0) for name in ("scur", "stot", "dcon", "ereq")}


def test_haproxy_in_front_closes_a_thousand_slow_connections(mock_services: Any, tmp_path: Path) -> None:
    """The same slowloris attack through HAProxy run with the committed deploy/haproxy/edge.cfg: the proxy
    refuses one address's connections past its per-source cap (100), closes the ones it holds at its
    `timeout http-request`, answers a probe from another address throughout, and none of the
    slow connections reaches the gateway (its descriptors stay at baseline)."""
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is missing: `make test` installs it (Debian package haproxy)"
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_MAX_CONNECTIONS_PER_CLIENT="0"))
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    stats = tmp_path / "haproxy.sock"
    config.write_text(haproxy_config(port, gateway.port, header_seconds=3, stats=stats))
    assert subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True).returncode == 0
    # `-n`: the process-wide maxconn within this machine's descriptor limit (10,000 needs 20,017 descriptors)
    proxy = subprocess.Popen([haproxy, "-db", "-n", "4000", "-f", str(config)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    front = f"http://127.0.0.1:{port}"  # the attack's target

    def through_proxy() -> int:
        """The probe query sent through the proxy from another address than the attack's (the proxy, like the
        gateway, caps connections per source address)."""
        try:
            return probe(gateway, source="127.0.0.2", port=port)
        except OSError:
            return 0

    try:
        wait_for(lambda: through_proxy() == 200, "the proxy serves")
        process = psutil.Process(gateway.proc.pid)
        baseline = process.num_fds()
        out = tmp_path / "slow"
        attack = subprocess.Popen(
            [slowhttptest(), "-H", "-c", "1000", "-r", "1000", "-i", "1", "-x", "8", "-s", "65536", "-l", "15",
             "-p", "10", "-g", "-o", str(out), "-u", f"{front}/graphql"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probes, gateway_fds = [], []
        try:
            while attack.poll() is None:
                probes.append(through_proxy())
                gateway_fds.append(process.num_fds())
                time.sleep(0.25)
        finally:
            if attack.poll() is None:
                attack.kill()
            attack.wait()
        assert probes and set(probes) == {200}
        rows = list(csv.DictReader((tmp_path / "slow.csv").open()))
        assert max(int(row["Connected"]) for row in rows) >= 90, rows  # the attack did hold connections
        # the proxy refused the attack's connections past its per-source cap (100) at once, closed the ones it
        # held at their `timeout http-request` (request errors), and holds none of them now
        wait_for(lambda: haproxy_frontend(stats)["scur"] == 0, "the proxy holds no connection")
        counters = haproxy_frontend(stats)
        assert counters["dcon"] >= 850 and counters["ereq"] >= 90, counters
        assert counters["dcon"] + counters["ereq"] >= 1000, counters
        assert max(gateway_fds) <= baseline + 20  # the slow connections never reached the gateway
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        gateway.stop()
