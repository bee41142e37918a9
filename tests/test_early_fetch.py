"""Early fetches (gateway/http/prefetch.py), over real HTTP against the mocks.

What is proved: once a status query text has run, a later request with the same text starts its backend
calls before GraphQL runs, and its answer is the one a normal execution gives (same records, MISS, one
batch call per source, only the sources the selection needs); a list longer than one that already ran,
values the resolver would refuse, and texts whose cost could depend on other variables start nothing
early; a source that fails on an early call gives the same partial answer as without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from testing.access import gateway_env, raw
from testing.gateway import GatewayProcess, http, without

STATUS = """query($a: ID!) { child(aNumber: $a) { aNumber
  location { status provenance { source fetchedAt cacheStatus } }
  nta { status issuedOn fieldOffice provenance { source fetchedAt cacheStatus } }
  hearing { caseStatus provenance { source fetchedAt cacheStatus } } } }"""
HEARING = "query($a: ID!) { child(aNumber: $a) { hearing { caseStatus provenance { source cacheStatus } } } }"
LIST = "query($as: [ID!]!) { children(aNumbers: $as) { aNumber nta { status provenance { cacheStatus } } } }"
ROUTES = {"orr": "POST /v1/children/batch", "ice": "POST /v1/subjects/batch", "eoir": "POST /v1/cases/batch"}


@pytest.fixture(scope="module")
def gw(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    data = tmp_path_factory.mktemp("early-data")
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data), UCGW_CACHE_TTL_SECONDS="600",
                                         UCGW_RETRY_ATTEMPTS="0", UCGW_BREAKER_FAILURE_THRESHOLD="100"))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def released(mock_services: Any) -> Iterator[str]:
    """Children with every section filled that no test of this module has read yet, one at a time."""
    return iter(mock_services.sample(10, "missed_hearing"))


@pytest.fixture(scope="module")
def cold(mock_services: Any) -> Iterator[str]:
    """Other A-numbers no test of this module has read yet, one at a time."""
    filled = set(mock_services.sample(10, "missed_hearing"))
    return iter([a for a in mock_services.sample(250) if a not in filled])


def early_facts(gw: GatewayProcess) -> dict[str, int]:
    _, _, body = http("GET", f"{gw.admin_url}/readyz")
    return json.loads(body)["earlyFetch"]


def batch_calls(mock_services: Any) -> dict[str, int]:
    return {s: mock_services.stats(s)["by_route"].get(route, 0) for s, route in ROUTES.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def test_a_repeated_text_starts_its_calls_before_graphql(gw: GatewayProcess, mock_services: Any,
                                                       released: Iterator[str]) -> None:
    first, second = next(released), next(released)
    status, body = gw.query(STATUS, {"a": first})
    assert status == 200 and "errors" not in body
    facts, calls = early_facts(gw), batch_calls(mock_services)

    status, body = gw.query(STATUS, {"a": second.lower()[1:]})  # a typed form: made canonical as GraphQL does
    assert status == 200 and "errors" not in body
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 1, "records": 3}
    assert delta(calls, batch_calls(mock_services)) == {"orr": 1, "ice": 1, "eoir": 1}
    child = body["data"]["child"]
    assert child["aNumber"] == second
    assert {p["cacheStatus"] for s in ("location", "nta", "hearing") for p in child[s]["provenance"]} == {"MISS"}
    ice = raw(mock_services, "ice", second)
    assert ice is not None and child["nta"]["fieldOffice"] == ice["field_office"]

    # the same records through a text that has never run (no early call): the same answer
    status, again = gw.query(STATUS + " ", {"a": second})
    assert status == 200 and delta(calls, batch_calls(mock_services)) == {"orr": 1, "ice": 1, "eoir": 1}
    assert without(again, "cacheStatus") == without(body, "cacheStatus")
    assert {p["cacheStatus"] for s in ("location", "nta", "hearing") for p in again["data"]["child"][s]["provenance"]} \
        == {"HIT"}


def test_only_the_sources_the_selection_needs_are_called_early(gw: GatewayProcess, mock_services: Any,
                                                               released: Iterator[str]) -> None:
    assert gw.query(HEARING, {"a": next(released)})[0] == 200
    facts, calls = early_facts(gw), batch_calls(mock_services)
    status, body = gw.query(HEARING, {"a": next(released)})
    assert status == 200 and "errors" not in body
    assert body["data"]["child"]["hearing"]["provenance"] == [{"source": "EOIR", "cacheStatus": "MISS"}]
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 1, "records": 1}
    assert delta(calls, batch_calls(mock_services)) == {"orr": 0, "ice": 0, "eoir": 1}


def test_a_list_starts_early_up_to_the_longest_that_ran(gw: GatewayProcess, mock_services: Any,
                                                        cold: Iterator[str]) -> None:
    def ask(n: int) -> tuple[dict[str, int], dict[str, int], list[int]]:
        numbers = [next(cold) for _ in range(n)]
        facts, calls = early_facts(gw), batch_calls(mock_services)
        sizes = len(mock_services.stats("ice")["batch_sizes"])
        status, body = gw.query(LIST, {"as": numbers})
        assert status == 200 and "errors" not in body
        assert [c["aNumber"] for c in body["data"]["children"]] == numbers
        assert {c["nta"]["provenance"][0]["cacheStatus"] for c in body["data"]["children"]} == {"MISS"}
        return (delta(facts, early_facts(gw)), delta(calls, batch_calls(mock_services)),
                mock_services.stats("ice")["batch_sizes"][sizes:])

    learned = ask(3)
    assert learned[0] == {"plans": 1, "requests": 0, "records": 0}
    # nta reads ICE only; children none of those know would be asked of the others (not the case here)
    assert ask(3) == ({"plans": 0, "requests": 1, "records": 3}, {"orr": 0, "ice": 1, "eoir": 0}, [3])
    assert ask(5) == ({"plans": 0, "requests": 0, "records": 0}, {"orr": 0, "ice": 1, "eoir": 0}, [5])
    assert ask(5) == ({"plans": 0, "requests": 1, "records": 5}, {"orr": 0, "ice": 1, "eoir": 0}, [5])


def test_values_graphql_would_refuse_start_nothing(gw: GatewayProcess, mock_services: Any,
                                                   cold: Iterator[str]) -> None:
    assert gw.query(STATUS, {"a": next(cold)})[0] == 200  # the text is known
    facts, calls = early_facts(gw), batch_calls(mock_services)
    for variables in ({"a": "12345"}, {}, {"a": None}, {"a": ["A012345678"]}):
        status, body = gw.query(STATUS, variables)
        # variables that do not coerce are refused whole (400, no data); an ID that is no A-number by its resolver
        assert (status, body.get("data")) in ((400, None), (200, {"child": None})), (variables, body)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], (variables, body)
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 0, "records": 0}
    assert delta(calls, batch_calls(mock_services)) == {"orr": 0, "ice": 0, "eoir": 0}
    # a number GraphQL takes as an ID: answered as usual, without an early call
    status, body = gw.query(STATUS, {"a": 123456789})
    assert status == 200 and body["data"]["child"] is None and "errors" not in body
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 0, "records": 0}
    aged = "query($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { nta { status } } }"
    assert gw.query(aged, {"a": next(cold), "m": 30})[0] == 200
    facts, calls = early_facts(gw), batch_calls(mock_services)
    status, body = gw.query(aged, {"a": next(cold), "m": -1})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 0, "records": 0}
    assert delta(calls, batch_calls(mock_services)) == {"orr": 0, "ice": 0, "eoir": 0}
    # an integer age is a key of its own: the same A-number asked with maxAgeSeconds 0 is fetched again, early
    a = next(cold)
    assert gw.query(aged, {"a": a, "m": 0})[0] == 200
    status, body = gw.query(aged, {"a": a, "m": 0})
    assert status == 200 and "errors" not in body
    assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 2, "records": 2}
    assert delta(calls, batch_calls(mock_services)) == {"orr": 0, "ice": 2, "eoir": 0}


@pytest.mark.parametrize("query, variables", [
    ("query($a: ID!, $x: Boolean!) { child(aNumber: $a) @include(if: $x) { nta { status } } }", {"x": True}),
    ("query($a: ID!) { one: child(aNumber: $a) { nta { status } } two: child(aNumber: $a) { aNumber } }", {}),
    ("query($a: ID! = \"A000000000\") { child(aNumber: $a) { nta { status } } }", {}),
    ("query($a: ID!, $n: Int!) { child(aNumber: $a) { nta { status } } caseload(first: $n) { pageInfo "
     "{ hasNextPage } } }", {"n": 1}),
])
def test_texts_whose_calls_could_differ_learn_no_plan(gw: GatewayProcess, cold: Iterator[str], query: str,
                                                      variables: dict[str, Any]) -> None:
    for _ in range(2):
        facts = early_facts(gw)
        status, body = gw.query(query, {"a": next(cold), **variables})
        assert status == 200 and body.get("data") is not None
        assert delta(facts, early_facts(gw)) == {"plans": 0, "requests": 0, "records": 0}


def test_a_source_failing_an_early_call_gives_the_usual_partial_answer(gw: GatewayProcess, mock_services: Any,
                                                                        released: Iterator[str]) -> None:
    assert gw.query(STATUS, {"a": next(released)})[0] == 200
    facts = early_facts(gw)
    mock_services.admin("eoir", "PUT", "/_admin/faults", {"error_rate": 1.0})
    try:
        status, body = gw.query(STATUS, {"a": next(released)})
    finally:
        mock_services.reset()
    assert status == 200
    assert delta(facts, early_facts(gw))["requests"] == 1
    child = body["data"]["child"]
    assert child["hearing"] is None and child["nta"]["provenance"][0]["cacheStatus"] == "MISS"
    assert [(e["path"], e["extensions"]["code"], e["extensions"]["source"]) for e in body["errors"]] == [
        (["child", "hearing"], "SOURCE_UNAVAILABLE", "EOIR")]
