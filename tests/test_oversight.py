"""Oversight lists over real HTTP against the mocks (issue 6, part A).

Every expected list is computed here from the mocks' own listing endpoints (testing/oversight_truth.py),
never from the gateway's resolvers; routing is checked against the mocks' own office table.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from testing import oversight_truth as truth
from testing.gateway import GatewayProcess, http, mint, without

PROV = "provenance { source cacheStatus fetchedAt }"
QUIET = {"UCGW_CHANGE_FEED_POLL_SECONDS": "0"}  # no background calls: backend call counts stay exact


def gateway_env(mocks: Any, **extra: str) -> dict[str, str]:
    """Environment of a gateway in front of `mocks`, not following change feeds."""
    return {"UCGW_ORR_URL": mocks.orr, "UCGW_ICE_URL": mocks.ice, "UCGW_EOIR_URL": mocks.eoir, **QUIET, **extra}


def token(role: str, **claims: Any) -> str:
    return mint(role, **claims)


@pytest.fixture(scope="module")
def gateway(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = gateway_env(mock_services, UCGW_CACHE_TTL_SECONDS="300",
                      UCGW_DATA_DIR=str(tmp_path_factory.mktemp("ov")))
    gw = GatewayProcess(env)
    yield gw
    gw.stop()


def sim_now(mock_services: Any) -> datetime:
    status, _, body = http("GET", f"{mock_services.ice}/_admin/clock")
    assert status == 200
    return truth.ts(json.loads(body)["now"])


def ok(gw: Any, query: str, variables: dict[str, Any] | None = None, role: str | None = None) -> dict[str, Any]:
    status, body = gw.query(query, variables, token=token(role) if role else None)
    assert status == 200 and not body.get("errors"), body.get("errors")
    return body["data"]


def walk(gw: Any, query: str, field: str, variables: dict[str, Any], first: int) -> list[dict[str, Any]]:
    """Every node of a paginated list, checking cursors move forward and pages respect `first`."""
    nodes: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):
        data = ok(gw, query, {**variables, "first": first, "after": after})[field]
        assert len(data["edges"]) <= first
        nodes.extend(e["node"] for e in data["edges"])
        info = data["pageInfo"]
        if not info["hasNextPage"]:
            return nodes
        assert info["endCursor"] and info["endCursor"] != after
        after = info["endCursor"]
    raise AssertionError("pagination did not end")


CASELOAD = """query($f: CaseloadFilter, $first: Int!, $after: String, $asOf: DateTime) {
  caseload(filter: $f, first: $first, after: $after, asOf: $asOf) {
    edges { cursor node { aNumber } } pageInfo { hasNextPage endCursor } } }"""


def caseload_numbers(gw: Any, f: dict[str, Any] | None, as_of: datetime, first: int) -> list[str]:
    nodes = walk(gw, CASELOAD, "caseload", {"f": f, "asOf": as_of.isoformat()}, first)
    return [n["aNumber"] for n in nodes]


def test_caseload_walks_every_child_once_in_order(gateway: Any, mock_services: Any) -> None:
    world = truth.World(mock_services)
    got = caseload_numbers(gateway, None, sim_now(mock_services), first=37)
    assert got == sorted(world.ice) and len(set(got)) == len(got)


@pytest.mark.parametrize("filter_fn", [
    lambda w, o: {"fieldOffice": o},
    lambda w, o: {"ntaStatus": "SERVED"},
    lambda w, o: {"locationStatus": "RELEASED_TO_SPONSOR"},
    lambda w, o: {"missedHearing": True},
    lambda w, o: {"hearingWithinDays": 120},
    lambda w, o: {"sponsorState": "TX", "ntaStatus": "NOT_ISSUED"},
    lambda w, o: {"fieldOffice": o.upper(), "locationStatus": "RELEASED_TO_SPONSOR", "missedHearing": False},
], ids=["office", "nta", "location", "missed", "hearing-soon", "state+nta", "combined"])
def test_caseload_filters_match_the_records(gateway: Any, mock_services: Any, filter_fn: Any) -> None:
    world = truth.World(mock_services)
    office = Counter(r["field_office"] for r in world.ice.values()).most_common(1)[0][0]
    f = filter_fn(world, office)
    as_of = sim_now(mock_services)
    nta = {"SERVED": "served", "NOT_ISSUED": "not_issued"}
    expected = truth.caseload(
        world, as_of, field_office=f.get("fieldOffice"), location_status=f.get("locationStatus"),
        nta_status=nta.get(f.get("ntaStatus", "")), hearing_within_days=f.get("hearingWithinDays"),
        missed_hearing=f.get("missedHearing"), sponsor_state=f.get("sponsorState"))
    assert expected, f"the world has no child for {f}: pick another filter"
    got = caseload_numbers(gateway, f, as_of, first=7)
    assert got == expected


def test_caseload_page_costs_one_call_per_source(gateway: Any, mock_services: Any) -> None:
    query = """query($after: String) { caseload(filter: {locationStatus: RELEASED_TO_SPONSOR}, first: 20,
      after: $after, maxAgeSeconds: 0) { edges { node { aNumber location { status } nta { status }
      hearing { caseStatus } } } pageInfo { hasNextPage endCursor } } }"""
    after = None
    for _ in range(3):
        mock_services.reset()
        data = ok(gateway, query, {"after": after})["caseload"]
        assert data["edges"]
        routes = {s: mock_services.stats(s)["by_route"] for s in ("orr", "ice", "eoir")}
        assert routes["ice"] == {"GET /v1/subjects": 1}, routes
        assert routes["orr"] == {"POST /v1/children/batch": 1}, routes
        assert routes["eoir"] == {"POST /v1/cases/batch": 1}, routes
        after = data["pageInfo"]["endCursor"]


def test_caseload_bad_arguments(gateway: Any) -> None:
    for args in ('first: 0', 'first: 101', 'after: "nonsense"', 'filter: {hearingWithinDays: -1}',
                 'asOf: "0001-01-01T00:00:00Z", filter: {hearingWithinDays: 30}'):
        status, body = gateway.query(f"{{ caseload({args}) {{ edges {{ cursor }} }} }}")
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (args, body)
    for field in ('oversightSummary(asOf: "9999-12-31T23:59:59Z") { childrenScanned }',
                  "oversightSummary(newSinceHours: -1) { childrenScanned }",
                  "courtAlerts(withinDays: 100000) { totalCount }"):
        status, body = gateway.query(f"{{ {field} }}")
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", (field, body)
    alerts_cursor = ok(gateway, "{ courtAlerts(first: 1) { pageInfo { endCursor } } }")
    cursor = alerts_cursor["courtAlerts"]["pageInfo"]["endCursor"]
    status, body = gateway.query("query($c: String) { caseload(after: $c) { edges { cursor } } }", {"c": cursor})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    deep = base64.urlsafe_b64encode(b"[" * 30_000 + b"]" * 30_000).decode()  # nested deeper than json parses
    for field in ("caseload", "courtAlerts"):
        status, body = gateway.query(f"query($c: String) {{ {field}(after: $c) {{ totalCount }} }}", {"c": deep})
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], (field, body)


BACKLOG = """query($asOf: DateTime, $f: BacklogFilter, $first: Int!, $after: String) { ntaBacklog(asOf: $asOf) {
  items(filter: $f, first: $first, after: $after) { edges { node { aNumber stage fieldOffice ageBucket
  daysSinceRelease } } pageInfo { hasNextPage endCursor } } } }"""


def test_nta_backlog_counts_and_items(gateway: Any, mock_services: Any) -> None:
    world = truth.World(mock_services)
    as_of = sim_now(mock_services)
    expected = truth.backlog(world, as_of)
    data = ok(gateway, """query($asOf: DateTime) { ntaBacklog(asOf: $asOf) {
      totals { total byStage { stage count } byAgeBucket { bucket count } }
      byFieldOffice { fieldOffice total byStage { stage count } } } }""", {"asOf": as_of.isoformat()})["ntaBacklog"]
    assert data["totals"]["total"] == len(expected)
    assert {s["stage"]: s["count"] for s in data["totals"]["byStage"]} == {
        s: sum(1 for e in expected.values() if e[0] == s) for s in ("NOT_ISSUED", "ISSUED", "SERVED")}
    buckets = ("DAYS_0_30", "DAYS_31_90", "DAYS_91_365", "OVER_365")
    assert {b["bucket"]: b["count"] for b in data["totals"]["byAgeBucket"]} == {
        b: sum(1 for e in expected.values() if e[2] == b) for b in buckets}
    assert {o["fieldOffice"]: o["total"] for o in data["byFieldOffice"]} == Counter(e[1] for e in expected.values())
    # the list behind the counts: all of it, then one office and one stage
    nodes = _backlog_items(gateway, as_of, None)
    assert {n["aNumber"]: (n["stage"], n["fieldOffice"], n["ageBucket"]) for n in nodes} == expected
    assert len(nodes) == len(expected)
    office = Counter(e[1] for e in expected.values()).most_common(1)[0][0]
    nodes = _backlog_items(gateway, as_of, {"fieldOffice": office, "stage": "NOT_ISSUED"})
    assert sorted(n["aNumber"] for n in nodes) == sorted(
        a for a, e in expected.items() if e[1] == office and e[0] == "NOT_ISSUED")


def _backlog_items(gw: Any, as_of: datetime, f: dict[str, Any] | None) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        data = ok(gw, BACKLOG, {"asOf": as_of.isoformat(), "f": f, "first": 40, "after": after})
        page = data["ntaBacklog"]["items"]
        nodes.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


ALERTS = """query($asOf: DateTime, $first: Int!, $after: String, $f: CourtAlertFilter) {
  courtAlerts(asOf: $asOf, withinDays: 60, first: $first, after: $after, filter: $f) {
    edges { node { aNumber kind fieldOffice occurredAt hearing { id startsAt }
                   evidence { source field value """ + PROV + """ } } }
    pageInfo { hasNextPage endCursor } totalCount } }"""


def alert_keys(nodes: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(n["aNumber"], n["kind"], (n["hearing"] or {}).get("id") if n["kind"] != "NO_HEARING_SCHEDULED"
             else None) for n in nodes]


def test_court_alerts_match_the_records(gateway: Any, mock_services: Any) -> None:
    world = truth.World(mock_services)
    as_of = sim_now(mock_services)
    expected = truth.alerts(world, as_of, within_days=60)
    nodes = walk(gateway, ALERTS, "courtAlerts", {"asOf": as_of.isoformat()}, first=45)
    keys = alert_keys(nodes)
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert {k for _a, k, _h in expected} >= {"MISSED_HEARING", "IN_ABSENTIA_ORDER", "NO_HEARING_SCHEDULED"}
    for n in nodes:  # evidence names its source and provenance
        assert n["evidence"] and all(c["provenance"]["source"] == c["source"] for c in n["evidence"])
        if n["kind"] == "MISSED_HEARING":
            hearing = next(h for h in world.eoir[n["aNumber"]]["hearings"] if h["id"] == n["hearing"]["id"])
            assert hearing["outcome"] == "failed_to_appear"
            assert [c["source"] for c in n["evidence"]] == ["EOIR"]
    total = ok(gateway, ALERTS, {"asOf": as_of.isoformat(), "first": 1})["courtAlerts"]["totalCount"]
    assert total == len(expected)


DISCREPANCIES = """query($first: Int!, $after: String, $f: DiscrepancyFilter) {
  discrepancies(first: $first, after: $after, filter: $f) {
    edges { node { aNumber kind severity detail fieldOffice claims { source field value """ + PROV + """ } } }
    pageInfo { hasNextPage endCursor } } }"""


def test_discrepancies_match_the_records(gateway: Any, mock_services: Any) -> None:
    from mocks.refdata import office_for

    world = truth.World(mock_services)
    expected = truth.discrepancies(world, lambda addr: office_for(addr.get("city"), addr.get("state")))
    nodes = walk(gateway, DISCREPANCIES, "discrepancies", {}, first=60)
    keys = [(n["aNumber"], n["kind"]) for n in nodes]
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert {k for _a, k in expected} >= {"NAME_MISMATCH", "MISSING_ADDRESS", "FIELD_OFFICE_MISMATCH"}
    for n in nodes:  # each claim quotes its source's record
        a = n["aNumber"]
        records = {"ORR": world.orr.get(a), "ICE": world.ice[a], "EOIR": world.eoir.get(a)}
        for c in n["claims"]:
            rec = records[c["source"]]
            if n["kind"] == "NAME_MISMATCH":
                assert c["value"] == f"{rec['first_name']} {rec['last_name']}"
            elif n["kind"] == "DOB_MISMATCH":
                assert c["value"] == rec["date_of_birth"]
            elif n["kind"] == "FIELD_OFFICE_MISMATCH" and c["source"] == "ICE":
                assert c["value"] == rec["field_office"]
    # the per-child field says the same as the list
    sample = sorted({a for a, _k in expected})[:15]
    data = ok(gateway, "query($a: [ID!]!) { children(aNumbers: $a) { aNumber discrepancies { kind severity } } }",
              {"a": sample})
    for child in data["children"]:
        assert {d["kind"] for d in child["discrepancies"]} == {k for a, k in expected if a == child["aNumber"]}
    high = walk(gateway, DISCREPANCIES, "discrepancies", {"f": {"minSeverity": "HIGH"}}, first=100)
    assert high and all(n["severity"] == "HIGH" for n in high)
    assert {(n["aNumber"], n["kind"]) for n in high} == {(n["aNumber"], n["kind"]) for n in nodes
                                                          if n["severity"] == "HIGH"}


def test_field_office_routing(gateway: Any, mock_services: Any) -> None:
    from mocks.refdata import office_for

    world = truth.World(mock_services)
    released = [a for a, orr, _i, _e in world.children() if orr and orr.get("release")][:20]
    for a in released:
        data = ok(gateway, "query($a: ID!) { fieldOfficeRouting(aNumber: $a) { routedOffice currentOffice matches "
                           "basis provenance { source } } }", {"a": a})["fieldOfficeRouting"]
        addr = truth.sponsor_address(world.orr[a])
        routed = office_for(addr.get("city"), addr.get("state"))  # type: ignore[union-attr]
        assert data["routedOffice"] == routed
        assert data["currentOffice"] == world.ice[a]["field_office"]
        assert data["matches"] == (None if routed is None else routed == world.ice[a]["field_office"])
        assert {p["source"] for p in data["provenance"]} == {"ORR", "ICE"}



def test_every_routing_lookup_is_in_the_audit_trail(gateway: Any, mock_services: Any) -> None:
    """As a child lookup's: a known child OK, an unknown A-number NOT_FOUND, a failed source ERROR."""
    query = "query($a: ID!) { fieldOfficeRouting(aNumber: $a) { routedOffice } }"
    known = truth.World(mock_services).children()[0][0]
    subject = "routing-audit-probe"
    asked = {}
    for a in (known, "A099999901"):
        status, body = gateway.query(query, {"a": a}, token=token("caseworker", subject=subject))
        assert status == 200 and not body.get("errors")
        asked[a] = body["data"]["fieldOfficeRouting"]
    assert asked[known] is not None and asked["A099999901"] is None
    mock_services.admin("orr", "PUT", "/_admin/faults", {"down": True})
    try:
        status, body = gateway.query(query, {"a": "A099999902"}, token=token("caseworker", subject=subject))
    finally:
        mock_services.reset()
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "SOURCE_UNAVAILABLE"
    events = ok(gateway, "query($s: String) { auditEvents(subject: $s) { aNumber outcome sectionsReturned "
                         "sectionsFailed } }", {"s": subject}, role="auditor")["auditEvents"]
    assert sorted((e["aNumber"], e["outcome"], e["sectionsReturned"], e["sectionsFailed"]) for e in events) == [
        (known, "OK", ["fieldOfficeRouting"], []),
        ("A099999901", "NOT_FOUND", [], []),
        ("A099999902", "ERROR", [], ["fieldOfficeRouting"]),
    ]

SUMMARY = """query($asOf: DateTime) { oversightSummary(asOf: $asOf, withinDays: 60, newSinceHours: 720) {
  childrenScanned
  totals { children backlog { total } openAlerts { kind count } newAlerts { kind count }
           discrepancies { kind total high medium low } }
  byFieldOffice { fieldOffice children backlog { total } openAlerts { kind count } discrepancies { kind total } } } }"""


def test_oversight_summary(gateway: Any, mock_services: Any) -> None:
    from mocks.refdata import office_for

    world = truth.World(mock_services)
    as_of = sim_now(mock_services)
    data = ok(gateway, SUMMARY, {"asOf": as_of.isoformat()})["oversightSummary"]
    assert data["childrenScanned"] == len(world.ice) == data["totals"]["children"]
    assert data["totals"]["backlog"]["total"] == len(truth.backlog(world, as_of))
    alerts = truth.alerts(world, as_of, 60)
    assert {c["kind"]: c["count"] for c in data["totals"]["openAlerts"]} == {
        k: sum(1 for _a, kind, _h in alerts if kind == k) for k in
        ("MISSED_HEARING", "IN_ABSENTIA_ORDER", "NO_HEARING_SCHEDULED", "ADDRESS_OF_RECORD_MISMATCH")}
    discrepancies = truth.discrepancies(world, lambda addr: office_for(addr.get("city"), addr.get("state")))
    assert {c["kind"]: c["total"] for c in data["totals"]["discrepancies"] if c["total"]} == Counter(
        k for _a, k in discrepancies)
    offices = Counter(r["field_office"] for r in world.ice.values())
    assert {o["fieldOffice"]: o["children"] for o in data["byFieldOffice"]} == offices
    office = offices.most_common(1)[0][0]
    mine = next(o for o in data["byFieldOffice"] if o["fieldOffice"] == office)
    assert sum(c["count"] for c in mine["openAlerts"]) == sum(
        1 for a, _k, _h in alerts if world.ice[a]["field_office"] == office)


# ------------------------------------------------------------------------------------------- access


def errors_at(body: dict[str, Any], code: str) -> set[str]:
    return {".".join(map(str, e["path"])) for e in body.get("errors", [])
            if e.get("path") and e.get("extensions", {}).get("code") == code}


def personal_strings(world: truth.World, a_numbers: set[str]) -> set[str]:
    """Names and street lines the mocks hold for these children (what a partner must never see)."""
    out: set[str] = set()
    for a in a_numbers:
        for rec in (world.orr.get(a), world.ice.get(a), world.eoir.get(a)):
            if rec is None:
                continue
            out.add(f"{rec['first_name']} {rec['last_name']}")
            for addr in (truth.sponsor_address(rec) if "release" in rec else None, rec.get("address_on_file"),
                         rec.get("address_of_record")):
                if addr and addr.get("street"):
                    out.add(addr["street"])
            sponsor = (rec.get("release") or {}).get("sponsor")
            if sponsor:
                out.add(sponsor["name"])
    return out


def test_partner_sees_statuses_and_counts_but_no_personal_data(gateway: Any, mock_services: Any) -> None:
    world = truth.World(mock_services)
    as_of = sim_now(mock_services).isoformat()
    partner = token("partner")
    query = """query($asOf: DateTime) {
      caseload(first: 30) { edges { node { aNumber location { status } nta { status fieldOffice }
                                           identity { firstName } sponsor { name } } } }
      discrepancies(first: 100) { edges { node { aNumber kind severity claims { source field value } } } }
      courtAlerts(first: 100, asOf: $asOf, withinDays: 3650,
                  filter: {kinds: [ADDRESS_OF_RECORD_MISMATCH, MISSED_HEARING]}) {
        edges { node { aNumber kind hearing { courtName courtAddress { street } } evidence { source value } } } }
      ntaBacklog(asOf: $asOf) { totals { total } }
      oversightSummary(asOf: $asOf) { totals { children backlog { total } safetyConcerns { unresolved } } }
    }"""
    status, body = gateway.query(query, {"asOf": as_of}, token=partner)
    assert status == 200
    data = body["data"]
    assert all(e["node"]["location"]["status"] and e["node"]["nta"]["status"] for e in data["caseload"]["edges"])
    assert all((e["node"]["identity"] or {}).get("firstName") is None
               and (e["node"]["sponsor"] or {}).get("name") is None for e in data["caseload"]["edges"])
    forbidden = errors_at(body, "FORBIDDEN")
    assert {f"caseload.edges.{i}.node.identity.firstName" for i in range(30)} <= forbidden
    claims = [(i, j, e["node"]["kind"], c) for i, e in enumerate(data["discrepancies"]["edges"])
              for j, c in enumerate(e["node"]["claims"])]
    personal_kinds = {"NAME_MISMATCH", "DOB_MISMATCH", "ADDRESS_MISMATCH", "MISSING_ADDRESS"}
    assert {k for _i, _j, k, _c in claims} & personal_kinds
    for i, j, kind, c in claims:
        path = f"discrepancies.edges.{i}.node.claims.{j}.value"
        if kind in personal_kinds:
            assert c["value"] is None and path in forbidden
        else:
            assert path not in forbidden
    alerts = data["courtAlerts"]["edges"]
    assert any(e["node"]["kind"] == "ADDRESS_OF_RECORD_MISMATCH" for e in alerts)
    for i, e in enumerate(alerts):
        assert e["node"]["hearing"]["courtAddress"]["street"]  # court addresses are for partners too
        for j in range(len(e["node"]["evidence"])):
            path = f"courtAlerts.edges.{i}.node.evidence.{j}.value"
            assert (path in forbidden) == (e["node"]["kind"] == "ADDRESS_OF_RECORD_MISMATCH")
    assert data["ntaBacklog"]["totals"]["total"] > 0 and data["oversightSummary"]["totals"]["children"] > 0
    assert "oversightSummary.totals.safetyConcerns" in forbidden
    listed = {e["node"]["aNumber"] for part in ("caseload", "discrepancies", "courtAlerts")
              for e in data[part]["edges"]}
    text = json.dumps(body)
    leaked = {s for s in personal_strings(world, listed) if s in text}
    assert not leaked
    status, body = gateway.query('{ caseload(filter: {sponsorState: "TX"}) { edges { cursor } } }', token=partner)
    assert body["data"]["caseload"] is None and errors_at(body, "FORBIDDEN") == {"caseload"}


def test_auditor_reads_no_child_data_from_any_list(gateway: Any) -> None:
    fields = ["caseload { edges { cursor } }", "ntaBacklog { totals { total } }",
              "courtAlerts { edges { cursor } }", "discrepancies { edges { cursor } }",
              "oversightSummary { childrenScanned }", 'fieldOfficeRouting(aNumber: "A000000001") { matches }']
    for f in fields:
        status, body = gateway.query(f"{{ {f} }}", token=token("auditor"))
        name = f.split("(")[0].split(" ")[0]
        assert status == 200 and body["data"][name] is None and errors_at(body, "FORBIDDEN") == {name}, body


def test_field_office_scope_limits_lists_and_counts(gateway: Any, mock_services: Any) -> None:
    world = truth.World(mock_services)
    office = Counter(r["field_office"] for r in world.ice.values()).most_common(2)[1][0]
    scoped = token("caseworker", field_offices=[office])
    mine = sorted(a for a, r in world.ice.items() if r["field_office"] == office)
    got: list[str] = []
    after = None
    while True:
        body = gateway.query(CASELOAD, {"first": 25, "after": after, "f": None, "asOf": None}, token=scoped)[1]
        page = body["data"]["caseload"]
        got += [e["node"]["aNumber"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert got == mine
    body = gateway.query("{ oversightSummary { totals { children } byFieldOffice { fieldOffice } } "
                         "discrepancies(first: 100) { edges { node { fieldOffice } } } }", token=scoped)[1]
    assert body["data"]["oversightSummary"]["totals"]["children"] == len(mine)
    assert [o["fieldOffice"] for o in body["data"]["oversightSummary"]["byFieldOffice"]] == [office]
    assert {e["node"]["fieldOffice"] for e in body["data"]["discrepancies"]["edges"]} <= {office}
    other = next(a for a, r in world.ice.items() if r["field_office"] != office)
    body = gateway.query('query($a: ID!) { fieldOfficeRouting(aNumber: $a) { matches } }', {"a": other},
                         token=scoped)[1]
    assert body["data"]["fieldOfficeRouting"] is None and errors_at(body, "NOT_FOUND") == {"fieldOfficeRouting"}


def test_children_listed_are_in_the_audit_trail(gateway: Any) -> None:
    subject = "oversight-audit-probe"
    body = gateway.query("{ caseload(first: 5) { edges { node { aNumber nta { status } } } } "
                         "discrepancies(first: 3) { edges { node { aNumber } } } }",
                         token=token("caseworker", subject=subject))[1]
    listed = [e["node"]["aNumber"] for e in body["data"]["caseload"]["edges"]]
    flagged = [e["node"]["aNumber"] for e in body["data"]["discrepancies"]["edges"]]
    events = ok(gateway, "query($s: String) { auditEvents(subject: $s) { aNumber sectionsReturned outcome } }",
                {"s": subject}, role="auditor")["auditEvents"]
    by_child = {e["aNumber"]: e for e in events}
    assert len(events) == len(by_child) == len(set(listed) | set(flagged))
    for a in listed:
        assert {"caseload", "nta"} <= set(by_child[a]["sectionsReturned"]) and by_child[a]["outcome"] == "OK"
    for a in flagged:
        assert "discrepancies" in by_child[a]["sectionsReturned"]



COUNTED_LISTS = [
    ("caseload(first: 5) { %s }", ["caseload"]),
    ("ntaBacklog { items(first: 5) { %s } }", ["ntaBacklog", "items"]),
    ("courtAlerts(first: 5) { %s }", ["courtAlerts"]),
    ("discrepancies(first: 5) { %s }", ["discrepancies"]),
]


@pytest.mark.parametrize("field,path", COUNTED_LISTS, ids=[p[-1] for _, p in COUNTED_LISTS])
def test_a_list_asked_only_for_its_count_lists_no_child(gateway: Any, mock_services: Any, field: str,
                                                         path: list[str]) -> None:
    """`totalCount` alone reads no page: one listing call (the count's walk), no child in the audit trail."""
    def ask(selection: str, subject: str) -> dict[str, Any]:
        status, body = gateway.query("{ %s }" % (field % selection), token=token("caseworker", subject=subject))
        assert status == 200 and not body.get("errors"), body.get("errors")
        for key in path:
            body = body["data"] if key == path[0] else body
            body = body[key]
        return body

    def audited(subject: str) -> list[dict[str, Any]]:
        return ok(gateway, "query($s: String) { auditEvents(subject: $s) { aNumber } }", {"s": subject},
                  role="auditor")["auditEvents"]

    listings = ice_listings(mock_services)
    paged = ask("totalCount edges { node { aNumber } }", f"paged-{path[-1]}")
    assert ice_listings(mock_services) - listings == 2  # the page, and the count's walk
    assert paged["edges"] and len(audited(f"paged-{path[-1]}")) == len({e["node"]["aNumber"] for e in paged["edges"]})

    listings = ice_listings(mock_services)
    counted = ask("totalCount", f"counted-{path[-1]}")
    assert counted == {"totalCount": paged["totalCount"]} and paged["totalCount"] > 0
    assert ice_listings(mock_services) - listings == 1
    assert audited(f"counted-{path[-1]}") == []


# ------------------------------------------------------------------------------------------- the clock


def test_lists_follow_the_simulation_clock(tmp_path: Any) -> None:
    """Events the clock produces (hearings held or missed, NTAs served, releases) change every list."""
    from testing.mockproc import MockProcess

    with MockProcess(seed=11, children=150) as mocks:
        gw = GatewayProcess(gateway_env(mocks, UCGW_CACHE_TTL_SECONDS="600", UCGW_MIN_SCAN_MAX_AGE_SECONDS="0",
                                        UCGW_DATA_DIR=str(tmp_path)))
        try:
            query = ALERTS.replace("courtAlerts(asOf", "courtAlerts(maxAgeSeconds: $m, asOf").replace(
                "query($asOf", "query($m: Int, $asOf")
            before_now = sim_now(mocks)
            before = truth.alerts(truth.World(mocks), before_now, 60)
            got = walk(gw, query, "courtAlerts", {"asOf": before_now.isoformat(), "m": None}, first=100)
            assert set(alert_keys(got)) == before
            mocks.advance(120 * 86400)
            now = sim_now(mocks)
            world = truth.World(mocks)
            after = truth.alerts(world, now, 60)
            new_missed = {k for k in after - before if k[1] == "MISSED_HEARING"}
            assert new_missed, "120 simulated days produced no missed hearing: pick another seed"
            got = walk(gw, query, "courtAlerts", {"asOf": now.isoformat(), "m": 0}, first=100)
            assert set(alert_keys(got)) == after
            backlog = ok(gw, "query($asOf: DateTime) { ntaBacklog(asOf: $asOf) { totals { total } } }",
                         {"asOf": now.isoformat()})["ntaBacklog"]["totals"]["total"]
            assert backlog == len(truth.backlog(world, now))
            summary = ok(gw, """query($asOf: DateTime) { oversightSummary(asOf: $asOf, newSinceHours: 2880,
                maxAgeSeconds: 0) { newSince totals { newAlerts { kind count } } } }""",
                         {"asOf": now.isoformat()})["oversightSummary"]
            since = truth.ts(summary["newSince"])
            recent = [h for e in world.eoir.values() for h in truth.missed(e)
                      if since <= truth.ts(h["starts_at"]) <= now]
            counts = {c["kind"]: c["count"] for c in summary["totals"]["newAlerts"]}
            assert counts["MISSED_HEARING"] == len(recent) >= len(new_missed)
        finally:
            gw.stop()


def test_summary_shows_open_safety_concerns_by_office(gateway: Any, mock_services: Any) -> None:
    """The summary's safety part comes from the concern store (issue 6, part B) through its own function."""
    world = truth.World(mock_services)
    a = sorted(world.ice)[3]
    office = world.ice[a]["field_office"]
    query = """{ oversightSummary { totals { safetyConcerns { unresolved } }
      byFieldOffice { fieldOffice safetyConcerns { fieldOffice unresolved high oldestAgeSeconds } }
      safetyConcerns { fieldOffice unresolved } } }"""
    before = ok(gateway, query)["oversightSummary"]
    mine = next(o for o in before["byFieldOffice"] if o["fieldOffice"] == office)["safetyConcerns"]
    ok(gateway, """mutation($a: ID!) { reportSafetyConcern(input: {aNumber: $a, severity: HIGH,
        category: NOT_RESIDING_WITH_SPONSOR, description: "test concern"}) { id fieldOffice } }""", {"a": a})
    after = ok(gateway, query)["oversightSummary"]
    now = next(o for o in after["byFieldOffice"] if o["fieldOffice"] == office)["safetyConcerns"]
    assert now["fieldOffice"] == office and now["unresolved"] == (mine or {}).get("unresolved", 0) + 1
    assert now["high"] >= 1 and now["oldestAgeSeconds"] >= 0
    assert after["totals"]["safetyConcerns"]["unresolved"] == sum(c["unresolved"] for c in after["safetyConcerns"])
    body = gateway.query(query, token=token("auditor"))[1]
    assert body["data"]["oversightSummary"] is None  # counts of children are not for auditors


# ------------------------------------------------------------------------------------------- asOf in the past

# About half the released children were released by the first; about half the missed hearings were missed by
# the second. Each test checks that its time really splits the world, so a changed world cannot make it vacuous.
PAST = ["2022-05-01T00:00:00+00:00", "2024-05-14T00:00:00+00:00"]
KINDS = ("MISSED_HEARING", "IN_ABSENTIA_ORDER", "NO_HEARING_SCHEDULED", "ADDRESS_OF_RECORD_MISMATCH")
BACKLOG_AS_OF = """query($asOf: DateTime, $f: BacklogFilter, $first: Int!, $after: String) { ntaBacklog(asOf: $asOf) {
  items(filter: $f, first: $first, after: $after) { edges { node { aNumber stage fieldOffice ageBucket releasedAt
  daysSinceRelease } } pageInfo { hasNextPage endCursor } } } }"""


@pytest.mark.parametrize("when", PAST)
def test_nta_backlog_as_of_a_past_time(gateway: Any, mock_services: Any, when: str) -> None:
    world = truth.World(mock_services)
    as_of, now = truth.ts(when), sim_now(mock_services)
    expected = truth.backlog_days(world, as_of)
    current = truth.backlog(world, now)
    released = [a for a, orr, ice, _e in world.children() if truth.location(orr, ice) == "RELEASED_TO_SPONSOR"]
    later = [a for a in released if truth.ts(world.orr[a]["release"]["released_at"]) > as_of]
    assert 0.1 * len(released) < len(later) < 0.9 * len(released), "asOf does not split the releases"
    assert any(a in current for a in later), "no child released after asOf is in today's backlog"
    assert any(world.ice[a]["nta"]["status"].upper() != e[0] for a, e in expected.items()), "no NTA step after asOf"
    data = ok(gateway, """query($asOf: DateTime) { ntaBacklog(asOf: $asOf) {
      totals { total byStage { stage count } byAgeBucket { bucket count } }
      byFieldOffice { fieldOffice total } } }""", {"asOf": when})["ntaBacklog"]
    assert data["totals"]["total"] == len(expected) != len(current)
    assert {s["stage"]: s["count"] for s in data["totals"]["byStage"]} == {
        s: sum(1 for e in expected.values() if e[0] == s) for s in ("NOT_ISSUED", "ISSUED", "SERVED")}
    assert {b["bucket"]: b["count"] for b in data["totals"]["byAgeBucket"]} == {
        b: sum(1 for e in expected.values() if truth.bucket(e[2]) == b)
        for b in ("DAYS_0_30", "DAYS_31_90", "DAYS_91_365", "OVER_365")}
    assert {o["fieldOffice"]: o["total"] for o in data["byFieldOffice"]} == Counter(e[1] for e in expected.values())
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = ok(gateway, BACKLOG_AS_OF, {"asOf": when, "f": None, "first": 50, "after": after})["ntaBacklog"]["items"]
        nodes.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(nodes) == len(expected)
    assert {n["aNumber"]: (n["stage"], n["fieldOffice"], n["daysSinceRelease"], n["ageBucket"]) for n in nodes} == {
        a: (stage, office, days, truth.bucket(days)) for a, (stage, office, days) in expected.items()}
    for n in nodes:
        assert truth.ts(n["releasedAt"]) == truth.ts(world.orr[n["aNumber"]]["release"]["released_at"]) <= as_of


ALERTS_AS_OF = """query($asOf: DateTime, $first: Int!, $after: String, $f: CourtAlertFilter) {
  courtAlerts(asOf: $asOf, withinDays: 60, first: $first, after: $after, filter: $f) {
    edges { node { aNumber kind occurredAt hearing { id startsAt outcome } } }
    pageInfo { hasNextPage endCursor } totalCount } }"""


@pytest.mark.parametrize("when", PAST)
def test_court_alerts_as_of_a_past_time(gateway: Any, mock_services: Any, when: str) -> None:
    world = truth.World(mock_services)
    as_of, now = truth.ts(when), sim_now(mock_services)
    expected = truth.alerts(world, as_of, within_days=60)
    current = truth.alerts(world, now, within_days=60)
    all_missed = [h for e in world.eoir.values() for h in truth.missed(e)]
    assert any(truth.ts(h["starts_at"]) > as_of for h in all_missed), "no hearing was missed after asOf"
    assert {k for _a, k, _h in expected} >= {"MISSED_HEARING", "NO_HEARING_SCHEDULED", "ADDRESS_OF_RECORD_MISMATCH"}
    assert expected - current, "no alert was true at asOf and not now"
    nodes = walk(gateway, ALERTS_AS_OF, "courtAlerts", {"asOf": when}, first=50)
    keys = alert_keys(nodes)
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert Counter(n["kind"] for n in nodes) == Counter(k for _a, k, _h in expected)
    assert all(truth.ts(n["occurredAt"]) <= as_of for n in nodes if n["occurredAt"] is not None)
    for n in nodes:  # a hearing that starts after asOf had no outcome yet
        if n["kind"] == "ADDRESS_OF_RECORD_MISMATCH":
            assert truth.ts(n["hearing"]["startsAt"]) >= as_of and n["hearing"]["outcome"] is None
    court = {"kinds": ["MISSED_HEARING", "IN_ABSENTIA_ORDER"]}
    total = ok(gateway, ALERTS_AS_OF, {"asOf": when, "first": 1, "f": court})["courtAlerts"]["totalCount"]
    assert total == sum(1 for _a, k, _h in expected if k in court["kinds"]) == sum(
        1 for h in all_missed if truth.ts(h["starts_at"]) <= as_of) + sum(
        1 for e in world.eoir.values() if e["in_absentia_order"]
        and truth.by_day(e["in_absentia_order"]["ordered_on"], as_of))


@pytest.mark.parametrize("when", PAST)
def test_oversight_summary_as_of_a_past_time(gateway: Any, mock_services: Any, when: str) -> None:
    world = truth.World(mock_services)
    as_of = truth.ts(when)
    data = ok(gateway, SUMMARY, {"asOf": when})["oversightSummary"]
    backlog = truth.backlog(world, as_of)
    alerts = truth.alerts(world, as_of, 60)
    assert data["totals"]["children"] == len(world.ice)  # ICE's current assignments (documented)
    assert data["totals"]["backlog"]["total"] == len(backlog)
    assert {c["kind"]: c["count"] for c in data["totals"]["openAlerts"]} == {
        k: sum(1 for _a, kind, _h in alerts if kind == k) for k in KINDS}
    since = as_of - timedelta(hours=720)
    new = {c["kind"]: c["count"] for c in data["totals"]["newAlerts"]}
    assert new["MISSED_HEARING"] == sum(1 for e in world.eoir.values() for h in truth.missed(e)
                                        if since <= truth.ts(h["starts_at"]) <= as_of)
    assert {o["fieldOffice"]: o["backlog"]["total"] for o in data["byFieldOffice"] if o["backlog"]["total"]} == \
        Counter(e[1] for e in backlog.values())


@pytest.mark.parametrize("when", PAST)
def test_caseload_hearing_rules_as_of_a_past_time(gateway: Any, mock_services: Any, when: str) -> None:
    world = truth.World(mock_services)
    as_of, now = truth.ts(when), sim_now(mock_services)
    for f, kwargs in (({"missedHearing": True}, {"missed_hearing": True}),
                      ({"missedHearing": False}, {"missed_hearing": False}),
                      ({"hearingWithinDays": 120}, {"hearing_within_days": 120})):
        expected = truth.caseload(world, as_of, **kwargs)  # type: ignore[arg-type]
        assert expected, f"no child matches {f} as of {when}"
        assert expected != truth.caseload(world, now, **kwargs), f"{f} is the same as of {when} as now"  # type: ignore[arg-type]
        assert caseload_numbers(gateway, f, as_of, first=50) == expected


# ------------------------------------------------------------------------------------------- arguments and cursors

BAD_CURSOR = ("'after' is not a cursor of this list and filter; pass an endCursor or edge cursor it returned, "
              "or omit it to start from the beginning")


def blank_office(arg: str) -> str:
    return f'{arg} must name a field office (e.g. "San Antonio") or be omitted, not be blank'


def backend_calls(mocks: Any) -> dict[str, int]:
    """Every request each mock has served so far (its own counters)."""
    return {s: mocks.stats(s)["total"] for s in ("orr", "ice", "eoir")}


def ice_listings(mocks: Any) -> int:
    return mocks.stats("ice")["by_route"].get("GET /v1/subjects", 0)


def only_error(body: dict[str, Any]) -> tuple[str, str, list[Any]]:
    assert len(body.get("errors") or []) == 1, body
    e = body["errors"][0]
    return e["extensions"]["code"], e["message"], e["path"]


OFFICE_FIELDS = [
    ("caseload(filter: {fieldOffice: $o}, first: 2) { edges { node { aNumber } } }", ["caseload"],
     "filter.fieldOffice"),
    ("ntaBacklog { items(filter: {fieldOffice: $o}) { totalCount } }", ["ntaBacklog", "items"], "filter.fieldOffice"),
    ("courtAlerts(filter: {fieldOffice: $o}) { totalCount }", ["courtAlerts"], "filter.fieldOffice"),
    ("discrepancies(filter: {fieldOffice: $o}) { totalCount }", ["discrepancies"], "filter.fieldOffice"),
    ("safetyConcerns(fieldOffice: $o) { totalCount }", ["safetyConcerns"], "fieldOffice"),
    ("openSafetyConcernsByOffice(fieldOffice: $o) { unresolved }", ["openSafetyConcernsByOffice"], "fieldOffice"),
]


@pytest.mark.parametrize("field,path,arg", OFFICE_FIELDS, ids=[p[1][-1] for p in OFFICE_FIELDS])
@pytest.mark.parametrize("blank", ["", " ", "\t \n"], ids=["empty", "space", "whitespace"])
def test_a_blank_field_office_is_bad_input_before_any_backend_call(
        gateway: Any, mock_services: Any, field: str, path: list[str], arg: str, blank: str) -> None:
    before, listings = backend_calls(mock_services), ice_listings(mock_services)
    status, body = gateway.query(f"query($o: String) {{ {field} }}", {"o": blank})
    assert status == 200
    assert only_error(body) == ("BAD_USER_INPUT", blank_office(arg), path)
    assert body["data"][path[0]] is None
    assert ice_listings(mock_services) == listings
    assert backend_calls(mock_services) == before


def forged(cursor: str, listing: str = "bogus") -> str:
    """`cursor` edited: its sealed bytes changed where a listing cursor would lie, by `listing`'s bytes (a
    cursor is encrypted, so an edit can only change bytes blindly)."""
    sealed = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for i, b in enumerate(listing.encode()):
        sealed[(len(sealed) - 17 - i) % len(sealed)] ^= b | 1
    return base64.urlsafe_b64encode(bytes(sealed)).decode().rstrip("=")


CURSOR_LISTS = {
    "caseload": ("caseload(first: 1, after: $c) { totalCount pageInfo { endCursor } }", ["caseload"]),
    "ntaBacklog": ("ntaBacklog { items(first: 1, after: $c) { totalCount pageInfo { endCursor } } }",
                   ["ntaBacklog", "items"]),
    "courtAlerts": ("courtAlerts(first: 1, after: $c) { totalCount pageInfo { endCursor } }", ["courtAlerts"]),
    "discrepancies": ("discrepancies(first: 1, after: $c) { totalCount pageInfo { endCursor } }",
                      ["discrepancies"]),
}


def test_a_forged_cursor_is_bad_input_and_never_reaches_ice(gateway: Any, mock_services: Any) -> None:
    # the probe's cursor: [1,"ntaBacklog","A000000001",-1,"bogus"], a junk ICE listing cursor inside
    probe = "WzEsIm50YUJhY2tsb2ciLCJBMDAwMDAwMDAxIiwtMSwiYm9ndXMiXQ"
    listings = ice_listings(mock_services)
    status, body = gateway.query("query($c: String) { ntaBacklog { items(first: 1, after: $c) { totalCount } } }",
                                 {"c": probe})
    assert status == 200 and only_error(body) == ("BAD_USER_INPUT", BAD_CURSOR, ["ntaBacklog", "items"])
    assert ice_listings(mock_services) == listings
    for name, (field, path) in CURSOR_LISTS.items():
        query = f"query($c: String) {{ {field} }}"
        data = ok(gateway, query, {"c": None})
        page = data[path[0]] if len(path) == 1 else data[path[0]][path[1]]
        real = page["pageInfo"]["endCursor"]
        assert real, name
        assert ok(gateway, query, {"c": real})  # the cursor as issued still pages
        for bad in (forged(real), forged(real, base64.urlsafe_b64encode(b"ice>A999999999").decode())):
            listings = ice_listings(mock_services)
            status, body = gateway.query(query, {"c": bad})
            assert status == 200 and only_error(body) == ("BAD_USER_INPUT", BAD_CURSOR, path), name
            assert ice_listings(mock_services) == listings, name


def test_replicas_sharing_a_cursor_secret_accept_each_others_cursors(mock_services: Any, tmp_path: Any) -> None:
    """Behind a load balancer the next page may reach another process: with one UCGW_CURSOR_SECRET it pages on;
    a process with another secret (or none: a random key) refuses the cursor."""
    env = gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path))
    shared = {"UCGW_CURSOR_SECRET": "demo-only-cursor-secret-1"}
    one, two = GatewayProcess({**env, **shared}), GatewayProcess({**env, **shared})
    other = GatewayProcess({**env, "UCGW_CURSOR_SECRET": "another-secret"})
    try:
        field, path = CURSOR_LISTS["caseload"]
        query = f"query($c: String) {{ {field} }}"
        cursor = ok(one, query, {"c": None})["caseload"]["pageInfo"]["endCursor"]
        on_two, on_one = ok(two, query, {"c": cursor}), ok(one, query, {"c": cursor})
        assert without(on_two, "endCursor") == without(on_one, "endCursor")  # cursors are sealed afresh each time
        assert ok(one, query, {"c": on_two["caseload"]["pageInfo"]["endCursor"]})  # and hold on the other replica
        status, body = other.query(query, {"c": cursor})
        assert status == 200 and only_error(body) == ("BAD_USER_INPUT", BAD_CURSOR, path)
    finally:
        for gw in (one, two, other):
            gw.stop()


def test_office_names_match_alike_in_every_list(gateway: Any, mock_services: Any) -> None:
    from mocks.refdata import office_for

    world = truth.World(mock_services)
    as_of = sim_now(mock_services)
    backlog = truth.backlog(world, as_of)
    alerts = truth.alerts(world, as_of, within_days=60)
    found = truth.discrepancies(world, lambda addr: office_for(addr.get("city"), addr.get("state")))
    query = """query($o: String, $asOf: DateTime) {
      caseload(filter: {fieldOffice: $o}, asOf: $asOf) { totalCount }
      ntaBacklog(asOf: $asOf) { items(filter: {fieldOffice: $o}, first: 100) { totalCount
                                edges { node { aNumber } } } }
      courtAlerts(filter: {fieldOffice: $o}, asOf: $asOf, withinDays: 60, first: 100) { totalCount }
      discrepancies(filter: {fieldOffice: $o}, first: 100) { totalCount } }"""
    for office, spellings in (("St. Paul", ["St Paul", "st. paul", "ST. PAUL", "St. Paul", " st  paul "]),
                              ("San Antonio", ["San Antonio", "San  Antonio", "Sán Antonio", "san antonio"])):
        mine = {a for a, r in world.ice.items() if r["field_office"] == office}
        expected = truth.caseload(world, as_of, field_office=office)
        assert expected and sorted(mine) == expected, office
        for name in spellings:
            data = ok(gateway, query, {"o": name, "asOf": as_of.isoformat()})
            assert data["caseload"]["totalCount"] == len(expected), name
            assert caseload_numbers(gateway, {"fieldOffice": name}, as_of, first=3) == expected, name
            items = data["ntaBacklog"]["items"]
            assert items["totalCount"] == sum(1 for a in backlog if a in mine), name
            assert {e["node"]["aNumber"] for e in items["edges"]} == {a for a in backlog if a in mine}, name
            assert data["courtAlerts"]["totalCount"] == sum(1 for a, _k, _h in alerts if a in mine), name
            assert data["discrepancies"]["totalCount"] == sum(1 for a, _k in found if a in mine), name


REUSE = {  # list: (query, path to the connection, a filter, other filters or arguments its cursor must not take)
    "caseload": (
        """query($f: CaseloadFilter, $after: String, $asOf: DateTime) {
          caseload(filter: $f, first: 3, after: $after, asOf: $asOf) {
            edges { node { aNumber } } pageInfo { hasNextPage endCursor } } }""",
        ["caseload"], {"f": {"locationStatus": "IN_ORR_CARE"}},
        [{"f": {"missedHearing": True}}, {"f": {"locationStatus": "RELEASED_TO_SPONSOR"}},
         {"f": {"locationStatus": "IN_ORR_CARE", "missedHearing": False}}, {"f": None},
         {"f": {"locationStatus": "IN_ORR_CARE"}, "asOf": "2024-05-14T00:00:00Z"}]),
    "ntaBacklog": (
        """query($f: BacklogFilter, $after: String, $asOf: DateTime) { ntaBacklog(asOf: $asOf) {
          items(filter: $f, first: 3, after: $after) {
            edges { node { aNumber stage } } pageInfo { hasNextPage endCursor } } } }""",
        ["ntaBacklog", "items"], {"f": {"stage": "NOT_ISSUED"}},
        [{"f": {"stage": "SERVED"}}, {"f": None}, {"f": {"stage": "NOT_ISSUED", "ageBucket": "OVER_365"}},
         {"f": {"stage": "NOT_ISSUED"}, "asOf": "2024-05-14T00:00:00Z"}]),
    "courtAlerts": (
        """query($f: CourtAlertFilter, $after: String, $asOf: DateTime, $w: Int) {
          courtAlerts(filter: $f, first: 3, after: $after, asOf: $asOf, withinDays: $w) {
            edges { node { aNumber kind hearing { id } } } pageInfo { hasNextPage endCursor } } }""",
        ["courtAlerts"], {"f": {"kinds": ["MISSED_HEARING"]}, "w": 60},
        [{"f": {"kinds": ["NO_HEARING_SCHEDULED"]}, "w": 60}, {"f": None, "w": 60},
         {"f": {"kinds": ["MISSED_HEARING"]}, "w": 30},
         {"f": {"kinds": ["MISSED_HEARING"]}, "w": 60, "asOf": "2024-05-14T00:00:00Z"}]),
    "discrepancies": (
        """query($f: DiscrepancyFilter, $after: String) { discrepancies(filter: $f, first: 3, after: $after) {
          edges { node { aNumber kind } } pageInfo { hasNextPage endCursor } } }""",
        ["discrepancies"], {"f": {"kinds": ["NAME_MISMATCH"]}},
        [{"f": {"kinds": ["FIELD_OFFICE_MISMATCH"]}}, {"f": None},
         {"f": {"kinds": ["NAME_MISMATCH"], "minSeverity": "HIGH"}},
         {"f": {"kinds": ["NAME_MISMATCH"], "fieldOffice": "Houston"}}]),
}


def _connection(data: dict[str, Any], path: list[str]) -> dict[str, Any]:
    for key in path:
        data = data[key]
    return data


def _walk_all(gw: Any, query: str, path: list[str], variables: dict[str, Any]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        page = _connection(ok(gw, query, {**variables, "after": after}), path)
        nodes.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("name", list(REUSE))
def test_a_cursor_is_refused_under_another_filter(gateway: Any, mock_services: Any, name: str) -> None:
    from mocks.refdata import office_for

    query, path, mine, others = REUSE[name]
    world = truth.World(mock_services)
    as_of = sim_now(mock_services)
    mine = {"asOf": as_of.isoformat(), **mine} if name != "discrepancies" else mine
    first = _connection(ok(gateway, query, {**mine, "after": None}), path)
    assert first["pageInfo"]["hasNextPage"], name
    cursor = first["pageInfo"]["endCursor"]
    for other in others:
        variables = {"asOf": as_of.isoformat(), **other} if name != "discrepancies" else other
        status, body = gateway.query(query, {**variables, "after": cursor})
        assert status == 200 and only_error(body) == ("BAD_USER_INPUT", BAD_CURSOR, path), (name, other)
    # the same filter still pages, to exactly what the records say
    nodes = _walk_all(gateway, query, path, mine)
    if name == "caseload":
        assert [n["aNumber"] for n in nodes] == truth.caseload(world, as_of, location_status="IN_ORR_CARE")
    elif name == "ntaBacklog":
        assert sorted(n["aNumber"] for n in nodes) == sorted(
            a for a, e in truth.backlog(world, as_of).items() if e[0] == "NOT_ISSUED")
    elif name == "courtAlerts":
        keys = alert_keys(nodes)
        assert len(keys) == len(set(keys)) and set(keys) == {
            k for k in truth.alerts(world, as_of, within_days=60) if k[1] == "MISSED_HEARING"}
    else:
        expected = truth.discrepancies(world, lambda addr: office_for(addr.get("city"), addr.get("state")))
        assert sorted((n["aNumber"], n["kind"]) for n in nodes) == sorted(
            k for k in expected if k[1] == "NAME_MISMATCH")
    assert len(nodes) > 3, name  # more than one page was walked


def test_cursors_bind_to_the_filter_as_meant_not_as_typed(gateway: Any, mock_services: Any) -> None:
    """The same filter in another spelling, or `asOf` omitted on every page, keeps paging."""
    query = REUSE["discrepancies"][0]
    office = Counter(r["field_office"] for r in truth.World(mock_services).ice.values()).most_common(1)[0][0]
    kinds = ["MISSING_ADDRESS", "ADDRESS_MISMATCH", "NAME_MISMATCH"]
    spellings = [{"kinds": kinds, "fieldOffice": office},
                 {"kinds": [*reversed(kinds), kinds[0]], "fieldOffice": f" {office.upper().replace(' ', '  ')}."}]
    one_way = _walk_all(gateway, query, ["discrepancies"], {"f": spellings[0]})
    assert len(one_way) > 6  # at least three pages
    mixed: list[dict[str, Any]] = []
    after = None
    for i in range(1000):
        page = ok(gateway, query, {"f": spellings[i % 2], "after": after})["discrepancies"]
        mixed.extend(e["node"] for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert mixed == one_way
    alerts = """query($after: String) { courtAlerts(first: 2, after: $after) {
      edges { node { aNumber } } pageInfo { endCursor } } }"""
    cursor = ok(gateway, alerts, {"after": None})["courtAlerts"]["pageInfo"]["endCursor"]
    assert ok(gateway, alerts, {"after": cursor})["courtAlerts"]["edges"]  # a defaulted asOf is not bound
    status, body = gateway.query(alerts.replace("first: 2", "first: 2, asOf: \"2024-05-14T00:00:00Z\""),
                                 {"after": cursor})
    assert only_error(body) == ("BAD_USER_INPUT", BAD_CURSOR, ["courtAlerts"])
