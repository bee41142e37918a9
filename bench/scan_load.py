"""Child lookups while supervisors' summaries walk every child: latency of the lookups, memory, sharing.

    .venv/bin/python bench/scan_load.py                               # 50,000 children; 1, then 8 summary loops
    .venv/bin/python bench/scan_load.py --children 20000 --loops 0,1,4 --seconds 20

Mocks with `--children` children and 40 ms latency; for each count in `--loops`, a fresh gateway as
`make bench` runs it (`ucgw serve`, production settings), that many clients each sending
`oversightSummary` one after another for `--seconds`, and one client looking up a child not asked before
(three sections; maybe cached by a walk already) every 0.1 s. Prints one JSON line per count: summaries
answered and their p50/max seconds, lookups and their p50/p99/max ms, the gateway's RSS (peak and at the
end, sampled every 0.5 s), GraphQL error codes, and the gateway's walk counters (/readyz `scans`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Gateway, all_a_numbers, errors_of, graphql_body, percentile, post, session, start_mocks  # noqa: E402

SUMMARY = graphql_body("{ oversightSummary { asOf childrenScanned } }")
LOOKUP = "query S($a: ID!) { child(aNumber: $a) { aNumber location { status } nta { status } hearing { caseStatus } } }"


async def phase(gw: Gateway, pool: list[str], loops: int, seconds: float) -> dict[str, Any]:
    """`loops` summary clients and one lookup client against `gw` for `seconds`."""
    summaries: list[float] = []
    lookups: list[float] = []
    codes: Counter[str] = Counter()
    rss = [gw.rss()]
    numbers = iter(pool)
    stop = time.monotonic() + seconds
    async with session() as client:
        async def summarize() -> None:
            while time.monotonic() < stop:
                took, status, body = await post(client, gw.graphql, SUMMARY, gw.headers)
                summaries.append(took)
                codes.update(str((e.get("extensions") or {}).get("code")) for e in errors_of(body))
                if status != 200:
                    codes[f"HTTP {status}"] += 1

        async def look_up() -> None:
            while time.monotonic() < stop:
                took, status, body = await post(client, gw.graphql, graphql_body(LOOKUP, {"a": next(numbers)}),
                                                gw.headers)
                lookups.append(took)
                if status != 200 or errors_of(body):
                    codes[f"lookup HTTP {status} {errors_of(body)[:1]}"] += 1
                await asyncio.sleep(0.1)

        async def sample() -> None:
            while True:
                rss.append(gw.rss())
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(summarize() for _ in range(loops)), look_up())
        sampler.cancel()
    rss.append(gw.rss())
    try:
        scans = gw.readyz().get("scans")
    except OSError as exc:  # a gateway whose event loop is held answers no /readyz either
        scans = f"/readyz failed: {exc!r}"
    s, lk = sorted(summaries), sorted(lookups)
    return {
        "loops": loops, "seconds": seconds, "summaries": len(s),
        "summary_p50_s": round(percentile(s, 0.5), 2) if s else None, "summary_max_s": round(s[-1], 2) if s else None,
        "lookups": len(lk), "lookup_p50_ms": round(1000 * percentile(lk, 0.5), 1),
        "lookup_p99_ms": round(1000 * percentile(lk, 0.99), 1), "lookup_max_ms": round(1000 * lk[-1], 1),
        "rss_peak_mb": round(max(rss) / 2**20), "rss_end_mb": round(rss[-1] / 2**20),
        "errors": dict(codes), "scans": scans,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=50_000)
    parser.add_argument("--loops", default="1,8", help="comma-separated counts of summary clients, one phase each")
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    counts = [int(c) for c in args.loops.split(",")]
    if args.children < 1 or args.seconds <= 0 or any(c < 0 for c in counts):
        parser.error("--children and --seconds must be positive, --loops counts 0 or more")
    mocks, _ = start_mocks(args.children, latency_ms=40.0)
    try:
        async def numbers() -> list[str]:
            async with session() as client:
                return await all_a_numbers(client, mocks, args.children)

        pool = asyncio.run(numbers())
        random.Random(7).shuffle(pool)  # lookups spread over the world, not in listing order
        for count in counts:
            gw = Gateway(mocks)
            try:
                print(json.dumps(asyncio.run(phase(gw, pool, count, args.seconds))), flush=True)
            finally:
                gw.stop()
    finally:
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
