"""`make soak`: a bounded soak of the gateway against flaky, slow-ish sources.

    .venv/bin/python bench/soak.py                   # 3 minutes
    .venv/bin/python bench/soak.py --seconds 60 --concurrency 8

The mocks (5,000 children) answer with 20 ms + 0-80 ms random latency and 10% injected 500/503 errors
on every source; the gateway runs as in the benchmark (`ucgw serve`, production settings, rate limit
raised for the load test). This process keeps `--concurrency` requests in flight for `--seconds`, a mix of:

- full status of one child (a hot set of 50 children, so the cache serves many of them, and the rest
  of the world), `maxAgeSeconds` absent, 0 (straight to the sources), 5, 30 or 300;
- `children` lists of 2 to 50 A-numbers with the full status or a light selection, same `maxAgeSeconds`.

It reports the requests served, HTTP statuses (any 5xx fails the soak: exit status 1), GraphQL error
codes, p50/p99/max latency (overall and per kind) and the gateway's RSS before and after, as Markdown
on stdout and as JSON in bench/results/<date>-soak.json. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402  (bench/ is not a package)
    FULL_STATUS,
    FULL_STATUS_MANY,
    LIGHT_MANY,
    RATE_LIMIT_RPS,
    ROOT,
    Gateway,
    Sample,
    all_a_numbers,
    cpu_calibration,
    graphql_body,
    machine,
    post,
    session,
    set_faults,
    start_mocks,
)

CHILDREN = 5_000
HOT = 50
FAULTS = {"latency_ms": 20, "jitter_ms": 80, "error_rate": 0.10}
MAX_AGES = (None, None, 0, 5, 30, 300)  # absent twice as often as each value


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def next_request(rng: random.Random, hot: list[str], world: list[str]) -> tuple[str, bytes]:
    """(kind, body) of one randomly chosen request."""
    max_age = rng.choice(MAX_AGES)
    extra = {} if max_age is None else {"m": max_age}
    roll = rng.random()
    if roll < 0.35:
        return "child_hot", graphql_body(FULL_STATUS, {"a": rng.choice(hot), **extra})
    if roll < 0.70:
        return "child_any", graphql_body(FULL_STATUS, {"a": rng.choice(world), **extra})
    many = rng.sample(world, rng.randint(2, 50))
    if roll < 0.85:
        return "children_full", graphql_body(FULL_STATUS_MANY, {"as": many, **extra})
    light = LIGHT_MANY if max_age is None else LIGHT_MANY.replace(
        "query Light($as: [ID!]!) { children(aNumbers: $as)",
        "query Light($as: [ID!]!, $m: Int) { children(aNumbers: $as, maxAgeSeconds: $m)")
    return "children_light", graphql_body(light, {"as": many, **extra})


async def soak(seconds: float, concurrency: int, seed: int) -> dict[str, Any]:
    calibration = cpu_calibration()
    mocks, mock_seconds = start_mocks(CHILDREN)
    gw: Gateway | None = None
    try:
        async with session() as client:
            world = await all_a_numbers(client, mocks, CHILDREN)
            await set_faults(client, mocks, FAULTS)
            gw = Gateway(mocks)
            rng = random.Random(seed)
            hot = rng.sample(world, HOT)
            for a in hot[:10]:  # warm-up (also loads the lazily imported parts of the gateway)
                await post(client, gw.graphql, graphql_body(FULL_STATUS, {"a": a}), gw.headers)
            await asyncio.sleep(1)
            rss_before = gw.rss()
            say(f"soak: {seconds:.0f} s, {concurrency} in flight, faults {FAULTS}; gateway RSS "
                f"{rss_before / 2**20:.1f} MB")

            overall = Sample()
            kinds: dict[str, Sample] = collections.defaultdict(Sample)
            codes: collections.Counter[str] = collections.Counter()
            partial = collections.Counter()
            rss_series: list[float] = []
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + seconds
            began = time.perf_counter()

            async def worker(wid: int) -> None:
                wrng = random.Random(seed * 1000 + wid)
                while loop.time() < stop_at:
                    kind, body = next_request(wrng, hot, world)
                    latency, status, data = await post(client, gw.graphql, body, gw.headers)
                    for sample in (overall, kinds[kind]):
                        sample.latencies.append(latency)
                        if status:
                            sample.statuses[status] += 1
                        else:
                            sample.failures += 1
                    if status == 200:
                        try:
                            answer = json.loads(data)
                        except ValueError:
                            partial["unreadable_200"] += 1
                            continue
                        errors = answer.get("errors") or []
                        for err in errors:
                            codes[str((err.get("extensions") or {}).get("code"))] += 1
                        if errors and answer.get("data"):
                            partial["partial_answers"] += 1

            async def watch() -> None:
                while loop.time() < stop_at:
                    await asyncio.sleep(min(10.0, max(0.0, stop_at - loop.time())))
                    rss_series.append(round(gw.rss() / 2**20, 1))
                    done = len(overall.latencies)
                    say(f"  {time.perf_counter() - began:5.0f} s: {done} requests, RSS {rss_series[-1]} MB")

            await asyncio.gather(watch(), *(worker(i) for i in range(concurrency)))
            overall.seconds = time.perf_counter() - began
            await asyncio.sleep(1)
            rss_after = gw.rss()
            alive = gw.proc.poll() is None
            health = gw.readyz()
            log_counts = dict(gw.drain.counts)
            mock_stats = {}
            for s, url in mocks.urls.items():
                async with client.get(f"{url}/_admin/stats") as resp:
                    mock_stats[s] = (await resp.json())["total"]
    finally:
        if gw is not None:
            gw.stop()
        mocks.stop()
    statuses = overall.statuses
    return {
        "date": datetime.date.today().isoformat(), "machine": machine(), "seconds": seconds,
        "concurrency": concurrency, "seed": seed, "faults": FAULTS, "mock_children": CHILDREN,
        "cpu_calibration_seconds": calibration,
        "mock_seconds_to_ready": round(mock_seconds, 1),
        "rate_limit_note": f"UCGW_RATE_LIMIT_RPS/BURST raised to {RATE_LIMIT_RPS} for the load test",
        "requests": len(overall.latencies), "overall": overall.summary(),
        "by_kind": {k: v.summary() for k, v in sorted(kinds.items())},
        "http_5xx": sum(n for code, n in statuses.items() if code >= 500),
        "transport_failures": overall.failures, "graphql_error_codes": dict(codes.most_common()),
        "answers": dict(partial), "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1), "rss_series_mb": rss_series,
        "gateway_alive_after": alive, "sources_after": [
            {k: f[k] for k in ("source", "breaker_state", "calls", "retries", "latency_p50_ms")}
            for f in health["sources"]],
        "mock_data_requests": mock_stats, "gateway_log_counts": log_counts,
    }


def report(r: dict[str, Any]) -> str:
    o = r["overall"]
    codes = ", ".join(f"{k}: {v:,}" for k, v in r["graphql_error_codes"].items()) or "none"
    lines = [
        f"Soak: {r['seconds']:.0f} s, {r['concurrency']} requests in flight, mocks with "
        f"{r['faults']['latency_ms']} ms + 0-{r['faults']['jitter_ms']} ms latency and "
        f"{r['faults']['error_rate']:.0%} errors",
        "",
        "| Measure | Value |", "|---|---|",
        f"| Requests served | {r['requests']:,} ({o.get('rps', 0)} req/s) |",
        f"| HTTP statuses | {', '.join(f'{k}: {v:,}' for k, v in o['statuses'].items())} |",
        f"| HTTP 5xx | **{r['http_5xx']}** |",
        f"| Transport failures | {r['transport_failures']} |",
        f"| GraphQL errors by code | {codes} |",
        f"| Partial answers (data and errors) | {r['answers'].get('partial_answers', 0):,} |",
        f"| Latency p50 / p99 / max | {o['p50_ms']} / **{o['p99_ms']}** / {o['max_ms']} ms |",
        f"| Gateway RSS before / after | {r['rss_before_mb']} / **{r['rss_after_mb']}** MB "
        f"(every 10 s: {', '.join(str(x) for x in r['rss_series_mb'])}) |",
        f"| Backend retries (ORR, ICE, EOIR) | {', '.join(str(s['retries']) for s in r['sources_after'])} |",
        f"| Gateway alive after | {r['gateway_alive_after']} |",
        "",
        "| Kind | Requests | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|",
    ]
    for kind, k in r["by_kind"].items():
        lines.append(f"| {kind} | {k['requests']:,} | {k['p50_ms']} | {k['p99_ms']} | {k['max_ms']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Bounded soak of the gateway (issue 4).")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to keep the load on (default 180)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 3600 or not 1 <= args.concurrency <= 256:
        parser.error("--seconds must be in [1, 3600] and --concurrency in [1, 256]")
    result = asyncio.run(soak(args.seconds, args.concurrency, args.seed))
    result["table"] = report(result)
    out = ROOT / "bench" / "results" / f"{result['date']}-soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(result["table"])
    print(f"\nResults: {out.relative_to(ROOT)}")
    failed = result["http_5xx"] or result["transport_failures"] or not result["gateway_alive_after"]
    if failed:
        print(f"FAILED: {result['http_5xx']} HTTP 5xx, {result['transport_failures']} transport failures, "
              f"gateway alive: {result['gateway_alive_after']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
