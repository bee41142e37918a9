"""`make bench`: the gateway measured side by side with its sources and with a bare-server floor.

    .venv/bin/python bench/run.py            # full run (mocks with 201,000 children; about 8 minutes)
    .venv/bin/python bench/run.py --quick    # smoke run (5,000 children, short windows; about 1 minute)
    .venv/bin/python bench/run.py --only 2   # some scenarios only (comma-separated numbers)

Starts the mocks (fixed added latency, default 40 ms, no jitter) and the gateway as a user runs it
(`ucgw serve`: uvicorn, one worker, production settings) as subprocesses; this process is the load driver
(asyncio + aiohttp over 127.0.0.1). Scenarios (issue 7):

1. fan-out: cold full status of one child vs the slowest single source (each alone, and the slowest of
   the three called together), all measured here, interleaved;
2. warm cache at concurrency 1, 16, 64 vs the floor (bench/floor_app.py: same uvicorn, same bytes), the
   two measured in four alternating turns per concurrency;
3. batch: `children` with 100 cold A-numbers: backend calls per source and latency vs scenario 1;
4. stampede: 200 concurrent identical cold queries: backend calls per source and p99;
5. outage: EOIR down with its breaker open: p99 of the full-status query vs scenario 2;
6. memory: RSS after caching 100,000 children (cache sized to exactly that), bytes per cached child, and
   RSS after 100,000 further child reads that each evict (a fresh gateway process);
7. under attack (issue 33): warm req/s and p99 at concurrency 16 while Debian's slowhttptest holds 1,000
   slow-header connections, against the same without them, in one run (a fresh gateway whose header deadline
   outlasts the run and with no per-address cap, so that all 1,000 stay open while measured). Not in the
   default set: `--only 7`.
8. CPU per request (issue 29): the gateway process's user + system CPU over each window divided by the
   requests it answered, with req/s and p50/p99, for a cold single child (c=1, 16), a cold batch of 100
   (c=1, 4, 16) and a warm single child (c=1, 16), mocks at 5 ms; the cold rows beside the cold floor (a
   bare Starlette + aiohttp app making the same three backend calls, bench/floor_app.py `--sources`); then
   warm c=16 and the warm floor driven by Debian's wrk (`make bench` installs it), alternating.

Prints a Markdown table and writes bench/results/<date>.json (<date>-quick.json with --quick).
Timings are reported, never asserted; the exit status is 1 only when a call-count requirement fails
(scenarios 3 and 4: one backend call per source) or a request fails outright.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (bench/ is not a package)
    COLLECTIONS,
    DEFAULT_LATENCY_MS,
    FULL_STATUS,
    FULL_STATUS_MANY,
    LIGHT_MANY,
    RATE_LIMIT_RPS,
    ROOT,
    SOURCES,
    CpuTally,
    Floor,
    Gateway,
    Sample,
    admin,
    all_a_numbers,
    batch_calls,
    closed_loop,
    cpu_calibration,
    errors_of,
    graphql_body,
    machine,
    post,
    session,
    set_faults,
    start_mocks,
    wrk,
)

RESULTS = ROOT / "bench" / "results"
WARM_STATE = "missed_hearing"  # mock sample state of the warm-cache child: every section has data
JSON_HEADERS = {"Content-Type": "application/json"}
PROBE = "query Probe($a: ID!) { child(aNumber: $a) { location { provenance { cacheStatus } } " \
        "hearing { provenance { cacheStatus } } } }"
NO_EOIR = "query NoEoir($a: ID!) { child(aNumber: $a) { aNumber location { status } sponsor { category } " \
          "nta { status } } }"


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    children: int = 201_000  # scenario 6 reads 2 x 100,000 distinct children
    fanout_queries: int = 200
    warm_seconds: float = 8.0
    warm_warmup: float = 1.0
    concurrencies: tuple[int, ...] = (1, 16, 64)
    batch_rounds: int = 30  # a p50 of 10 cold batches moved by 10 ms between runs
    stampede_rounds: int = 5
    stampede_size: int = 200
    outage_seconds: float = 5.0
    memory_children: int = 100_000
    memory_concurrency: int = 4
    cpu_seconds: float = 3.0  # scenario 8: each row's window
    cpu_cold_max: int = 1_500  # ... at most this many cold single requests (distinct children) per window
    cpu_batch_max: int = 30  # ... and this many cold batches of 100
    wrk_seconds: float = 4.0  # scenario 8 under wrk: per side and turn (two turns each)


WARM_SLICES = 4  # scenario 2: floor and gateway measured in turns, each turn a quarter of the window
SLICE_WARMUP = 0.2  # seconds unmeasured at the start of each turn after the first (the plan's before it)

QUICK = Plan(children=5_000, fanout_queries=40, warm_seconds=2.0, warm_warmup=0.5, batch_rounds=3,
             stampede_rounds=2, outage_seconds=2.0, memory_children=2_000, cpu_seconds=1.0, cpu_cold_max=200,
             cpu_batch_max=4, wrk_seconds=1.0)
CPU_LATENCY_MS = 5.0  # scenario 8: the mocks' added latency (as bench/ab_cpu.py), restored afterwards
CPU_ROWS = (("cold single", (1, 16)), ("cold batch", (1, 4, 16)), ("warm", (1, 16)))


def say(*parts: object) -> None:
    """Progress on stderr (stdout carries the table)."""
    print(*parts, file=sys.stderr, flush=True)


def _per_request(cpu_share: float, summary: dict[str, Any]) -> float:
    """Server CPU milliseconds per request from its CPU share and the request rate."""
    return round(1000 * cpu_share / summary["rps"], 3) if summary.get("rps") else float("nan")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Bench:
    """The running processes and the A-numbers not yet used."""

    def __init__(self, plan: Plan, mocks: Any, client: Any, a_numbers: list[str]) -> None:
        self.plan = plan
        self.mocks = mocks
        self.client = client
        # the warm-cache child: one with every section filled (released, court case, hearings)
        self.warm_child = mocks.sample(1, WARM_STATE)[0]
        self.a_numbers = [a for a in a_numbers if a != self.warm_child]
        self._cold: Iterator[str] = iter(self.a_numbers)
        self.gw: Gateway | None = None
        self.failures: list[str] = []
        self.log_counts: dict[str, dict[str, int]] = {}  # gateway log lines by level, per gateway process

    def cold(self) -> str:
        """An A-number this gateway has never been asked about."""
        return next(self._cold)

    async def gql(self, query: str, variables: dict[str, Any]) -> tuple[float, int, bytes]:
        assert self.gw is not None
        return await post(self.client, self.gw.graphql, graphql_body(query, variables), self.gw.headers)

    # ------------------------------------------------------------------------------------------ scenario 7

    async def under_attack(self) -> dict[str, Any]:
        """Warm traffic with and without 1,000 slowloris connections held open, calm and attacked in turns."""
        say("7. under attack: warm traffic while slowhttptest holds 1,000 slow connections")
        tool = shutil.which("slowhttptest")
        if tool is None:
            raise RuntimeError("slowhttptest is missing (make bench installs it)")
        gw = Gateway(self.mocks, UCGW_HEADER_TIMEOUT_SECONDS="600", UCGW_MAX_CONNECTIONS_PER_CLIENT="0")
        body = graphql_body(FULL_STATUS, {"a": self.warm_child})
        seconds = self.plan.warm_seconds / WARM_SLICES
        calm, attacked = Sample(), Sample()
        held: list[int] = []
        try:
            for _ in range(2):
                await post(self.client, gw.graphql, body, gw.headers)
            for turn in range(WARM_SLICES):
                warmup = self.plan.warm_warmup if turn == 0 else SLICE_WARMUP
                calm.add(await closed_loop(self.client, gw.graphql, body, gw.headers, 16, seconds, warmup))
                attack = subprocess.Popen(
                    [tool, "-H", "-c", "1000", "-r", "1000", "-i", "5", "-l", "600",
                     "-u", gw.graphql],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    deadline = time.monotonic() + 60
                    while gw.readyz()["connections"]["open"] < 1000 and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                    attacked.add(await closed_loop(self.client, gw.graphql, body, gw.headers, 16, seconds,
                                                   SLICE_WARMUP))
                    held.append(gw.readyz()["connections"]["open"])
                finally:
                    attack.kill()
                    attack.wait()
                deadline = time.monotonic() + 60
                while gw.readyz()["connections"]["open"] > 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
        finally:
            gw.stop()
        c, a = calm.summary(), attacked.summary()
        bad = sum(n for status, n in (calm.statuses + attacked.statuses).items() if status != 200)
        return {"concurrency": 16, "turns": WARM_SLICES, "calm": c, "attacked": a,
                "slow_connections_held_min": min(held) if held else 0,
                "rps_ratio": round(a["rps"] / c["rps"], 3) if c.get("rps") else None,
                "p99_ratio": round(a["p99_ms"] / c["p99_ms"], 3) if c.get("p99_ms") else None,
                "bad_responses": bad}

    # ------------------------------------------------------------------------------------------ scenario 1

    async def fanout(self) -> dict[str, Any]:
        """Cold full status of one child vs the sources' own latency, interleaved, one request at a time.

        Each round asks each source alone for the child's record (one batch POST each, in turn), then
        all three at once (the slowest of the three answers is what any fan-out must wait for: the three
        mock services share one process), then the gateway for the full status of another child.
        """
        say("1. fan-out: cold full status vs the slowest source")
        sources = {s: Sample() for s in SOURCES}
        together = Sample()
        gateway = Sample()
        bad = 0

        async def source_call(s: str, a: str) -> tuple[float, int, bytes]:
            url = f"{self.mocks.urls[s]}/v1/{COLLECTIONS[s]}/batch"
            return await post(self.client, url, json.dumps({"a_numbers": [a]}).encode(), JSON_HEADERS)

        for i in range(self.plan.fanout_queries + 5):  # the first 5 rounds warm connections up, unmeasured
            a = self.cold()
            for s in SOURCES:
                lat, status, _ = await source_call(s, a)
                if i >= 5:
                    sources[s].latencies.append(lat)
                    sources[s].statuses[status] += 1
            trio = await asyncio.gather(*(source_call(s, a) for s in SOURCES))
            lat, status, body = await self.gql(FULL_STATUS, {"a": self.cold()})
            if i >= 5:
                together.latencies.append(max(t[0] for t in trio))
                together.statuses[max(t[1] for t in trio)] += 1
                gateway.latencies.append(lat)
                gateway.statuses[status] += 1
                bad += int(status != 200 or bool(errors_of(body)) or b'"HIT"' in body)
        per_source = {s: sources[s].summary() for s in SOURCES}
        slowest = max(SOURCES, key=lambda s: per_source[s]["p50_ms"])
        slowest_p95 = max(r["p95_ms"] for r in per_source.values())
        gw, tog = gateway.summary(), together.summary()
        return {
            "queries": self.plan.fanout_queries, "gateway": gw, "sources": per_source, "slowest_source": slowest,
            "ratio_p50": round(gw["p50_ms"] / per_source[slowest]["p50_ms"], 3),
            "ratio_p95": round(gw["p95_ms"] / slowest_p95, 3),
            "sources_together": tog,
            "ratio_p50_to_together": round(gw["p50_ms"] / tog["p50_ms"], 3),
            "ratio_p95_to_together": round(gw["p95_ms"] / tog["p95_ms"], 3),
            "bad_responses": bad,
        }

    # ------------------------------------------------------------------------------------------ scenario 2

    async def warm(self) -> dict[str, Any]:
        """The same full-status query answered from cache, against the floor, at each concurrency.

        Each concurrency's window is cut in `WARM_SLICES` turns, floor then gateway, so that a change in
        this machine's speed during the run weighs on both sides of the ratio alike."""
        assert self.gw is not None
        say("2. warm cache vs floor")
        a = self.warm_child
        body = graphql_body(FULL_STATUS, {"a": a})
        await self.gql(FULL_STATUS, {"a": a})
        _, status, warm_body = await self.gql(FULL_STATUS, {"a": a})
        if status != 200 or b'"MISS"' in warm_body or errors_of(warm_body):
            raise RuntimeError(f"warm answer expected, got {status}: {warm_body[:300]!r}")
        floor = Floor(warm_body)
        runs: dict[str, Any] = {}
        seconds = self.plan.warm_seconds / WARM_SLICES
        try:
            for c in self.plan.concurrencies:
                counts: collections.Counter[str] = collections.Counter()

                def check(status: int, data: bytes, counts: collections.Counter[str] = counts) -> None:
                    if status != 200 or b'"errors"' in data:
                        counts["errors"] += 1
                    if b'"MISS"' in data or b'"STALE"' in data:
                        counts["not_from_cache"] += 1

                fl, gw = Sample(), Sample()
                fl_cpu, gw_cpu = CpuTally(), CpuTally()
                for turn in range(WARM_SLICES):
                    warmup = self.plan.warm_warmup if turn == 0 else SLICE_WARMUP
                    with fl_cpu.measuring(floor.pid):
                        fl.add(await closed_loop(self.client, floor.graphql, body, self.gw.headers, c, seconds, warmup))
                    await self.gql(FULL_STATUS, {"a": a})  # the entry is fresh for the whole turn (TTL 60 s)
                    with gw_cpu.measuring(self.gw.pid):
                        gw.add(await closed_loop(self.client, self.gw.graphql, body, self.gw.headers, c, seconds,
                                                 warmup, on_response=check))
                g, f = gw.summary(), fl.summary()
                runs[str(c)] = {
                    "gateway": {**g, "server_cpu": gw_cpu.share(),
                                "cpu_ms_per_request": _per_request(gw_cpu.share(), g),
                                "error_answers": counts["errors"], "answers_not_from_cache": counts["not_from_cache"]},
                    "floor": {**f, "server_cpu": fl_cpu.share(), "cpu_ms_per_request": _per_request(fl_cpu.share(), f)},
                    "rps_ratio": round(g["rps"] / f["rps"], 3),
                    "added_p50_ms": round(g["p50_ms"] - f["p50_ms"], 2),
                }
                say(f"   c={c}: gateway {g['rps']} req/s p50 {g['p50_ms']} ms "
                    f"({runs[str(c)]['gateway']['cpu_ms_per_request']} ms CPU/req); floor {f['rps']} req/s "
                    f"p50 {f['p50_ms']} ms ({runs[str(c)]['floor']['cpu_ms_per_request']} ms CPU/req)")
        finally:
            floor.stop()
        bad = sum(r["gateway"]["error_answers"] + r["gateway"]["answers_not_from_cache"] for r in runs.values())
        return {"response_bytes": len(warm_body), "seconds_per_run": self.plan.warm_seconds, "turns": WARM_SLICES,
                "runs": runs, "bad_responses": bad}

    # ------------------------------------------------------------------------------------------ scenario 3

    async def batch(self) -> dict[str, Any]:
        """`children` with 100 cold A-numbers, full status: backend calls per source per query, latency."""
        assert self.gw is not None
        say("3. batch of 100 cold children")
        sample = Sample()
        calls: list[dict[str, int]] = []
        gateway_calls: list[dict[str, int]] = []
        bad = 0
        for i in range(self.plan.batch_rounds + 1):  # round 0 is a warm-up, unmeasured
            many = [self.cold() for _ in range(100)]
            before, gw_before = await batch_calls(self.client, self.mocks), self.gw.calls()
            lat, status, body = await self.gql(FULL_STATUS_MANY, {"as": many})
            after, gw_after = await batch_calls(self.client, self.mocks), self.gw.calls()
            if i == 0:
                continue
            sample.latencies.append(lat)
            sample.statuses[status] += 1
            calls.append({s: after[s] - before[s] for s in SOURCES})
            gateway_calls.append({s: gw_after[s] - gw_before[s] for s in SOURCES})
            children = (json.loads(body).get("data") or {}).get("children") or []
            bad += int(status != 200 or bool(errors_of(body)) or len([c for c in children if c]) != 100)
        worst = {s: max(c[s] for c in calls) for s in SOURCES}
        ok = all(c[s] == 1 for c in calls for s in SOURCES) and all(c[s] == 1 for c in gateway_calls for s in SOURCES)
        if not ok:
            self.failures.append(f"batch: backend calls per source per query were {calls} (must be 1)")
        return {"rounds": self.plan.batch_rounds, "latency": sample.summary(), "calls_per_query_max": worst,
                "calls_per_query_all_one": ok, "gateway_counted_calls": gateway_calls[-1],
                "bad_responses": bad}

    # ------------------------------------------------------------------------------------------ scenario 4

    async def stampede(self) -> dict[str, Any]:
        """`stampede_size` concurrent identical cold queries: one backend call per source, p99."""
        assert self.gw is not None
        say(f"4. stampede of {self.plan.stampede_size} identical cold queries")
        n = self.plan.stampede_size
        # open n keep-alive connections first, so the burst measures the gateway, not TCP handshakes
        async def health() -> None:
            async with self.client.get(f"{self.gw.url}/healthz") as resp:
                await resp.read()
        await asyncio.gather(*(health() for _ in range(n)))
        sample = Sample()
        rounds = []
        bad = 0
        for _ in range(self.plan.stampede_rounds):
            a = self.cold()
            body = graphql_body(FULL_STATUS, {"a": a})
            before, gw_before = await batch_calls(self.client, self.mocks), self.gw.calls()
            began = time.perf_counter()
            answers = await asyncio.gather(*(post(self.client, self.gw.graphql, body, self.gw.headers)
                                             for _ in range(n)))
            wall = time.perf_counter() - began
            after, gw_after = await batch_calls(self.client, self.mocks), self.gw.calls()
            for lat, status, data in answers:
                sample.latencies.append(lat)
                sample.statuses[status] += 1
                bad += int(status != 200 or bool(errors_of(data)))
            rounds.append({"mock_calls": {s: after[s] - before[s] for s in SOURCES},
                           "gateway_calls": {s: gw_after[s] - gw_before[s] for s in SOURCES},
                           "wall_ms": ms(wall)})
        ok = all(r["mock_calls"][s] == 1 and r["gateway_calls"][s] == 1 for r in rounds for s in SOURCES)
        if not ok:
            self.failures.append(f"stampede: backend calls per source were {rounds} (must be 1)")
        return {"concurrent": n, "rounds": rounds, "calls_all_one": ok,
                "calls_per_round_max": {s: max(r["mock_calls"][s] for r in rounds) for s in SOURCES},
                "latency": sample.summary(), "bad_responses": bad}

    # ------------------------------------------------------------------------------------------ scenario 5

    async def outage(self, warm_p99_ms: float | None) -> dict[str, Any]:
        """EOIR down, its breaker open: the full-status query (ORR and ICE from cache) at concurrency 1."""
        assert self.gw is not None
        say("5. outage: EOIR down, breaker open")
        a = self.cold()
        await self.gql(NO_EOIR, {"a": a})  # ORR and ICE cached; EOIR never fetched for this child
        await set_faults(self.client, self.mocks, {"down": True}, ["eoir"])
        try:
            tripped = 0
            for _ in range(10):
                if self.gw.breaker("eoir") == "OPEN":
                    break
                await self.gql(FULL_STATUS, {"a": a})
                tripped += 1
            state = self.gw.breaker("eoir")
            if state != "OPEN":
                raise RuntimeError(f"EOIR breaker did not open (state {state})")
            codes: collections.Counter[str] = collections.Counter()
            partial = collections.Counter()

            def check(status: int, data: bytes) -> None:
                for err in errors_of(data):
                    codes[str((err.get("extensions") or {}).get("code"))] += 1
                try:
                    child = json.loads(data)["data"]["child"]
                    partial["location_present"] += int(child["location"] is not None)
                    partial["hearing_null"] += int(child["hearing"] is None)
                except (ValueError, KeyError, TypeError):
                    partial["unreadable"] += 1

            calls_before = self.gw.calls()["eoir"]
            sample = await closed_loop(self.client, self.gw.graphql, graphql_body(FULL_STATUS, {"a": a}),
                                       self.gw.headers, 1, self.plan.outage_seconds, 0.5, on_response=check)
            calls_during = self.gw.calls()["eoir"] - calls_before
            state_after = self.gw.breaker("eoir")
        finally:
            await set_faults(self.client, self.mocks, {"down": False}, ["eoir"])
        s = sample.summary()
        return {"queries_to_open_breaker": tripped, "latency": s, "error_codes": dict(codes),
                "partial_answers": dict(partial), "eoir_calls_while_open": calls_during,
                "breaker_after": state_after,
                "p99_ratio_to_warm_c1": round(s["p99_ms"] / warm_p99_ms, 3) if warm_p99_ms else None}

    # ------------------------------------------------------------------------------------------ scenario 6

    async def memory(self) -> dict[str, Any]:
        """A fresh gateway whose cache holds exactly `memory_children` children (3 entries each)."""
        n = self.plan.memory_children
        say(f"6. memory: cache {n:,} children, then {n:,} more child reads")
        if self.gw is not None:
            self.log_counts["scenarios 1-5"] = dict(self.gw.drain.counts)
            self.gw.stop()
        if len(self.a_numbers) < 2 * n:
            raise RuntimeError(f"the world needs at least {2 * n + 1} children for scenario 6")
        entries = 3 * n
        # TTL raised so nothing expires during the run: the cache is bounded by size alone here
        self.gw = gw = Gateway(self.mocks, UCGW_CACHE_MAX_ENTRIES=str(entries), UCGW_CACHE_TTL_SECONDS="3600")
        first, second = self.a_numbers[:n], self.a_numbers[n:2 * n]
        for i in range(5):  # warm-up: imports, caches, the audit trail; children evicted first later
            await self.gql(LIGHT_MANY, {"as": second[i * 20:(i + 1) * 20]})
        await asyncio.sleep(1)
        rss_base = gw.rss()

        async def fill(numbers: list[str]) -> tuple[float, list[int], int]:
            chunks = [numbers[i:i + 100] for i in range(0, len(numbers), 100)]
            queue: collections.deque[list[str]] = collections.deque(chunks)
            series: list[int] = []
            bad = 0
            step = max(1, len(chunks) // 10)
            done = 0

            async def worker() -> None:
                nonlocal bad, done
                while queue:
                    chunk = queue.popleft()
                    _, status, body = await self.gql(LIGHT_MANY, {"as": chunk})
                    bad += int(status != 200 or b'"errors"' in body)
                    done += 1
                    if done % step == 0:
                        series.append(gw.rss())

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(self.plan.memory_concurrency)))
            return time.perf_counter() - began, series, bad

        calls0 = await batch_calls(self.client, self.mocks)
        fill_seconds, fill_series, bad1 = await fill(first)
        calls1 = await batch_calls(self.client, self.mocks)
        await asyncio.sleep(1)
        rss_full = gw.rss()
        _, _, probe_full = await self.gql(PROBE, {"a": first[-1]})
        more_seconds, more_series, bad2 = await fill(second)
        await asyncio.sleep(1)
        rss_after = gw.rss()
        calls2 = await batch_calls(self.client, self.mocks)
        _, _, probe_after = await self.gql(PROBE, {"a": first[0]})
        first_cached_after_fill = b'"MISS"' not in probe_full
        first_evicted_after_more = b'"HIT"' not in probe_after
        return {
            "cache_max_entries": entries, "children_cached": n, "concurrency": self.plan.memory_concurrency,
            "rss_base_mb": round(rss_base / 2**20, 1), "rss_after_caching_mb": round(rss_full / 2**20, 1),
            "bytes_per_cached_child": round((rss_full - rss_base) / n),
            "rss_after_further_reads_mb": round(rss_after / 2**20, 1),
            "growth_after_full_mb": round((rss_after - rss_full) / 2**20, 1),
            "growth_after_full_pct": round(100 * (rss_after - rss_full) / rss_full, 1),
            "rss_series_filling_mb": [round(r / 2**20, 1) for r in fill_series],
            "rss_series_further_mb": [round(r / 2**20, 1) for r in more_series],
            "fill_seconds": round(fill_seconds, 1), "further_seconds": round(more_seconds, 1),
            "backend_batches_filling": {s: calls1[s] - calls0[s] for s in SOURCES},
            "backend_batches_further": {s: calls2[s] - calls1[s] for s in SOURCES},
            "last_filled_child_still_cached": first_cached_after_fill,
            "first_child_evicted_after_further_reads": first_evicted_after_more,
            "bad_responses": bad1 + bad2, "audit_trail_mb": round(gw.audit_bytes() / 2**20, 1),
        }


# ---------------------------------------------------------------------------------------------- report

    # ------------------------------------------------------------------------------------------ scenario 8

    async def cpu(self) -> dict[str, Any]:
        """Gateway CPU milliseconds per request (user + system from /proc over the window, divided by the
        requests answered) with req/s and p50/p99: cold single child, cold batch of 100 and warm single child at
        each concurrency, against the cold floor (bench/floor_app.py `--sources`: the same three backend calls,
        their bytes returned); then warm c=16 and the warm floor under wrk, in alternating turns.

        A fresh gateway (TTL 3,600 s, so that a cold child stays cold only until it is read); the mocks' added
        latency is `CPU_LATENCY_MS` meanwhile."""
        say("8. CPU per request: cold single, cold batch of 100, warm; cold floor; wrk")
        plan = self.plan
        gw = Gateway(self.mocks, UCGW_CACHE_TTL_SECONDS="3600")
        cold_floor = Floor(sources=self.mocks.urls)
        faults = await admin(self.client, self.mocks, "orr", "GET", "/_admin/faults")
        await set_faults(self.client, self.mocks, {"latency_ms": CPU_LATENCY_MS, "jitter_ms": 0})
        pool = iter(self.a_numbers)
        cycle = _cycled(self.a_numbers)  # the floor keeps nothing: any child is cold for it
        rows: dict[str, Any] = {}
        try:
            for _ in range(20):  # warm-up: connections, compiled completions, the warm child's answer
                await post(self.client, gw.graphql, graphql_body(FULL_STATUS, {"a": self.warm_child}), gw.headers)
            for kind, concurrencies in CPU_ROWS:
                for c in concurrencies:
                    for name, server, stream in (("gateway", gw, pool), ("floor", cold_floor, cycle)):
                        if kind == "warm" and name == "floor":
                            continue  # the warm floor is wrk's below (and scenario 2's)
                        rows.setdefault(kind, {}).setdefault(str(c), {})[name] = \
                            await self._cpu_window(server, kind, c, stream)
                    row = rows[kind][str(c)]
                    floor_cpu = row.get("floor", {}).get("cpu_ms_per_request")
                    if floor_cpu:
                        row["cpu_ratio_to_floor"] = round(row["gateway"]["cpu_ms_per_request"] / floor_cpu, 2)
                    say(f"   {kind} c={c}: " + "; ".join(
                        f"{n} {r['cpu_ms_per_request']} ms CPU/req, {r['rps']} req/s, p50 {r['p50_ms']} "
                        f"p99 {r['p99_ms']} ms" for n, r in row.items() if isinstance(r, dict)))
            rows["wrk"] = await self._wrk_warm(gw)
        finally:
            await set_faults(self.client, self.mocks, {"latency_ms": faults["latency_ms"],
                                                       "jitter_ms": faults["jitter_ms"]})
            cold_floor.stop()
            self.log_counts["scenario 8"] = dict(gw.drain.counts)
            gw.stop()
        bad = sum(r.get("bad_responses", 0) for kind in CPU_ROWS for run in rows[kind[0]].values()
                  for r in run.values() if isinstance(r, dict))
        return {"mock_latency_ms": CPU_LATENCY_MS, "seconds_per_window": plan.cpu_seconds, "rows": rows,
                "bad_responses": bad + rows["wrk"]["bad_responses"]}

    async def _cpu_window(self, server: Gateway | Floor, kind: str, concurrency: int,
                          children: Iterator[str]) -> dict[str, Any]:
        """One row of scenario 8 on one server: a closed loop for `cpu_seconds` (or its request bound)."""
        if kind == "warm":
            body = graphql_body(FULL_STATUS, {"a": self.warm_child})
            limit = 10_000_000
        elif kind == "cold single":
            def body() -> bytes:
                return graphql_body(FULL_STATUS, {"a": next(children)})
            limit = self.plan.cpu_cold_max
        else:
            def body() -> bytes:
                return graphql_body(FULL_STATUS_MANY, {"as": [next(children) for _ in range(100)]})
            limit = self.plan.cpu_batch_max
        headers = server.headers if isinstance(server, Gateway) else JSON_HEADERS
        bad = 0

        def check(status: int, data: bytes) -> None:
            nonlocal bad
            bad += int(status != 200 or b'"errors"' in data or (kind == "warm" and b'"MISS"' in data))

        tally = CpuTally()
        with tally.measuring(server.pid):
            sample = await closed_loop(self.client, server.graphql, body, headers, concurrency, self.plan.cpu_seconds,
                                       max_requests=limit, on_response=check if isinstance(server, Gateway) else None)
        out = sample.summary()
        return {"requests": out["requests"], "rps": out.get("rps"), "p50_ms": out["p50_ms"], "p99_ms": out["p99_ms"],
                "cpu_ms_per_request": round(1000 * tally.cpu / max(1, out["requests"]), 3), "bad_responses": bad}

    async def _wrk_warm(self, gw: Gateway) -> dict[str, Any]:
        """Warm full status at c=16 under wrk against the warm floor (the same answer's bytes), two turns each,
        floor first; req/s summed over the turns."""
        _, status, warm_body = await post(self.client, gw.graphql, graphql_body(FULL_STATUS, {"a": self.warm_child}),
                                          gw.headers)
        if status != 200 or b'"MISS"' in warm_body:
            raise RuntimeError(f"warm answer expected, got {status}: {warm_body[:300]!r}")
        floor = Floor(warm_body)
        body = graphql_body(FULL_STATUS, {"a": self.warm_child})
        runs: dict[str, list[dict[str, Any]]] = {"gateway": [], "floor": []}
        cpu = {"gateway": CpuTally(), "floor": CpuTally()}
        try:
            for _ in range(2):
                for name, server, token in (("floor", floor, None), ("gateway", gw, gw.token)):
                    with cpu[name].measuring(server.pid):
                        runs[name].append(await asyncio.to_thread(wrk, server.graphql, body, token, 16,
                                                                  self.plan.wrk_seconds))
        finally:
            floor.stop()
        out: dict[str, Any] = {"concurrency": 16, "turns": 2, "seconds_per_turn": self.plan.wrk_seconds}
        for name, turns in runs.items():
            requests = sum(t.get("requests", 0) for t in turns)
            out[name] = {"rps": round(sum(t.get("rps", 0.0) for t in turns) / len(turns), 1),
                         "p50_ms": max(t.get("p50_ms", 0.0) for t in turns),
                         "p99_ms": max(t.get("p99_ms", 0.0) for t in turns),
                         "cpu_ms_per_request": round(1000 * cpu[name].cpu / max(1, requests), 3),
                         "non_2xx": sum(t["non_2xx"] for t in turns)}
        out["rps_ratio"] = round(out["gateway"]["rps"] / out["floor"]["rps"], 3) if out["floor"]["rps"] else None
        out["bad_responses"] = out["gateway"]["non_2xx"] + out["floor"]["non_2xx"]
        say(f"   wrk warm c=16: gateway {out['gateway']['rps']} req/s, floor {out['floor']['rps']} req/s: "
            f"{out['rps_ratio']} of floor")
        return out

def _cycled(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def table(r: dict[str, Any]) -> str:
    """The Markdown table of one run."""
    rows = ["| # | Scenario | Measured | Aim | Met |", "|---|---|---|---|---|"]
    s = r["scenarios"]
    if "1" in s:
        f = s["1"]
        src = ", ".join(f"{k.upper()} {v['p50_ms']}/{v['p95_ms']}" for k, v in f["sources"].items())
        tog = f["sources_together"]
        rows.append(f"| 1 | Fan-out: cold full status, one child | gateway p50 {f['gateway']['p50_ms']} ms, "
                    f"p95 {f['gateway']['p95_ms']} ms; each source alone p50/p95 ms: {src}; ratio to the slowest "
                    f"alone **{f['ratio_p50']}** (p50), {f['ratio_p95']} (p95). Slowest of the three called "
                    f"together {tog['p50_ms']}/{tog['p95_ms']} ms: ratio {f['ratio_p50_to_together']} (p50), "
                    f"{f['ratio_p95_to_together']} (p95) | ≤ 1.10 | {verdict(f['ratio_p50'] <= 1.10)} |")
    if "2" in s:
        for c, run in s["2"]["runs"].items():
            g, fl = run["gateway"], run["floor"]
            rows.append(
                f"| 2 | Warm cache, concurrency {c} | gateway {g['rps']} req/s, p50 {g['p50_ms']} ms, "
                f"p99 {g['p99_ms']} ms; floor {fl['rps']} req/s, p50 {fl['p50_ms']} ms, p99 {fl['p99_ms']} ms; "
                f"**{run['rps_ratio']}** of floor, +{run['added_p50_ms']} ms at p50 | ≥ 0.5 (0.35 at least)"
                f"{', < 2 ms added' if c == '1' else ''} | "
                f"{verdict(run['rps_ratio'] >= 0.5 and (c != '1' or run['added_p50_ms'] < 2))}"
                f"{'' if run['rps_ratio'] >= 0.5 or run['rps_ratio'] < 0.35 else ' (≥ 0.35)'} |")
    if "3" in s:
        b = s["3"]
        calls = ", ".join(f"{k.upper()} {v}" for k, v in b["calls_per_query_max"].items())
        ratio = b.get("ratio_to_fanout_p50")
        rows.append(f"| 3 | Batch: `children` × 100, cold | backend calls per source: {calls}; p50 "
                    f"{b['latency']['p50_ms']} ms, ratio to scenario 1 **{ratio}** | 1 call; ≤ 1.5 | "
                    f"{verdict(b['calls_per_query_all_one'] and (ratio is None or ratio <= 1.5))} |")
    if "4" in s:
        st = s["4"]
        calls = ", ".join(f"{k.upper()} {v}" for k, v in st["calls_per_round_max"].items())
        rows.append(f"| 4 | Stampede: {st['concurrent']} identical cold queries × {len(st['rounds'])} | backend "
                    f"calls per source: {calls}; p50 {st['latency']['p50_ms']} ms, **p99 {st['latency']['p99_ms']} "
                    f"ms** | 1 call | {verdict(st['calls_all_one'])} |")
    if "5" in s:
        o = s["5"]
        ratio = o["p99_ratio_to_warm_c1"]
        rows.append(f"| 5 | Outage: EOIR down, breaker open | p50 {o['latency']['p50_ms']} ms, p99 "
                    f"{o['latency']['p99_ms']} ms; **{ratio}×** warm p99 (scenario 2, concurrency 1) | ≤ 2× | "
                    f"{verdict(None if ratio is None else ratio <= 2)} |")
    if "6" in s:
        m = s["6"]
        rows.append(f"| 6 | Memory: {m['children_cached']:,} children cached | RSS {m['rss_base_mb']} → "
                    f"{m['rss_after_caching_mb']} MB; **{m['bytes_per_cached_child']:,} bytes per cached child** "
                    f"| bounded | n/a |")
        rows.append(f"| 6 | Memory: {m['children_cached']:,} further child reads, cache full | RSS "
                    f"{m['rss_after_caching_mb']} → {m['rss_after_further_reads_mb']} MB "
                    f"(**{m['growth_after_full_pct']:+}%**); oldest child evicted: "
                    f"{m['first_child_evicted_after_further_reads']} | flat | "
                    f"{verdict(abs(m['growth_after_full_pct']) <= 5)} |")
    if "7" in s:
        u = s["7"]
        met = u["rps_ratio"] is not None and u["rps_ratio"] >= 0.8 and u["p99_ratio"] <= 2
        rows.append(f"| 7 | Under attack: {u['slow_connections_held_min']:,}+ slowloris connections held, warm c=16 | "
                    f"{u['attacked']['rps']} vs {u['calm']['rps']} req/s (**{u['rps_ratio']}**), p99 "
                    f"{u['attacked']['p99_ms']} vs {u['calm']['p99_ms']} ms (**{u['p99_ratio']}×**) | ≥ 0.8, ≤ 2× | "
                    f"{verdict(met)} |")
    if "8" in s:
        rows += _cpu_table(s["8"])
    return "\n".join(rows)


def _cpu_table(e: dict[str, Any]) -> list[str]:
    """Scenario 8's rows: CPU per request (gateway, and the cold floor for cold reads), req/s, p50/p99; wrk."""
    rows = []
    for kind, runs in e["rows"].items():
        if kind == "wrk":
            continue
        for c, run in runs.items():
            g, fl = run["gateway"], run.get("floor")
            measured = (f"gateway **{g['cpu_ms_per_request']} ms CPU**/req, {g['rps']} req/s, p50 {g['p50_ms']} ms, "
                        f"p99 {g['p99_ms']} ms")
            aim, met = "no regression (A/B)", None
            if fl is not None:
                measured += (f"; cold floor {fl['cpu_ms_per_request']} ms CPU/req, {fl['rps']} req/s, p50 "
                             f"{fl['p50_ms']} ms; **{run['cpu_ratio_to_floor']}×** the floor's CPU")
            if kind == "cold single":
                aim = "≤ 1.0 ms, or ≤ 2× the floor's when it is above 0.5 ms"
                met = g["cpu_ms_per_request"] <= 1.0 or (fl is not None and fl["cpu_ms_per_request"] > 0.5
                                                         and run["cpu_ratio_to_floor"] <= 2)
            elif kind == "cold batch":
                aim, met = "≤ 15 ms", g["cpu_ms_per_request"] <= 15
                if c == "4":
                    aim += ", p99 ≤ 1.5 × p50"
                    met = met and g["p99_ms"] <= 1.5 * g["p50_ms"]
            rows.append(f"| 8 | CPU: {kind}{' of 100' if kind == 'cold batch' else ''}, concurrency {c} | {measured} "
                        f"| {aim} | {verdict(met)} |")
    w = e["rows"]["wrk"]
    rows.append(f"| 8 | wrk: warm, concurrency 16 | gateway {w['gateway']['rps']} req/s, p50 {w['gateway']['p50_ms']} "
                f"ms, p99 {w['gateway']['p99_ms']} ms ({w['gateway']['cpu_ms_per_request']} ms CPU/req); floor "
                f"{w['floor']['rps']} req/s, p99 {w['floor']['p99_ms']} ms; **{w['rps_ratio']}** of floor | ≥ 0.35 | "
                f"{verdict(w['rps_ratio'] is not None and w['rps_ratio'] >= 0.35)} |")
    return rows


async def run(plan: Plan, only: set[str], quick: bool, save: bool) -> int:
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        say(f"note: load average {load_before[0]:.2f} before starting: other work on this machine skews timings")
    calibration_before = cpu_calibration()
    mocks, mock_seconds = start_mocks(plan.children)
    generated = re.search(r"generated (\d+) children in ([\d.]+) s", mocks.stderr())
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "quick": quick, "machine": machine(), "plan": asdict(plan),
        "load_average_before": [round(x, 2) for x in load_before],
        "cpu_calibration_seconds_before": calibration_before,
        "setup": {
            "mock_latency_ms": DEFAULT_LATENCY_MS, "mock_jitter_ms": 0, "mock_children": plan.children,
            "mock_seconds_to_ready": round(mock_seconds, 1),
            "mock_world_generation_seconds": float(generated.group(2)) if generated else None,
            "gateway": "ucgw serve (uvicorn, 1 worker), UCGW_ENV=production, random UCGW_JWT_SECRET, caseworker "
                       "token from `ucgw token`",
            "rate_limit_note": f"UCGW_RATE_LIMIT_RPS/BURST raised to {RATE_LIMIT_RPS} for the load test (the "
                               "limiter still runs on every request)",
            "uvicorn_loop_http": _uvicorn_impl(),
        },
        "scenarios": {},
    }
    failures: list[str] = []
    try:
        async with session() as client:
            say(f"mocks ready in {mock_seconds:.1f} s ({plan.children:,} children); listing A-numbers")
            a_numbers = await all_a_numbers(client, mocks, plan.children)
            bench = Bench(plan, mocks, client, a_numbers)
            try:
                if only & {"1", "2", "3", "4", "5"}:
                    bench.gw = Gateway(mocks)
                s = result["scenarios"]
                if "1" in only:
                    s["1"] = await bench.fanout()
                if "2" in only:
                    s["2"] = await bench.warm()
                if "3" in only:
                    s["3"] = await bench.batch()
                    if "1" in s:
                        ratio = s["3"]["latency"]["p50_ms"] / s["1"]["gateway"]["p50_ms"]
                        s["3"]["ratio_to_fanout_p50"] = round(ratio, 3)
                if "4" in only:
                    s["4"] = await bench.stampede()
                if "5" in only:
                    warm_p99 = s["2"]["runs"]["1"]["gateway"]["p99_ms"] if "2" in s else None
                    s["5"] = await bench.outage(warm_p99)
                if "6" in only:
                    s["6"] = await bench.memory()
                if "7" in only:
                    s["7"] = await bench.under_attack()
                if "8" in only:
                    s["8"] = await bench.cpu()
                if bench.gw is not None:
                    bench.log_counts["scenario 6" if "6" in only else "scenarios 1-5"] = dict(bench.gw.drain.counts)
                result["gateway_log_counts"] = bench.log_counts
            finally:
                if bench.gw is not None:
                    bench.gw.stop()
            failures = bench.failures
    finally:
        mocks.stop()
    bad = sum(int(v.get("bad_responses", 0)) for v in result["scenarios"].values())
    if bad:
        failures.append(f"{bad} response(s) were not the expected answer (see bad_responses)")
    result["failures"] = failures
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["cpu_calibration_seconds_after"] = cpu_calibration()
    result["table"] = table(result)
    m = result["machine"]
    print(f"\n{result['table']}\n")
    print(f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}. "
          f"Mocks: {plan.children:,} children, {DEFAULT_LATENCY_MS:g} ms added latency"
          f"{f' ({CPU_LATENCY_MS:g} ms in scenario 8)' if '8' in only else ''}, no jitter. "
          f"Rate limit raised for the load test. CPU calibration (10M-addition Python loop): "
          f"{result['cpu_calibration_seconds_before']} s before, {result['cpu_calibration_seconds_after']} s after.")
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{result['date']}{'-quick' if quick else ''}.json"
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"Results: {path.relative_to(ROOT)}")
    else:
        print(json.dumps(result["scenarios"], indent=1), file=sys.stderr)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def _uvicorn_impl() -> str:
    """Which event loop and HTTP parser uvicorn's 'auto' picks here."""
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        parser = "httptools"
    except ImportError:
        parser = "h11"
    return f"{loop} + {parser}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark the gateway (issue 7).")
    parser.add_argument("--quick", action="store_true", help="small world, short windows: a smoke run")
    parser.add_argument("--only", default="1,2,3,4,5,6,8", help="scenarios to run, e.g. 2 or 1,3 (default all)")
    parser.add_argument("--children", type=int, help="world size instead of the plan's (scenario 6 needs "
                                                     "2 x its children + 200)")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if not only <= {"1", "2", "3", "4", "5", "6", "7", "8"}:
        parser.error("--only takes scenario numbers 1-8")
    plan = QUICK if args.quick else Plan()
    if args.children:
        plan = dataclasses.replace(plan, children=args.children)
    # only a complete run of the standard plan is written to bench/results/
    save = only == {"1", "2", "3", "4", "5", "6", "8"} and not args.children
    return asyncio.run(run(plan, only, args.quick, save))


if __name__ == "__main__":
    sys.exit(main())
