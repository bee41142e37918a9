"""Redis round trips and gateway CPU per request of two replicas sharing one Redis (docs/redis.md), for sizing.

    .venv/bin/python bench/redis_round_trips.py                 # a throwaway redis-server on a free port
    .venv/bin/python bench/redis_round_trips.py --requests 400

Two production-mode gateways share one throwaway Redis, a third runs without Redis; full status queries (four
sections, three sources) with a caseworker token, one at a time (CPU per request is the gateway process's user +
system CPU over the scenario, divided by its requests). A round trip is one call of the replica's `RedisLink` (a
command, a pipeline or a script: the admin /readyz `redis.calls`); the once-a-second PING each replica sends is
taken out by counting it over the same window. Pub/sub deliveries (invalidations, events) arrive on connections
of their own and are not round trips of a request.

Scenarios, `--requests` requests each (warm: five times as many) one at a time:
- warm: the same child on replica A (in its memory cache, its stored answer): the rate-limit bucket only;
- cold: a child no replica has read, on A: its bucket, then per source one claim (lease) and one store;
- cross: on B, the children A just read cold: bucket and one claim per source (HIT from Redis);
- warm and cold again on the gateway without Redis (other children), for CPU without Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FULL_STATUS, Gateway, all_a_numbers, graphql_body, post, session, start_mocks  # noqa: E402

from testing.gateway import http  # noqa: E402
from testing.servers import RedisServer, redis_prefix  # noqa: E402


def redis_calls(gateway: Gateway) -> tuple[int, float]:
    """(round trips so far, when read)."""
    _, _, body = http("GET", f"{gateway.admin_url}/readyz")
    return int(json.loads(body)["redis"]["calls"]), time.monotonic()


async def measure(name: str, gateway: Gateway, children: list[str], shared: bool = True) -> None:
    async with session() as client:
        before, t0 = redis_calls(gateway) if shared else (0, time.monotonic())
        cpu = gateway.cpu_seconds()
        for a in children:
            _, status, data = await post(client, gateway.graphql, graphql_body(FULL_STATUS, {"a": a}), gateway.headers)
            if status != 200 or b'"errors"' in data:
                raise SystemExit(f"{name}: HTTP {status} {data[:200]!r}")
        cpu_ms = 1000 * (gateway.cpu_seconds() - cpu) / len(children)
        after, t1 = redis_calls(gateway) if shared else (0, time.monotonic())
    if not shared:
        print(f"{name}: {cpu_ms:.2f} CPU ms/request ({len(children)} requests)", flush=True)
        return
    pings = int(t1 - t0)  # one PING a second, whole seconds elapsed
    print(f"{name}: {(after - before - pings) / len(children):.2f} Redis round trips/request, {cpu_ms:.2f} CPU "
          f"ms/request ({after - before} calls, ~{pings} probe pings, {len(children)} requests, {t1 - t0:.1f} s)",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    mocks, _ = start_mocks(max(1000, 3 * args.requests + 10), latency_ms=args.latency_ms)
    redis = RedisServer().start()
    env = {"UCGW_REDIS_URL": redis.url, "UCGW_REDIS_PREFIX": redis_prefix(), "UCGW_CACHE_TTL_SECONDS": "3600",
           "UCGW_CHANGE_FEED_POLL_SECONDS": "0"}
    gateways: list[Gateway] = []
    try:
        gateways += [Gateway(mocks, **env), Gateway(mocks, **env)]
        a, b = gateways
        alone = Gateway(mocks, UCGW_CACHE_TTL_SECONDS="3600", UCGW_CHANGE_FEED_POLL_SECONDS="0")
        gateways.append(alone)

        async def run() -> None:
            async with session() as client:
                pool = await all_a_numbers(client, mocks, 3 * args.requests + 1)
            warm = [pool[0]] * (args.requests * 5)
            for _ in range(2):  # twice: the first pass warms connections and code paths
                await measure("warm, no Redis (same child)", alone, warm, shared=False)
                await measure("warm (replica A, same child)", a, warm)
            await measure("cold, no Redis (unseen children)", alone, pool[2 * args.requests + 1:], shared=False)
            cold = pool[1:args.requests + 1]
            await measure("cold (replica A, unseen children)", a, cold)
            await measure("cross (replica B, children A fetched)", b, cold)

        asyncio.run(run())
    finally:
        for gateway in gateways:
            gateway.stop()
        redis.close()
        mocks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
