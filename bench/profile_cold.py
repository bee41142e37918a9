"""Profile the cold path: the gateway's ASGI app called in-process for children it has never fetched.

    .venv/bin/python bench/profile_cold.py --mode single --requests 200   # full status of one child
    .venv/bin/python bench/profile_cold.py --mode batch --requests 30     # `children` with 100 A-numbers
    .venv/bin/python bench/profile_cold.py --mode batch --profile cold.txt   # under pyinstrument (.txt/.html)

As bench/profile_warm.py, but every request asks for children not asked before, so each one makes one
batch call per source (mocks in a subprocess, no added latency unless `--latency-ms`). Prints the median
lower quartile and smallest CPU time per request of this process (all its threads: the audit commit included) and the
median wall time; five unmeasured requests go first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    FULL_STATUS,
    FULL_STATUS_MANY,
    all_a_numbers,
    start_mocks,
)
from profile_warm import call, in_process_app  # noqa: E402

WARMUP = 5


async def measure(urls: dict[str, str], pool: list[str], mode: str, requests: int,
                  profile: str | None) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="ucgw-profile-")
    app, headers = in_process_app(urls, data_dir)
    cold = iter(pool)

    def body() -> bytes:
        if mode == "single":
            return json.dumps({"query": FULL_STATUS, "variables": {"a": next(cold)}}).encode()
        return json.dumps({"query": FULL_STATUS_MANY, "variables": {"as": [next(cold) for _ in range(100)]}}).encode()

    cpus: list[float] = []
    walls: list[float] = []
    size = 0
    try:
        async with app.router.lifespan_context(app):
            for _ in range(WARMUP):
                await call(app, body(), headers)
            profiler = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002, async_mode="enabled")
                profiler.start()
            for _ in range(requests):
                payload = body()
                cpu, wall = time.process_time(), time.perf_counter()
                status, answer = await call(app, payload, headers)
                cpus.append(time.process_time() - cpu)
                walls.append(time.perf_counter() - wall)
                assert status == 200 and b'"errors"' not in answer, answer[:300]
                size = len(answer)
            if profiler is not None:
                profiler.stop()
                text = (profiler.output_html() if profile.endswith(".html")
                        else profiler.output_text(unicode=False, color=False))
                Path(profile).write_text(text, encoding="utf-8")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"mode": mode, "requests": requests, "cpu_ms_median": round(1000 * statistics.median(cpus), 3),
            "cpu_ms_p25": round(1000 * statistics.quantiles(cpus, n=4)[0], 3),
            "cpu_ms_min": round(1000 * min(cpus), 3), "wall_ms_median": round(1000 * statistics.median(walls), 3),
            "response_bytes": size}


async def listing(mocks: Any, limit: int) -> list[str]:
    async with aiohttp.ClientSession() as client:
        return await all_a_numbers(client, mocks, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("single", "batch"), default="single")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the mocks' added latency")
    parser.add_argument("--profile", help="write a pyinstrument profile here (.txt or .html)")
    args = parser.parse_args()
    per_request = 1 if args.mode == "single" else 100
    needed = (args.requests + WARMUP) * per_request
    mocks, _ = start_mocks(max(needed, 1000), latency_ms=args.latency_ms)
    try:
        pool = asyncio.run(listing(mocks, needed))
        if len(pool) < needed:
            raise SystemExit(f"the mock world lists {len(pool)} children; {needed} are needed")
        print(json.dumps(asyncio.run(measure(mocks.urls, pool, args.mode, args.requests, args.profile))))
    finally:
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
