"""Prometheus metrics on the admin listener (issue 28): the families and their label sets on a real gateway over
the mocks, nothing on the public port, no A-number in any label, a real Prometheus scraping them, and the
operator assets (alert rules through Debian's promtool, the Grafana dashboard's queries naming real families)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets

from testing.gateway import ROOT, GatewayProcess, free_port, http
from testing.mockproc import MockProcess

STATUS = "query Status($a: ID!) { child(aNumber: $a) { aNumber location { status } hearing { caseStatus } } }"
ASSETS = ROOT / "deploy" / "observability"
REPLICA = "replica-a"


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the text exposition by name: (labels, value) in order."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert found, line
        labels = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        out.setdefault(found.group(1), []).append((labels, float(found.group(3))))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    hits = [v for got, v in samples.get(name, []) if all(got.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


def scrape(gw: GatewayProcess) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    status, headers, body = http("GET", f"{gw.admin_url}/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode(), parse(body.decode())


@pytest.fixture(scope="module")
def gateway(mock_services: Any) -> Any:
    gw = GatewayProcess(mock_services.gateway_env(UCGW_CACHE_TTL_SECONDS="300", UCGW_REPLICA_ID=REPLICA,
                                                  UCGW_ANSWER_CACHE_BYTES="0"))
    yield gw
    gw.stop()


def test_request_and_source_families_count_what_was_done(gateway: GatewayProcess, mock_services: Any) -> None:
    a_numbers = mock_services.sample(3)
    _, before = scrape(gateway)
    for a in a_numbers:
        status, body = gateway.query(STATUS, {"a": a})
        assert status == 200 and "errors" not in body, body
    status, body = gateway.query("query Missing { child(aNumber: 12) { aNumber } }")
    assert status == 200 and body["errors"]
    status, _, _ = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                        headers={"authorization": "Bearer nonsense"})
    assert status == 401
    text, after = scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - (value(before, name, **labels) if any(
            all(got.get(k) == x for k, x in labels.items()) for got, _ in before.get(name, [])) else 0.0)

    assert delta("ucgw_requests_total", replica=REPLICA, operation="Status", role="caseworker", outcome="ok") == 3
    assert delta("ucgw_requests_total", operation="Missing", role="caseworker", outcome="errors") == 1
    assert delta("ucgw_requests_total", operation="unknown", role="none", outcome="rejected") == 1
    assert delta("ucgw_request_duration_seconds_count", operation="Status", role="caseworker") == 3
    assert value(after, "ucgw_request_duration_seconds_bucket", operation="Status", role="caseworker",
                 le="+Inf") == value(after, "ucgw_request_duration_seconds_count", operation="Status")
    for source in ("ORR", "ICE", "EOIR"):
        calls = delta("ucgw_source_calls_total", replica=REPLICA, source=source)
        assert calls >= 1
        assert delta("ucgw_source_call_duration_seconds_count", replica=REPLICA, source=source) == calls
        assert value(after, "ucgw_source_breaker_state", source=source, state="CLOSED") == 1
        assert value(after, "ucgw_source_breaker_state", source=source, state="OPEN") == 0
        assert value(after, "ucgw_source_in_flight", source=source) == 0
        assert delta("ucgw_record_cache_lookups_total", source=source, result="miss") >= 1
    assert value(after, "ucgw_record_cache_entries", replica=REPLICA) >= 9
    assert delta("ucgw_audit_commits_total", replica=REPLICA) >= 1
    assert delta("ucgw_audit_rows_total", replica=REPLICA) >= 3
    assert value(after, "ucgw_audit_commit_duration_seconds_count") == value(after, "ucgw_audit_commits_total")
    assert value(after, "ucgw_process_resident_memory_bytes") > 10_000_000
    assert value(after, "ucgw_websockets_open") == 0
    assert value(after, "ucgw_scans_running") == 0
    assert [labels["event"] for labels, _ in after["ucgw_scans_total"]] == ["started", "joined", "waited", "refused"]
    # every family is the gateway's own, every sample carries the replica, and no A-number is in any label
    assert {s for s in after} and all(s.startswith("ucgw_") for s in after)
    assert all(labels.get("replica") == REPLICA for rows in after.values() for labels, _ in rows)
    for a in a_numbers:
        assert a not in text and a.replace("-", "") not in text


def test_errors_by_kind_and_breaker_state(mock_services: Any) -> None:
    gw = GatewayProcess(mock_services.gateway_env(UCGW_ICE_URL=f"http://127.0.0.1:{free_port()}",
                                                  UCGW_BREAKER_FAILURE_THRESHOLD="1", UCGW_RETRY_ATTEMPTS="0",
                                                  UCGW_BREAKER_RESET_SECONDS="600"))
    try:
        a = mock_services.sample(1)[0]
        for _ in range(2):
            gw.query(STATUS, {"a": a})
        _, samples = scrape(gw)
        assert value(samples, "ucgw_source_errors_total", source="ICE", kind="SOURCE_UNAVAILABLE") == 1
        assert value(samples, "ucgw_source_errors_total", source="ICE", kind="BREAKER_OPEN") >= 1
        assert value(samples, "ucgw_source_breaker_state", source="ICE", state="OPEN") == 1
        assert value(samples, "ucgw_source_breaker_open", source="ICE") == 1
        assert value(samples, "ucgw_source_breaker_open", source="ORR") == 0
        assert not [labels for labels, _ in samples.get("ucgw_source_errors_total", []) if labels["source"] != "ICE"]
    finally:
        gw.stop()


def test_operation_label_is_bounded_and_never_holds_digits(gateway: GatewayProcess) -> None:
    for i in range(60):
        gateway.query(f"query Op{chr(65 + i // 26)}{chr(65 + i % 26)} {{ __typename }}")
    gateway.query("query Lookup123456789 { __typename }")
    _, samples = scrape(gateway)
    operations = {labels["operation"] for labels, _ in samples["ucgw_requests_total"]}
    assert "Lookup123456789" not in operations and "other" in operations
    assert len(operations) <= 50 + 4  # the bounded names, and other, anonymous and unknown


def test_rate_limit_refusals_by_client_class(mock_services: Any) -> None:
    gw = GatewayProcess(mock_services.gateway_env(UCGW_RATE_LIMIT_RPS="0.01", UCGW_RATE_LIMIT_BURST="2"))
    try:
        statuses = [gw.query("{ __typename }")[0] for _ in range(5)]
        assert statuses == [200, 200, 429, 429, 429]
        _, samples = scrape(gw)
        assert value(samples, "ucgw_rate_limited_total", client_class="caseworker") == 3
        assert value(samples, "ucgw_requests_total", operation="unknown", outcome="rate_limited") == 3
    finally:
        gw.stop()


def test_metrics_are_never_on_the_public_port(gateway: GatewayProcess) -> None:
    status, _, _ = http("GET", f"{gateway.url}/metrics")
    assert status == 404
    status, _, _ = http("GET", f"{gateway.url}/metrics", headers=gateway.headers())
    assert status == 404


def test_a_bad_replica_id_is_a_clear_error(mock_services: Any) -> None:
    with pytest.raises(RuntimeError) as refused:
        GatewayProcess(mock_services.gateway_env(UCGW_REPLICA_ID="two words"))
    assert "replica_id" in str(refused.value) and "Traceback" not in str(refused.value)


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make test-deps` installs Debian's prometheus"
    result = subprocess.run([promtool, "check", "rules", str(ASSETS / "alerts.yml")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout, result.stdout


def test_dashboard_queries_name_real_families(gateway: GatewayProcess) -> None:
    dashboard = json.loads((ASSETS / "grafana-dashboard.json").read_text())
    text, _ = scrape(gateway)
    families = {re.sub(r"_(total|created)$", "", n) for n in re.findall(r"^# TYPE (ucgw_[a-z_]+) ", text, re.M)}
    titles = [p["title"] for p in dashboard["panels"]]
    assert {"Requests by operation", "Source latency p95", "Record cache", "Audit commit latency p95",
            "Rate-limit refusals"} <= set(titles)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"ucgw_[a-z_]+", target["expr"]))
            assert used and {re.sub(r"_(bucket|count|sum|total)$", "", u) for u in used} <= families, target


def test_a_real_prometheus_scrapes_the_gateway(gateway: GatewayProcess, mock_services: Any) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make test-deps` installs Debian's prometheus"
    for a in mock_services.sample(2):
        assert gateway.query(STATUS, {"a": a})[0] == 200
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "prometheus.yml"
        target = urllib.parse.urlsplit(gateway.admin_url).netloc
        config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ucgw\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def series(match: str) -> list[dict[str, str]]:
                url = f"http://127.0.0.1:{port}/api/v1/series?" + urllib.parse.urlencode({"match[]": match})
                try:
                    status, _, body = http("GET", url)
                except OSError:
                    return []
                return json.loads(body)["data"] if status == 200 else []

            for _ in range(300):  # Prometheus' first scrape comes within a few scrape intervals
                requests = series('ucgw_requests_total{operation="Status"}')
                latency = series('ucgw_source_call_duration_seconds_bucket{source="EOIR"}')
                if requests and latency:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert [{k: v for k, v in s.items() if k != "instance"} for s in requests] == [
                {"__name__": "ucgw_requests_total", "job": "ucgw", "replica": REPLICA, "operation": "Status",
                 "role": "caseworker", "outcome": "ok"}]
            assert {s["le"] for s in latency} == {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                                  "0.25", "0.5", "1.0", "2.0", "5.0", "+Inf"}
            assert {(s["job"], s["replica"], s["source"]) for s in latency} == {("ucgw", REPLICA, "EOIR")}
        finally:
            proc.terminate()
            proc.wait(timeout=30)



CHANGED = "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source changedFields } }"


def test_websockets_subscriptions_and_events_delivered() -> None:
    """A subscriber over graphql-transport-ws: the open gauges count it while it is open and 0 after; one change
    of its child's ICE record is one event delivered."""
    with MockProcess(seed=7, children=40) as mocks:
        gw = GatewayProcess(mocks.gateway_env(UCGW_CHANGE_FEED_POLL_SECONDS="0.2"))
        try:
            a = mocks.sample(1)[0]
            _, before = scrape(gw)
            assert value(before, "ucgw_subscription_events_total") == 0

            async def run() -> None:
                url = gw.url.replace("http://", "ws://") + "/graphql"
                async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
                    await ws.send(json.dumps({"type": "connection_init",
                                              "payload": {"Authorization": f"Bearer {gw.token}"}}))
                    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
                    await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                              "payload": {"query": CHANGED, "variables": {"a": a}}}))
                    for _ in range(100):  # the subscription registers on the gateway's loop
                        _, open_now = await asyncio.to_thread(scrape, gw)
                        if value(open_now, "ucgw_subscriptions_open") == 1:
                            break
                        await asyncio.sleep(0.05)
                    assert value(open_now, "ucgw_websockets_open") == 1
                    assert value(open_now, "ucgw_subscriptions_open") == 1
                    await asyncio.sleep(0.5)  # the follower has read where each feed ends
                    office = mocks.request("ice", "GET", f"/v1/subjects/{a}").json()["field_office"]
                    mocks.admin_ok("ice", "PATCH", f"/_admin/records/{a}",
                                   {"field_office": "Chicago" if office != "Chicago" else "Seattle"})
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert message["type"] == "next", message
                    assert message["payload"]["data"]["childStatusChanged"]["aNumber"] == a

            asyncio.run(run())
            for _ in range(100):  # the server notices the close on its loop
                _, after = scrape(gw)
                if value(after, "ucgw_websockets_open") == 0:
                    break
                time.sleep(0.05)
            assert value(after, "ucgw_websockets_open") == 0 and value(after, "ucgw_subscriptions_open") == 0
            assert value(after, "ucgw_subscription_events_total") == 1
            assert value(after, "ucgw_subscription_queue_drops_total") == 0
        finally:
            gw.stop()


def test_demo_prints_where_the_metrics_are(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--orr-port", "0",
                                 "--ice-port", "0", "--eoir-port", "0", "--children", "40"],
                                cwd=ROOT, env={**env, "UCGW_DATA_DIR": str(tmp_path / "data")}, stdout=log,
                                stderr=subprocess.STDOUT, text=True)
    try:
        found = None
        for _ in range(600):
            found = re.search(r"^  metrics   (http://127\.0\.0\.1:\d+/metrics)", log_path.read_text(), re.M)
            if found or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert found, log_path.read_text()
        for _ in range(100):
            try:
                status, _, body = http("GET", found.group(1), timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200 and "# TYPE ucgw_requests_total counter" in body.decode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
