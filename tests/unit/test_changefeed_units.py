"""Unit tests of the change processor and follower: invalidation, events, alerts, outages (no mocks needed)."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from aiohttp import web

from sources.change_feed import Change, ChangeFollower, parse_changes
from sources.errors import SOURCE_UNAVAILABLE, SourceError
from sources.fetcher import SourceFetcher
from sources.record_cache import CacheEntry, MemoryCache
from sources.settings import Settings
from sources.systems import Source
from stores.pubsub import MemoryPubSub
from sync.change_events import (
    ALL_ALERTS,
    IN_ABSENTIA_ORDER,
    MISSED_HEARING,
    AlertEvent,
    ChangeEvent,
    child_alert_topic,
    child_topic,
    office_topic,
)
from sync.feed_applier import ChangeProcessor, Recent

A = "A123456789"
B = "A000000042"


class FakeClient:
    """Stands in for SourceClient: serves records from a dict, counts calls, can be made to fail."""

    def __init__(self, source: Source, records: dict[str, dict[str, Any]]) -> None:
        self.source = source
        self.records = records
        self.calls: list[list[str]] = []
        self.down = False

    async def fetch_batch(self, a_numbers: list[str], deadline: float,
                          cache_result: str = "MISS") -> dict[str, dict[str, Any] | None]:
        self.calls.append(list(a_numbers))
        if self.down:
            raise SourceError(self.source, SOURCE_UNAVAILABLE, "down")
        return {a: copy.deepcopy(self.records.get(a)) for a in a_numbers}


def _eoir(outcome: str | None, order: bool = False, updated: str = "2026-11-05T15:00:00Z") -> dict[str, Any]:
    return {"a_number": A, "updated_at": updated, "in_absentia_order":
            {"ordered_on": "2026-11-05", "judge": "J"} if order else None,
            "hearings": [{"id": f"{A}-H1", "starts_at": "2026-11-05T14:00:00Z", "court_name": "Houston Court",
                          "outcome": outcome}]}


def _setup(records: dict[Source, dict[str, dict[str, Any]]]) -> tuple[ChangeProcessor, dict, MemoryPubSub]:
    settings = Settings()
    cache = MemoryCache(1000, lambda key: 3600.0)
    clients = {s: FakeClient(s, records.get(s, {})) for s in Source}
    fetchers = {s: SourceFetcher(clients[s], cache, settings) for s in Source}  # type: ignore[arg-type]
    ps = MemoryPubSub()
    return ChangeProcessor(settings, fetchers, ps), clients, ps


def test_parse_changes_skips_malformed_entries() -> None:
    changes, bad = parse_changes([
        {"seq": 1, "a_number": A, "updated_at": "2026-11-01T00:00:00Z", "fields": ["status"]},
        {"seq": "2", "a_number": A}, {"seq": 3, "a_number": "12345"}, "junk",
        {"seq": 4, "a_number": B, "updated_at": None, "fields": None},
    ])
    assert [c.seq for c in changes] == [1, 4] and bad == 3
    assert changes[1].fields == ()


def test_change_invalidates_and_publishes_to_child_and_office() -> None:
    async def run() -> None:
        proc, clients, ps = _setup({Source.ICE: {A: {"a_number": A, "updated_at": "x", "field_office": "Houston"}}})
        orr = proc.fetchers[Source.ORR]
        orr.cache.set(orr.key(A), CacheEntry({"a_number": A, "updated_at": "old"}, time.time()))
        async with ps.subscribe([child_topic(A)]) as by_child, ps.subscribe([office_topic("houston")]) as by_office:
            n = await proc.handle(Source.ORR, [Change(7, A, "2026-11-02T00:00:00Z", ("release",))], "poll")
            assert n == 1
            assert orr.cache.get(orr.key(A)) is None  # invalidated, not refilled
            e1: ChangeEvent = await asyncio.wait_for(by_child.get(), 1)
            e2: ChangeEvent = await asyncio.wait_for(by_office.get(), 1)
            assert e1 == e2 and e1.field_offices == ("Houston",) and e1.fields == ("release",)
            # the same change again (webhook after poll) is not published twice
            assert await proc.handle(Source.ORR, [Change(7, A, "2026-11-02T00:00:00Z", ("release",))],
                                     "webhook") == 0
            assert by_child.queue.empty() and by_office.queue.empty()
        assert clients[Source.ORR].calls == []

    asyncio.run(run())


def test_a_change_is_known_by_its_entry_not_by_a_seq_high_water_mark() -> None:
    """One wrong seq, or a source's feed numbered anew, hides no later change; each transport's repeat counts."""

    async def run() -> None:
        proc, _, ps = _setup({})
        orr = proc.fetchers[Source.ORR]
        async with ps.subscribe([child_topic(A)]) as sub:
            # a webhook with a far-ahead seq, then the feed's own (smaller) seqs: all handled
            assert await proc.handle(Source.ORR, [Change(1_000_000, B, None, ("status",))], "webhook") == 1
            orr.cache.set(orr.key(A), CacheEntry({"a_number": A, "updated_at": "old"}, time.time()))
            assert await proc.handle(Source.ORR, [Change(2, A, "t2", ("status",))], "poll") == 1
            assert orr.cache.get(orr.key(A)) is None
            assert (await asyncio.wait_for(sub.get(), 1)).seq == 2
            # a lower seq than any seen, for another change (a restarted source): handled
            assert await proc.handle(Source.ORR, [Change(1, A, "t3", ("release",))], "poll") == 1
            assert (await asyncio.wait_for(sub.get(), 1)).fields == ("release",)
            # the same entry brought by the other transport: once; by the same transport again: again
            assert await proc.handle(Source.ORR, [Change(1, A, "t3", ("release",))], "webhook") == 0
            assert await proc.handle(Source.ORR, [Change(1, A, "t3", ("release",))], "poll") == 1
            assert (await asyncio.wait_for(sub.get(), 1)).seq == 1
            # after a restart the renumbered feed may repeat an entry the webhook brought: handled
            proc.source_restarted(Source.ORR)
            assert await proc.handle(Source.ORR, [Change(1, A, "t3", ("release",))], "poll") == 1
            assert (await asyncio.wait_for(sub.get(), 1)).seq == 1
            assert sub.queue.empty()
        assert proc.processed == 5

    asyncio.run(run())


def test_recent_remembers_the_latest_keys_only() -> None:
    seen: Recent[int] = Recent(3)
    assert [seen.first(k) for k in (1, 2, 1, 3, 4)] == [True, True, False, True, True]
    assert 1 not in seen and 2 in seen and 3 in seen and 4 in seen  # seeing 1 again did not renew it
    seen.add(2)  # adding does: 3 goes first now
    seen.add(5)
    assert 3 not in seen and 2 in seen and 4 in seen and 5 in seen
    seen.clear()
    assert seen.first(4) and 5 not in seen


def test_office_move_reaches_old_and_new_office() -> None:
    async def run() -> None:
        proc, _, ps = _setup({Source.ICE: {A: {"a_number": A, "updated_at": "y", "field_office": "Dallas"}}})
        ice = proc.fetchers[Source.ICE]
        old = {"a_number": A, "updated_at": "x", "field_office": "Houston"}
        ice.cache.set(ice.key(A), CacheEntry(old, time.time()))
        async with ps.subscribe([office_topic("Houston"), office_topic("Dallas")]) as sub:
            await proc.handle(Source.ICE, [Change(1, A, "y", ("field_office",))], "poll")
            first: ChangeEvent = await asyncio.wait_for(sub.get(), 1)
            assert first.field_offices == ("Houston", "Dallas")

    asyncio.run(run())


def test_missed_hearing_alert_once_with_fresh_evidence() -> None:
    async def run() -> None:
        records = {Source.EOIR: {A: _eoir("failed_to_appear", order=True)},
                   Source.ICE: {A: {"a_number": A, "updated_at": "x", "field_office": "Houston"}}}
        proc, clients, ps = _setup(records)
        eoir = proc.fetchers[Source.EOIR]
        eoir.cache.set(eoir.key(A), CacheEntry(_eoir(None, updated="2026-11-01T00:00:00Z"), time.time()))
        async with ps.subscribe([child_alert_topic(A), ALL_ALERTS]) as sub:
            await proc.handle(Source.EOIR, [Change(3, A, "2026-11-05T15:00:00Z", ("hearings",))], "poll")
            got: list[AlertEvent] = [await asyncio.wait_for(sub.get(), 1) for _ in range(4)]
            kinds = sorted({(e.kind, e.field_office) for e in got})
            assert kinds == [(IN_ABSENTIA_ORDER, "Houston"), (MISSED_HEARING, "Houston")]
            assert clients[Source.EOIR].calls == [[A]]  # re-fetched once, max age 0
            assert got[0].evidence.cache_status == "MISS" and got[0].evidence.record["hearings"][0]["outcome"] == \
                "failed_to_appear"
            # a later, unrelated change to the same record raises no second alert
            await proc.handle(Source.EOIR, [Change(4, A, "2026-11-06T00:00:00Z", ("hearings",))], "poll")
            await asyncio.sleep(0.05)
            assert sub.queue.empty()

    asyncio.run(run())


def test_alert_without_earlier_copy_uses_recency_and_retries_after_outage() -> None:
    async def run() -> None:
        proc, clients, ps = _setup({Source.EOIR: {A: _eoir("failed_to_appear")}})
        clients[Source.EOIR].down = True
        async with ps.subscribe([ALL_ALERTS]) as sub:
            await proc.handle(Source.EOIR, [Change(1, A, None, ("hearings",))], "poll")
            assert sub.queue.empty() and A in proc._pending_alert_checks
            clients[Source.EOIR].down = False
            assert await proc.check_alerts() == 1
            alert: AlertEvent = await asyncio.wait_for(sub.get(), 1)
            assert alert.kind == MISSED_HEARING and alert.hearing_id == f"{A}-H1" and alert.field_office is None
        # an old missed hearing seen in an unrelated change (no earlier copy) is not news
        proc2, _, ps2 = _setup({Source.EOIR: {A: _eoir("failed_to_appear", updated="2027-03-01T00:00:00Z")}})
        async with ps2.subscribe([ALL_ALERTS]) as sub2:
            await proc2.handle(Source.EOIR, [Change(1, A, None, ("hearings",))], "poll")
            assert sub2.queue.empty()

    asyncio.run(run())


def test_follower_starts_at_the_end_and_survives_outages() -> None:
    async def run() -> None:
        state = {"fail": 0, "items": [{"seq": i, "a_number": A, "updated_at": "t", "fields": ["status"]}
                                      for i in range(1, 6)], "requests": []}

        async def changes(request: web.Request) -> web.Response:
            state["requests"].append(dict(request.query))
            if state["fail"] > 0:
                state["fail"] -= 1
                return web.Response(status=503)
            since = request.query["since"]
            items = state["items"]
            if state.get("expire") and since != "latest":
                state["expire"] = False
                return web.Response(status=410)
            if since == "latest":
                state["latest"] = state.get("latest", 0) + 1
                return web.json_response({"changes": [], "next_cursor": str(items[-1]["seq"])})
            out = [c for c in items if c["seq"] > int(since)][: int(request.query["limit"])]
            return web.json_response({"changes": out, "next_cursor": str(out[-1]["seq"]) if out else since})

        app = web.Application()
        app.router.add_get("/v1/changes", changes)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        settings = Settings(orr_url=url, ice_url=url + "/nothing", eoir_url="http://127.0.0.1:9",
                            change_feed_poll_seconds=0.02)
        cache = MemoryCache(100, lambda key: 60.0)
        fetchers = {s: SourceFetcher(FakeClient(s, {}), cache, settings) for s in Source}  # type: ignore[arg-type]
        ps = MemoryPubSub()
        proc = ChangeProcessor(settings, fetchers, ps)
        follower = ChangeFollower(settings, proc)
        async with ps.subscribe([child_topic(A)]) as sub:
            await follower.start()
            for _ in range(100):
                if follower.cursors.get(Source.ORR):
                    break
                await asyncio.sleep(0.01)
            assert follower.cursors[Source.ORR] == "5"  # history is not replayed
            state["fail"] = 3  # an outage: 503s, then the new change must still arrive
            state["items"].append({"seq": 6, "a_number": A, "updated_at": "t2", "fields": ["release"]})
            event: ChangeEvent = await asyncio.wait_for(sub.get(), 10)
            assert event.seq == 6 and event.via == "poll"
            assert follower.failures.get(Source.ICE, 0) >= 1  # 404 feed: logged and retried, no crash
            state["expire"] = True  # 410: the feed dropped changes past our cursor; follow from its end again
            for _ in range(200):
                if state["latest"] == 2 and follower.cursors.get(Source.ORR) == "6":
                    break
                await asyncio.sleep(0.01)
            state["items"].append({"seq": 7, "a_number": A, "updated_at": "t3", "fields": ["status"]})
            assert (await asyncio.wait_for(sub.get(), 10)).seq == 7
            await follower.stop()
        assert all(t.done() for t in follower._tasks) and follower._session is None
        await runner.cleanup()

    asyncio.run(run())


def test_invalidation_during_a_fetch_in_flight() -> None:
    """A fetch that began before the change neither fills the cache nor serves readers who come after."""

    async def run() -> None:
        gate = asyncio.Event()

        class SlowClient(FakeClient):
            async def fetch_batch(self, a_numbers: list[str], deadline: float,
                                  cache_result: str = "MISS") -> dict[str, dict[str, Any] | None]:
                snapshot = {a: copy.deepcopy(self.records.get(a)) for a in a_numbers}
                self.calls.append(list(a_numbers))
                if len(self.calls) == 1:
                    await gate.wait()
                return snapshot

        settings = Settings()
        client = SlowClient(Source.ORR, {A: {"a_number": A, "updated_at": "old"}})
        fetcher = SourceFetcher(client, MemoryCache(10, lambda key: 60.0), settings)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        early = asyncio.create_task(fetcher.load_many([A], None, deadline))
        await asyncio.sleep(0.01)
        client.records[A] = {"a_number": A, "updated_at": "new"}
        fetcher.invalidate(A)
        late = await fetcher.load_many([A], None, deadline)  # does not join the old call
        gate.set()
        assert (await early)[0].record["updated_at"] == "old"  # type: ignore[union-attr]
        assert late[0].record["updated_at"] == "new"  # type: ignore[union-attr]
        assert fetcher.cache.get(fetcher.key(A)).record["updated_at"] == "new"  # type: ignore[union-attr]

    asyncio.run(run())


def test_a_batch_call_is_one_future_shared_by_its_a_numbers_and_by_joiners() -> None:
    """The A-numbers of one batch call wait on its one future; a later start joins the keys in flight and
    calls only for the rest; each A-number gets its own record, or the call's error when it fails."""

    async def run() -> None:
        numbers = [f"A{n:09d}" for n in range(1, 101)]
        client = FakeClient(Source.ORR, {a: {"a_number": a, "updated_at": "t"} for a in numbers[:90]})
        fetcher = SourceFetcher(client, MemoryCache(1000, lambda key: 60.0), Settings())  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        first = fetcher.start(numbers[:60], None, deadline)
        second = fetcher.start(numbers[10:100], None, deadline)  # 50 in flight, 40 new
        assert len({c.batch for c in first.values()}) == 1
        assert len({c.batch for c in second.values()}) == 2
        assert fetcher.stats.coalesced == 50 and fetcher.stats.batches == 2
        answers = await fetcher.wait(second, deadline)
        assert client.calls == [numbers[:60], numbers[60:100]]
        assert [answers[a].record["a_number"] for a in numbers[10:90]] == numbers[10:90]  # type: ignore[union-attr]
        assert all(answers[a].record is None for a in numbers[90:])  # type: ignore[union-attr]
        assert not fetcher._inflight  # noqa: SLF001 - nothing left registered as in flight

        client.down = True
        failed = fetcher.start([f"A{n:09d}" for n in range(200, 205)], None, deadline)
        outcomes = await fetcher.wait(failed, deadline)
        assert len(client.calls) == 3
        assert {type(o) for o in outcomes.values()} == {SourceError}
        assert {o.code for o in outcomes.values()} == {SOURCE_UNAVAILABLE}  # type: ignore[union-attr]

    asyncio.run(run())
