"""Where a cold request's time goes: phase timestamps of the gateway's ASGI app called in process.

    .venv/bin/python bench/timeline_cold.py --mode single --requests 200 --latency-ms 40
    .venv/bin/python bench/timeline_cold.py --mode batch --requests 30 --latency-ms 40

Wraps a few of the gateway's functions with timestamps (this process only; nothing is changed in the
package) and prints the median time between consecutive phases: request start, first and last backend
call started, first and last backend answer parsed, last section built, audit commit started and done,
response produced. Mocks run in a subprocess with the given added latency. In batch mode the previous
request's answer template is rendered at the next request's first wait, so it lands in "first call".
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FULL_STATUS, FULL_STATUS_MANY, start_mocks  # noqa: E402
from profile_cold import listing  # noqa: E402
from profile_warm import call, in_process_app  # noqa: E402

PHASES = [("start", "first call"), ("first call", "last call"), ("last call", "first answer"),
          ("first answer", "last answer"), ("last answer", "last section"), ("last section", "audit start"),
          ("audit start", "audit done"), ("audit done", "response"), ("start", "response")]
marks: dict[str, float] = {}


def _first(name: str) -> None:
    marks.setdefault(name, time.perf_counter())


def _last(name: str) -> None:
    marks[name] = time.perf_counter()


def _around(owner: Any, attribute: str, before: Callable[[], None] | None,
            after: Callable[[], None] | None) -> None:
    """Replace owner.attribute (a coroutine function or a plain one) by a timestamping wrapper."""
    original = getattr(owner, attribute)
    if asyncio.iscoroutinefunction(original):
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            if before:
                before()
            result = await original(*args, **kwargs)
            if after:
                after()
            return result
        setattr(owner, attribute, wrapped_async)
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            before()
        result = original(*args, **kwargs)
        if after:
            after()
        return result
    setattr(owner, attribute, wrapped)


def instrument() -> None:
    from resolvers import child
    from sources import client
    from stores import audit_trail as audit

    _around(client.SourceClient, "_attempt", lambda: (_first("first call"), _last("last call")),
            lambda: (_first("first answer"), _last("last answer")))
    _around(child, "_build_section", None, lambda: _last("last section"))
    _around(audit.SQLiteAuditStore, "append", lambda: _last("audit start"), lambda: _last("audit done"))


async def measure(urls: dict[str, str], pool: list[str], mode: str, requests: int) -> list[dict[str, float]]:
    data_dir = tempfile.mkdtemp(prefix="ucgw-timeline-")
    app, headers = in_process_app(urls, data_dir)
    numbers = iter(pool)
    rows = []
    try:
        async with app.router.lifespan_context(app):
            for i in range(requests + 5):  # five unmeasured requests first
                if mode == "single":
                    body = {"query": FULL_STATUS, "variables": {"a": next(numbers)}}
                else:
                    body = {"query": FULL_STATUS_MANY, "variables": {"as": [next(numbers) for _ in range(100)]}}
                marks.clear()
                marks["start"] = time.perf_counter()
                status, answer = await call(app, json.dumps(body).encode(), headers)
                marks["response"] = time.perf_counter()
                assert status == 200 and b'"errors"' not in answer, answer[:300]
                if i >= 5:
                    rows.append(dict(marks))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("single", "batch"), default="single")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=40.0, help="the mocks' added latency")
    args = parser.parse_args()
    per_request = 1 if args.mode == "single" else 100
    needed = (args.requests + 5) * per_request
    mocks, _ = start_mocks(max(needed, 1000), latency_ms=args.latency_ms)
    try:
        pool = asyncio.run(listing(mocks, needed))
        instrument()
        rows = asyncio.run(measure(mocks.urls, pool, args.mode, args.requests))
    finally:
        mocks.stop()
    for a, b in PHASES:
        spans = [r[b] - r[a] for r in rows if a in r and b in r]
        print(f"{a:>13} -> {b:<13} median {1000 * statistics.median(spans):8.3f} ms" if spans else f"{a} -> {b}: -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
