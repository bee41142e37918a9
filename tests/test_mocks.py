"""The mock agency services over real HTTP on loopback: data, consistency, faults, stats, clock, feeds, inputs."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import jsonschema_rs
import pytest

from mocks.openapi import build
from mocks.runner import check_arguments, running_mocks
from mocks.schemas import RECORD_SCHEMAS, validate
from mocks.service import MAX_BATCH_SIZES, Stats
from mocks.util import DEFAULT_START, LAST_TS, http_date, iso, parse_iso
from mocks.world import CATEGORY_ORDER, EARLIEST_START, LATEST_START, World, classify
from testing.mockproc import REPO, MockProcess, Resp, request

COLL = {"orr": "children", "ice": "subjects", "eoir": "cases"}
SOURCES = ("orr", "ice", "eoir")
START = parse_iso(DEFAULT_START)


def listing(m: MockProcess, source: str, limit: int = 500, **filters: str) -> list[dict[str, Any]]:
    """Every record of one service via the paginated listing."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = "&".join([f"limit={limit}", *(f"{k}={v}" for k, v in filters.items()),
                      *([f"cursor={cursor}"] if cursor else [])])
        r = m.request(source, "GET", f"/v1/{COLL[source]}?{q}")
        assert r.status == 200, r.body
        page = r.json()
        out += page["records"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def records(m: MockProcess) -> dict[str, dict[str, dict[str, Any]]]:
    """{source: {a_number: record}} for the whole world."""
    return {s: {r["a_number"]: r for r in listing(m, s)} for s in SOURCES}


def get(m: MockProcess, source: str, a: str, **headers: str) -> Resp:
    """GET one record."""
    return m.request(source, "GET", f"/v1/{COLL[source]}/{a}", headers=headers)


@pytest.fixture(scope="module")
def pristine() -> Iterator[MockProcess]:
    """A seed-7, 300-child world that no test in this module changes."""
    with MockProcess(seed=7, children=300) as m:
        yield m


@pytest.fixture(scope="module")
def world(pristine: MockProcess) -> dict[str, dict[str, dict[str, Any]]]:
    """All records of the pristine world."""
    return records(pristine)


@pytest.fixture
def mocks(mock_services: MockProcess) -> Iterator[MockProcess]:
    """The session's shared mocks with default faults and zeroed stats before and after the test."""
    mock_services.reset()
    yield mock_services
    mock_services.reset()


HOOK_SECRET = "secret-of-the-mocks-webhook-test-0123456789"


class Hook:
    """A tiny webhook receiver on a free loopback port; it keeps only posts signed with HOOK_SECRET
    (checked here by its own HMAC, not the mocks' helper) and answers others 401."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers.get("X-UCGW-Timestamp", "")
                mac = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-UCGW-Signature", ""), f"sha256={mac}")
                if signed and abs(time.time() - int(stamp)) <= 300:
                    hook.bodies.append(json.loads(body))
                self.send_response(204 if signed else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def changes(self, source: str) -> list[dict[str, Any]]:
        """Every change received for one source, in arrival order."""
        return [c for b in self.bodies if b["source"] == source for c in b["changes"]]

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clocked() -> Iterator[tuple[MockProcess, Hook]]:
    """A fresh 300-child world whose clock the test may move, posting changes to a webhook receiver."""
    hook = Hook()
    with MockProcess(seed=7, children=300, extra_args=["--webhook-url", hook.url],
                     env={"UCGW_WEBHOOK_SECRET": HOOK_SECRET}) as m:
        yield m, hook
    hook.close()


# ----------------------------------------------------------------------------------------- process & CLI


def test_cli_prints_urls_then_ready_and_exits_cleanly_on_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        m = MockProcess(seed=3, children=50).start()
        try:
            assert sorted(m.urls) == ["eoir", "ice", "orr"]
            assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+", u) for u in m.urls.values())
            assert len(set(m.urls.values())) == 3
            for s in SOURCES:
                r = m.request(s, "GET", "/healthz")
                assert (r.status, r.json()) == (200, {"status": "ok", "service": s, "now": DEFAULT_START})
        finally:
            code = m.stop(sig)
        assert code == 0
        assert "Traceback" not in m.stderr()
        m.__exit__()


def test_cli_rejects_bad_flags() -> None:
    for args in (["--children", "0"], ["--error-rate", "2"], ["--start", "yesterday"], ["--orr-port", "70000"],
                 ["--keep-alive-seconds", "0"], ["--keep-alive-seconds", "nan"], ["--latency-ms", "nan"],
                 ["--clock-speed", "inf"]):
        p = subprocess.run([sys.executable, "-m", "mocks", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("ucgw mocks: ")


START_RANGE = ("--start must be in [1019-01-02T12:00:00Z, 9982-12-29T17:59:59Z] (the world spreads dates up to "
               "19 years before and 17 years after it, within the years 1000-9999)")
CHILDREN_RANGE = "--children must be in [1, 208333333] (the A-number ranges hold no more)"


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "9999-12-31T23:59:59Z"], START_RANGE),
    (["--start", "0001-01-01T00:00:00Z"], START_RANGE),
    (["--start", "9982-12-29T18:00:00Z"], START_RANGE),  # one second after the latest start
    (["--start", "1019-01-02T11:59:59Z"], START_RANGE),  # one second before the earliest
    (["--children", "250000000"], CHILDREN_RANGE),
    (["--children", "208333334"], CHILDREN_RANGE),
    (["--clock-speed", "1e300"], "--clock-speed must be a number in [0, 10000000]"),
    (["--latency-ms", "1e12"], "--latency-ms must be a number of milliseconds in [0, 600000]"),
    (["--latency-ms", "600001"], "--latency-ms must be a number of milliseconds in [0, 600000]"),
    (["--error-rate", "1.5"], "--error-rate must be a number in [0, 1]"),
])
def test_cli_refuses_what_the_world_or_the_admin_api_cannot_take(args: list[str], message: str) -> None:
    p = subprocess.run([sys.executable, "-m", "mocks", "--orr-port", "0", "--ice-port", "0", "--eoir-port", "0",
                        *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stderr, p.stdout) == (2, f"ucgw mocks: {message}\n", "")


def test_worlds_generate_at_the_start_bounds_and_the_limits_are_accepted() -> None:
    assert (iso(EARLIEST_START), iso(LATEST_START)) == ("1019-01-02T12:00:00Z", "9982-12-29T17:59:59Z")
    for start in (EARLIEST_START, LATEST_START):
        for seed in (1, 2):
            assert len(World.generate(seed, 3000, start).stores["ice"]) == 3000
    with pytest.raises(ValueError, match=re.escape(START_RANGE)):
        World.generate(7, 10, LATEST_START + 1)
    edge = argparse.Namespace(start=iso(LATEST_START), clock_speed=1e7, latency_ms=600_000.0, error_rate=1.0,
                              children=208_333_333)
    assert check_arguments(edge) is None


def test_running_mocks_in_process_with_auto_clock() -> None:
    async def scenario() -> tuple[dict[str, str], list[int], str]:
        async with running_mocks(ports={"orr": 0, "ice": 0, "eoir": 0}, children=40, clock_speed=86400) as urls:
            async with aiohttp.ClientSession() as session:
                statuses = []
                for s in SOURCES:
                    async with session.get(f"{urls[s]}/healthz") as resp:
                        statuses.append(resp.status)
                # wait (at most 10 s) for the running clock to pass half a simulated day, as read from EOIR
                loop = asyncio.get_running_loop()
                give_up = loop.time() + 10
                while True:
                    async with session.get(f"{urls['eoir']}/_admin/clock") as resp:
                        now = (await resp.json())["now"]
                    if parse_iso(now) - START >= 43_200 or loop.time() > give_up:
                        break
                    await asyncio.sleep(0.05)
        return urls, statuses, now

    urls, statuses, now = asyncio.run(scenario())
    assert sorted(urls) == ["eoir", "ice", "orr"] and statuses == [200, 200, 200]
    assert parse_iso(now) - START >= 43_200  # the clock ran on its own (no /_admin/clock move was made)


# ----------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_data(pristine: MockProcess) -> None:
    with MockProcess(seed=7, children=300) as twin, MockProcess(seed=8, children=300) as other:
        for s in SOURCES:
            path = f"/v1/{COLL[s]}?limit=500"
            assert twin.request(s, "GET", path).body == pristine.request(s, "GET", path).body
            assert other.request(s, "GET", path).body != pristine.request(s, "GET", path).body
        mine, same, different = (m.admin_ok("orr", "GET", "/_admin/world?digest=1")["digest"]
                                 for m in (pristine, twin, other))
        assert mine == same != different
        assert twin.sample(40) == pristine.sample(40)


def test_generation_is_deterministic_in_process_and_independent_of_workers() -> None:
    a, b = World.generate(7, 2500), World.generate(7, 2500, workers=2)
    assert a.digest() == b.digest()
    assert a.stores == b.stores and sorted(a.events) == sorted(b.events)
    assert World.generate(8, 2500).digest() != a.digest()
    assert World.generate(7, 2501).digest() != a.digest()
    # records are canonical JSON: sorted keys, compact separators
    raw = next(iter(a.stores["ice"].values()))
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ----------------------------------------------------------------------------------------- one consistent child


def test_every_record_matches_its_documented_schema(world: dict[str, dict[str, dict[str, Any]]]) -> None:
    for s in SOURCES:
        doc = build(s)
        name = {"orr": "Child", "ice": "Subject", "eoir": "Case"}[s]
        validator = jsonschema_rs.Draft202012Validator(doc["components"]["schemas"][name], validate_formats=True)
        for rec in world[s].values():
            assert validator.is_valid(rec), list(validator.iter_errors(rec))[:3]
            assert validate(rec, RECORD_SCHEMAS[s]) == []


def test_one_consistent_child_across_the_three_services(world: dict[str, dict[str, dict[str, Any]]],
                                                        pristine: MockProcess) -> None:
    orr, ice, eoir = world["orr"], world["ice"], world["eoir"]
    assert len(ice) == 300 and set(orr) <= set(ice) and set(eoir) <= set(ice)
    # only children still in DHS custody may lack an ORR record
    assert all(ice[a]["custody_status"] == "in_dhs_custody" for a in set(ice) - set(orr))
    # NTA filed <=> EOIR case, except the two documented fault shares (listed by the sample states)
    filed = {a for a, r in ice.items() if r["nta"]["status"] == "filed"}
    no_case, not_filed = filed - set(eoir), set(eoir) - filed
    assert sorted(no_case) == pristine.sample(1000, "nta_filed_no_case")
    assert sorted(not_filed) == pristine.sample(1000, "case_without_filed_nta")
    assert len(no_case) + len(not_filed) <= 0.1 * len(eoir)  # 1.5% + 3% expected; small worlds vary
    assert len(filed & set(eoir)) >= 0.9 * len(filed)
    assert all(ice[a]["nta"]["status"] == "served" for a in not_filed)  # ICE never recorded the filing
    for c in orr.values():
        # release <=> sponsor present; other discharges carry their type
        assert (c["status"] == "released") == (c["release"] is not None)
        if c["release"] is not None:
            assert c["release"]["sponsor"]["name"] and c["follow_up_call"] is not None
        assert (c["discharge"] is not None) == (c["status"] in ("aged_out", "repatriated",
                                                                "unauthorized_departure"))
        if c["discharge"] is not None:
            assert c["discharge"]["type"] == c["status"]
        eps = c["custody_episodes"]
        assert [e["admitted_at"] for e in eps] == sorted(e["admitted_at"] for e in eps)
        assert all(e["discharged_at"] is not None for e in eps[:-1])
        if eps:
            assert (eps[-1]["discharged_at"] is None) == (c["status"] == "in_care")
        assert (c["status"] == "referred") == (eps == [])
    for a, s in ice.items():
        assert (s["transferred_to_orr_at"] is None) == (s["custody_status"] == "in_dhs_custody")
        if s["transferred_to_orr_at"]:
            hours = (parse_iso(s["transferred_to_orr_at"]) - parse_iso(s["uc_determined_at"])) / 3600
            assert s["transfer_late"] == (hours > 72)
            assert orr[a]["custody_episodes"][0]["admitted_at"] == s["transferred_to_orr_at"]
        nta = s["nta"]
        steps = ["issued_on", "served_on", "filed_on"]
        done = {"not_issued": 0, "issued": 1, "served": 2, "filed": 3}[nta["status"]]
        assert [nta[k] is not None for k in steps] == [i < done for i in range(3)]
        assert (nta["service_method"] is not None) == (done >= 2)
        dates = [nta[k] for k in steps if nta[k]]
        assert dates == sorted(dates)
        assert s["field_office"] in {"Atlanta", "Baltimore", "Boston", "Buffalo", "Chicago", "Dallas", "Denver",
                                     "Detroit", "El Paso", "Harlingen", "Houston", "Los Angeles", "Miami",
                                     "New Orleans", "New York City", "Newark", "Philadelphia", "Phoenix",
                                     "Salt Lake City", "San Antonio", "San Diego", "San Francisco", "Seattle",
                                     "St. Paul", "Washington"}
    for a, case in eoir.items():
        hs = case["hearings"]
        assert hs and [h["starts_at"] for h in hs] == sorted(h["starts_at"] for h in hs)
        assert all((h["outcome"] is None) == (parse_iso(h["starts_at"]) > START) for h in hs)
        assert (case["case_status"] == "pending") == (case["decision"] is None)
        if case["in_absentia_order"] is not None:
            assert case["decision"]["type"] == "removal_in_absentia"
            assert hs[-1]["outcome"] == "failed_to_appear"
        if ice[a]["nta"]["served_on"]:
            assert parse_iso(hs[0]["starts_at"]) >= parse_iso(ice[a]["nta"]["served_on"]) + 10 * 86400


def test_sample_covers_every_state_deterministically(world: dict[str, dict[str, dict[str, Any]]],
                                                     pristine: MockProcess) -> None:
    info = pristine.admin_ok("orr", "GET", "/_admin/world")
    assert info["records"] == {s: len(world[s]) for s in SOURCES} and info["now"] == DEFAULT_START
    present = [k for k in CATEGORY_ORDER if info["states"][k] > 0]
    assert len(present) >= 28  # nearly every modelled state occurs even in 300 children
    sample = pristine.sample(len(present))
    assert len(sample) == len(set(sample)) == len(present) and sample == pristine.sample(len(present))

    def states(a: str) -> list[str]:
        return classify(*(world[s].get(a) for s in SOURCES), START)

    covered = {k for a in sample for k in states(a)}
    assert set(present) <= covered
    for k in present:
        members = pristine.sample(1000, k)
        assert len(members) == info["states"][k]
        assert all(k in states(a) for a in members)
    assert all(len(pristine.sample(n)) == n for n in (1, 60, 300))


def test_proportions_are_near_the_inspector_generals() -> None:
    cats = {k: len(v) for k, v in World.generate(7, 5000).categories().items()}
    released = cats["released"]
    cases = cats["nta_filed"] + cats["case_without_filed_nta"] - cats["nta_filed_no_case"]
    assert 0.55 <= cats["released_nta_unserved"] / released <= 0.75  # ~65% with no NTA served
    assert 0.04 <= cats["bad_release_address"] / released <= 0.10  # ~7% blank/undeliverable/missing unit
    assert cats["missed_hearing"] / cases >= 0.2 and cats["in_absentia"] / cases >= 0.1
    assert 0 < cats["nta_filed_no_case"] <= 0.03 * cases and 0 < cats["case_without_filed_nta"] <= 0.05 * cases
    for k in ("address_mismatch", "name_mismatch", "dob_mismatch", "court_address_only", "missing_fields",
              "in_care", "in_dhs_custody", "hearing_scheduled", "field_office_mismatch", "safety_concern"):
        assert 0 < cats[k] < 0.2 * 5000, k


# ----------------------------------------------------------------------------------------- reads, ETags, pages


def test_single_and_batch_reads_with_etags(mocks: MockProcess) -> None:
    a, b = mocks.sample(2)
    r = get(mocks, "ice", a)
    rec = r.json()
    assert r.status == 200 and rec["a_number"] == a
    assert re.fullmatch(r'"[0-9a-f]{24}"', r.headers["etag"])
    assert r.headers["last-modified"] == http_date(parse_iso(rec["updated_at"]))
    for inm in (r.headers["etag"], f'W/{r.headers["etag"]}', f'"nope", {r.headers["etag"]}', "*"):
        again = get(mocks, "ice", a, **{"If-None-Match": inm})
        assert (again.status, again.body, again.headers["etag"]) == (304, b"", r.headers["etag"])
    assert get(mocks, "ice", a, **{"If-None-Match": '"other"'}).status == 200
    missing = get(mocks, "ice", "A999999999")
    assert (missing.status, missing.json()["error"]["code"]) == (404, "NOT_FOUND")

    body = {"a_numbers": [b, "A999999999", a, b]}
    r1 = mocks.request("ice", "POST", "/v1/subjects/batch", body)
    r2 = mocks.request("ice", "POST", "/v1/subjects/batch", body)
    page = r1.json()
    assert [x["a_number"] for x in page["records"]] == [b, a] and page["missing"] == ["A999999999"]
    assert r1.headers["etag"] == r2.headers["etag"]
    newest = max(parse_iso(x["updated_at"]) for x in page["records"])
    assert r1.headers["last-modified"] == http_date(newest)
    assert page["records"][1] == rec


def test_listing_pages_are_stable_complete_and_filterable(world: dict[str, dict[str, dict[str, Any]]],
                                                          pristine: MockProcess) -> None:
    for s in SOURCES:
        paged = [r["a_number"] for r in listing(pristine, s, limit=37)]
        assert paged == sorted(world[s]) and len(paged) == len(set(paged))
    filed = listing(pristine, "ice", limit=50, nta_status="filed")
    assert [r["a_number"] for r in filed] == sorted(a for a, r in world["ice"].items()
                                                    if r["nta"]["status"] == "filed")
    houston = listing(pristine, "ice", field_office="Houston")
    assert houston and all(r["field_office"] == "Houston" for r in houston)
    assert len(houston) == sum(r["field_office"] == "Houston" for r in world["ice"].values())
    in_care = listing(pristine, "orr", status="in_care")
    assert [r["a_number"] for r in in_care] == sorted(a for a, r in world["orr"].items()
                                                      if r["status"] == "in_care")
    pending = listing(pristine, "eoir", limit=7, case_status="pending")
    assert len(pending) == sum(r["case_status"] == "pending" for r in world["eoir"].values())


# ----------------------------------------------------------------------------------------- faults


def test_latency_and_jitter_delay_data_requests_only(mocks: MockProcess) -> None:
    """Latency holds a data request while health, stats and another service answer (an order of events read from
    the mock's own in-flight counter, not a timing); jitter gives each request its own delay, so requests that
    arrive later overtake earlier ones (the fault dice are seeded by the reset, so the draws are the same each run)."""
    a = mocks.sample(1, "released")[0]
    status, faults = mocks.admin("orr", "PUT", "/_admin/faults", {"latency_ms": 3000})
    knobs = ("latency_ms", "jitter_ms", "error_rate", "timeout_rate", "down")
    assert status == 200 and {k: faults[k] for k in knobs} == {"latency_ms": 3000.0, "jitter_ms": 0.0,
                                                               "error_rate": 0.0, "timeout_rate": 0.0,
                                                               "down": False}
    with ThreadPoolExecutor(6) as pool:
        held = pool.submit(get, mocks, "orr", a)
        assert wait_for(lambda: mocks.stats("orr")["in_flight"] == 1), "the data request never arrived"
        # each of these is answered while ORR still holds its one data request
        assert mocks.request("orr", "GET", "/healthz").status == 200 and not held.done()
        assert mocks.stats("orr")["in_flight"] == 1 and not held.done()
        assert get(mocks, "ice", a).status == 200 and not held.done()  # faults are per service
        assert mocks.stats("orr")["in_flight"] == 1 and mocks.stats("ice")["in_flight"] == 0
        assert held.result().status == 200
        stats = mocks.stats("orr")
        assert (stats["total"], stats["in_flight"]) == (1, 0)  # health and stats are no data requests

        mocks.admin_ok("orr", "PUT", "/_admin/faults", {"latency_ms": 50, "jitter_ms": 3000})
        finished: list[int] = []
        asked = []
        for i in range(6):  # one at a time: each arrives after the one before it
            asked.append(pool.submit(get, mocks, "orr", a))
            asked[-1].add_done_callback(lambda _f, i=i: finished.append(i))
            assert wait_for(lambda i=i: mocks.stats("orr")["total"] == 2 + i)
        assert [f.result().status for f in asked] == [200] * 6
    # jitter really varies: some request finished before one that arrived two or more places ahead of it (equal
    # delays would keep the arrival order, give or take neighbours answered in the same instant)
    assert sorted(finished) == list(range(6)), finished
    assert any(finished.index(i) > finished.index(j) for i in range(6) for j in range(i + 2, 6)), finished


def test_error_rate_answers_that_share_with_json_5xx(mocks: MockProcess) -> None:
    a = mocks.sample(1, "released")[0]
    mocks.admin_ok("eoir", "PUT", "/_admin/faults", {"error_rate": 0.3})
    answers = [mocks.request("eoir", "GET", "/v1/changes?limit=1") for _ in range(200)]
    errors = [r for r in answers if r.status >= 500]
    assert 40 <= len(errors) <= 80, len(errors)  # 30% of 200, within +-10 points
    assert {r.status for r in errors} == {500, 503}
    assert all(r.json()["error"]["code"] in ("INTERNAL_ERROR", "UNAVAILABLE") for r in errors)
    assert all(r.status == 200 for r in answers if r not in errors)
    mocks.admin_ok("eoir", "PUT", "/_admin/faults", {"error_rate": 1})
    assert get(mocks, "eoir", a).status >= 500
    mocks.admin_ok("eoir", "PUT", "/_admin/faults", {"error_rate": 0})
    assert get(mocks, "eoir", a).status in (200, 404)


def test_timeout_rate_hangs_until_the_client_gives_up(mocks: MockProcess) -> None:
    a = mocks.sample(1, "released")[0]
    mocks.admin_ok("ice", "PUT", "/_admin/faults", {"timeout_rate": 1.0})
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(mocks.request, "ice", "GET", f"/v1/subjects/{a}", timeout=2)
        assert wait_for(lambda: mocks.stats("ice")["in_flight"] == 1)  # it arrived, and ICE holds it unanswered
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            asked.result()  # the client gave up
    # the hang ended when the client went away, not at the service's own cap (mocks.service.HANG_SECONDS, 300 s)
    assert wait_for(lambda: mocks.stats("ice")["in_flight"] == 0)
    assert mocks.request("ice", "GET", "/healthz").status == 200  # the service itself is fine
    mocks.admin_ok("ice", "PUT", "/_admin/faults", {"timeout_rate": 0})
    assert get(mocks, "ice", a).status == 200
    assert mocks.stats("ice")["by_route"] == {"GET /v1/subjects/{a_number}": 2}


def test_down_answers_503_on_every_data_route(mocks: MockProcess) -> None:
    a = mocks.sample(1, "released")[0]
    mocks.admin_ok("orr", "PUT", "/_admin/faults", {"down": True})
    for method, path, body in (("GET", f"/v1/children/{a}", None), ("GET", "/v1/children", None),
                               ("POST", "/v1/children/batch", {"a_numbers": [a]}), ("GET", "/v1/changes", None)):
        r = mocks.request("orr", method, path, body)
        assert (r.status, r.json()["error"]["code"]) == (503, "UNAVAILABLE")
    health = mocks.request("orr", "GET", "/healthz")
    assert (health.status, health.json()["status"]) == (503, "down")
    assert get(mocks, "ice", a).status == 200 and get(mocks, "eoir", "A999999999").status == 404
    assert mocks.stats("orr")["total"] == 4
    mocks.reset()
    assert get(mocks, "orr", a).status == 200
    assert mocks.admin("orr", "GET", "/_admin/faults")[1]["down"] is False


def test_bodies_nested_too_deep_are_a_400(mocks: MockProcess) -> None:
    a = mocks.sample(1)[0]
    before = get(mocks, "orr", a)
    deep = b"[" * 200_000 + b"]" * 200_000
    for method, path in (("POST", "/v1/children/batch"), ("PUT", "/_admin/faults"), ("PATCH", f"/_admin/records/{a}"),
                         ("PUT", f"/_admin/records/{a}")):
        r = request(method, mocks.orr + path, data=deep, headers={"Content-Type": "application/json"})
        assert (r.status, r.json()["error"]["code"]) == (400, "BAD_REQUEST"), (method, path)
    assert "Traceback" not in mocks.stderr()
    after = get(mocks, "orr", a)
    assert (after.status, after.body) == (before.status, before.body)  # nothing was applied


def vm_hwm_kb(pid: int) -> int:
    """Peak resident set size of a process, from /proc/<pid>/status (kB)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_oversized_bodies_are_refused_without_being_read() -> None:
    with MockProcess(seed=7, children=50) as m:
        assert m.proc is not None
        host, port = urllib.parse.urlsplit(m.orr).hostname, urllib.parse.urlsplit(m.orr).port
        assert host is not None and port is not None
        before = vm_hwm_kb(m.proc.pid)
        # a declared length over 1 MB is answered before a byte of the body is sent
        for method, path in (("POST", "/v1/children/batch"), ("PUT", "/_admin/faults")):
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                             "Content-Length: 300000000\r\n\r\n".encode())
                resp = http.client.HTTPResponse(sock)
                resp.begin()
                assert (resp.status, json.loads(resp.read())) == (413, {"error": {
                    "code": "PAYLOAD_TOO_LARGE", "message": "body larger than 1048576 bytes"}}), path
        # 300 MB chunked, no length declared: refused, and the mock stops reading it into memory at 1 MB
        conn = http.client.HTTPConnection(host, port, timeout=60)
        chunk = b" " * (1 << 20)
        conn.request("POST", "/v1/children/batch", body=(chunk for _ in range(300)), encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
        conn.close()
        grown_mb = (vm_hwm_kb(m.proc.pid) - before) / 1024
        assert grown_mb < 100, f"peak RSS grew {grown_mb:.0f} MB for a 300 MB body"
        # a body of exactly 1 MB is still read (and here refused as not JSON)
        r = request("PUT", m.orr + "/_admin/faults", data=chunk, headers={"Content-Type": "application/json"})
        assert (r.status, r.json()["error"]["code"]) == (400, "BAD_REQUEST")
        assert m.admin_ok("orr", "GET", "/healthz")["status"] == "ok"
        assert "Traceback" not in m.stderr()


def test_fault_knobs_are_validated(mocks: MockProcess) -> None:
    for body in ({"latency_ms": -1}, {"error_rate": 1.5}, {"timeout_rate": "0.1"}, {"down": "yes"},
                 {"jitter_ms": True}, {"sparkle": 1}, [1], {"latency_ms": 10**9}):
        status, err = mocks.admin("ice", "PUT", "/_admin/faults", body)
        assert status == 400 and err["error"]["code"] == "BAD_REQUEST", body
    r = request("PUT", mocks.ice + "/_admin/faults", data=b"{oops", headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert mocks.admin("ice", "GET", "/_admin/faults")[1]["latency_ms"] == 0.0  # nothing was applied
    status, partial = mocks.admin("ice", "PUT", "/_admin/faults", {"jitter_ms": 5})
    assert status == 200 and partial["jitter_ms"] == 5.0 and partial["latency_ms"] == 0.0


# ----------------------------------------------------------------------------------------- stats


def test_stats_count_exactly_with_batch_sizes(mocks: MockProcess) -> None:
    a, b, c = mocks.sample(3)
    for x in (a, b, "A999999999", "nonsense"):
        get(mocks, "ice", x)
    five = [a, b, c, a, "A999999998"]
    assert mocks.request("ice", "POST", "/v1/subjects/batch", {"a_numbers": five}).status == 200
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert mocks.request("ice", "POST", "/v1/subjects/batch", {"a_numbers": [c, b]},
                         headers={"traceparent": traceparent}).status == 200
    assert mocks.request("ice", "POST", "/v1/subjects/batch", {"a_numbers": [a] * 501}).status == 413
    mocks.request("ice", "GET", "/v1/subjects?limit=3")
    mocks.request("ice", "GET", "/v1/changes")
    for path in ("/openapi.json", "/healthz", "/_admin/faults", "/_admin/sample?n=2", "/_admin/clock"):
        mocks.request("ice", "GET", path)
    stats = mocks.stats("ice")
    assert stats.pop("connections") >= 1  # one per request here, counted exactly below
    assert stats == {
        "total": 9,
        "by_route": {"GET /v1/changes": 1, "GET /v1/subjects": 1, "GET /v1/subjects/{a_number}": 4,
                     "POST /v1/subjects/batch": 3},
        "batch_sizes": [5, 2],
        "in_flight": 0, "peak_in_flight": 1,  # one request at a time
        "traceparent": {"POST /v1/subjects/batch": traceparent},  # the latest one a route got
    }
    assert mocks.stats("orr")["total"] == 0 and mocks.stats("eoir")["total"] == 0
    mocks.admin_ok("ice", "POST", "/_admin/reset")
    assert mocks.stats("ice") == {"total": 0, "by_route": {}, "batch_sizes": [], "connections": 0,
                                  "in_flight": 0, "peak_in_flight": 0, "traceparent": {}}


def test_stats_tell_how_many_data_requests_overlapped(mocks: MockProcess) -> None:
    """`peak_in_flight` is the most data requests answered at once (their latency included)."""
    a = mocks.sample(1)[0]
    mocks.admin_ok("ice", "POST", "/_admin/reset")
    mocks.admin_ok("ice", "PUT", "/_admin/faults", {"latency_ms": 400})
    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: get(mocks, "ice", a).status, range(4)))
        assert statuses == [200] * 4
        stats = mocks.stats("ice")
        assert (stats["total"], stats["in_flight"], stats["peak_in_flight"]) == (4, 0, 4)
    finally:
        mocks.admin_ok("ice", "POST", "/_admin/reset")


def test_stats_keep_only_the_latest_batch_sizes() -> None:
    stats = Stats()
    for size in range(1, MAX_BATCH_SIZES + 6):
        stats.batch_sizes.append(size)
    kept = stats.as_dict()["batch_sizes"]
    assert len(kept) == MAX_BATCH_SIZES and kept[0] == 6 and kept[-1] == MAX_BATCH_SIZES + 5


def test_stats_count_the_client_connections_of_data_requests(mocks: MockProcess) -> None:
    """`connections` counts the distinct connections data requests came on: two kept-alive connections
    carrying four requests are two; admin requests on a third are not counted."""
    a = mocks.sample(1)[0]
    mocks.admin_ok("ice", "POST", "/_admin/reset")
    address = urllib.parse.urlsplit(mocks.ice)
    first, second, admin = (http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
                            for _ in range(3))
    try:
        for conn, path in ((first, f"/v1/subjects/{a}"), (second, f"/v1/subjects/{a}"),
                           (first, "/v1/subjects?limit=2"), (second, f"/v1/subjects/{a}"),
                           (admin, "/_admin/faults"), (admin, "/_admin/sample?n=1")):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        for conn in (first, second, admin):
            conn.close()
    assert mocks.stats("ice") == {"total": 4, "by_route": {"GET /v1/subjects": 1, "GET /v1/subjects/{a_number}": 3},
                                  "batch_sizes": [], "connections": 2, "in_flight": 0, "peak_in_flight": 1,
                                  "traceparent": {}}


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/v1/children/A12345678", None, 400),
    ("GET", "/v1/children/a123456789", None, 400),
    ("GET", "/v1/children/123456789", None, 400),
    ("GET", "/v1/children/A1234567890", None, 400),
    ("GET", "/v1/children/012-345-678", None, 400),
    ("GET", "/v1/children/A12345678%D9%A4", None, 400),  # an Arabic-Indic 4: digits are ASCII only
    ("GET", "/v1/children/A999999999", None, 404),
    ("POST", "/v1/children/batch", {}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": []}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": "A123456789"}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": ["A123456789", "A12"]}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": ["A123456789", 5]}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": ["A12345678\u0664"]}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": ["A123456789"], "extra": 1}, 400),
    ("POST", "/v1/children/batch", {"a_numbers": ["A123456789"] * 501}, 413),
    ("POST", "/v1/children/batch", "not json", 400),
    ("GET", "/v1/children?limit=0", None, 400),
    ("GET", "/v1/children?limit=501", None, 400),
    ("GET", "/v1/children?limit=ten", None, 400),
    ("GET", "/v1/children?limit=%D9%A1%D9%A0", None, 400),  # "10" in Arabic-Indic digits
    ("GET", "/v1/children?cursor=zzz", None, 400),
    ("GET", "/v1/children?cursor=aWNlPkEwMTAwMDAwMDA", None, 400),  # an ICE cursor ("ice>A010000000")
    ("GET", "/v1/children?status=lost", None, 400),
    ("GET", "/v1/changes?since=garbage", None, 400),
    ("GET", "/v1/changes?since=b3JyOjk5OTk5", None, 400),  # "orr:99999", beyond the feed
    ("GET", "/v1/changes?limit=0", None, 400),
    ("GET", "/v1/elsewhere", None, 404),
    ("DELETE", "/v1/children/A123456789", None, 405),
    ("GET", "/_admin/sample?n=0", None, 400),
    ("GET", "/_admin/sample?state=happy", None, 400),
    ("POST", "/_admin/clock", {"advance_seconds": -5}, 400),
    ("POST", "/_admin/clock", {"advance_seconds": "soon"}, 400),
    ("POST", "/_admin/clock", {"rewind": 5}, 400),
    ("PUT", "/_admin/records/A12", {}, 400),
    ("PATCH", "/_admin/records/A999999999", {"status": "in_care"}, 404),
    ("PUT", "/_admin/records/A999999990", {"a_number": "A999999990"}, 400),
])
def test_bad_input_gets_its_4xx_with_a_json_error(mocks: MockProcess, method: str, path: str, body: Any,
                                                  status: int) -> None:
    if body == "not json":
        r = request(method, mocks.orr + path, data=b"{nope", headers={"Content-Type": "application/json"})
    else:
        r = mocks.request("orr", method, path, body)
    assert r.status == status, r.body
    err = r.json()["error"]
    assert err["code"] in ("BAD_REQUEST", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "METHOD_NOT_ALLOWED")
    assert isinstance(err["message"], str) and err["message"]


# ----------------------------------------------------------------------------------------- clock, feed, webhook


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll until predicate() is true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def feed(m: MockProcess, source: str, since: str | None) -> tuple[list[dict[str, Any]], str]:
    """All changes after a cursor (None: from the beginning), following next_cursor."""
    out: list[dict[str, Any]] = []
    while True:
        query = "limit=100" + (f"&since={since}" if since is not None else "")
        page = m.request(source, "GET", f"/v1/changes?{query}").json()
        out += page["changes"]
        if not page["changes"]:
            return out, page["next_cursor"]
        since = page["next_cursor"]


def test_clock_plays_hearings_bumps_updated_at_and_publishes_changes(clocked: tuple[MockProcess, Hook]) -> None:
    m, hook = clocked
    assert {m.admin_ok(s, "GET", "/_admin/clock")["now"] for s in SOURCES} == {DEFAULT_START}
    cursors = {}
    for s in SOURCES:
        page = m.request(s, "GET", "/v1/changes?since=latest").json()
        assert page["changes"] == []
        cursors[s] = page["next_cursor"]
    chosen = m.sample(5, "hearing_scheduled")
    assert len(chosen) == 5
    before = {a: get(m, "eoir", a).json() for a in chosen}
    due = {a: min((h for h in c["hearings"] if h["outcome"] is None), key=lambda h: h["starts_at"])
           for a, c in before.items()}
    until = max(parse_iso(h["starts_at"]) for h in due.values()) + 1
    moved = m.advance(until - START)
    assert moved["now"] == iso(until) and moved["events_applied"] >= 5
    assert {m.admin_ok(s, "GET", "/_admin/clock")["now"] for s in SOURCES} == {iso(until)}  # one shared clock

    changes = {s: feed(m, s, cursors[s])[0] for s in SOURCES}
    assert changes["eoir"]
    for s in SOURCES:
        seqs = [c["seq"] for c in changes[s]]
        assert seqs == list(range(seqs[0] if seqs else 1, (seqs[0] if seqs else 1) + len(seqs)))  # no gaps
        assert all(START < parse_iso(c["updated_at"]) <= until for c in changes[s])
    for a in chosen:
        after = get(m, "eoir", a).json()
        hearing = next(h for h in after["hearings"] if h["id"] == due[a]["id"])
        assert hearing["outcome"] in ("held", "adjourned", "failed_to_appear")
        assert parse_iso(before[a]["updated_at"]) < parse_iso(hearing["starts_at"]) <= parse_iso(after["updated_at"])
        mine = [c for c in changes["eoir"] if c["a_number"] == a]
        assert mine and "hearings" in mine[0]["fields"] and mine[0]["updated_at"] == hearing["starts_at"]
        assert mine[-1]["updated_at"] == after["updated_at"]
    # the webhook got exactly the same changes, per source, in order
    total = sum(len(v) for v in changes.values())
    assert wait_for(lambda: sum(len(hook.changes(s)) for s in SOURCES) >= total)
    assert {s: hook.changes(s) for s in SOURCES} == changes
    # and a poll from the last cursor is empty but keeps the cursor
    for s in SOURCES:
        _all, cursor = feed(m, s, cursors[s])
        page = m.request(s, "GET", f"/v1/changes?since={cursor}").json()
        assert page == {"changes": [], "next_cursor": cursor}


def test_clock_years_later_every_child_has_left_care(clocked: tuple[MockProcess, Hook]) -> None:
    m, _hook = clocked
    states = m.admin_ok("orr", "GET", "/_admin/world")["states"]
    assert states["in_care"] > 0 and states["in_dhs_custody"] > 0
    in_care = m.sample(1000, "in_care")
    before = {a: get(m, "orr", a).json() for a in in_care}
    m.advance(3 * 365 * 86400)
    states = m.admin_ok("orr", "GET", "/_admin/world")["states"]
    assert states["in_care"] == states["referred"] == states["in_dhs_custody"] == 0
    for a, old in before.items():
        new = get(m, "orr", a).json()
        assert new["status"] in ("released", "aged_out", "repatriated", "unauthorized_departure")
        assert new["custody_episodes"][-1]["discharged_at"] is not None
        assert parse_iso(new["updated_at"]) > parse_iso(old["updated_at"])
    everything, _cursor = feed(m, "orr", None)
    assert {c["a_number"] for c in everything} >= set(in_care)


END = "9999-12-31T23:59:59Z"


def test_clock_stops_at_the_end_of_year_9999() -> None:
    with MockProcess(seed=7, children=50) as m:
        # the probe's moves: 20 years each, every one within its own limit, until one is refused
        twenty_years = {"advance_seconds": 630720000}
        moves = 0
        while moves < 500 and (r := m.request("orr", "POST", "/_admin/clock", twenty_years)).status == 200:
            moves += 1
        clock = m.admin_ok("orr", "GET", "/_admin/clock")
        left = LAST_TS - parse_iso(clock["now"])
        assert moves == 398 and 0 < left < 630720000
        assert (r.status, r.json()) == (400, {"error": {"code": "BAD_REQUEST", "message": (
            f"advance_seconds 630720000 would take the clock past {END}; it can move at most {left} more seconds")}})
        status, _err = m.admin("orr", "POST", "/_admin/clock", {"advance_seconds": left + 1, "speed": 5})
        assert status == 400 and m.admin_ok("orr", "GET", "/_admin/clock") == clock  # nothing changed
        m.advance(left - 1000)
        status, err = m.admin("ice", "POST", "/_admin/clock", {"advance_seconds": 1001})
        assert (status, err["error"]["message"]) == (400, f"advance_seconds 1001 would take the clock past {END}; "
                                                          "it can move at most 1000 more seconds")
        # a running clock (the API's top speed) stops at the end too
        m.admin_ok("orr", "POST", "/_admin/clock", {"speed": 1e7})
        assert wait_for(lambda: m.admin_ok("eoir", "GET", "/_admin/clock")["now"] == END)
        time.sleep(0.6)  # two more ticks at 1e7 simulated seconds per second
        for s in SOURCES:
            assert m.admin_ok(s, "GET", "/healthz")["now"] == END
            assert m.admin_ok(s, "GET", "/_admin/world")["now"] == END
            assert m.admin_ok(s, "GET", "/_admin/clock")["now"] == END
        assert m.admin_ok("orr", "POST", "/_admin/clock", {"advance_seconds": 0, "speed": 1e7})["now"] == END
        status, err = m.admin("orr", "POST", "/_admin/clock", {"advance_seconds": 1})
        assert (status, err["error"]["message"]) == (400, f"advance_seconds 1 would take the clock past {END}; "
                                                          "it can move at most 0 more seconds")
        a = m.sample(1)[0]
        status, patched = m.admin("orr", "PATCH", f"/_admin/records/{a}", {"first_name": "Zoe"})
        assert (status, patched["first_name"], patched["updated_at"]) == (200, "Zoe", END)
        assert get(m, "orr", a).headers["last-modified"] == "Fri, 31 Dec 9999 23:59:59 GMT"
        assert "Traceback" not in m.stderr() and "unhandled error" not in m.stderr()


def test_staged_records_are_validated_published_and_played_by_the_clock(clocked: tuple[MockProcess, Hook]) -> None:
    m, hook = clocked
    a = "A999000001"
    court = {"street": "600 Jefferson St", "unit": "Suite 900", "city": "Houston", "state": "TX",
             "zip": "77002", "quality": "valid"}
    case = {
        "first_name": "Ana", "last_name": "Prueba", "date_of_birth": "2010-05-04", "case_opened_on": "2026-10-01",
        "case_status": "pending", "in_absentia_order": None, "decision": None, "change_of_address_filed_on": None,
        "address_of_record": {**court, "street": "12 Oak St", "unit": None},
        "hearings": [{"id": f"{a}-H1", "type": "master_calendar", "starts_at": "2026-11-02T15:00:00Z",
                      "judge": "Hon. A. Whitfield", "court_name": "Houston Immigration Court",
                      "court_address": court, "medium": "video", "outcome": None}],
    }
    cursor = m.request("eoir", "GET", "/v1/changes?since=latest").json()["next_cursor"]
    status, created = m.admin("eoir", "PUT", f"/_admin/records/{a}", case)
    assert status == 201 and created == {**case, "a_number": a, "updated_at": DEFAULT_START}
    assert get(m, "eoir", a).json() == created
    status, err = m.admin("eoir", "PATCH", f"/_admin/records/{a}", {"case_status": "lost"})
    assert status == 400 and "case_status" in err["error"]["message"]
    status, err = m.admin("eoir", "PATCH", f"/_admin/records/{a}", {"hearings": [{"id": "x"}]})
    assert status == 400
    status, err = m.admin("orr", "PUT", f"/_admin/records/{a}", {"status": "in_care"})
    assert status == 400 and "required" in err["error"]["message"]
    m.advance(3600)
    new_addr = {**case["address_of_record"], "street": "99 Elm St"}
    status, patched = m.admin("eoir", "PATCH", f"/_admin/records/{a}",
                              {"address_of_record": new_addr, "change_of_address_filed_on": "2026-11-01"})
    assert status == 200 and patched["address_of_record"] == new_addr
    assert patched["updated_at"] == iso(START + 3600)
    changes, _ = feed(m, "eoir", cursor)
    mine = [c for c in changes if c["a_number"] == a]
    assert [c["fields"] for c in mine] == [
        ["a_number", "address_of_record", "case_opened_on", "case_status", "change_of_address_filed_on",
         "date_of_birth", "decision", "first_name", "hearings", "in_absentia_order", "last_name"],
        ["address_of_record", "change_of_address_filed_on"],
    ]
    # the staged future hearing is played when the clock passes it
    m.advance(86400 * 2)
    played = get(m, "eoir", a).json()
    assert played["hearings"][0]["outcome"] in ("held", "adjourned", "failed_to_appear")
    assert played["updated_at"] == "2026-11-02T15:00:00Z"
    assert wait_for(lambda: any(c["a_number"] == a and c["updated_at"] == played["updated_at"]
                                for c in hook.changes("eoir")))
