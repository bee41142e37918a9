"""Stored answers of repeated status queries (gateway/http/answer_memo.py), over real HTTP against the mocks.

What is proved: a repeated query is answered without GraphQL and without backend calls, with the same
bytes a fresh execution gives except the open values (`cacheStatus` HIT, `ageSeconds` aged to now);
each such answer still writes its audit event; an expired or changed record, another caller's view,
another text and `maxAgeSeconds: 0` are never served a stored answer; an open breaker's partial answer
is repeated only while the breaker stays open; the store respects its size bound and can be disabled;
identical requests arriving while one executes get its answer (no call of their own), and a request
whose answer is not recorded makes nobody wait.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from testing.access import gateway_env
from testing.gateway import GatewayProcess, http, mint, without

PROV = "fragment P on Provenance { source fetchedAt sourceUpdatedAt ageSeconds cacheStatus stale recordFound }"
STATUS = """query($a: ID!) { child(aNumber: $a) { aNumber
  location { status since facility { name city state } address { street city zip } provenance { ...P } }
  sponsor { name phone category provenance { ...P } }
  nta { status issuedOn servedOn filedOn fieldOffice provenance { ...P } }
  hearing { caseStatus missedHearingCount nextHearing { startsAt courtName } provenance { ...P } }
} } """ + PROV
EVENTS = """query($a: ID) { auditEvents(aNumber: $a, first: 100) {
  requestId subject role aNumber outcome sectionsReturned sectionsDenied purpose } }"""
ROUTES = {"orr": "POST /v1/children/batch", "ice": "POST /v1/subjects/batch", "eoir": "POST /v1/cases/batch"}


@pytest.fixture(scope="module")
def gw(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("answers-data")
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data), UCGW_CACHE_TTL_SECONDS="300",
                                         UCGW_BREAKER_RESET_SECONDS="1", UCGW_RETRY_ATTEMPTS="0",
                                         UCGW_BREAKER_FAILURE_THRESHOLD="1"))
    yield gateway
    gateway.stop()


def answer_facts(gw: GatewayProcess) -> dict[str, int]:
    _, _, body = http("GET", f"{gw.admin_url}/readyz")
    return json.loads(body)["answerCache"]


def batch_calls(mock_services: Any) -> dict[str, int]:
    return {s: mock_services.stats(s)["by_route"].get(route, 0) for s, route in ROUTES.items()}


def post(gw: GatewayProcess, query: str, variables: dict[str, Any], token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    status, _, body = http("POST", f"{gw.url}/graphql", {"query": query, "variables": variables},
                           headers=gw.headers(token, headers))
    return status, body


def without_open_values(body: dict[str, Any]) -> Any:
    """The answer with every provenance's `ageSeconds` and `cacheStatus` taken out."""
    return without(body, "ageSeconds", "cacheStatus")


def provenances(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if "cacheStatus" in node else []
        return own + [p for v in node.values() for p in provenances(v)]
    if isinstance(node, list):
        return [p for v in node for p in provenances(v)]
    return []


def released_child(mock_services: Any, n: int) -> str:
    """The n-th sampled child released to a sponsor (every section of STATUS filled)."""
    return mock_services.sample(40, "missed_hearing")[n]


def test_repeated_query_is_answered_from_the_stored_answer(gw: GatewayProcess, mock_services: Any) -> None:
    a = released_child(mock_services, 0)
    before, calls = answer_facts(gw), batch_calls(mock_services)
    status, first_raw = post(gw, STATUS, {"a": a})
    first = json.loads(first_raw)
    assert status == 200 and "errors" not in first
    assert {p["cacheStatus"] for p in provenances(first)} == {"MISS"}
    after_first = answer_facts(gw)
    assert after_first["stored"] == before["stored"] + 1
    assert batch_calls(mock_services) == {s: calls[s] + 1 for s in ROUTES}

    time.sleep(0.05)
    status, second_raw = post(gw, STATUS, {"a": a})
    second = json.loads(second_raw)
    assert status == 200
    after_second = answer_facts(gw)
    assert after_second["hits"] == after_first["hits"] + 1
    assert after_second["stored"] == after_first["stored"]
    assert batch_calls(mock_services) == {s: calls[s] + 1 for s in ROUTES}  # no backend call for the repeat
    assert without_open_values(second) == without_open_values(first)
    for p1, p2 in zip(provenances(first), provenances(second), strict=True):
        assert p2["cacheStatus"] == "HIT" and p2["stale"] is False
        assert p2["fetchedAt"] == p1["fetchedAt"]
        assert p2["ageSeconds"] >= 0.05 and p2["ageSeconds"] > p1["ageSeconds"]

    # the same query through GraphQL (another text: one more space) gives the same bytes, open values aside
    status, executed_raw = post(gw, STATUS + " ", {"a": a})
    executed = json.loads(executed_raw)
    assert answer_facts(gw)["hits"] == after_second["hits"]  # not from the store
    assert {p["cacheStatus"] for p in provenances(executed)} == {"HIT"}
    assert without_open_values(executed) == without_open_values(second)


def test_every_stored_answer_writes_its_audit_event(gw: GatewayProcess, mock_services: Any) -> None:
    a = released_child(mock_services, 1)
    subject = f"tester-{uuid.uuid4().hex[:8]}"
    token = mint("caseworker", subject=subject)
    hits = answer_facts(gw)["hits"]
    for n in range(3):
        status, _ = post(gw, STATUS, {"a": a}, token=token, headers={"X-Purpose": f"visit {n}"})
        assert status == 200
    assert answer_facts(gw)["hits"] == hits + 2
    _, body = gw.query(EVENTS, {"a": a}, token=mint("auditor"))
    mine = [e for e in body["data"]["auditEvents"] if e["subject"] == subject]
    assert [e["purpose"] for e in mine] == ["visit 0", "visit 1", "visit 2"]
    assert len({e["requestId"] for e in mine}) == 3
    assert {(e["outcome"], tuple(e["sectionsReturned"]), e["role"]) for e in mine} == {
        ("OK", ("hearing", "location", "nta", "sponsor"), "caseworker")}


def test_another_view_text_or_max_age_is_never_served_a_stored_answer(gw: GatewayProcess,
                                                                     mock_services: Any) -> None:
    a = released_child(mock_services, 2)
    assert post(gw, STATUS, {"a": a})[0] == 200
    facts = answer_facts(gw)
    # a partner's view: the same text, other permissions; its FORBIDDEN nulls are its own stored answer
    partner = mint("partner")
    _, first = post(gw, STATUS, {"a": a}, token=partner)
    _, again = post(gw, STATUS, {"a": a}, token=partner)
    for raw in (first, again):
        body = json.loads(raw)
        assert body["data"]["child"]["sponsor"]["name"] is None
        assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
    now = answer_facts(gw)
    assert now["stored"] == facts["stored"] + 1 and now["hits"] == facts["hits"] + 1
    # maxAgeSeconds 0 asks the sources every time: stored, but never current
    query = STATUS.replace("child(aNumber: $a)", "child(aNumber: $a, maxAgeSeconds: 0)")
    calls = batch_calls(mock_services)
    for _ in range(2):
        _, raw = post(gw, query, {"a": a})
        assert {p["cacheStatus"] for p in provenances(json.loads(raw))} == {"MISS"}
    assert batch_calls(mock_services) == {s: calls[s] + 2 for s in ROUTES}
    assert answer_facts(gw)["hits"] == now["hits"]
    # other operations are neither stored nor recorded
    before = answer_facts(gw)
    for _ in range(2):
        status, raw = post(gw, "query { sources { source breakerState } }", {})
        assert status == 200 and len(json.loads(raw)["data"]["sources"]) == 3
    after = answer_facts(gw)
    assert (after["stored"], after["not_stored"], after["hits"]) == (before["stored"], before["not_stored"],
                                                                    before["hits"])


def test_expired_records_send_the_request_back_to_graphql(mock_services: Any, tmp_path: Any) -> None:
    gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path), UCGW_CACHE_TTL_SECONDS="1"))
    try:
        a = released_child(mock_services, 3)
        _, first = post(gw, STATUS, {"a": a})
        _, second = post(gw, STATUS, {"a": a})
        assert answer_facts(gw)["hits"] == 1
        time.sleep(1.2)
        calls = batch_calls(mock_services)
        _, third = post(gw, STATUS, {"a": a})
        facts = answer_facts(gw)
        assert facts["outdated"] == 1 and facts["hits"] == 1 and facts["stored"] == 2
        assert batch_calls(mock_services) == {s: calls[s] + 1 for s in ROUTES}
        provs = provenances(json.loads(third))
        assert {p["cacheStatus"] for p in provs} == {"MISS"}
        assert all(p3["fetchedAt"] > p1["fetchedAt"]
                   for p1, p3 in zip(provenances(json.loads(first)), provs, strict=True))
    finally:
        gw.stop()


def test_open_breaker_answer_is_repeated_only_while_it_stays_open(gw: GatewayProcess, mock_services: Any) -> None:
    a, b = released_child(mock_services, 4), released_child(mock_services, 7)
    light = "query($a: ID!) { child(aNumber: $a) { location { status } nta { status } } }"
    assert post(gw, light, {"a": b})[0] == 200  # ORR and ICE cached for b, EOIR not
    assert mock_services.admin("eoir", "PUT", "/_admin/faults", {"down": True})[0] == 200
    try:
        opener = "query($a: ID!) { child(aNumber: $a, maxAgeSeconds: 0) { hearing { caseStatus } } }"
        _, opened = post(gw, opener, {"a": a})  # one failed call opens EOIR's breaker (threshold 1, no retry)
        assert json.loads(opened)["errors"][0]["extensions"]["code"] == "SOURCE_UNAVAILABLE"
        facts, calls = answer_facts(gw), batch_calls(mock_services)
        bodies = [json.loads(post(gw, STATUS, {"a": b})[1]) for _ in range(3)]
        for body in bodies:
            assert body["data"]["child"]["hearing"] is None and body["data"]["child"]["location"] is not None
            assert [e["extensions"]["code"] for e in body["errors"]] == ["SOURCE_UNAVAILABLE"]
            assert "circuit breaker open" in body["errors"][0]["message"]
        now = answer_facts(gw)
        assert now["stored"] == facts["stored"] + 1 and now["hits"] == facts["hits"] + 2
        assert batch_calls(mock_services) == calls  # the breaker refused: no call at all
        time.sleep(1.1)  # the breaker half-opens: the next request is the probe, not the stored answer
        _, probe = post(gw, STATUS, {"a": b})
        after = answer_facts(gw)
        assert after["outdated"] == now["outdated"] + 1 and after["hits"] == now["hits"]
        assert batch_calls(mock_services)["eoir"] == calls["eoir"] + 1
        body = json.loads(probe)
        assert body["data"]["child"]["hearing"] is None
        assert "circuit breaker open" not in body["errors"][0]["message"]  # the probe's own failure: not stored
        assert after["not_stored"] == now["not_stored"] + 1
    finally:
        mock_services.reset()


def test_size_bound_and_disabled_store(mock_services: Any, tmp_path: Any) -> None:
    small = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path / "small"),
                                       UCGW_ANSWER_CACHE_BYTES="2400"))
    off = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path / "off"),
                                     UCGW_ANSWER_CACHE_BYTES="0"))
    try:
        a, b = released_child(mock_services, 5), released_child(mock_services, 6)
        tiny = "query($a: ID!) { child(aNumber: $a) { aNumber nta { status } } }"
        for gw in (small, off):
            for query, child in ((STATUS, a), (tiny, a), (tiny, b), (tiny, a)):
                assert post(gw, query, {"a": child})[0] == 200
        small_facts, off_facts = answer_facts(small), answer_facts(off)
        # the status of one child (its JSON, key, records, event) does not fit in 2,400 bytes; two tiny ones do
        assert small_facts["not_stored"] == 1 and small_facts["stored"] == 2 and small_facts["hits"] == 1
        assert small_facts["bytes"] <= 2400 and small_facts["entries"] == 2
        assert off_facts["stored"] == 0 and off_facts["hits"] == 0 and off_facts["entries"] == 0
    finally:
        small.stop()
        off.stop()


def test_a_value_recorded_twice_is_one_open_slot() -> None:
    """graphql-core may complete again a field the inline executor began: the slot is kept once."""
    from graphql.pyutils import Path

    from gateway.http.answer_memo import render
    from resolvers.answer_recording import AGE, CACHE_STATUS, AnswerRecording

    def at(*keys: str | int) -> Path:
        path = None
        for key in keys:
            path = Path(path, key, None if isinstance(key, int) else "T")
        assert path is not None
        return path

    recording = AnswerRecording()
    for _ in range(2):  # built twice, as two executors would: equal paths, one slot
        recording.open_value(at("child", "location", "provenance", 0, "ageSeconds"), AGE, 100.0)
    recording.open_value(at("child", "location", "provenance", 0, "cacheStatus"), CACHE_STATUS, 100.0)
    assert len(recording.slots) == 2
    response = {"data": {"child": {"location": {"provenance": [{"ageSeconds": 1.5, "cacheStatus": "MISS"}]}}}}
    rendered = render(response, recording, json.dumps)
    assert rendered is not None
    assert rendered.slots == ((AGE, 100.0), (CACHE_STATUS, 100.0))
    assert len(rendered.parts) == 3
    assert json.loads(rendered.parts[0] + "1.5" + rendered.parts[1] + '"MISS"' + rendered.parts[2]) == response
    assert response["data"]["child"]["location"]["provenance"][0] == {"ageSeconds": 1.5, "cacheStatus": "MISS"}


def _in_turn(gw: GatewayProcess, mock_services: Any, query: str, a: str,
             followers: int) -> tuple[bytes, list[bytes], dict[str, int]]:
    """With every source answering in 800 ms: one request, then (while its backend calls are out, with
    0.6 s for the rest to arrive even on a slow machine) `followers` identical ones at once. Every body,
    and the backend batch calls they made."""
    token = mint("caseworker", subject=f"tester-{uuid.uuid4().hex[:8]}")
    mock_services.reset()
    for source in ROUTES:
        mock_services.admin_ok(source, "PUT", "/_admin/faults", {"latency_ms": 800})
    try:
        with ThreadPoolExecutor(max_workers=followers + 1) as pool:
            first = pool.submit(post, gw, query, {"a": a}, token, {"X-Purpose": "p0"})
            time.sleep(0.2)  # the first is waiting on the sources
            rest = [pool.submit(post, gw, query, {"a": a}, token, {"X-Purpose": f"p{i}"})
                    for i in range(1, followers + 1)]
            leader = first.result()
            others = [f.result() for f in rest]
        calls = batch_calls(mock_services)
    finally:
        mock_services.reset()
    assert leader[0] == 200 and all(status == 200 for status, _ in others)
    return leader[1], [body for _, body in others], calls


@pytest.mark.parametrize("max_age", ["", ", maxAgeSeconds: 0"])
def test_identical_requests_in_flight_share_the_first_ones_answer(gw: GatewayProcess, mock_services: Any,
                                                                 max_age: str) -> None:
    """Requests identical to one still executing wait for it and get its answer, byte for byte (cacheStatus
    MISS, as if each had joined its backend calls), each with an audit event of its own; no further
    backend call, even with maxAgeSeconds 0, whose answers are never served from the store."""
    a = released_child(mock_services, 9 if max_age else 8)
    query = STATUS.replace("child(aNumber: $a)", f"child(aNumber: $a{max_age})")
    facts = answer_facts(gw)
    leader, others, calls = _in_turn(gw, mock_services, query, a, followers=12)
    assert calls == {s: 1 for s in ROUTES}
    body = json.loads(leader)
    assert "errors" not in body and {p["cacheStatus"] for p in provenances(body)} == {"MISS"}
    assert others == [leader] * 12
    now = answer_facts(gw)
    assert (now["followed"], now["shared"]) == (facts["followed"] + 12, facts["shared"] + 12)
    assert (now["stored"], now["hits"]) == (facts["stored"] + 1, facts["hits"])
    _, events = gw.query(EVENTS, {"a": a}, token=mint("auditor"))
    mine = [e for e in events["data"]["auditEvents"] if e["purpose"] in {f"p{i}" for i in range(13)}]
    assert sorted(e["purpose"] for e in mine) == sorted(f"p{i}" for i in range(13))
    assert len({e["requestId"] for e in mine}) == 13
    assert {(e["outcome"], tuple(e["sectionsReturned"])) for e in mine} == {
        ("OK", ("hearing", "location", "nta", "sponsor"))}


def test_a_request_whose_answer_is_not_recorded_holds_no_identical_one(gw: GatewayProcess,
                                                                       mock_services: Any) -> None:
    """A query with another root field beside `child` is not stored: identical requests do not wait for it
    (they join its backend calls instead, as any concurrent reads do)."""
    a = released_child(mock_services, 10)
    query = "query($a: ID!) { child(aNumber: $a) { aNumber location { status } } sources { source } }"
    facts = answer_facts(gw)
    leader, others, calls = _in_turn(gw, mock_services, query, a, followers=5)
    assert calls == {"orr": 1, "ice": 1, "eoir": 0}  # location reads ORR and ICE; the five joined the calls
    assert all(json.loads(b)["data"]["child"] == json.loads(leader)["data"]["child"] for b in others)
    now = answer_facts(gw)
    assert (now["followed"], now["shared"], now["stored"]) == (facts["followed"], facts["shared"], facts["stored"])


def test_an_answer_without_data_is_not_handed_to_followers() -> None:
    """A follower is handed the executing request's answer only when it has data: one withheld (its audit
    write failed) or refused leaves each follower to run GraphQL and record its own read."""
    import asyncio

    from gateway.http.answer_memo import AnswerCache, AnswerKey
    from resolvers.answer_recording import AnswerRecording

    async def run(response: dict[str, Any]) -> Any:
        cache = AnswerCache(1 << 20, {})
        key = AnswerKey(b'{"query": "{ child(aNumber: \\"A1\\") { aNumber } }"}', "caseworker", None)
        finish = cache.lead(key)
        follower = asyncio.create_task(cache.follow(key, time.monotonic() + 5))
        await asyncio.sleep(0)  # the follower is waiting
        cache.store(key, response, AnswerRecording(release=finish), lambda: [], json.dumps)
        finish()
        shared = await follower
        return shared, cache.stats.followed, cache.stats.shared

    withheld = {"data": None, "errors": [{"message": "no", "extensions": {"code": "AUDIT_UNAVAILABLE"}}]}
    assert asyncio.run(run(withheld)) == (None, 1, 0)
    shared, followed, handed = asyncio.run(run({"data": {"child": {"aNumber": "A1"}}}))
    assert (followed, handed) == (1, 1)
    assert shared is not None and json.loads(shared[0]) == {"data": {"child": {"aNumber": "A1"}}} and shared[1] == ()


def _own_world(**env: str) -> tuple[Any, GatewayProcess]:
    """Mocks of this test's own (it stages records and faults) and a gateway in front of them."""
    from testing.mockproc import MockProcess

    mocks = MockProcess(seed=41, children=60).start()
    return mocks, GatewayProcess(mocks.gateway_env(**env))


def test_a_stored_answer_ends_when_its_next_hearing_starts() -> None:
    """The same records give another answer once the next hearing's time has come (it becomes past): the
    stored answer is not served past that moment (it was, for up to a TTL)."""
    q = "query($a: ID!) { child(aNumber: $a) { hearing { nextHearing { id } pastHearings { id } } } }"
    mocks, gw = _own_world(UCGW_CHANGE_FEED_POLL_SECONDS="0", UCGW_CACHE_TTL_SECONDS="300")
    try:
        a = next(x for x in mocks.sample(60) if mocks.request("eoir", "GET", f"/v1/cases/{x}").status == 200)
        case = mocks.request("eoir", "GET", f"/v1/cases/{a}").json()
        soon = time.time() + 3
        starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
        hearing = {**case["hearings"][0], "id": f"{a}-H99", "starts_at": starts, "outcome": None}
        mocks.admin_ok("eoir", "PATCH", f"/_admin/records/{a}", {"hearings": [hearing]})
        before = answer_facts(gw)
        answers = [json.loads(post(gw, q, {"a": a})[1]) for _ in range(2)]  # executed and stored, then served
        stored = answer_facts(gw)
        time.sleep(max(0.0, int(soon) - time.time()) + 0.5)
        after = json.loads(post(gw, q, {"a": a})[1])
        facts = answer_facts(gw)
    finally:
        gw.stop()
        mocks.stop()
    assert answers == [{"data": {"child": {"hearing": {"nextHearing": {"id": f"{a}-H99"}, "pastHearings": []}}}}] * 2
    assert (stored["stored"], stored["hits"]) == (before["stored"] + 1, before["hits"] + 1)
    assert after == {"data": {"child": {"hearing": {"nextHearing": None, "pastHearings": [{"id": f"{a}-H99"}]}}}}
    assert facts["outdated"] == stored["outdated"] + 1


def test_a_request_that_joins_one_in_flight_after_a_change_runs_on_its_own() -> None:
    """An identical request arriving while another is in flight waits for it, but does not take its answer
    when a record it read has changed since (the change feed invalidated it): it would be the old value."""
    q = "query($a: ID!) { child(aNumber: $a) { nta { fieldOffice } hearing { caseStatus } } }"
    mocks, gw = _own_world(UCGW_CHANGE_FEED_POLL_SECONDS="0.1", UCGW_CACHE_TTL_SECONDS="300")
    try:
        a = next(x for x in mocks.sample(60) if mocks.request("eoir", "GET", f"/v1/cases/{x}").status == 200)
        old = mocks.request("ice", "GET", f"/v1/subjects/{a}").json()["field_office"]
        new = "Chicago" if old != "Chicago" else "Seattle"
        time.sleep(0.5)  # the follower has read where each feed ends
        mocks.admin_ok("eoir", "PUT", "/_admin/faults", {"latency_ms": 1500})
        before = answer_facts(gw)
        with ThreadPoolExecutor(max_workers=2) as pool:
            lead = pool.submit(post, gw, q, {"a": a})
            time.sleep(0.2)  # the lead has ICE's record and waits for EOIR's
            mocks.admin_ok("ice", "PATCH", f"/_admin/records/{a}", {"field_office": new})
            time.sleep(0.6)  # the change feed has dropped the record the lead read
            follower = pool.submit(post, gw, q, {"a": a})
            answers = [json.loads(f.result()[1])["data"]["child"]["nta"]["fieldOffice"] for f in (lead, follower)]
        facts = answer_facts(gw)
    finally:
        gw.stop()
        mocks.stop()
    assert answers == [old, new]
    assert (facts["followed"], facts["shared"], facts["stale_shares"]) == (
        before["followed"] + 1, before["shared"], before["stale_shares"] + 1)
