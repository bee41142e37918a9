"""The inline executor (resolvers/upstream/execution_context.py) gives the answers graphql-core's own executor gives.

Two gateways over the same mocks, one with `UCGW_INLINE_PLAIN_FIELDS=false`, both with stored answers off
so that every request is executed. The same queries (every section, aliases, fragments, `__typename`,
lists with unknown and malformed A-numbers, discrepancies with their claims) are sent as each role and as
a field-office-scoped partner, and while a source serves malformed records; the bodies must be equal
except the fetch times (each gateway fetched on its own) and the HTTP status must be too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from testing.access import gateway_env
from testing.gateway import GatewayProcess, http, mint, without

PROV = "fragment P on Provenance { source fetchedAt sourceUpdatedAt ageSeconds cacheStatus stale recordFound }"
ADDR = "fragment A on Address { street unit city state zip quality }"
HEAR = "fragment H on Hearing { __typename id type startsAt judge courtName courtAddress { ...A } medium outcome }"
SECTIONS = """aNumber __typename
  identity { firstName lastName dateOfBirth countryOfBirth orrCaseId provenance { ...P } }
  location { status since facility { name type city state admittedAt dischargedAt } address { ...A }
             dischargeType iceCustodyStatus provenance { ...P } }
  sponsor { name relationship category phone address { ...A } releasedAt postReleaseServices provenance { ...P } }
  followUpCall { dueOn calledAt outcome residingWithSponsor enrolledInSchool awareOfCourtDate safetyConcern
                 provenance { ...P } }
  nta { status issuedOn servedOn serviceMethod filedOn fieldOffice
        addressOnFile { source kind address { ...A } asOf origin provenance { ...P } } provenance { ...P } }
  hearing { caseStatus nextHearing { ...H } pastHearings { ...H } missedHearingCount
            inAbsentiaOrder { orderedOn judge } decision { type decidedOn } addressOfRecord { ...A }
            changeOfAddressFiledOn provenance { ...P } }
  addressesOnFile { source kind address { ...A } asOf origin }
  discrepancies { kind severity detail claims { source field value provenance { source recordFound } } }"""
CHILDREN = ("query($as: [ID!]!) { children(aNumbers: $as) { " + SECTIONS + " } } " + PROV + ADDR + HEAR)
ALIASED = ("""query($a: ID!) { first: child(aNumber: $a) { id: aNumber
  where: location { s: status ... on Location { facility { n: name t: type } } provenance { ...P } }
  court: hearing { ... { next: nextHearing { ...H at: startsAt } } past: pastHearings { id } }
  n1: nta { status } n2: nta { fieldOffice office: fieldOffice } } } """ + PROV + ADDR + HEAR)

# what is selected depends on the variables: completions compiled for one request must not serve another
DIRECTED = ("""query($a: ID!, $more: Boolean!) { child(aNumber: $a) { aNumber
  location { status facility @include(if: $more) { name city } provenance { source ...Q @skip(if: $more) } }
  sponsor { category name @include(if: $more) } } }
  fragment Q on Provenance { cacheStatus }""")


@pytest.fixture(scope="module")
def pair(mock_services: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GatewayProcess]]:
    gateways = {}
    for name, inline in (("inline", "true"), ("graphql-core", "false")):
        data = tmp_path_factory.mktemp(f"exec-{name}")
        gateways[name] = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data),
                                                    UCGW_INLINE_PLAIN_FIELDS=inline, UCGW_ANSWER_CACHE_BYTES="0"))
    yield gateways
    for gw in gateways.values():
        gw.stop()


def comparable(node: Any) -> Any:
    """The answer without what differs between two gateways by nature: when each fetched and how long ago, and
    each request's id."""
    return without(node, "fetchedAt", "ageSeconds", "requestId")


def ask(gw: GatewayProcess, query: str, variables: dict[str, Any], token: str) -> tuple[int, Any]:
    status, _, body = http("POST", f"{gw.url}/graphql", {"query": query, "variables": variables},
                           headers={"Authorization": f"Bearer {token}"})
    return status, json.loads(body)


def same_answers(pair: dict[str, GatewayProcess], query: str, variables: dict[str, Any], token: str) -> Any:
    (s1, b1), (s2, b2) = (ask(gw, query, variables, token) for gw in pair.values())
    assert s1 == s2 == 200
    assert comparable(b1) == comparable(b2)
    return b1


def test_every_role_gets_the_same_answers(pair: dict[str, GatewayProcess], mock_services: Any) -> None:
    sample = mock_services.sample(60)
    batch = [*sample[:40], "A000000000", "not-an-a-number"][:40]
    for role in ("caseworker", "partner", "auditor"):
        body = same_answers(pair, CHILDREN, {"as": batch}, mint(role))
        if role == "caseworker":
            children = [c for c in body["data"]["children"] if c]
            assert len(children) >= 35 and "errors" not in body
            assert sum(len(c["hearing"]["pastHearings"]) for c in children if c["hearing"]) > 0
            assert any(c["discrepancies"] for c in children)
        elif role == "partner":
            assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
            assert body["data"]["children"][0]["sponsor"] is None or \
                body["data"]["children"][0]["sponsor"]["name"] is None
        else:
            assert body["data"] is None or body["data"]["children"] is None
    for a in sample[40:50]:
        body = same_answers(pair, ALIASED, {"a": a}, mint("caseworker"))
        assert body["data"]["first"]["id"] == a
    for more in (True, False, True):
        body = same_answers(pair, DIRECTED, {"a": sample[0], "more": more}, mint("caseworker"))
        location = body["data"]["child"]["location"]
        assert ("facility" in location) is more
        assert all(("cacheStatus" in p) is not more for p in location["provenance"])
        assert body["data"]["child"]["sponsor"] is None or ("name" in body["data"]["child"]["sponsor"]) is more


def test_scoped_partner_and_malformed_records_get_the_same_answers(pair: dict[str, GatewayProcess],
                                                                  mock_services: Any) -> None:
    sample = mock_services.sample(60)[50:60]
    body = same_answers(pair, "query($a: ID!) { child(aNumber: $a) { nta { fieldOffice } } }", {"a": sample[0]},
                        mint("caseworker"))
    office = body["data"]["child"]["nta"]["fieldOffice"]
    scoped = mint("partner", field_offices=[office])
    body = same_answers(pair, CHILDREN, {"as": sample}, scoped)
    assert any(e["extensions"]["code"] == "FORBIDDEN" and e["path"][-1] not in ("sponsor",) for e in body["errors"])
    status, _ = mock_services.admin("eoir", "PUT", "/_admin/faults", {"malformed_rate": 1.0})
    assert status == 200
    try:
        fresh = [a for a in mock_services.sample(200)[120:140]]  # never asked before: EOIR is fetched now
        body = same_answers(pair, CHILDREN, {"as": fresh}, mint("caseworker"))
        codes = {e["extensions"]["code"] for e in body["errors"]}
        assert "SOURCE_BAD_RESPONSE" in codes
        assert all(c is None or c["hearing"] is None for c in body["data"]["children"])
    finally:
        mock_services.reset()


def test_leaf_shortcuts_agree_with_the_types_own_coercion() -> None:
    """Scalars and enums completed inline give what the type's output coercion gives, and refuse what it refuses."""
    from graphql import GraphQLBoolean, GraphQLError, GraphQLFloat, GraphQLID, GraphQLInt, GraphQLString

    from resolvers.schema import build_schema
    from resolvers.types import LocationStatus
    from resolvers.upstream.execution_context import _leaf, _Slow

    enum_type = build_schema()._schema.type_map["LocationStatus"]
    cases: list[tuple[Any, list[Any]]] = [
        (GraphQLString, ["x", "", 5, True]),
        (GraphQLID, ["A123456789", 7]),
        (GraphQLBoolean, [True, False, 1]),
        (GraphQLInt, [0, -(2**31), 2**31 - 1, 3.0]),
        (GraphQLFloat, [1.5, 2, 0.0]),
        (enum_type, list(LocationStatus)),
    ]
    for output, values in cases:
        complete = _leaf(output, nullable=True)
        for value in values:
            assert complete(value, None, None) == output.coerce_output_value(value), (output, value)
    assert _leaf(GraphQLInt, nullable=True)(None, None, None) is None
    with pytest.raises(_Slow):
        _leaf(GraphQLString, nullable=False)(None, None, None)
    for output, bad in ((GraphQLInt, 2**31), (GraphQLFloat, float("nan")), (GraphQLString, [1])):
        with pytest.raises(GraphQLError):
            _leaf(output, nullable=False)(bad, None, None)
