"""Change-feed cursors and leadership (issue 24): a restarted gateway resumes from the stored cursor and
applies every change made while it was down exactly once; with replicas sharing Redis exactly one follows
each feed, a paused leader is fenced out, and when the leader is killed another takes over within the lease
time and applies the changes since the last stored cursor, none twice. Changes are counted against the mocks'
own feed (`GET /v1/changes`)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sources.systems import Source
from stores.feed_cursors import PgFeedCursorStore
from stores.feed_leases import RedisLeases
from stores.pg import Database
from stores.schema_migrations import migrate
from sync.feed_leadership import FeedLeadership
from testing.databases import database_env, runtime_role
from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess
from testing.servers import redis_prefix
from tests.test_safety_and_push import Subscriber

LEASE = 2.0  # seconds: short, so takeovers in these tests are quick
FEED = {"UCGW_CHANGE_FEED_POLL_SECONDS": "0.2", "UCGW_CACHE_TTL_SECONDS": "300"}
CHANGED = "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source sequence } }"
SOURCES = [s.value for s in Source]


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    """Mocks of this module's own: records are changed here."""
    with MockProcess(seed=31, children=300) as mocks:
        yield mocks


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`check()`'s first truthy value, asked every 0.1 s; fails after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(0.1)


def feed(gw: GatewayProcess) -> dict[str, Any]:
    status, _, body = http("GET", f"{gw.admin_url}/readyz")
    assert status == 200
    return json.loads(body)["changeFeed"]


def leads(gw: GatewayProcess) -> bool:
    return feed(gw)["leadership"] == dict.fromkeys(SOURCES, "leader")


def change(world: MockProcess, a: str, n: int) -> list[int]:
    """Make `n` changes to ORR's record of `a`; their sequence numbers in ORR's feed."""
    for _ in range(n):
        current = world.admin_ok("orr", "GET", f"/_admin/records/{a}")
        flipped = "pending" if current.get("background_check") == "cleared" else "cleared"
        world.admin_ok("orr", "PATCH", f"/_admin/records/{a}", {"background_check": flipped})
    changes = world.request("orr", "GET", "/v1/changes?limit=1000").json()["changes"]
    return [c["seq"] for c in changes if c["a_number"] == a][-n:]


def child(world: MockProcess) -> str:
    return next(a for a in world.sample(50) if world.request("orr", "GET", f"/_admin/records/{a}").status == 200)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_restarted_gateway_applies_the_changes_made_while_it_was_down_once(
        store: str, world: MockProcess, tmp_path: Any, request: pytest.FixtureRequest) -> None:
    env = {**world.gateway_env(), **FEED, "UCGW_DATA_DIR": str(tmp_path)}
    if store == "postgresql":
        owner = request.getfixturevalue("database_url")
        env.update(database_env(owner, runtime_role(owner)))
    a = child(world)
    gw = GatewayProcess(env)
    try:
        wait_for("the gateway leads every feed", lambda: leads(gw))
        change(world, a, 2)
        wait_for("both changes applied", lambda: feed(gw)["applied"]["ORR"] == 2)
    finally:
        gw.stop()
    missed = change(world, a, 3)  # nobody follows the feed now
    restarted = GatewayProcess(env)
    try:
        wait_for("the three changes applied", lambda: feed(restarted)["applied"]["ORR"] >= 3)
        after = change(world, a, 1)
        wait_for("the next change applied", lambda: feed(restarted)["applied"]["ORR"] >= 4)
        time.sleep(1.0)  # five more polls: nothing is applied again
        assert feed(restarted)["applied"] == {"ORR": 4, "ICE": 0, "EOIR": 0}
    finally:
        log = restarted.stop()
    assert "ORR change feed: resuming from the stored cursor" in log
    assert len(missed) == 3 and after[0] == missed[-1] + 1


def test_leader_killed_another_takes_over_and_every_change_appears_once(
        world: MockProcess, database_url: str, redis_url: str) -> None:
    env = {**world.gateway_env(), **FEED, **database_env(database_url, runtime_role(database_url)),
           "UCGW_REDIS_URL": redis_url, "UCGW_REDIS_PREFIX": redis_prefix(),
           "UCGW_FEED_LEADER_LEASE_SECONDS": str(LEASE)}
    a = child(world)
    leader = GatewayProcess(env)
    wait_for("the first replica leads every feed", lambda: leads(leader))
    other = GatewayProcess(env)
    try:
        wait_for("the second replica follows", lambda: feed(other)["leadership"] == dict.fromkeys(SOURCES, "follower"))
        _, _, metrics = http("GET", f"{other.admin_url}/metrics")
        assert 'ucgw_feed_leader{replica=' in metrics.decode() and 'source="ORR"} 0.0' in metrics.decode()
        _, _, metrics = http("GET", f"{leader.admin_url}/metrics")
        assert 'source="ORR"} 1.0' in metrics.decode()

        async def run() -> tuple[list[int], list[int], list[int], list[int]]:
            token = mint("caseworker")
            async with Subscriber(leader, token) as on_leader, Subscriber(other, token) as on_other:
                await on_leader.subscribe("c", CHANGED, {"a": a})
                await on_other.subscribe("c", CHANGED, {"a": a})
                await asyncio.sleep(0.8)
                before = await asyncio.to_thread(change, world, a, 2)
                seen_by_leader = [(await on_leader.until("c", lambda p: True))["data"]["childStatusChanged"]
                                  ["sequence"] for _ in before]
                await asyncio.to_thread(wait_for, "the cursor stored", lambda: feed(leader)["applied"]["ORR"] == 2)
                leader.stop(signal.SIGKILL)
                during = await asyncio.to_thread(change, world, a, 3)  # nobody leads yet
                await asyncio.to_thread(wait_for, "the second replica leads", lambda: leads(other), LEASE + 10)
                # the other replica's subscriber got the leader's changes through Redis, then its own: each once
                seen_by_other = [(await on_other.until("c", lambda p: True))["data"]["childStatusChanged"]
                                 ["sequence"] for _ in before + during]
                with pytest.raises(TimeoutError):  # nothing more: no change is applied twice
                    await on_other.message("c", timeout=1.5)
                return before, seen_by_leader, during, seen_by_other

        before, seen_by_leader, during, seen_by_other = asyncio.run(run())
        assert seen_by_leader == before and seen_by_other == before + during
        assert feed(other)["applied"] == {"ORR": 3, "ICE": 0, "EOIR": 0}
    finally:
        leader.stop()
        log = other.stop()
    assert "ORR change feed: this replica" in log and "is the leader (epoch" in log


def test_a_paused_leader_is_fenced_out(database_url: str, redis_url: str) -> None:
    runtime = runtime_role(database_url)
    migrate(database_url, runtime)
    prefix = redis_prefix()

    async def run() -> None:
        database = Database(runtime)
        await database.open()
        first = FeedLeadership(PgFeedCursorStore(database), RedisLeases(redis_url, prefix, "first", 0.5), 0.5)
        second = FeedLeadership(PgFeedCursorStore(database), RedisLeases(redis_url, prefix, "second", 0.5), 0.5)
        try:
            assert await first.take(Source.ORR) is not None
            assert await second.take(Source.ORR) is None  # one leader at a time
            assert await first.keep(Source.ORR, "c-1")
            time.sleep(0.8)  # the first leader's event loop stalls past its lease: it renews nothing
            assert not first.leading(Source.ORR)  # by its own clock it no longer leads: it applies nothing
            lead = await second.take(Source.ORR)
            assert lead is not None and lead.cursor == "c-1"
            assert second.epochs()["ORR"] > 1
            # its renewal finds the lease gone, or the cursor store refuses its epoch: either way no write
            assert not await first.keep(Source.ORR, "c-stale")
            assert first.roles()["ORR"] == "follower"
            assert await PgFeedCursorStore(database).load("ORR") == "c-1"
            assert await second.keep(Source.ORR, "c-2")
            assert await PgFeedCursorStore(database).load("ORR") == "c-2"
        finally:
            await first.close()
            await second.close()
            await database.close()

    asyncio.run(run())
