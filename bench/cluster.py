"""`make bench`, cluster scenario (issue 24): the replicated deployment of `make cluster`, measured through HAProxy.

    .venv/bin/python bench/cluster.py            # about 4 minutes
    .venv/bin/python bench/cluster.py --quick    # smoke run

For each setup (1 replica with Redis, 2 replicas with Redis, 2 replicas without Redis) a fresh cluster
(gateway/cluster.py: PostgreSQL, Redis, the mocks with 40 ms added latency, the replicas, HAProxy) is started and
this process drives it (asyncio + aiohttp over 127.0.0.1):

- cold: full status of children never asked for, once each, through HAProxy at concurrency 16;
- cross-replica hit ratio (2 replicas): children read on replica 1's own port, then on replica 2's: the share
  of replica 2's provenance entries that are HITs (a shared record cache makes it 1.0; without one it is 0);
- warm: full status of a small set of children already read, closed loop at concurrency 16 through HAProxy;
- for both: p50/p99, backend calls per request (the mocks' data routes, change feeds left out), Redis round
  trips per request (INFO commandstats, all commands), PostgreSQL transactions per request (pg_stat_database
  xact_commit + xact_rollback of the gateway's database), and gateway CPU milliseconds per request per
  replica (each replica's CPU over the requests HAProxy sent it), HAProxy's own CPU per request, the mean answer
  size and each replica's RSS after the warm phase;
- kill (2 replicas): the warm loop for 3 windows: both up, replica 2 killed with SIGKILL, replica 2 started
  again: p99 and non-200 answers of each window.

On 2 shared cores req/s cannot show scaling; CPU and round trips per request are what the sizing in
docs/deploying.md is built from. Results: a Markdown table, and bench/results/<date>-cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (  # noqa: E402  (bench/ is not a package)
    DEFAULT_LATENCY_MS,
    FULL_STATUS,
    RATE_LIMIT_BURST,
    RATE_LIMIT_RPS,
    ROOT,
    Sample,
    closed_loop,
    graphql_body,
    machine,
    post,
    session,
)

from gateway.cluster import Cluster  # noqa: E402
from testing.gateway import free_port, mint  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 16
SETUPS = ((1, True), (2, True), (2, False))  # (replicas, with Redis)


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


class Counters:
    """What the cluster's shared parts and backends have done so far."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def backend_calls(self) -> int:
        import urllib.request

        total = 0
        for url in self.cluster.state()["mocks"].values():
            with urllib.request.urlopen(f"{url}/_admin/stats", timeout=10) as resp:
                routes = json.load(resp)["by_route"]
            total += sum(n for route, n in routes.items() if "changes" not in route)
        return total

    def redis_calls(self) -> int:
        if not self.cluster.redis_url:
            return 0
        import redis

        with redis.Redis.from_url(self.cluster.redis_url) as client:
            stats = client.info("commandstats")
        mine = ("cmdstat_info", "cmdstat_client", "cmdstat_hello")  # this measurement's own connection
        return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(mine))

    def pg_transactions(self) -> int:
        import psycopg

        assert self.cluster.postgres is not None
        with psycopg.connect(self.cluster.postgres.url, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'ucgw'"
                               ).fetchone()
        return int(row[0]) if row else 0

    def cpu(self) -> dict[str, float]:
        out = {}
        for replica in self.cluster.members:
            if replica.alive and replica.proc is not None:
                times = psutil.Process(replica.proc.pid).cpu_times()
                out[replica.id] = times.user + times.system
        if self.cluster.haproxy is not None:
            times = psutil.Process(self.cluster.haproxy.pid).cpu_times()
            out["haproxy"] = times.user + times.system
        return out

    def sessions(self) -> dict[str, int]:
        return {name: s["sessions"] for name, s in self.cluster.haproxy_servers().items()}

    def snapshot(self) -> dict[str, Any]:
        time.sleep(1.0)  # PostgreSQL reports an idle backend's counts within a second
        return {"backend": self.backend_calls(), "redis": self.redis_calls(), "pg": self.pg_transactions(),
                "cpu": self.cpu(), "sessions": self.sessions()}


def per_request(before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, Any]:
    n = max(1, requests)
    cpu = {}
    for rid, seconds in after["cpu"].items():
        served = requests if rid == "haproxy" else after["sessions"].get(rid, 0) - before["sessions"].get(rid, 0)
        if rid in before["cpu"] and served:
            cpu[rid] = round((seconds - before["cpu"][rid]) * 1000 / served, 2)
    return {"backend_calls_per_request": round((after["backend"] - before["backend"]) / n, 2),
            "redis_round_trips_per_request": round((after["redis"] - before["redis"]) / n, 2),
            "pg_transactions_per_request": round((after["pg"] - before["pg"]) / n, 2),
            "gateway_cpu_ms_per_request": cpu}


async def cold(cluster: Cluster, counters: Counters, token: str, a_numbers: list[str]) -> dict[str, Any]:
    """Each child once, `CONCURRENCY` at a time, none asked for before."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    todo = list(a_numbers)
    sample = Sample()
    loop = asyncio.get_running_loop()

    async def worker(client: Any) -> None:
        while todo:
            latency, status, _ = await post(client, f"{cluster.url}/graphql",
                                            graphql_body(FULL_STATUS, {"a": todo.pop()}), headers)
            sample.latencies.append(latency)
            if status:
                sample.statuses[status] += 1
            else:
                sample.failures += 1

    before = await asyncio.to_thread(counters.snapshot)
    async with session() as client:
        began = loop.time()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        sample.seconds = loop.time() - began
    after = await asyncio.to_thread(counters.snapshot)
    return {"latency": sample.summary(), **per_request(before, after, len(sample.latencies))}


async def cross_replica(cluster: Cluster, token: str, a_numbers: list[str]) -> dict[str, Any]:
    """Read on replica 1's own port, then on replica 2's: the share of HIT provenance on replica 2."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    one, two = cluster.members[0], cluster.members[1]
    hits = entries = 0
    async with session() as client:
        for a_number in a_numbers:
            await post(client, f"{one.url}/graphql", graphql_body(FULL_STATUS, {"a": a_number}), headers)
        for a_number in a_numbers:
            _, status, body = await post(client, f"{two.url}/graphql", graphql_body(FULL_STATUS, {"a": a_number}),
                                         headers)
            text = body.decode()
            hits += text.count('"cacheStatus":"HIT"')
            entries += text.count('"cacheStatus":')
    return {"children": len(a_numbers), "provenance_entries": entries,
            "hit_ratio": round(hits / entries, 3) if entries else None}


async def warm(cluster: Cluster, counters: Counters, token: str, a_numbers: list[str],
               seconds: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    turn = iter(range(10**9))
    body = lambda: graphql_body(FULL_STATUS, {"a": a_numbers[next(turn) % len(a_numbers)]})  # noqa: E731
    async with session() as client:
        await closed_loop(client, f"{cluster.url}/graphql", body, headers, CONCURRENCY, seconds=2.0)  # warm all
        before = await asyncio.to_thread(counters.snapshot)
        sizes: list[int] = []
        sample = await closed_loop(client, f"{cluster.url}/graphql", body, headers, CONCURRENCY, seconds=seconds,
                                   on_response=lambda _status, data: sizes.append(len(data)))
    after = await asyncio.to_thread(counters.snapshot)
    rss = {r.id: round(psutil.Process(r.proc.pid).memory_info().rss / 2**20, 1)
           for r in cluster.members if r.alive and r.proc is not None}
    return {"latency": sample.summary(), **per_request(before, after, len(sample.latencies)),
            "response_bytes": round(sum(sizes) / max(1, len(sizes))), "replica_rss_mib": rss}


async def kill_and_restart(cluster: Cluster, token: str, a_numbers: list[str], seconds: float) -> dict[str, Any]:
    """The warm loop through three windows: all up; replica 2 killed (SIGKILL); replica 2 started again."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    turn = iter(range(10**9))
    body = lambda: graphql_body(FULL_STATUS, {"a": a_numbers[next(turn) % len(a_numbers)]})  # noqa: E731
    victim = cluster.members[1]
    windows: dict[str, Sample] = {}
    async with session() as client:
        url = f"{cluster.url}/graphql"
        windows["both_up"] = await closed_loop(client, url, body, headers, CONCURRENCY, seconds=seconds)
        cluster.kill(victim, signal.SIGKILL)
        windows["one_killed"] = await closed_loop(client, url, body, headers, CONCURRENCY, seconds=seconds)
        cluster.start_replica(victim, wait=False)
        windows["restarting"] = await closed_loop(client, url, body, headers, CONCURRENCY, seconds=2 * seconds)
    return {name: {**s.summary(), "non_200": sum(n for code, n in s.statuses.items() if code != 200) + s.failures}
            for name, s in windows.items()}


def sample_a_numbers(cluster: Cluster, n: int) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(f"{cluster.state()['mocks']['orr']}/_admin/sample?n={n}", timeout=30) as resp:
        return list(json.load(resp)["a_numbers"])


def set_latency(cluster: Cluster, latency_ms: float) -> None:
    import urllib.request

    for url in cluster.state()["mocks"].values():
        req = urllib.request.Request(f"{url}/_admin/faults", method="PUT", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"latency_ms": latency_ms}).encode())
        urllib.request.urlopen(req, timeout=10).close()


def run_setup(replicas: int, with_redis: bool, quick: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="ucgw-bench-cluster-"))
    folder.chmod(0o755)  # PostgreSQL's unprivileged user must reach its folder inside
    n_cold, warm_seconds = (60, 3.0) if quick else (300, 8.0)
    env = {"UCGW_RATE_LIMIT_RPS": RATE_LIMIT_RPS, "UCGW_RATE_LIMIT_BURST": RATE_LIMIT_BURST}
    try:
        with Cluster(folder / "cluster", replicas=replicas, port=free_port(), children=2000, redis=with_redis,
                     env=env, say=say) as cluster:
            set_latency(cluster, DEFAULT_LATENCY_MS)
            secret = dict(line.split("=", 1) for line in (cluster.root / "secrets.env").read_text().splitlines()
                          if "=" in line and not line.startswith("#"))["UCGW_JWT_SECRET"]
            token = mint("caseworker", secret=secret)
            counters = Counters(cluster)
            pool = sample_a_numbers(cluster, n_cold + 120)
            cold_set, cross_set, warm_set = pool[:n_cold], pool[n_cold:n_cold + 100], pool[n_cold + 100:]
            out: dict[str, Any] = {"replicas": replicas, "redis": with_redis}
            out["cold"] = asyncio.run(cold(cluster, counters, token, cold_set))
            if replicas >= 2:
                out["cross_replica"] = asyncio.run(cross_replica(cluster, token, cross_set[: 30 if quick else 100]))
            out["warm"] = asyncio.run(warm(cluster, counters, token, warm_set, warm_seconds))
            if replicas >= 2 and with_redis:
                out["kill_restart"] = asyncio.run(kill_and_restart(cluster, token, warm_set, warm_seconds))
            return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(runs: list[dict[str, Any]]) -> str:
    rows = ["| setup | phase | p50 ms | p99 ms | req/s | backend calls/req | Redis trips/req | PG xacts/req "
            "| CPU ms/req per replica (and HAProxy) | answer bytes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        setup = f"{r['replicas']} replica{'s' if r['replicas'] > 1 else ''}, {'Redis' if r['redis'] else 'no Redis'}"
        for phase in ("cold", "warm"):
            p = r[phase]
            cpu = ", ".join(f"{k} {v}" for k, v in p["gateway_cpu_ms_per_request"].items())
            rows.append(f"| {setup} | {phase} | {p['latency']['p50_ms']} | {p['latency']['p99_ms']} | "
                        f"{p['latency'].get('rps', '')} | {p['backend_calls_per_request']} | "
                        f"{p['redis_round_trips_per_request']} | {p['pg_transactions_per_request']} | {cpu} | "
                        f"{p.get('response_bytes', '')} |")
    lines = ["\n".join(rows), ""]
    for r in runs:
        if "cross_replica" in r:
            cross, shared = r["cross_replica"], "Redis" if r["redis"] else "no Redis"
            lines.append(f"- cross-replica hit ratio ({r['replicas']} replicas, {shared}): {cross['hit_ratio']} "
                         f"of {cross['provenance_entries']} provenance entries")
        if "kill_restart" in r:
            k = r["kill_restart"]
            lines.append("- kill -9 and restart of replica 2 (warm, concurrency 16): "
                         + "; ".join(f"{name}: p99 {w['p99_ms']} ms, {w['requests']} requests, {w['non_200']} non-200"
                                     for name, w in k.items()))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer children")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    runs = []
    for replicas, with_redis in SETUPS:
        say(f"== cluster: {replicas} replica(s), {'with' if with_redis else 'without'} Redis")
        runs.append(run_setup(replicas, with_redis, args.quick))
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": machine(),
              "quick": args.quick, "mock_latency_ms": DEFAULT_LATENCY_MS, "concurrency": CONCURRENCY, "runs": runs}
    print(table(runs))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        name = f"{datetime.date.today().isoformat()}-cluster{'-quick' if args.quick else ''}.json"
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
        say(f"wrote bench/results/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
