"""Several gateway replicas sharing one Redis (UCGW_REDIS_URL), over real HTTP and websockets.

What is proved, each against real `ucgw serve` processes, the session's mocks and a real Redis: a record one
replica fetched is a HIT on another with the same provenance; identical cold queries spread over three
replicas make one backend call per source; a change one replica reads from a feed reaches the others' caches
and subscribers; one caller's burst across replicas meets one shared bucket; the webhook's replay cache is
shared; and with Redis stopped the replicas answer alone (no 5xx, /readyz degraded, a warning), rejoining
when it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
import redis
import websockets

from testing.access import gateway_env
from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess
from testing.servers import RedisServer, redis_prefix

PROV = "fragment P on Provenance { source fetchedAt sourceUpdatedAt cacheStatus }"
STATUS = """query($a: ID!) { child(aNumber: $a) { aNumber
  location { status provenance { ...P } }
  nta { status fieldOffice provenance { ...P } }
  hearing { caseStatus provenance { ...P } } } } """ + PROV
ROUTES = {"orr": "POST /v1/children/batch", "ice": "POST /v1/subjects/batch", "eoir": "POST /v1/cases/batch"}
WS = "graphql-transport-ws"


def replicas(n: int, mocks: Any, redis_url: str, prefix: str | None = None, **env: str) -> list[GatewayProcess]:
    """`n` gateways on the mocks sharing one Redis under one prefix (a fresh one unless given)."""
    shared = {"UCGW_REDIS_URL": redis_url, "UCGW_REDIS_PREFIX": prefix or redis_prefix(),
              "UCGW_CACHE_TTL_SECONDS": "300", "UCGW_ANSWER_CACHE_BYTES": "0", **env}
    return [GatewayProcess(gateway_env(mocks, **shared)) for _ in range(n)]


@pytest.fixture()
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def started(stack: ExitStack, gateways: list[GatewayProcess]) -> list[GatewayProcess]:
    for gw in gateways:
        stack.callback(gw.stop)
    return gateways


def batch_calls(mocks: Any) -> dict[str, int]:
    return {s: mocks.stats(s)["by_route"].get(route, 0) for s, route in ROUTES.items()}


def provenances(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if "cacheStatus" in node else []
        return own + [p for v in node.values() for p in provenances(v)]
    if isinstance(node, list):
        return [p for v in node for p in provenances(v)]
    return []


def status_of(gw: GatewayProcess, a: str) -> dict[str, Any]:
    code, body = gw.query(STATUS, {"a": a})
    assert code == 200 and "errors" not in body, body
    return body


def cold_child(mocks: Any, taken: set[str], n: int = 0) -> str:
    """A child with records in all three mocks that no earlier test of this module read."""
    for a in mocks.sample(300):
        if a in taken:
            continue
        if all(mocks.request(s, "GET", f"/v1/{p}/{a}").status == 200
               for s, p in (("orr", "children"), ("ice", "subjects"), ("eoir", "cases"))):
            taken.add(a)
            return a
    raise AssertionError("no child fits")


TAKEN: set[str] = set()


def admin_facts(gw: GatewayProcess) -> dict[str, Any]:
    _, _, body = http("GET", f"{gw.admin_url}/readyz")
    return json.loads(body)


def public_readyz(gw: GatewayProcess) -> tuple[int, dict[str, Any]]:
    status, _, body = http("GET", f"{gw.url}/readyz")
    return status, json.loads(body)


def wait_for(what: str, check: Any, timeout: float = 15.0) -> Any:
    """Poll `check()` until it returns something truthy (a generous bound for an event, not a timing)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_record_fetched_by_one_replica_is_a_hit_on_another(mock_services: MockProcess, redis_url: str,
                                                               stack: ExitStack) -> None:
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url))
    a = cold_child(mock_services, TAKEN)
    before = batch_calls(mock_services)
    first = provenances(status_of(a_gw, a))
    second = provenances(status_of(b_gw, a))
    after = batch_calls(mock_services)
    assert {p["source"] for p in first} == {"ORR", "ICE", "EOIR"}
    assert {p["cacheStatus"] for p in first} == {"MISS"}
    assert {p["cacheStatus"] for p in second} == {"HIT"}
    assert [(p["source"], p["fetchedAt"], p["sourceUpdatedAt"]) for p in second] == [
        (p["source"], p["fetchedAt"], p["sourceUpdatedAt"]) for p in first]
    assert {s: after[s] - before[s] for s in ROUTES} == {"orr": 1, "ice": 1, "eoir": 1}
    shared = admin_facts(b_gw)["fetches"]
    assert sum(f["shared_hits"] for f in shared.values()) == 3
    assert sum(f["backend_records"] for f in shared.values()) == 0


def test_concurrent_cold_queries_over_three_replicas_make_one_backend_call_per_source(
        mock_services: MockProcess, redis_url: str, stack: ExitStack) -> None:
    gateways = started(stack, replicas(3, mock_services, redis_url))
    a = cold_child(mock_services, TAKEN)
    for source in ROUTES:  # the backends answer slowly: every query arrives while the first call is out
        mock_services.admin_ok(source, "PUT", "/_admin/faults", {"latency_ms": 300})
    stack.callback(mock_services.reset)
    before = batch_calls(mock_services)
    with ThreadPoolExecutor(max_workers=200) as pool:
        answers = list(pool.map(lambda i: (i % 3, gateways[i % 3].query(STATUS, {"a": a})), range(200)))
    after = batch_calls(mock_services)
    assert {s: after[s] - before[s] for s in ROUTES} == {"orr": 1, "ice": 1, "eoir": 1}
    served = {i: 0 for i in range(3)}
    fetched_at = set()
    for replica, (code, body) in answers:
        assert code == 200 and body["data"]["child"]["aNumber"] == a, body
        served[replica] += 1
        fetched_at |= {(p["source"], p["fetchedAt"]) for p in provenances(body)}
    assert served == {0: 67, 1: 67, 2: 66}
    assert len(fetched_at) == 3  # one fetch per source, the same on every replica
    backend = [sum(f["backend_records"] for f in admin_facts(gw)["fetches"].values()) for gw in gateways]
    assert sum(backend) == 3  # the three records, each asked of its backend by one replica


async def _subscribe(gw: GatewayProcess, a: str) -> Any:
    ws = await websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {gw.token}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "c", "type": "subscribe", "payload": {
        "query": "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source sourceUpdatedAt } }",
        "variables": {"a": a}}}))
    return ws


async def _next_event(ws: Any, timeout: float = 15.0) -> dict[str, Any]:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif msg["type"] == "next":
            return msg["payload"]["data"]["childStatusChanged"]
        else:
            raise AssertionError(msg)


def test_a_change_read_by_one_replica_reaches_every_replica(redis_url: str, stack: ExitStack) -> None:
    """Replica A follows the feeds (as the leader will); B and C do not, and learn of a change through Redis
    alone: their copies are dropped (the next read is a MISS on the first to ask, a HIT with that fetch's
    fetchedAt on the others), and a subscriber on C receives the event A read."""
    mocks = MockProcess(seed=24, children=40).start()
    stack.callback(mocks.stop)
    prefix = redis_prefix()
    a_gw = started(stack, replicas(1, mocks, redis_url, prefix, UCGW_CHANGE_FEED_POLL_SECONDS="0.2"))[0]
    b_gw, c_gw = started(stack, replicas(2, mocks, redis_url, prefix))
    a = cold_child(mocks, set())
    for gw in (a_gw, b_gw, c_gw):
        status_of(gw, a)
    old = {p["source"]: p["sourceUpdatedAt"] for p in provenances(status_of(b_gw, a))}
    assert all(p["cacheStatus"] == "HIT" for p in provenances(status_of(c_gw, a)))

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await _subscribe(c_gw, a)
        try:
            await asyncio.sleep(0.5)  # the subscription registered, the follower at the feed's end
            processed = admin_facts(a_gw)["changeFeed"]["processed"]
            current = (await asyncio.to_thread(mocks.request, "orr", "GET", f"/v1/children/{a}")).json()
            flipped = "pending" if current["background_check"] == "cleared" else "cleared"
            await asyncio.to_thread(mocks.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                    {"background_check": flipped})
            event = await _next_event(ws)
            await asyncio.to_thread(wait_for, "A to count the change",
                                    lambda: admin_facts(a_gw)["changeFeed"]["processed"] > processed)
            b_seen = await asyncio.to_thread(wait_for, "B to show the change",
                                             lambda: _changed(b_gw, a, old["ORR"]))
            c_seen = await asyncio.to_thread(wait_for, "C to show the change",
                                             lambda: _changed(c_gw, a, old["ORR"]))
            return event, b_seen, c_seen
        finally:
            await ws.close()

    event, b_seen, c_seen = asyncio.run(run())
    orr_b = next(p for p in b_seen if p["source"] == "ORR")
    orr_c = next(p for p in c_seen if p["source"] == "ORR")
    assert (event["aNumber"], event["source"]) == (a, "ORR")
    assert event["sourceUpdatedAt"] == orr_b["sourceUpdatedAt"] != old["ORR"]
    assert orr_b["cacheStatus"] == "MISS"
    assert (orr_c["cacheStatus"], orr_c["fetchedAt"], orr_c["sourceUpdatedAt"]) == (
        "HIT", orr_b["fetchedAt"], orr_b["sourceUpdatedAt"])
    orr_a = next(p for p in provenances(status_of(a_gw, a)) if p["source"] == "ORR")
    assert (orr_a["cacheStatus"], orr_a["fetchedAt"]) == ("HIT", orr_b["fetchedAt"])
    assert admin_facts(b_gw)["changeFeed"]["processed"] == 0  # B read no feed: Redis told it


def _changed(gw: GatewayProcess, a: str, old: str) -> list[dict[str, Any]] | None:
    provs = provenances(status_of(gw, a))
    orr = next(p for p in provs if p["source"] == "ORR")
    return provs if orr["sourceUpdatedAt"] != old else None


def test_one_callers_burst_across_replicas_meets_one_shared_bucket(mock_services: MockProcess, redis_url: str,
                                                                  stack: ExitStack) -> None:
    gateways = started(stack, replicas(3, mock_services, redis_url, UCGW_RATE_LIMIT_RPS="0.01",
                                       UCGW_RATE_LIMIT_BURST="10"))
    token = mint("caseworker", subject="burst-caller")
    codes = [gateways[i % 3].query("{ __typename }", token=token)[0] for i in range(30)]
    assert codes.count(200) == 10 and codes.count(429) == 20
    assert codes[:10] == [200] * 10  # the bucket's tokens went to the first ten, whichever replica
    other = mint("caseworker", subject="another-caller")
    assert gateways[1].query("{ __typename }", token=other)[0] == 200  # a bucket per caller


def test_with_redis_stopped_replicas_answer_alone_and_rejoin(mock_services: MockProcess,
                                                            stack: ExitStack) -> None:
    redis = RedisServer().start()
    stack.callback(redis.close)
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis.url))
    children = [cold_child(mock_services, TAKEN) for _ in range(6)]
    assert public_readyz(a_gw) == (200, {"ready": True, "status": "ok"})
    results: list[tuple[int, dict[str, Any]]] = []
    stop = False

    def load() -> None:
        i = 0
        while not stop:
            gw = (a_gw, b_gw)[i % 2]
            results.append(gw.query(STATUS, {"a": children[i % 4]}))
            i += 1

    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(load) for _ in range(2)]
        wait_for("answers before the stop", lambda: len(results) >= 20)
        redis.stop()
        stopped_at = len(results)
        for gw in (a_gw, b_gw):
            assert wait_for("degraded", lambda gw=gw: public_readyz(gw)[1]["status"] == "degraded")
        wait_for("answers while Redis is down", lambda: len(results) >= stopped_at + 40)
        degraded = a_gw.query(STATUS, {"a": children[0]})
        redis.start()
        for gw in (a_gw, b_gw):
            wait_for("rejoined", lambda gw=gw: public_readyz(gw) == (200, {"ready": True, "status": "ok"}))
        after_restart = len(results)
        wait_for("answers after the restart", lambda: len(results) >= after_restart + 20)
        stop = True
        for job in jobs:
            job.result()
    assert [code for code, _ in results if code >= 500] == []
    assert all(code == 200 and body["data"]["child"] is not None for code, body in results)
    assert public_readyz(b_gw)[0] == 200
    assert degraded[0] == 200 and {"source": "REDIS", "code": "SHARED_STATE_UNAVAILABLE"} in [
        {k: w[k] for k in ("source", "code")} for w in degraded[1]["extensions"]["warnings"]]
    assert "extensions" not in a_gw.query(STATUS, {"a": children[1]})[1]
    fresh = children[5]  # rejoined: a record one replica fetches is a HIT on the other again
    assert {p["cacheStatus"] for p in provenances(status_of(a_gw, fresh))} == {"MISS"}
    assert {p["cacheStatus"] for p in provenances(status_of(b_gw, fresh))} == {"HIT"}


async def _joined(gw: GatewayProcess, token: str) -> Any:
    ws = await websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
    return ws


async def _closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    return closed.value.rcvd.code, closed.value.rcvd.reason  # type: ignore[union-attr]


def test_websockets_and_subscriptions_per_caller_count_over_every_replica(mock_services: MockProcess,
                                                                           redis_url: str, stack: ExitStack) -> None:
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url, UCGW_WEBSOCKETS_PER_CLIENT="2",
                                         UCGW_SUBSCRIPTIONS_PER_CLIENT="2"))
    alice, bob = mint("caseworker", subject="ws-alice"), mint("caseworker", subject="ws-bob")
    watch = 'subscription { childStatusChanged(aNumber: "A000000001") { sequence } }'

    async def run() -> None:
        one, two = await _joined(a_gw, alice), await _joined(b_gw, alice)
        third = await _joined(a_gw, alice)  # one socket on each replica: the third is one too many
        assert await _closed_with(third) == (4429, "too many open websockets for this client (at most 2)")
        other = await _joined(a_gw, bob)  # another caller has its own count
        await one.send(json.dumps({"id": "a", "type": "subscribe", "payload": {"query": watch}}))
        await two.send(json.dumps({"id": "b", "type": "subscribe", "payload": {"query": watch}}))
        await asyncio.sleep(0.3)  # both running
        await one.send(json.dumps({"id": "c", "type": "subscribe", "payload": {"query": watch}}))
        refusal = json.loads(await asyncio.wait_for(one.recv(), 10))
        assert refusal == {"id": "c", "type": "error", "payload": [{
            "message": "too many operations running over all your websockets on every replica (at most 2)",
            "extensions": {"code": "TOO_MANY_OPERATIONS"}}]}
        await two.close()  # its socket and its operation free their places on every replica
        for _ in range(50):
            again = await websockets.connect(a_gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS])
            await again.send(json.dumps({"type": "connection_init",
                                         "payload": {"Authorization": f"Bearer {alice}"}}))
            assert json.loads(await asyncio.wait_for(again.recv(), 10))["type"] == "connection_ack"
            try:
                await asyncio.wait_for(again.recv(), 0.3)
            except TimeoutError:
                break  # still open: counted
            except websockets.ConnectionClosed:
                await asyncio.sleep(0.1)  # the freed slot not yet given back
        else:
            raise AssertionError("the closed socket's place was never freed")
        for ws in (one, again, other):
            await ws.close()

    asyncio.run(run())


def test_a_webhook_post_replayed_to_another_replica_is_refused(mock_services: MockProcess, redis_url: str,
                                                              stack: ExitStack) -> None:
    secret = "test-only-webhook-secret-0123456789"  # not a real secret: tests only
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url, UCGW_WEBHOOK_SECRET=secret))
    body = json.dumps({"source": "orr", "changes": []}).encode()
    stamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-UCGW-Timestamp": stamp, "X-UCGW-Signature": signature}
    first = http("POST", f"{a_gw.url}/hooks/changes", headers=headers, raw=body)
    replay = http("POST", f"{b_gw.url}/hooks/changes", headers=headers, raw=body)
    assert (first[0], json.loads(first[2])) == (202, {"accepted": 0, "skipped": 0})
    assert (replay[0], json.loads(replay[2])["error"]) == (401, {
        "code": "UNAUTHENTICATED", "message": "this signed post was accepted before (a replay)"})


SUMMARY = "query { oversightSummary(maxAgeSeconds: 0) { childrenScanned } }"


def test_one_callers_walks_of_every_child_run_one_at_a_time_over_every_replica(
        mock_services: MockProcess, redis_url: str, stack: ExitStack) -> None:
    """Alice asks both replicas for a fresh walk at once: one runs, the other waits for it to end (her one
    slot is counted in Redis), and both answer."""
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url, UCGW_MIN_SCAN_MAX_AGE_SECONDS="0"))
    alice = mint("caseworker", subject="scan-alice")
    mock_services.admin_ok("ice", "PUT", "/_admin/faults", {"latency_ms": 700})
    stack.callback(mock_services.reset)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda gw: gw.query(SUMMARY, token=alice, timeout=60), (a_gw, b_gw)))
    assert [(s, b["data"]["oversightSummary"]["childrenScanned"]) for s, b in answers] == [(200, 300)] * 2
    facts = [admin_facts(gw)["scans"] for gw in (a_gw, b_gw)]
    assert [f["started"] for f in facts] == [1, 1]
    assert sum(f["waited"] for f in facts) == 1 and sum(f["refused"] for f in facts) == 0


def test_a_replica_that_dies_holding_a_lease_blocks_the_others_no_longer_than_the_lease(
        mock_services: MockProcess, redis_url: str, stack: ExitStack) -> None:
    """Replica A is fetching a child (its leases in Redis) when it is killed; B, waiting for A's records, takes
    the leases over once they lapse (1.5 × the source timeout) and answers from its own backend call."""
    prefix = redis_prefix()
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url, prefix, UCGW_SOURCE_TIMEOUT_SECONDS="4",
                                         UCGW_REQUEST_DEADLINE_SECONDS="30", UCGW_RETRY_ATTEMPTS="0"))
    a = cold_child(mock_services, TAKEN)
    for source in ROUTES:
        mock_services.admin_ok(source, "PUT", "/_admin/faults", {"latency_ms": 3000})
    stack.callback(mock_services.reset)
    client = redis.Redis.from_url(redis_url)
    stack.callback(client.close)
    before = batch_calls(mock_services)
    with ThreadPoolExecutor(2) as pool:
        doomed = pool.submit(a_gw.query, STATUS, {"a": a})
        wait_for("A's leases", lambda: all(client.exists(f"{prefix}lease:{s}:{a}") for s in ("ORR", "ICE", "EOIR")))
        waiting = pool.submit(b_gw.query, STATUS, {"a": a})
        wait_for("B waiting for A", lambda: sum(f["shared_waits"] for f in admin_facts(b_gw)["fetches"].values()) == 3)
        a_gw.stop(signal.SIGKILL)
        status, body = waiting.result()
        with pytest.raises(OSError):
            doomed.result()
    assert status == 200 and "errors" not in body, body
    assert {p["cacheStatus"] for p in provenances(body)} == {"MISS"}
    after = batch_calls(mock_services)
    assert {s: after[s] - before[s] for s in ROUTES} == {"orr": 2, "ice": 2, "eoir": 2}  # A's lost calls, B's
    facts = admin_facts(b_gw)["fetches"]
    assert sum(f["backend_records"] for f in facts.values()) == 3


def test_a_query_persisted_on_one_replica_is_served_by_hash_on_another(mock_services: MockProcess, redis_url: str,
                                                                        stack: ExitStack) -> None:
    """Apollo's automatic persisted queries behind a load balancer: the hash registered through A is known to B
    (and an unknown hash is still PERSISTED_QUERY_NOT_FOUND there, so the client falls back as it should)."""
    a_gw, b_gw = started(stack, replicas(2, mock_services, redis_url))
    a = mock_services.sample(1)[0]
    query = "query Loc($a: ID!) { child(aNumber: $a) { aNumber } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    headers = a_gw.headers(extra={"content-type": "application/json"})

    def post(gw: GatewayProcess, body: dict[str, Any]) -> dict[str, Any]:
        status, _, raw = http("POST", f"{gw.url}/graphql", body, headers)
        assert status == 200, raw
        return json.loads(raw)

    unknown = post(b_gw, {"variables": {"a": a}, "extensions": persisted})
    assert [e["extensions"]["code"] for e in unknown["errors"]] == ["PERSISTED_QUERY_NOT_FOUND"]
    registered = post(a_gw, {"query": query, "variables": {"a": a}, "extensions": persisted})
    assert registered.get("data") == {"child": {"aNumber": a}}, registered
    served = post(b_gw, {"variables": {"a": a}, "extensions": persisted})
    assert served.get("errors") is None and served["data"] == {"child": {"aNumber": a}}
    assert admin_facts(b_gw)["persistedDocuments"]["sharedHits"] == 1
