"""Two builds side by side, in CPU milliseconds per request: gateway A (another checkout) and B (this tree).

    git worktree add /tmp/ucgw-base <commit>
    .venv/bin/python bench/ab_cpu.py --base /tmp/ucgw-base                  # warm, cold single, cold batch
    .venv/bin/python bench/ab_cpu.py --base /tmp/ucgw-base --only warm --windows 10
    .venv/bin/python bench/ab_cpu.py --base /tmp/ucgw-base --only warm --tls-b    # B over HTTPS: TLS's cost

CPU per request is the gateway process's user + system CPU (all threads, from /proc through psutil) over a
window, divided by the requests it answered in that window. On this shared VM it is far steadier than
req/s, which moves with whatever else the machine does. Windows alternate which gateway goes first; B/A is
taken window by window and its median is the figure to read.

Scenarios (full status of the four sections with provenance, caseworker token, production settings):
- warm: one child, answered from the record cache / stored answer, concurrency 16;
- cold: one child per request, never asked of that gateway before, concurrency 16;
- batch: `children` with 100 such children per request, concurrency 4.
Both gateways read the same children in the same order (each has its own cache, so each read is cold for
it). One mock process with `--latency-ms` (default 5) serves both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    FULL_STATUS,
    FULL_STATUS_MANY,
    Gateway,
    ab_arguments,
    ab_pair,
    all_a_numbers,
    graphql_body,
    post,
    session,
    start_mocks,
)

# concurrency, requests per window: each window costs the gateway about a second of CPU, so that the kernel's
# 10 ms accounting tick weighs about 1% in a window's figure
SCENARIOS = {"warm": (16, 10_000), "cold": (16, 800), "batch": (4, 12)}


def children_read(scenario: str, windows: int) -> int:
    """Distinct children one gateway reads in `windows` windows of `scenario` (warm: the same one)."""
    _concurrency, requests = SCENARIOS[scenario]
    return {"warm": 0, "cold": requests, "batch": requests * 100}[scenario] * windows


async def window(client: aiohttp.ClientSession, gateway: Gateway, bodies: Iterator[bytes], requests: int,
                 concurrency: int) -> float:
    """CPU milliseconds per request of `gateway` over `requests` requests sent `concurrency` at a time."""
    failures: list[str] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            _latency, status, data = await post(client, gateway.graphql, next(bodies), gateway.headers)
            if status != 200 or b'"errors"' in data:
                failures.append(f"HTTP {status} {data[:200]!r}")

    shares = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    before = gateway.cpu_seconds()
    await asyncio.gather(*(worker(n) for n in shares))
    used = gateway.cpu_seconds() - before
    if failures:
        raise SystemExit(f"{len(failures)} failed requests, first: {failures[0]}")
    return 1000.0 * used / requests


def bodies_for(scenario: str, pool: list[str], child: str) -> Iterator[bytes]:
    """The request bodies of a scenario, in order: the same child (warm) or the next unseen ones (cold)."""
    if scenario == "warm":
        body = graphql_body(FULL_STATUS, {"a": child})
        while True:
            yield body
    elif scenario == "cold":
        for a in pool:
            yield graphql_body(FULL_STATUS, {"a": a})
    else:
        for i in range(0, len(pool) - 99, 100):
            yield graphql_body(FULL_STATUS_MANY, {"as": pool[i:i + 100]})
    raise SystemExit("the mock world ran out of unseen children: raise --children")


async def compare(a: Gateway, b: Gateway, pool: list[str], scenarios: list[str], windows: int) -> None:
    async with session(context=b.context) as client:
        child = pool[0]
        for gateway in (a, b):  # warm-up: connections, the warm child's records and answer
            for _ in range(20):
                await post(client, gateway.graphql, graphql_body(FULL_STATUS, {"a": child}), gateway.headers)
        offset = 1
        wanted = 1 + sum(children_read(s, windows) for s in scenarios)
        if wanted > len(pool):
            raise SystemExit(f"these scenarios read {wanted} distinct children; the mock world has {len(pool)}: "
                             "raise --children")
        for scenario in scenarios:
            concurrency, requests = SCENARIOS[scenario]
            needed = children_read(scenario, windows)
            slice_ = pool[offset:offset + needed]
            offset += needed
            streams = {"A": bodies_for(scenario, slice_, child), "B": bodies_for(scenario, slice_, child)}
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            for w in range(windows):
                order = (("A", a), ("B", b)) if w % 2 == 0 else (("B", b), ("A", a))
                for name, gateway in order:
                    cpu[name].append(await window(client, gateway, streams[name], requests, concurrency))
            ratios = [round(y / x, 3) for x, y in zip(cpu["A"], cpu["B"], strict=True)]
            print(f"{scenario} (c={concurrency}, {requests} requests a window): CPU ms/request "
                  f"A {statistics.median(cpu['A']):.3f}, B {statistics.median(cpu['B']):.3f}; "
                  f"B/A median {statistics.median(ratios):.3f}, by window {ratios}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ab_arguments(parser)
    parser.add_argument("--only", default="warm,cold,batch", help="comma-separated scenarios")
    parser.add_argument("--windows", type=int, default=6, help="windows per gateway and scenario")
    parser.add_argument("--children", type=int, default=20_000, help="mock world size")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="latency the mocks add to data requests")
    args = parser.parse_args()
    scenarios = [s for s in args.only.split(",") if s]
    if not scenarios or any(s not in SCENARIOS for s in scenarios) or args.windows < 1:
        raise SystemExit(f"--only takes {', '.join(SCENARIOS)}; --windows must be positive")
    mocks, _ = start_mocks(args.children, latency_ms=args.latency_ms)
    with ab_pair(args, mocks, UCGW_CACHE_TTL_SECONDS="3600") as (a, b):

        async def run() -> None:
            async with session() as client:
                pool = await all_a_numbers(client, mocks, args.children)
            await compare(a, b, pool, scenarios, args.windows)

        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
