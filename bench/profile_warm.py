"""Profile the warm path: the gateway's ASGI app called in-process, the full-status query answered from cache.

    .venv/bin/python bench/profile_warm.py                       # CPU and wall time per request
    .venv/bin/python bench/profile_warm.py --profile warm.txt    # the same under pyinstrument (or .html)
    .venv/bin/python bench/profile_warm.py --audit-sync normal   # audit commits without the flush

No sockets and no uvicorn: the app built by `gateway.app.create_app` (production settings, its lifespan
run) is called with one HTTP scope per request, so what is measured is the gateway's own work per
request (guard, authentication, strawberry, resolvers, cache, audit write), which is what the
optimisations target. The mocks run as a subprocess with no added latency; only the first request
reaches them. Requests are sequential; CPU time is the whole process's (the audit commit runs in a
worker thread). The requests are timed in five equal parts; the best part's CPU per request is the
figure least disturbed by other work on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FULL_STATUS, RATE_LIMIT_BURST, RATE_LIMIT_RPS, start_mocks  # noqa: E402


async def call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """One POST /graphql through the ASGI app; (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    sent = False
    out: dict[str, Any] = {"status": 0, "body": []}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"].append(message.get("body", b""))

    await app(scope, receive, send)
    return out["status"], b"".join(out["body"])


def in_process_app(urls: dict[str, str], data_dir: str, **env: str) -> tuple[Any, list[tuple[bytes, bytes]]]:
    """The gateway's ASGI app in production mode against the mocks at `urls`, and a caseworker's headers."""
    from gateway.app import create_app
    from gateway.config import load_settings
    from gateway.http.auth import mint_token

    settings = load_settings(environ={
        "UCGW_ENV": "production", "UCGW_JWT_SECRET": secrets.token_urlsafe(48), "UCGW_DATA_DIR": data_dir,
        "UCGW_RATE_LIMIT_RPS": RATE_LIMIT_RPS, "UCGW_RATE_LIMIT_BURST": RATE_LIMIT_BURST,
        "UCGW_CHANGE_FEED_POLL_SECONDS": "0",
        "UCGW_ORR_URL": urls["orr"], "UCGW_ICE_URL": urls["ice"], "UCGW_EOIR_URL": urls["eoir"], **env,
    })
    token = mint_token(settings, "caseworker", ttl=3600)
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {token}".encode())]
    return create_app(settings), headers


async def measure(urls: dict[str, str], a_number: str, requests: int, profile: str | None,
                  audit_sync: str = "full") -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="ucgw-profile-")
    app, headers = in_process_app(urls, data_dir, UCGW_CACHE_TTL_SECONDS="3600", UCGW_AUDIT_SYNC=audit_sync)
    body = json.dumps({"query": FULL_STATUS, "variables": {"a": a_number}}).encode()
    try:
        return await _run(app, body, headers, requests, profile)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(app: Any, body: bytes, headers: list[tuple[bytes, bytes]], requests: int,
               profile: str | None) -> dict[str, Any]:
    async with app.router.lifespan_context(app):
        status, first = await call(app, body, headers)
        assert status == 200 and b'"errors"' not in first, first[:500]
        for _ in range(50):  # warm-up
            await call(app, body, headers)
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="enabled")
            profiler.start()
        walls: list[float] = []
        rounds: list[float] = []
        per_round = max(1, requests // 5)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(requests):
            if i % per_round == 0:
                round_cpu = time.process_time()
            t = time.perf_counter()
            status, answer = await call(app, body, headers)
            walls.append(time.perf_counter() - t)
            assert status == 200 and b'"MISS"' not in answer and b'"errors"' not in answer, answer[:300]
            if i % per_round == per_round - 1:
                rounds.append((time.process_time() - round_cpu) / per_round)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if profiler is not None:
            profiler.stop()
            text = (profiler.output_html() if profile.endswith(".html")
                    else profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("SHOW_ALL"))))
            Path(profile).write_text(text, encoding="utf-8")
    # the best fifth is the least disturbed by other work on the machine
    return {"requests": requests, "cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "cpu_ms_per_request_best_fifth": round(1000 * min(rounds), 3),
            "wall_ms_per_request": round(1000 * wall / requests, 3),
            "p50_ms": round(1000 * statistics.median(walls), 3), "response_bytes": len(answer)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", help="write a pyinstrument profile here (.txt or .html)")
    parser.add_argument("--children", type=int, default=500, help="mock world size (the child differs by size)")
    parser.add_argument("--audit-sync", choices=("full", "normal"), default="full",
                        help="the audit trail's flush setting (UCGW_AUDIT_SYNC)")
    args = parser.parse_args()
    mocks, _ = start_mocks(args.children, latency_ms=0)
    try:
        a_number = mocks.sample(1, "missed_hearing")[0]  # every section filled, as in bench/run.py
        result = asyncio.run(measure(mocks.urls, a_number, args.requests, args.profile, args.audit_sync))
    finally:
        mocks.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
