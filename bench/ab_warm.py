"""Two builds side by side: the warm full-status query against gateway A (another checkout) and B (this tree).

    git worktree add /tmp/ucgw-base <commit>
    .venv/bin/python bench/ab_warm.py --base /tmp/ucgw-base                 # c=1,16,64, six 2 s windows
    .venv/bin/python bench/ab_warm.py --base /tmp/ucgw-base --concurrency 16 --windows 10
    .venv/bin/python bench/ab_warm.py --base . --env-b UCGW_AUDIT_SYNC=normal   # one build, two settings

One mock process (40 ms latency, which the warm query does not reach) and two gateways started as
`make bench` starts its one (production settings, raised rate limit). The windows alternate which gateway
goes first, so a change of this VM's speed during the run weighs on both; B/A is taken window by window,
and its median is the figure to read (this VM moves by more than the differences measured here, so a
single window, or a single `make bench` run, does not show a change of 10-20%). Prints, per concurrency,
each gateway's median req/s and the B/A ratios, then each gateway's audit-trail counters (/readyz).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    FULL_STATUS,
    Gateway,
    ab_arguments,
    ab_pair,
    closed_loop,
    graphql_body,
    session,
    start_mocks,
)

WARMUP_REQUESTS = 50
WINDOW_WARMUP = 0.2  # seconds unmeasured at the start of each window


async def compare(a: Gateway, b: Gateway, child: str, concurrencies: list[int], windows: int,
                  seconds: float) -> None:
    body = graphql_body(FULL_STATUS, {"a": child})
    async with session() as client:
        for gateway in (a, b):
            for _ in range(WARMUP_REQUESTS):  # the first fetches the records; the rest are answered from cache
                async with client.post(gateway.graphql, data=body, headers=gateway.headers) as response:
                    data = await response.read()
                    if response.status != 200 or b'"errors"' in data:
                        raise SystemExit(f"warm-up request failed: HTTP {response.status} {data[:300]!r}")
        for c in concurrencies:
            rates: dict[str, list[float]] = {"A": [], "B": []}
            for window in range(windows):
                for name, gateway in (("A", a), ("B", b)) if window % 2 == 0 else (("B", b), ("A", a)):
                    sample = await closed_loop(client, gateway.graphql, body, gateway.headers, c, seconds,
                                               WINDOW_WARMUP)
                    if sample.failures or set(sample.statuses) != {200}:
                        raise SystemExit(f"{name} answered {dict(sample.statuses)}, {sample.failures} failures")
                    rates[name].append(len(sample.latencies) / sample.seconds)
            ratios = [round(y / x, 3) for x, y in zip(rates["A"], rates["B"], strict=True)]
            print(f"c={c}: A {statistics.median(rates['A']):,.0f} req/s, B {statistics.median(rates['B']):,.0f} "
                  f"req/s; B/A median {statistics.median(ratios):.3f}, by window {ratios}", flush=True)
    for name, gateway in (("A", a), ("B", b)):
        print(f"{name} audit trail: {json.dumps(gateway.readyz().get('auditTrail'))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ab_arguments(parser)
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated, e.g. 16 or 1,16,64")
    parser.add_argument("--windows", type=int, default=6, help="windows per gateway and concurrency")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per window")
    parser.add_argument("--children", type=int, default=2000, help="mock world size")
    args = parser.parse_args()
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        raise SystemExit(f"--concurrency takes numbers, e.g. 1,16,64, not {args.concurrency!r}") from None
    if not concurrencies or min(concurrencies) < 1 or args.windows < 1 or args.seconds <= 0:
        raise SystemExit("--concurrency, --windows and --seconds must be positive")
    mocks, _ = start_mocks(args.children)
    with ab_pair(args, mocks, UCGW_CACHE_TTL_SECONDS="3600") as (a, b):
        child = mocks.sample(1, "missed_hearing")[0]
        asyncio.run(compare(a, b, child, concurrencies, args.windows, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
