"""Is the memory after the cache fills bounded? Scenario 6 in process, with more passes and Python's own counts.

    .venv/bin/python bench/memory_passes.py                      # 30,000 children per set, 8 passes
    .venv/bin/python bench/memory_passes.py --children 30000 --passes 8 --tracemalloc

The gateway's ASGI app (production settings, as bench/profile_warm.py builds it) gets a cache of exactly
`--children` children (3 entries each); the passes read one set of that many children and then another,
in turn, each pass evicting the other set (`children` queries of 100, 4 at a time; mocks with no added
latency). After each pass: RSS, the blocks Python's allocator holds (`sys.getallocatedblocks`), the
objects the garbage collector tracks and, with `--tracemalloc`, the bytes Python has allocated (slower).
Counts that stay level from pass to pass while RSS creeps say the growth is the allocator's
fragmentation, not objects kept alive.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import shutil
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import LIGHT_MANY, all_a_numbers, session, start_mocks  # noqa: E402
from profile_warm import call, in_process_app  # noqa: E402


async def passes(children: int, count: int, trace: bool) -> list[dict[str, Any]]:
    """Run the passes; one row of counts per pass."""
    mocks, _ = start_mocks(2 * children + 1000, latency_ms=0.0)
    data_dir = tempfile.mkdtemp(prefix="ucgw-memory-")
    rows: list[dict[str, Any]] = []
    try:
        async with session() as client:
            numbers = await all_a_numbers(client, mocks, 2 * children)
        urls = {"orr": mocks.orr, "ice": mocks.ice, "eoir": mocks.eoir}
        app, headers = in_process_app(urls, data_dir, UCGW_CACHE_MAX_ENTRIES=str(3 * children),
                                      UCGW_CACHE_TTL_SECONDS="3600")
        sets = (numbers[:children], numbers[children:2 * children])
        process = psutil.Process()
        if trace:
            tracemalloc.start()
        async with app.router.lifespan_context(app):
            for n in range(count):
                chunks = collections.deque(sets[n % 2][i:i + 100] for i in range(0, children, 100))

                async def worker(chunks: collections.deque[list[str]] = chunks) -> None:
                    while chunks:
                        body = json.dumps({"query": LIGHT_MANY, "variables": {"as": chunks.popleft()}}).encode()
                        status, answer = await call(app, body, headers)
                        if status != 200 or b'"errors"' in answer:
                            raise RuntimeError(f"bad answer: {status} {answer[:200]!r}")

                await asyncio.gather(*(worker() for _ in range(4)))
                gc.collect()
                row = {"pass": n, "set": n % 2, "rss_mb": round(process.memory_info().rss / 2**20, 1),
                       "allocated_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects())}
                if trace:
                    row["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        mocks.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=30_000, help="children per set (the cache holds one set)")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--tracemalloc", action="store_true", help="also count the bytes Python allocated")
    args = parser.parse_args()
    if args.children < 100 or args.passes < 2:
        parser.error("--children must be at least 100 and --passes at least 2")
    asyncio.run(passes(args.children, args.passes, args.tracemalloc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
