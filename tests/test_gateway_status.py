"""The status gateway over real HTTP against the mock backends (issue 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from testing.gateway import ROOT, GatewayProcess, http
from testing.oversight_truth import location as expected_location

PROV = "fragment P on Provenance { source fetchedAt sourceUpdatedAt ageSeconds cacheStatus stale recordFound }"
ADDR = "fragment A on Address { street unit city state zip quality }"
HEAR = "fragment H on Hearing { id type startsAt judge courtName courtAddress { ...A } medium outcome }"
FULL = """query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { aNumber
  identity { firstName lastName dateOfBirth countryOfBirth orrCaseId provenance { ...P } }
  location { status since facility { name type city state admittedAt } address { ...A } dischargeType
             iceCustodyStatus provenance { ...P } }
  sponsor { name relationship category phone address { ...A } releasedAt postReleaseServices provenance { ...P } }
  followUpCall { dueOn calledAt outcome residingWithSponsor enrolledInSchool awareOfCourtDate safetyConcern
                 provenance { ...P } }
  nta { status issuedOn servedOn serviceMethod filedOn fieldOffice
        addressOnFile { source kind address { ...A } asOf origin } provenance { ...P } }
  hearing { caseStatus nextHearing { ...H } pastHearings { ...H } missedHearingCount
            inAbsentiaOrder { orderedOn judge } decision { type decidedOn } addressOfRecord { ...A }
            changeOfAddressFiledOn provenance { ...P } }
  addressesOnFile { source kind address { ...A } asOf }
} } """ + PROV + ADDR + HEAR
HEARING_ONLY = "query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { hearing { caseStatus " \
               "nextHearing { startsAt } provenance { ...P } } } } " + PROV
NTA_ONLY = "query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { nta { status provenance { ...P } } } } " \
           + PROV
ROUTES = {"ORR": "POST /v1/children/batch", "ICE": "POST /v1/subjects/batch", "EOIR": "POST /v1/cases/batch"}


@pytest.fixture(scope="module")
def gateway(mock_services: Any) -> Any:
    gw = GatewayProcess(mock_services.gateway_env(UCGW_CACHE_TTL_SECONDS="300"))
    yield gw
    gw.stop()


def batch_calls(mock_services: Any) -> dict[str, int]:
    """Batch calls each mock has answered since the last reset."""
    out = {}
    for source, route in ROUTES.items():
        out[source] = mock_services.stats(source.lower())["by_route"].get(route, 0)
    return out


def raw(mock_services: Any, source: str, a: str) -> dict[str, Any] | None:
    path = {"orr": "children", "ice": "subjects", "eoir": "cases"}[source]
    status, _, body = http("GET", f"{getattr(mock_services, source)}/v1/{path}/{a}")
    if status == 404:
        return None
    assert status == 200
    return json.loads(body)


def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def upper(value: str | None) -> str | None:
    return value.upper() if value is not None else None


def expected_address(raw_addr: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw_addr is None:
        return None
    keys = ("street", "unit", "city", "state", "zip")
    return {**{k: raw_addr.get(k) for k in keys}, "quality": (raw_addr.get("quality") or "valid").upper()}


def check_provenance(prov: list[dict[str, Any]], records: dict[str, dict[str, Any] | None]) -> None:
    assert [p["source"] for p in prov] == list(records)
    for p in prov:
        rec = records[p["source"]]
        assert p["recordFound"] is (rec is not None)
        assert ts(p["sourceUpdatedAt"]) == (ts(rec["updated_at"].replace("Z", "+00:00")) if rec else None)
        assert p["ageSeconds"] >= 0


def test_every_field_equals_the_source_records(gateway: Any, mock_services: Any) -> None:
    a_numbers = mock_services.sample(40)
    seen_states: set[str] = set()
    for a in a_numbers:
        orr, ice, eoir = (raw(mock_services, s, a) for s in ("orr", "ice", "eoir"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # the mocks' time format: compares as text
        status, body = gateway.query(FULL, {"a": a})
        assert status == 200 and "errors" not in body, body
        child = body["data"]["child"]
        assert child["aNumber"] == a
        # identity: ICE's record
        ident = child["identity"]
        assert (ident["firstName"], ident["lastName"], ident["dateOfBirth"], ident["countryOfBirth"]) == (
            ice["first_name"], ice["last_name"], ice["date_of_birth"], ice["country_of_birth"])
        assert ident["orrCaseId"] == (orr or {}).get("orr_case_id")
        check_provenance(ident["provenance"], {"ICE": ice, "ORR": orr})
        # location
        loc = child["location"]
        assert loc["status"] == expected_location(orr, ice)
        seen_states.add(loc["status"])
        check_provenance(loc["provenance"], {"ORR": orr, "ICE": ice})
        if loc["status"] == "IN_ORR_CARE":
            assert loc["facility"]["name"] == orr["custody_episodes"][-1]["facility_name"]
        if loc["status"] == "RELEASED_TO_SPONSOR":
            assert loc["address"] == expected_address(orr["release"]["sponsor"]["address"])
        # sponsor
        release = (orr or {}).get("release")
        if release:
            sp = child["sponsor"]
            assert sp["name"] == release["sponsor"]["name"]
            assert sp["relationship"] == release["sponsor"]["relationship"]
            assert sp["category"] == release["sponsor"]["category"]
            assert sp["phone"] == release["sponsor"]["phone"]
            assert sp["address"] == expected_address(release["sponsor"]["address"])
            assert ts(sp["releasedAt"]) == ts(release["released_at"].replace("Z", "+00:00"))
            assert sp["postReleaseServices"] == upper(release["post_release_services"])
        else:
            assert child["sponsor"] is None
        call = (orr or {}).get("follow_up_call")
        if call:
            fu = child["followUpCall"]
            assert fu["outcome"] == upper(call["outcome"]) and fu["dueOn"] == call["due_on"]
            assert fu["safetyConcern"] == call["safety_concern"]
        else:
            assert child["followUpCall"] is None
        # NTA
        nta = child["nta"]
        want_status = {"not_issued": "NOT_ISSUED", "issued": "ISSUED", "served": "SERVED",
                       "filed": "FILED_WITH_COURT"}[ice["nta"]["status"]]
        assert nta["status"] == want_status
        assert (nta["issuedOn"], nta["servedOn"], nta["filedOn"]) == (
            ice["nta"]["issued_on"], ice["nta"]["served_on"], ice["nta"]["filed_on"])
        assert nta["serviceMethod"] == upper(ice["nta"]["service_method"])
        assert nta["fieldOffice"] == ice["field_office"]
        if ice.get("address_on_file"):
            assert nta["addressOnFile"]["address"] == expected_address(ice["address_on_file"])
        check_provenance(nta["provenance"], {"ICE": ice})
        # hearing
        hs = child["hearing"]
        check_provenance(hs["provenance"], {"EOIR": eoir})
        if eoir is None:
            assert hs["caseStatus"] == "NO_CASE" and hs["nextHearing"] is None and hs["missedHearingCount"] == 0
        else:
            assert hs["caseStatus"] == eoir["case_status"].upper()
            hearings = sorted(eoir["hearings"], key=lambda h: h["starts_at"])
            # next: the earliest not yet started with no outcome; one whose time passed with none is past
            upcoming = [h for h in hearings if h["outcome"] is None and h["starts_at"] >= now]
            assert (hs["nextHearing"] or {}).get("id") == (upcoming[0]["id"] if upcoming else None)
            assert [h["id"] for h in hs["pastHearings"]] == [h["id"] for h in hearings if h not in upcoming]
            assert hs["missedHearingCount"] == sum(h["outcome"] == "failed_to_appear" for h in hearings)
            assert (hs["inAbsentiaOrder"] is None) == (eoir["in_absentia_order"] is None)
            assert hs["addressOfRecord"] == expected_address(eoir["address_of_record"])
        # addresses on file: one per agency that holds one
        kinds = [x["kind"] for x in child["addressesOnFile"]]
        assert ("SPONSOR_RELEASE_ADDRESS" in kinds) == bool(release and release["sponsor"].get("address"))
        assert ("ICE_ADDRESS_ON_FILE" in kinds) == bool(ice.get("address_on_file"))
        assert ("COURT_ADDRESS_OF_RECORD" in kinds) == bool(eoir and eoir.get("address_of_record"))
    assert {"IN_ORR_CARE", "RELEASED_TO_SPONSOR"} <= seen_states


def test_provenance_goes_miss_then_hit_and_ages(gateway: Any, mock_services: Any) -> None:
    a = mock_services.sample(60)[45]
    mock_services.reset()
    _, first = gateway.query(NTA_ONLY, {"a": a})
    p1 = first["data"]["child"]["nta"]["provenance"][0]
    time.sleep(0.3)
    _, second = gateway.query(NTA_ONLY, {"a": a})
    p2 = second["data"]["child"]["nta"]["provenance"][0]
    assert (p1["cacheStatus"], p2["cacheStatus"]) == ("MISS", "HIT")
    assert p1["stale"] is False and p2["stale"] is False
    assert p2["fetchedAt"] == p1["fetchedAt"]
    assert p2["ageSeconds"] >= p1["ageSeconds"] + 0.25
    # the truth: fetchedAt lies between the request's start and end, and the source was called once
    assert batch_calls(mock_services) == {"ORR": 0, "ICE": 1, "EOIR": 0}


def test_max_age_zero_goes_to_the_source(gateway: Any, mock_services: Any) -> None:
    a = mock_services.sample(60)[46]
    gateway.query(NTA_ONLY, {"a": a})
    mock_services.reset()
    before = time.time()
    _, body = gateway.query(NTA_ONLY, {"a": a, "m": 0})
    prov = body["data"]["child"]["nta"]["provenance"][0]
    assert prov["cacheStatus"] == "MISS"
    assert ts(prov["fetchedAt"]).timestamp() >= before - 0.01
    assert batch_calls(mock_services) == {"ORR": 0, "ICE": 1, "EOIR": 0}
    _, body = gateway.query(NTA_ONLY, {"a": a, "m": 60})
    assert body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] == "HIT"
    assert batch_calls(mock_services)["ICE"] == 1


def test_selection_decides_which_sources_are_called(gateway: Any, mock_services: Any) -> None:
    a_numbers = mock_services.sample(60)
    filed = [a for a in a_numbers if raw(mock_services, "eoir", a) is not None]
    assert filed, "the sample must hold a child with a court case"
    mock_services.reset()
    _, body = gateway.query(HEARING_ONLY, {"a": filed[0], "m": 0})
    assert body["data"]["child"]["hearing"]["caseStatus"] != "NO_CASE"
    assert batch_calls(mock_services) == {"ORR": 0, "ICE": 0, "EOIR": 1}
    mock_services.reset()
    _, body = gateway.query("query($a: ID!) { child(aNumber: $a, maxAgeSeconds: 0) { sponsor { name } "
                            "followUpCall { outcome } } }", {"a": a_numbers[50]})
    assert "errors" not in body
    assert batch_calls(mock_services) == {"ORR": 1, "ICE": 0, "EOIR": 0}


def test_hundred_children_cost_one_batch_call_per_source(mock_services: Any) -> None:
    gw = GatewayProcess(mock_services.gateway_env())
    try:
        a_numbers = mock_services.sample(100)
        assert len(set(a_numbers)) == 100
        mock_services.reset()
        q = "query($as: [ID!]!) { children(aNumbers: $as) { aNumber location { status } nta { status } " \
            "hearing { caseStatus } } }"
        status, body = gw.query(q, {"as": a_numbers})
        assert status == 200 and "errors" not in body
        assert [c["aNumber"] for c in body["data"]["children"]] == a_numbers
        assert batch_calls(mock_services) == {"ORR": 1, "ICE": 1, "EOIR": 1}
        for source in ("orr", "ice", "eoir"):
            assert mock_services.stats(source)["batch_sizes"] == [100]
        _, _, raw = http("GET", f"{gw.admin_url}/readyz")
        fetches = json.loads(raw)["fetches"]
        assert {s: (f["batches"], f["records_fetched"], f["misses"], f["hits"]) for s, f in fetches.items()} == \
            {s: (1, 100, 100, 0) for s in ("ORR", "ICE", "EOIR")}
    finally:
        gw.stop()


def test_concurrent_identical_cold_queries_are_coalesced(mock_services: Any) -> None:
    gw = GatewayProcess(mock_services.gateway_env())
    try:
        a = mock_services.sample(60)[10]
        mock_services.reset()
        for source in ("orr", "ice", "eoir"):
            mock_services.admin(source, "PUT", "/_admin/faults", {"latency_ms": 200})
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda _: gw.query(FULL, {"a": a}), range(50)))
        calls = batch_calls(mock_services)
        mock_services.reset()
    finally:
        gw.stop()
    assert all(status == 200 and "errors" not in body for status, body in results)
    assert calls == {"ORR": 1, "ICE": 1, "EOIR": 1}
    statuses = [body["data"]["child"]["nta"]["provenance"][0]["cacheStatus"] for _, body in results]
    assert statuses.count("MISS") >= 1 and statuses.count("MISS") + statuses.count("HIT") == 50


def test_unknown_a_number_is_null_and_bad_ones_are_rejected(gateway: Any) -> None:
    _, body = gateway.query(FULL, {"a": "A999999999"})
    assert body["data"]["child"] is None and "errors" not in body
    # the last two: digits of another script (Arabic-Indic), which Python's `\d` and `int` take
    for bad in ("12345", "B012345678", "A0123456789", "", "A01234567X", "A01234567\u0664", "\u0660" * 9):
        status, body = gateway.query(NTA_ONLY, {"a": bad})
        assert status == 200
        assert body["data"]["child"] is None
        err = body["errors"][0]
        assert err["extensions"]["code"] == "BAD_USER_INPUT"
        assert "8 or 9 digits" in err["message"]


@pytest.mark.parametrize("form", ["{a}", "{d}", "{d3}-{d6}-{d9}", "A {d8}", "{d8}", "a{d}", " {d3} {d6} {d9} "])
def test_typed_forms_are_made_canonical(gateway: Any, mock_services: Any, form: str) -> None:
    a = next(x for x in mock_services.sample(60) if x.startswith("A0"))
    d = a[1:]
    typed = form.format(a=a, d=d, d3=d[:3], d6=d[3:6], d9=d[6:], d8=d[1:])
    _, body = gateway.query("query($a: ID!) { child(aNumber: $a) { aNumber } }", {"a": typed})
    assert body["data"]["child"]["aNumber"] == a


def test_children_list_limits(gateway: Any) -> None:
    q = "query($as: [ID!]!) { children(aNumbers: $as) { aNumber } }"
    _, body = gateway.query(q, {"as": [f"A{i:09d}" for i in range(101)]})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    _, body = gateway.query(q, {"as": []})
    assert body == {"data": {"children": []}}


def test_committed_schema_equals_served_schema(gateway: Any) -> None:
    committed = (ROOT / "schema.graphql").read_text()
    exported = subprocess.run([sys.executable, "-m", "gateway.cli", "export-schema"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    assert exported == committed
    _, body = gateway.query(get_introspection_query())
    served = print_schema(lexicographic_sort_schema(build_client_schema(body["data"])))
    assert served == print_schema(lexicographic_sort_schema(build_schema(committed)))


def test_graphiql_loads_from_the_gateway_itself(gateway: Any) -> None:
    status, headers, page = http("GET", f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html")
    html = page.decode()
    assert "https://" not in html.replace("https://github.com", "")
    for asset in ("ucgw-graphiql.js", "ucgw-graphiql.css"):
        assert f"/static/graphiql/{asset}" in html
        status, _, data = http("GET", f"{gateway.url}/static/graphiql/{asset}")
        assert status == 200 and len(data) > 1000


def test_a_hearing_whose_time_passed_without_an_outcome_is_past_not_next() -> None:
    """EOIR keeps a hearing without an outcome until someone records one; once its start has passed it is
    not the child's next court date (it used to be: the first hearing without an outcome, whatever its time)."""
    from testing.mockproc import MockProcess

    q = """query($a: ID!) { child(aNumber: $a, maxAgeSeconds: 0) { hearing { nextHearing { id startsAt outcome }
      pastHearings { id outcome } missedHearingCount } } }"""
    with MockProcess(seed=31, children=60) as mocks:
        gw = GatewayProcess(mocks.gateway_env(UCGW_CHANGE_FEED_POLL_SECONDS="0"))
        try:
            a = next(x for x in mocks.sample(60) if mocks.request("eoir", "GET", f"/v1/cases/{x}").status == 200)
            case = mocks.request("eoir", "GET", f"/v1/cases/{a}").json()
            template = case["hearings"][0] if case["hearings"] else None
            assert template is not None
            hearings = [{**template, "id": f"{a}-H9{i}", "starts_at": at, "outcome": None}
                        for i, at in enumerate(("2026-10-15T14:00:00Z", "2099-03-01T15:00:00Z",
                                                "2099-01-11T16:00:00Z"))]
            mocks.admin_ok("eoir", "PATCH", f"/_admin/records/{a}", {"hearings": hearings})
            status, body = gw.query(q, {"a": a})
        finally:
            gw.stop()
    assert status == 200 and "errors" not in body, body
    hs = body["data"]["child"]["hearing"]
    assert hs["nextHearing"] == {"id": f"{a}-H92", "startsAt": "2099-01-11T16:00:00+00:00", "outcome": None}
    assert hs["pastHearings"] == [{"id": f"{a}-H90", "outcome": None}] and hs["missedHearingCount"] == 0


def test_after_the_clock_moves_and_the_ttl_passes_new_values_appear() -> None:
    from testing.mockproc import MockProcess

    q = """query($as: [ID!]!) { children(aNumbers: $as) { aNumber
      nta { status servedOn filedOn provenance { sourceUpdatedAt cacheStatus } }
      hearing { caseStatus missedHearingCount provenance { sourceUpdatedAt cacheStatus } } } }"""
    with MockProcess(seed=31, children=200) as mocks:
        gw = GatewayProcess(mocks.gateway_env(UCGW_CACHE_TTL_SECONDS="3", UCGW_CHANGE_FEED_POLL_SECONDS="0"))
        try:
            a_numbers = mocks.sample(80)

            def raw_updated() -> dict[str, tuple[str | None, str | None]]:
                out = {}
                for a in a_numbers:
                    ice = mocks.request("ice", "GET", f"/v1/subjects/{a}").json()
                    eoir = mocks.request("eoir", "GET", f"/v1/cases/{a}")
                    out[a] = (ice["updated_at"], eoir.json()["updated_at"] if eoir.status == 200 else None)
                return out

            _, first = gw.query(q, {"as": a_numbers})
            before = raw_updated()
            assert mocks.advance(120 * 86400)["events_applied"] > 0
            after = raw_updated()
            changed = [a for a in a_numbers if after[a] != before[a]]
            assert changed, "120 simulated days must change some records"
            _, cached = gw.query(q, {"as": a_numbers})  # inside the TTL: the old values, honestly marked HIT
            for c, f in zip(cached["data"]["children"], first["data"]["children"], strict=True):
                for section in ("nta", "hearing"):
                    assert c[section]["provenance"][0]["cacheStatus"] == "HIT"
                    cp, fp = c[section]["provenance"][0], f[section]["provenance"][0]
                    assert cp["sourceUpdatedAt"] == fp["sourceUpdatedAt"]
                    assert c[section]["status" if section == "nta" else "caseStatus"] == \
                        f[section]["status" if section == "nta" else "caseStatus"]
            new_nta = {a: mocks.request("ice", "GET", f"/v1/subjects/{a}").json()["nta"] for a in changed}
            time.sleep(3.2)
            _, fresh = gw.query(q, {"as": a_numbers})
        finally:
            gw.stop()
    old = {c["aNumber"]: c for c in first["data"]["children"]}
    for child in fresh["data"]["children"]:
        a = child["aNumber"]
        ice_updated, eoir_updated = after[a]
        nta_prov = child["nta"]["provenance"][0]
        assert nta_prov["cacheStatus"] == "MISS"
        assert ts(nta_prov["sourceUpdatedAt"]) == ts(ice_updated.replace("Z", "+00:00"))
        hearing_prov = child["hearing"]["provenance"][0]
        want = ts(eoir_updated.replace("Z", "+00:00")) if eoir_updated else None
        assert ts(hearing_prov["sourceUpdatedAt"]) == want
        if a in changed and ice_updated != before[a][0]:
            assert ts(nta_prov["sourceUpdatedAt"]) > ts(old[a]["nta"]["provenance"][0]["sourceUpdatedAt"])
            assert (child["nta"]["servedOn"], child["nta"]["filedOn"]) == (
                new_nta[a]["served_on"], new_nta[a]["filed_on"])
    assert any(fresh_c != old[fresh_c["aNumber"]] for fresh_c in fresh["data"]["children"])
