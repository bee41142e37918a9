"""kill -9 of a replica under load through the cluster's HAProxy: every answered child read has exactly one
audit event, joined by the X-Request-Id the answer carries; no request id is audited twice (HAProxy retries only
requests that never reached a gateway: deploy/haproxy/cluster.cfg); every chain of the one PostgreSQL trail
verifies.

Needs the PostgreSQL audit store (issue 24 part A: UCGW_DATABASE_URL, `ucgw audit` reading it). On a branch
without it this test fails at its first assertion, by design: it is written against that interface.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cluster import Cluster
from sources.settings import Settings
from testing.gateway import ROOT, free_port, mint
from testing.mockproc import request

READS_BEFORE_KILL = 60
READS_AFTER_KILL = 90
WORKERS = 6


@pytest.fixture()
def cluster_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ucgw-cluster-"))
    path.chmod(0o755)  # PostgreSQL's unprivileged user must reach its folder inside
    yield path / "cluster"
    shutil.rmtree(path, ignore_errors=True)


def audit_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`ucgw audit ...` against the cluster's PostgreSQL trail (an empty data folder: nothing read from SQLite)."""
    env = {**os.environ, "UCGW_DATABASE_URL": cluster.database_url, "UCGW_DATA_DIR": str(cluster.root / "empty"),
           "UCGW_AUDIT_HMAC_KEY": cluster_secret(cluster, "UCGW_AUDIT_HMAC_KEY")}
    (cluster.root / "empty").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "gateway.cli", "audit", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def cluster_secret(cluster: Cluster, key: str) -> str:
    lines = (cluster.root / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))[key]


def test_kill_9_under_load_leaves_exactly_one_audit_event_per_answered_read(cluster_root: Path) -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert "database_url" in fields, "needs the PostgreSQL audit store (UCGW_DATABASE_URL, issue 24 part A)"

    with Cluster(cluster_root, replicas=3, port=free_port(), children=300, say=lambda _line: None,
                 env={"UCGW_RATE_LIMIT_RPS": "0"}) as cluster:  # one caller's load, not a rate-limit test
        token = mint("caseworker", secret=cluster_secret(cluster, "UCGW_JWT_SECRET"))
        orr = cluster.state()["mocks"]["orr"]
        a_numbers = request("GET", f"{orr}/_admin/sample?n=40").json()["a_numbers"]
        answered: list[tuple[str, str]] = []  # (request id, A-number) of every answered child read
        refused: Counter[int] = Counter()
        lock, stop, killed = threading.Lock(), threading.Event(), threading.Event()

        def worker(offset: int) -> None:
            n = offset
            while not stop.is_set():
                a_number = a_numbers[n % len(a_numbers)]
                n += WORKERS
                resp = request("POST", f"{cluster.url}/graphql",
                               {"query": "query($a: ID!) { child(aNumber: $a) { aNumber location { status } } }",
                                "variables": {"a": a_number}}, {"Authorization": f"Bearer {token}"}, timeout=60)
                with lock:
                    child = (resp.json().get("data") or {}).get("child") if resp.status == 200 else None
                    if child and child["aNumber"] == a_number:
                        answered.append((resp.headers["x-request-id"], a_number))
                    else:
                        refused[resp.status] += 1
                    if len(answered) >= READS_BEFORE_KILL + READS_AFTER_KILL and killed.is_set():
                        stop.set()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        try:
            while True:  # kill -9 a replica once the load is well under way and it has served some
                with lock:
                    if len(answered) >= READS_BEFORE_KILL:
                        break
                stop.wait(0.1)
            assert cluster.haproxy_servers()["gw2"]["sessions"] > 0
            cluster.kill(cluster.members[1], signal.SIGKILL)
            killed.set()
        finally:
            for thread in threads:
                thread.join(timeout=300)
            stop.set()
        assert not refused.keys() - {502, 503, 504}, refused  # only the requests cut off by the crash

        listing = audit_cli(cluster)
        assert listing.returncode == 0, listing.stderr
        events = [json.loads(line) for line in listing.stdout.splitlines()]
        per_request = Counter(e["request_id"] for e in events)
        assert [rid for rid, n in per_request.items() if n > 1] == []  # nothing audited twice
        by_id = {e["request_id"]: e for e in events}
        for request_id, a_number in answered:
            assert request_id in by_id, f"answered read {request_id} has no audit event"
            assert by_id[request_id]["a_number"] == a_number
        assert len({by_id[rid].get("writer") for rid, _ in answered}) >= 2  # one trail, several replicas wrote it

        verdict = audit_cli(cluster, "verify")
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        assert verdict.stdout.startswith("ok: ")
