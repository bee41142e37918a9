"""Walks of every child shared by the requests that want them at the same time, and capped in number.

Over real HTTP against mocks of their own (1,200 children: three ICE listing pages per walk), with ICE's
listing slowed so that requests sent together all arrive while the first walk runs. `SharedRuns`, the
gateway's part that does the sharing, is also driven directly for what HTTP cannot stage exactly (a caller
whose deadline passes while every slot is taken).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from resolvers.scan import in_turns
from sync.shared_runs import NoSlot, SharedRuns
from testing.gateway import GatewayProcess, http, mint, without
from testing.mockproc import MockProcess

CHILDREN = 1200
PAGES = 3  # ICE lists 500 children a page
SUMMARY = ("query($m: Int) { oversightSummary(maxAgeSeconds: $m) { asOf childrenScanned totals { children } "
           "byFieldOffice { fieldOffice children backlog { total } openAlerts { kind count } } } }")
SLOW_LISTING = {"latency_ms": 700}


@pytest.fixture(scope="module")
def mocks() -> Iterator[MockProcess]:
    with MockProcess(seed=11, children=CHILDREN) as m:
        yield m


def start_gateway(mocks: MockProcess, **env: str) -> GatewayProcess:
    return GatewayProcess({"UCGW_ORR_URL": mocks.orr, "UCGW_ICE_URL": mocks.ice, "UCGW_EOIR_URL": mocks.eoir,
                           "UCGW_CHANGE_FEED_POLL_SECONDS": "0", **env})


def listings(mocks: MockProcess) -> int:
    return int(mocks.stats("ice")["by_route"].get("GET /v1/subjects", 0))


def scans(gw: GatewayProcess) -> dict[str, int]:
    status, _, body = http("GET", f"{gw.admin_url}/readyz")
    assert status == 200
    return json.loads(body)["scans"]


def together(gw: GatewayProcess, variables: list[dict[str, Any]],
             tokens: list[str | None] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """The summaries of `variables`, sent at once (one thread each, with `tokens[i]` when given)."""
    with ThreadPoolExecutor(len(variables)) as pool:
        return list(pool.map(lambda v, t: gw.query(SUMMARY, v, token=t, timeout=60), variables,
                             tokens or [None] * len(variables)))


def test_requests_at_the_same_time_share_one_walk(mocks: MockProcess) -> None:
    gw = start_gateway(mocks)
    try:
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        before = listings(mocks)
        answers = together(gw, [{"m": None}] * 6)
        assert [status for status, _ in answers] == [200] * 6
        assert [b.get("errors") for _, b in answers] == [None] * 6
        assert {b["data"]["oversightSummary"]["childrenScanned"] for _, b in answers} == {CHILDREN}
        # one answer: the counts were computed once, as of when the shared walk had read every record
        assert len({json.dumps(b, sort_keys=True) for _, b in answers}) == 1
        assert listings(mocks) - before == PAGES  # one walk, not six
        assert scans(gw) == {"started": 1, "joined": 5, "waited": 0, "refused": 0, "running": 0, "limit": 2}

        # once it has ended, the next request walks again (a walk is shared only while it runs)
        status, body = gw.query(SUMMARY, {"m": None})
        assert status == 200 and body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
        assert listings(mocks) - before == 2 * PAGES
        assert scans(gw)["started"] == 2
    finally:
        mocks.reset()
        gw.stop()


def test_callers_of_different_scopes_share_a_walk_but_not_its_counts(mocks: MockProcess) -> None:
    gw = start_gateway(mocks)
    try:
        offices = {o["fieldOffice"]: o["children"]
                   for o in gw.query(SUMMARY, {"m": None})[1]["data"]["oversightSummary"]["byFieldOffice"]}
        office = max((o for o in offices if o), key=lambda o: offices[o])
        scoped = mint("caseworker", field_offices=[office])
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        answers = together(gw, [{"m": None}] * 4, [None, scoped, None, scoped])
        assert [(status, b.get("errors")) for status, b in answers] == [(200, None)] * 4
        whole, mine = answers[0][1]["data"]["oversightSummary"], answers[1][1]["data"]["oversightSummary"]
        assert answers[2][1] == answers[0][1] and answers[3][1] == answers[1][1]
        assert whole["childrenScanned"] == CHILDREN
        assert mine["childrenScanned"] == mine["totals"]["children"] == offices[office] < CHILDREN
        assert [o["fieldOffice"] for o in mine["byFieldOffice"]] == [office]
        assert mine["byFieldOffice"] == [o for o in whole["byFieldOffice"] if o["fieldOffice"] == office]
        assert scans(gw)["started"] == 2 and scans(gw)["joined"] == 3  # the first alone, then one for four
    finally:
        mocks.reset()
        gw.stop()


def test_a_fresh_walk_is_not_shared_and_waits_for_a_slot(mocks: MockProcess) -> None:
    """maxAgeSeconds: 0 joins no walk already running; with one slot the second walk waits for the first."""
    gw = start_gateway(mocks, UCGW_MAX_CONCURRENT_SCANS="1", UCGW_MIN_SCAN_MAX_AGE_SECONDS="0")
    try:
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        before = listings(mocks)
        answers = together(gw, [{"m": 0}, {"m": 0}])
        assert [(status, b.get("errors")) for status, b in answers] == [(200, None)] * 2
        assert [b["data"]["oversightSummary"]["childrenScanned"] for _, b in answers] == [CHILDREN] * 2
        assert listings(mocks) - before == 2 * PAGES
        assert scans(gw) == {"started": 2, "joined": 0, "waited": 1, "refused": 0, "running": 0, "limit": 1}
    finally:
        mocks.reset()
        gw.stop()


def test_a_whole_world_query_below_the_least_max_age_is_refused(mocks: MockProcess) -> None:
    """maxAgeSeconds below UCGW_MIN_SCAN_MAX_AGE_SECONDS (default 60) is MAX_AGE_TOO_LOW, with no backend call;
    at the bound the walk runs."""
    gw = start_gateway(mocks)
    try:
        before = listings(mocks)
        for m in (0, 59):
            status, body = gw.query(SUMMARY, {"m": m})
            assert status == 200 and body["data"] == {"oversightSummary": None}
            [error] = body["errors"]
            assert without(error["extensions"], "requestId") == {"code": "MAX_AGE_TOO_LOW", "min": 60}
            assert error["message"].startswith("maxAgeSeconds must be at least 60 for a query over every child")
        assert listings(mocks) == before and scans(gw)["started"] == 0
        status, body = gw.query(SUMMARY, {"m": 60})
        assert status == 200 and body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
    finally:
        gw.stop()


def test_one_caller_runs_one_walk_at_a_time_and_leaves_a_slot_to_others(mocks: MockProcess) -> None:
    """A caller asking for two fresh walks at once holds one slot, not both: with two slots, another
    caller's walk starts at once and ends while the first caller's second walk still runs."""
    gw = start_gateway(mocks, UCGW_MIN_SCAN_MAX_AGE_SECONDS="0")
    alice, bob = mint(subject="alice"), mint(subject="bob")
    try:
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        with ThreadPoolExecutor(3) as pool:
            mine = [pool.submit(gw.query, SUMMARY, {"m": 0}, alice, None, 60) for _ in range(2)]
            deadline = time.monotonic() + 30
            while (lambda s: s["started"] + s["waited"])(scans(gw)) < 2:  # both of alice's have arrived
                assert time.monotonic() < deadline, scans(gw)
                time.sleep(0.02)
            status, body = pool.submit(gw.query, SUMMARY, {"m": 0}, bob, None, 60).result()
            assert status == 200 and body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
            assert sum(f.done() for f in mine) <= 1  # bob did not wait for both of alice's walks
            facts = scans(gw)
            assert (facts["started"], facts["waited"], facts["refused"]) == (3, 1, 0), facts
            answers = [f.result() for f in mine]
        assert [(s, b["data"]["oversightSummary"]["childrenScanned"]) for s, b in answers] == [(200, CHILDREN)] * 2
    finally:
        mocks.reset()
        gw.stop()


def test_a_shared_walk_tells_every_request_of_stale_records(mocks: MockProcess) -> None:
    gw = start_gateway(mocks, UCGW_CACHE_TTL_SECONDS="1")
    try:
        status, body = gw.query(SUMMARY, {"m": None})  # every record cached
        assert status == 200 and "extensions" not in body, body.get("extensions")
        time.sleep(1.2)  # ... and expired
        mocks.admin_ok("eoir", "PUT", "/_admin/faults", {"down": True})
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        answers = together(gw, [{"m": None}] * 3)
        for status, body in answers:
            assert status == 200 and body.get("errors") is None, body.get("errors")
            assert body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
            assert [(w["source"], w["code"]) for w in body["extensions"]["warnings"]] == \
                [("EOIR", "SOURCE_UNAVAILABLE")]
        assert scans(gw)["joined"] == 2
    finally:
        mocks.reset()
        gw.stop()


def test_records_of_the_wrong_shape_are_left_out_of_shared_counts_with_a_warning_to_each(
        mocks: MockProcess) -> None:
    gw = start_gateway(mocks)
    try:
        mocks.admin_ok("orr", "PUT", "/_admin/faults", {"drift_rate": 1.0})  # every ORR status value renamed
        mocks.admin_ok("ice", "PUT", "/_admin/faults", SLOW_LISTING)
        answers = together(gw, [{"m": None}] * 2)
        for status, body in answers:
            assert status == 200 and body.get("errors") is None, body.get("errors")
            summary = body["data"]["oversightSummary"]
            assert summary["childrenScanned"] == CHILDREN
            assert sum(o["backlog"]["total"] for o in summary["byFieldOffice"]) == 0  # no child could be judged
            assert [(w["source"], w["code"]) for w in body["extensions"]["warnings"]] == \
                [("SCAN", "SOURCE_BAD_RESPONSE")]
        assert scans(gw)["joined"] == 1
    finally:
        mocks.reset()
        gw.stop()


@pytest.mark.parametrize(("ahead", "peak"), [(None, PAGES), ("1", 2), ("0", 1)])
def test_a_walk_joins_each_page_as_soon_as_it_is_listed(mocks: MockProcess, ahead: str | None, peak: int) -> None:
    """ICE's pages are listed one after another (its cursor allows no other order), but each page's ORR and
    EOIR reads start once the page is listed, not once the previous page is joined, up to
    `UCGW_SCAN_PAGES_AHEAD` pages ahead of the one being read: with ORR slow and the default (3), all three
    pages' ORR reads are out at once; with 1, two; with 0, one at a time. Always one listing per page and
    one batch per source per page."""
    gw = start_gateway(mocks, **({"UCGW_SCAN_PAGES_AHEAD": ahead} if ahead is not None else {}))
    try:
        mocks.reset()
        mocks.admin_ok("orr", "PUT", "/_admin/faults", {"latency_ms": 1500})
        status, body = gw.query(SUMMARY, {"m": None}, timeout=60)
        assert status == 200 and body.get("errors") is None, body.get("errors")
        assert body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
        orr, eoir = mocks.stats("orr"), mocks.stats("eoir")
        assert orr["batch_sizes"] == eoir["batch_sizes"] == [500, 500, 200]
        assert listings(mocks) == PAGES
        assert orr["peak_in_flight"] == peak  # 1 before pages were joined ahead
        assert orr["in_flight"] == 0
    finally:
        mocks.reset()
        gw.stop()


@pytest.mark.parametrize("source", ["eoir", "ice"])
def test_a_walk_whose_source_is_down_fails_with_its_error_and_leaves_nothing_behind(
        mocks: MockProcess, source: str) -> None:
    """A join (EOIR) or a listing (ICE) that fails ends the walk with the source's error; the pages read
    ahead are dropped without an unseen failure in the log, and the next walk, once the source is back,
    reads every child."""
    gw = start_gateway(mocks, UCGW_BREAKER_RESET_SECONDS="0.5")
    log = ""
    try:
        mocks.admin_ok(source, "PUT", "/_admin/faults", {"down": True})
        status, body = gw.query(SUMMARY, {"m": None}, timeout=60)
        assert status == 200 and body["data"] == {"oversightSummary": None}
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == \
            [(["oversightSummary"], "SOURCE_UNAVAILABLE")]
        assert scans(gw)["running"] == 0
        mocks.reset()
        time.sleep(0.6)  # the source's breaker half-opens
        status, body = gw.query(SUMMARY, {"m": None}, timeout=60)
        assert status == 200 and body.get("errors") is None, body.get("errors")
        assert body["data"]["oversightSummary"]["childrenScanned"] == CHILDREN
    finally:
        mocks.reset()
        log = gw.stop()
    assert "never retrieved" not in log and "Traceback" not in log


def test_max_concurrent_scans_must_be_at_least_one(mocks: MockProcess) -> None:
    with pytest.raises(RuntimeError, match="max_concurrent_scans' must be at least 1"):
        start_gateway(mocks, UCGW_MAX_CONCURRENT_SCANS="0")


@pytest.mark.parametrize(("value", "message"), [("17", "must be at most 16"), ("-1", "must not be negative"),
                                                ("two", "scan_pages_ahead")])
def test_scan_pages_ahead_out_of_range_is_refused_at_start(mocks: MockProcess, value: str, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        start_gateway(mocks, UCGW_SCAN_PAGES_AHEAD=value)


# ------------------------------------------------------------------------------------------- SharedRuns itself


def test_no_slot_before_the_deadline_is_refused_and_a_freed_slot_is_taken() -> None:
    async def scenario() -> None:
        runs: SharedRuns[str] = SharedRuns(1)
        release = asyncio.Event()
        starts: list[str] = []

        async def work(name: str) -> str:
            starts.append(name)
            await release.wait()
            return name

        first = asyncio.create_task(runs.run("a", lambda: work("a"), time.monotonic() + 5))
        await asyncio.sleep(0)
        joined = asyncio.create_task(runs.run("a", lambda: work("a2"), time.monotonic() + 5))
        with pytest.raises(NoSlot):
            await runs.run("b", lambda: work("b"), time.monotonic() + 0.05)
        waiting = asyncio.create_task(runs.run("c", lambda: work("c"), time.monotonic() + 5))
        await asyncio.sleep(0.05)
        assert starts == ["a"]
        release.set()
        assert await first == "a" and await joined == "a"
        assert await waiting == "c"
        assert starts == ["a", "c"]
        assert runs.facts() == {"started": 2, "joined": 1, "waited": 2, "refused": 1, "running": 0, "limit": 1}

    asyncio.run(scenario())


def test_a_failed_run_fails_every_caller_and_frees_its_slot() -> None:
    async def scenario() -> None:
        runs: SharedRuns[int] = SharedRuns(1)
        gate = asyncio.Event()

        async def broken() -> int:
            await gate.wait()
            raise ValueError("listing failed")

        callers = [asyncio.create_task(runs.run("k", broken, time.monotonic() + 5)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*callers, return_exceptions=True)
        assert [str(o) for o in outcomes] == ["listing failed"] * 3

        async def fine() -> int:
            return 7

        assert await runs.run("k", fine, time.monotonic() + 1) == 7
        assert runs.facts()["started"] == 2 and runs.facts()["running"] == 0

    asyncio.run(scenario())


def test_a_caller_whose_deadline_passes_leaves_the_run_going_for_the_others() -> None:
    async def scenario() -> None:
        runs: SharedRuns[str] = SharedRuns(2)
        release = asyncio.Event()

        async def work() -> str:
            await release.wait()
            return "done"

        patient = asyncio.create_task(runs.run("k", work, time.monotonic() + 5))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await runs.run("k", work, time.monotonic() + 0.05)
        release.set()
        assert await patient == "done"
        assert runs.facts()["started"] == 1 and runs.facts()["joined"] == 1

    asyncio.run(scenario())


def test_work_over_a_walks_rows_hands_the_loop_to_others_between_turns() -> None:
    async def scenario() -> None:
        ticks = 0

        async def other_request() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_request())
        await asyncio.sleep(0)
        short = [(row, ticks) async for row in in_turns(range(4), turn_seconds=0.0)]
        long = [(row, ticks) async for row in in_turns(range(4), turn_seconds=3600.0)]
        other.cancel()
        assert [r for r, _ in short] == [r for r, _ in long] == [0, 1, 2, 3]
        seen = [t for _, t in short]
        assert all(b == a + 1 for a, b in zip(seen, seen[1:], strict=False))  # one turn of the other each row
        assert len({t for _, t in long}) == 1  # within one turn: the others wait

    asyncio.run(scenario())
