"""Does a walk of every child leave memory behind? Repeated `oversightSummary` requests in process.

    .venv/bin/python bench/scan_memory.py                       # 20,000 children, 6 summaries
    .venv/bin/python bench/scan_memory.py --children 50000 --summaries 10

The gateway's ASGI app (production settings, as bench/profile_warm.py builds it) in front of mocks with no
added latency answers one summary after another (each walks every child). After each: its time (the first
walk reads the sources, the later ones the cache; the counting is most of it), RSS and the objects
the garbage collector tracks, with no collection forced; at the end, what one full collection finds
unreachable. RSS level from the second summary on, and little unreachable, say a walk's records are freed
with its request rather than left for the cyclic collector (which runs seldom over a large cache).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import start_mocks  # noqa: E402
from profile_warm import call, in_process_app  # noqa: E402

SUMMARY = b'{"query": "{ oversightSummary { childrenScanned } }"}'


async def summaries(urls: dict[str, str], children: int, count: int) -> None:
    """Run the summaries, printing one JSON line after each and one after the final collection."""
    data_dir = tempfile.mkdtemp(prefix="ucgw-scan-memory-")
    process = psutil.Process()
    try:
        app, headers = in_process_app(urls, data_dir, UCGW_CACHE_TTL_SECONDS="3600")
        async with app.router.lifespan_context(app):
            for n in range(count):
                started = time.perf_counter()
                status, answer = await call(app, SUMMARY, headers)
                seconds = time.perf_counter() - started
                scanned = json.loads(answer)["data"]["oversightSummary"]["childrenScanned"]
                if status != 200 or scanned != children:
                    raise RuntimeError(f"bad answer: {status} {answer[:200]!r}")
                print(json.dumps({"summary": n, "seconds": round(seconds, 2),
                                  "rss_mb": round(process.memory_info().rss / 2**20, 1),
                                  "gc_objects": len(gc.get_objects())}), flush=True)
            unreachable = gc.collect()
            print(json.dumps({"after_full_collection": True, "unreachable": unreachable,
                              "rss_mb": round(process.memory_info().rss / 2**20, 1),
                              "gc_objects": len(gc.get_objects())}), flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=20_000)
    parser.add_argument("--summaries", type=int, default=6)
    args = parser.parse_args()
    if args.children < 1 or args.summaries < 2:
        parser.error("--children must be at least 1 and --summaries at least 2")
    mocks, _ = start_mocks(args.children, latency_ms=0.0)
    try:
        asyncio.run(summaries({"orr": mocks.orr, "ice": mocks.ice, "eoir": mocks.eoir}, args.children,
                              args.summaries))
    finally:
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
