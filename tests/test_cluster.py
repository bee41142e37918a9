"""`ucgw cluster` (make cluster): the launcher brings the whole stack up as real servers, a caseworker's query
through HAProxy answers, HAProxy takes a crashed replica out and puts it back when the launcher restarts it,
Ctrl-C ends everything it started; and the cluster's HAProxy drops a replica whose /readyz answers 503 while
keeping one whose /readyz says degraded (200).

The cross-replica properties (shared cache, one audit trail) need the PostgreSQL and Redis stores:
tests/test_cluster_failover.py.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cluster import Cluster, haproxy_servers
from testing.gateway import ROOT, free_port, mint
from testing.mockproc import request

START_TIMEOUT = 240.0  # PostgreSQL, Redis, the mocks and three replicas on two shared cores


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something true (generous: this waits for an event, it times nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def secret_of(root: Path, key: str) -> str:
    lines = (root / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))[key]


def child_query(a_number: str) -> dict[str, Any]:
    return {"query": "query($a: ID!) { child(aNumber: $a) { aNumber location { status "
                     "provenance { source cacheStatus } } } }", "variables": {"a": a_number}}


def sample(orr_url: str, n: int) -> list[str]:
    return list(request("GET", f"{orr_url}/_admin/sample?n={n}").json()["a_numbers"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture()
def cluster_root() -> Iterator[Path]:
    """A folder for a cluster that PostgreSQL's unprivileged user can enter (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="ucgw-cluster-"))
    path.chmod(0o755)
    yield path / "cluster"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def launcher(cluster_root: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str], Path]]:
    """`ucgw cluster` as a person runs it, on a free port, with its folder in tmp_path."""
    root = cluster_root
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "cluster", "--root", str(root), "--port", str(free_port()),
         "--replicas", "3", "--children", "300", "--restart-after", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        yield proc, lines, root
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def read_until(lines: queue.Queue[str], prefix: str, proc: subprocess.Popen[str], timeout: float) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, f"the launcher exited ({proc.returncode}):\n{''.join(seen)}"
            continue
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no {prefix!r} line within {timeout} s:\n{''.join(seen)}")


def test_launcher_brings_up_the_stack_and_a_query_through_haproxy_answers(launcher: Any) -> None:
    proc, lines, root = launcher
    banner = "".join(read_until(lines, "READY ", proc, START_TIMEOUT))
    state = json.loads((root / "cluster.json").read_text())
    assert [r["id"] for r in state["replicas"]] == ["gw1", "gw2", "gw3"]
    assert "caseworker" in banner and f"kill -9 {state['replicas'][0]['pid']}" in banner
    assert stat.S_IMODE((root / "secrets.env").stat().st_mode) == 0o600

    token = mint("caseworker", secret=secret_of(root, "UCGW_JWT_SECRET"))  # the cluster's own secret
    a_numbers = sample(state["mocks"]["orr"], 6)
    ids = set()
    for a_number in a_numbers:  # round robin: every replica serves some
        resp = request("POST", f"{state['url']}/graphql", child_query(a_number),
                       {"Authorization": f"Bearer {token}"})
        assert resp.status == 200, resp.body
        assert resp.json()["data"]["child"]["aNumber"] == a_number
        ids.add(resp.headers["x-request-id"])
    assert len(ids) == len(a_numbers)  # HAProxy gave each request an id of its own, and the gateway kept it
    servers = haproxy_servers(state["haproxy_socket"])
    assert {name: s["status"] for name, s in servers.items()} == {"gw1": "UP", "gw2": "UP", "gw3": "UP"}
    assert all(s["sessions"] >= 1 for s in servers.values()), servers
    # a wrong token is refused at the gateway behind the proxy, as it would be without one
    assert request("POST", f"{state['url']}/graphql", child_query(a_numbers[0]),
                   {"Authorization": "Bearer nope"}).status == 401

    # kill -9 of a replica: HAProxy takes it out, queries keep answering, the launcher starts it again
    victim = state["replicas"][1]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: haproxy_servers(state["haproxy_socket"])["gw2"]["status"] == "DOWN", "gw2 DOWN")
    for a_number in a_numbers:
        assert request("POST", f"{state['url']}/graphql", child_query(a_number),
                       {"Authorization": f"Bearer {token}"}).status == 200
    read_until(lines, "replica gw2 exited (-9); starting it again", proc, 60)
    wait_for(lambda: haproxy_servers(state["haproxy_socket"])["gw2"]["status"] == "UP", "gw2 UP again", 120)
    restarted = json.loads((root / "cluster.json").read_text())["replicas"][1]
    assert restarted["pid"] != victim["pid"] and alive(restarted["pid"])

    # Ctrl-C: every process it started is gone, and it says so
    pids = [state["haproxy_pid"], *(r["pid"] for r in json.loads((root / "cluster.json").read_text())["replicas"])]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert not [pid for pid in pids if alive(pid)]
    assert not (root / "cluster.json").exists()


def test_launcher_refuses_zero_replicas(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "cluster", "--root", str(tmp_path), "--replicas", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--replicas must be at least 1" in done.stderr


def test_haproxy_drops_a_replica_whose_readyz_is_503_and_keeps_a_degraded_one(cluster_root: Path) -> None:
    """gw1 can reach none of the backends (its /readyz: 503, nothing it can serve), gw2 cannot reach ICE
    (degraded, 200: it still answers what it can), gw3 is whole. HAProxy sends traffic to gw2 and gw3 only."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # a refused connection opens a breaker at once and for good; a live backend that is merely slow on a busy
    # machine must not open one (a long timeout and deadline), or gw2 would lose every source and answer 503 too
    never_reset = {"UCGW_BREAKER_FAILURE_THRESHOLD": "1", "UCGW_BREAKER_RESET_SECONDS": "3600",
                   "UCGW_RETRY_ATTEMPTS": "0", "UCGW_SOURCE_TIMEOUT_SECONDS": "30",
                   "UCGW_REQUEST_DEADLINE_SECONDS": "60"}
    with Cluster(cluster_root, replicas=3, port=free_port(), children=300, redis=False,
                 say=lambda _line: None) as cluster:
        gw1, gw2, gw3 = cluster.members
        for replica, env in ((gw1, {"UCGW_ORR_URL": dead, "UCGW_ICE_URL": dead, "UCGW_EOIR_URL": dead}),
                             (gw2, {"UCGW_ICE_URL": dead})):
            cluster.kill(replica, signal.SIGTERM)
            replica.env = {**never_reset, **env}
            cluster.start_replica(replica)
        token = mint("caseworker", secret=secret_of(cluster.root, "UCGW_JWT_SECRET"))
        a_number = sample(cluster.state()["mocks"]["orr"], 1)[0]
        every_source = {"query": "query($a: ID!) { child(aNumber: $a) { aNumber location { status } "
                                 "nta { status } hearing { caseStatus } } }", "variables": {"a": a_number}}
        for replica in (gw1, gw2):  # reads on each open the breakers of the backends it cannot reach
            for _ in range(3):
                request("POST", f"{replica.url}/graphql", every_source, {"Authorization": f"Bearer {token}"})
        one = request("GET", f"{gw1.url}/readyz")
        two = request("GET", f"{gw2.url}/readyz")
        assert (one.status, one.json()) == (503, {"ready": False, "status": "degraded"})
        assert (two.status, two.json()) == (200, {"ready": True, "status": "degraded"})

        expected = {"gw1": "DOWN", "gw2": "UP", "gw3": "UP"}
        wait_for(lambda: {n: s["status"] for n, s in cluster.haproxy_servers().items()} == expected, str(expected))
        before = {n: s["sessions"] for n, s in cluster.haproxy_servers().items()}
        for _ in range(6):
            resp = request("POST", f"{cluster.url}/graphql", child_query(a_number),
                           {"Authorization": f"Bearer {token}"})
            assert resp.status == 200
        after = {n: s["sessions"] for n, s in cluster.haproxy_servers().items()}
        assert after["gw1"] == before["gw1"]  # none to the replica that cannot serve
        assert (after["gw2"] - before["gw2"]) + (after["gw3"] - before["gw3"]) == 6  # all to the other two
        assert after["gw2"] > before["gw2"]  # the degraded one among them


def test_cluster_haproxy_holds_the_edge_limits_of_edge_cfg() -> None:
    """deploy/haproxy/cluster.cfg repeats every limit of deploy/haproxy/edge.cfg (which states each against the
    gateway setting it mirrors), so the cluster's proxy refuses what the gateway's edge would."""
    def directives(path: Path) -> set[str]:
        lines = (ROOT / "deploy" / "haproxy" / path).read_text().splitlines()
        return {" ".join(line.split()) for line in lines
                if line.startswith("    ") and not line.strip().startswith("#")}

    edge = {d for d in directives(Path("edge.cfg"))
            if not d.startswith(("bind ", "default_backend ", "server "))}  # where, not how
    missing = edge - directives(Path("cluster.cfg"))
    assert missing == set()
