"""Security review, group B (issue 22): sealed cursors (#2), no existence oracle (#7) and the one scope
rule (#14), over real HTTP and graphql-transport-ws against the mocks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from testing.access import by_office as sample_by_office
from testing.access import gateway_env
from testing.gateway import GatewayProcess, mint
from testing.mockproc import MockProcess
from tests.test_safety_and_push import PUSH, Subscriber, record, settle

A_NUMBER = re.compile(rb"A[0-9]{9}")
UNKNOWN = "A999999998"
LISTS = {  # list: (query selecting every cursor, path to the connection)
    "caseload": ("query($c: String) { caseload(first: 2, after: $c) { edges { cursor node { aNumber } } "
                 "pageInfo { endCursor } } }", ["caseload"]),
    "ntaBacklog": ("query($c: String) { ntaBacklog { items(first: 2, after: $c) { edges { cursor } "
                   "pageInfo { endCursor } } } }", ["ntaBacklog", "items"]),
    "courtAlerts": ("query($c: String) { courtAlerts(first: 2, after: $c) { edges { cursor } "
                    "pageInfo { endCursor } } }", ["courtAlerts"]),
    "discrepancies": ("query($c: String) { discrepancies(first: 2, after: $c) { edges { cursor } "
                      "pageInfo { endCursor } } }", ["discrepancies"]),
}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cursor_bytes(cursor: str) -> list[bytes]:
    """What anyone can read from a cursor: each dot-separated part, base64-decoded where it decodes."""
    out = [cursor.encode()]
    for part in cursor.split("."):
        try:
            out.append(_unb64(part))
        except (binascii.Error, ValueError):
            pass
    return out


def _json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def page_of(body: dict[str, Any], path: list[str]) -> dict[str, Any]:
    node: Any = body["data"]
    for key in path:
        node = node[key]
    return node  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def gateway(mock_services: Any) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(gateway_env(mock_services, UCGW_CACHE_TTL_SECONDS="300"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def offices(mock_services: Any) -> dict[str, list[str]]:
    """Sample A-numbers by the office ICE holds responsible."""
    return sample_by_office(mock_services)


# ------------------------------------------------------------------------------------------- #2 cursors


def test_cursors_reveal_no_a_number_and_refuse_edits(gateway: GatewayProcess, offices: dict[str, list[str]]) -> None:
    """security #2: a scoped partner's cursors (edge and end, every list) hold no readable A-number, though the
    scan behind them passed children of other offices; they still page, and an edited one is BAD_CURSOR."""
    office = Counter({o: len(v) for o, v in offices.items()}).most_common()[-1][0]  # a small office: long scans
    partner = mint("partner", field_offices=[office])
    seen = 0
    for name, (query, path) in LISTS.items():
        status, body = gateway.query(query, {"c": None}, token=partner)
        assert status == 200 and not body.get("errors"), (name, body)
        page = page_of(body, path)
        cursors = [e["cursor"] for e in page["edges"]] + [page["pageInfo"]["endCursor"]]
        for cursor in filter(None, cursors):
            seen += 1
            for readable in cursor_bytes(cursor):
                assert not A_NUMBER.search(readable), (name, readable)
                assert not _json(readable), (name, readable)  # no readable structure inside
        end = page["pageInfo"]["endCursor"]
        if end is None:
            continue
        status, body = gateway.query(query, {"c": end}, token=partner)  # it still pages on
        assert status == 200 and not body.get("errors"), (name, body)
        sealed = bytearray(_unb64(end.split(".")[0]))
        sealed[len(sealed) // 2] ^= 0x01
        edited = base64.urlsafe_b64encode(bytes(sealed)).decode().rstrip("=")
        if "." in end:
            edited += "." + end.split(".", 1)[1]
        for bad in (edited, end[:-4], end + "AAAA"):
            status, body = gateway.query(query, {"c": bad}, token=partner)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], (name, body)
            assert body["errors"][0]["message"].startswith("'after' is not a cursor of this list"), name
        other = next(q for n, (q, _p) in LISTS.items() if n != name)  # another list's cursor
        status, body = gateway.query(other, {"c": end}, token=partner)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], name
    assert seen >= 4


def test_equal_positions_give_unrelated_cursors(gateway: GatewayProcess) -> None:
    """security #2: a cursor is sealed with a fresh nonce, so two cursors of one position share no readable part
    (nothing to compare across callers) and both page to the same next page."""
    query, path = LISTS["caseload"]
    one = page_of(gateway.query(query, {"c": None})[1], path)["pageInfo"]["endCursor"]
    two = page_of(gateway.query(query, {"c": None})[1], path)["pageInfo"]["endCursor"]
    assert one != two
    assert page_of(gateway.query(query, {"c": one})[1], path)["edges"][0]["node"] \
        == page_of(gateway.query(query, {"c": two})[1], path)["edges"][0]["node"]


# ------------------------------------------------------------------------------------------- #7 existence


CHILD = "query($a: ID!) { child(aNumber: $a) { aNumber hearing { caseStatus } } }"
CHILDREN = "query($as: [ID!]!) { children(aNumbers: $as) { aNumber } }"
ROUTING = "query($a: ID!) { fieldOfficeRouting(aNumber: $a) { aNumber currentOffice } }"


def _answer(body: dict[str, Any]) -> tuple[Any, list[tuple[str, str, tuple[Any, ...]]]]:
    return body.get("data"), [(e["message"], e["extensions"]["code"], tuple(e.get("path") or ()))
                              for e in body.get("errors", [])]


def test_scoped_callers_get_one_answer_for_unknown_and_out_of_scope(gateway: GatewayProcess,
                                                                     offices: dict[str, list[str]]) -> None:
    """security #7: for a caller scoped to field offices, a child of another office and an A-number no system
    knows give the same answer (null and one NOT_FOUND error, same message); unscoped callers get plain null."""
    mine, other = list(offices)[:2]
    theirs, own = offices[other][0], offices[mine][0]
    for role in ("partner", "caseworker"):
        token = mint(role, field_offices=[mine])
        for query, field in ((CHILD, "child"), (ROUTING, "fieldOfficeRouting")):
            outside = _answer(gateway.query(query, {"a": theirs}, token=token)[1])
            unknown = _answer(gateway.query(query, {"a": UNKNOWN}, token=token)[1])
            assert outside == unknown, (role, field)
            data, errors = unknown
            assert data == {field: None} and len(errors) == 1 and errors[0][1:] == ("NOT_FOUND", (field,))
            assert theirs not in errors[0][0] and UNKNOWN not in errors[0][0]
            status, body = gateway.query(query, {"a": own}, token=token)
            assert not body.get("errors") and body["data"][field]["aNumber"] == own
            status, body = gateway.query(query, {"a": UNKNOWN}, token=mint(role))  # unscoped: plain null
            assert body == {"data": {field: None}}
        data, errors = _answer(gateway.query(CHILDREN, {"as": [theirs, own, UNKNOWN]}, token=token)[1])
        assert data == {"children": [None, {"aNumber": own}, None]}
        assert [(m, c) for m, c, _p in errors] == [(errors[0][0], "NOT_FOUND")] * 2
        assert [p for _m, _c, p in errors] == [("children", 0), ("children", 2)]


# ------------------------------------------------------------------------------------------- #14 one scope rule

REPORT = """mutation($i: ReportSafetyConcernInput!) { reportSafetyConcern(input: $i) { id fieldOffice routedBy } }"""
OFFICE_CHANGES = "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) { aNumber fieldOffices } }"
CHANGED = "subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source } }"


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    """A mock world of our own: records are staged here."""
    with MockProcess(seed=41, children=300) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def push_gw(world: MockProcess) -> Iterator[GatewayProcess]:
    gw = GatewayProcess({**world.gateway_env(), **PUSH})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def unassigned(world: MockProcess, push_gw: GatewayProcess) -> tuple[str, str, str]:
    """(child ICE assigns to no office, released to a sponsor in office R's area; a child ICE assigns to R; R).

    The unassigned child is a copy of the second one's ORR record under a new A-number, with no ICE record.
    """
    q = "query($a: ID!) { fieldOfficeRouting(aNumber: $a) { routedOffice currentOffice matches } }"
    for a in world.sample(120):
        status, body = push_gw.query(q, {"a": a})
        routing = (body.get("data") or {}).get("fieldOfficeRouting")
        if routing and routing["matches"] and record(world, "orr", a):
            break
    else:
        raise AssertionError("no released child whose sponsor lives in ICE's office area")
    copy = json.loads(json.dumps(record(world, "orr", a)))
    new_a = "A999000222"
    copy["a_number"] = new_a
    assert world.request("orr", "PUT", f"/_admin/records/{new_a}", copy).status in (200, 201)
    assert record(world, "ice", new_a) is None
    return new_a, a, routing["currentOffice"]


def test_a_child_ice_assigns_to_no_office_is_in_no_scope(push_gw: GatewayProcess, world: MockProcess,
                                                         unassigned: tuple[str, str, str]) -> None:
    """security #14 (queries) and #7: a scoped caseworker of the office covering the sponsor's address may not
    read or report on a child ICE assigns to no office; the answer is that of an unknown A-number."""
    new_a, _assigned, office = unassigned
    scoped = mint("caseworker", field_offices=[office])
    for a in (new_a, UNKNOWN):
        status, body = push_gw.query(REPORT, {"i": {"aNumber": a, "severity": "LOW", "category": "OTHER",
                                                    "description": "probe"}}, token=scoped)
        data, errors = _answer(body)
        assert data == {"reportSafetyConcern": None} and len(errors) == 1, (a, body)
        assert errors[0][1] == "NOT_FOUND", (a, body)
    first = _answer(push_gw.query(REPORT, {"i": {"aNumber": new_a, "severity": "LOW", "category": "OTHER",
                                                 "description": "probe"}}, token=scoped)[1])
    second = _answer(push_gw.query(REPORT, {"i": {"aNumber": UNKNOWN, "severity": "LOW", "category": "OTHER",
                                                  "description": "probe"}}, token=scoped)[1])
    assert first == second
    status, body = push_gw.query(CHILD, {"a": new_a}, token=scoped)
    assert _answer(body) == _answer(push_gw.query(CHILD, {"a": UNKNOWN}, token=scoped)[1])
    status, body = push_gw.query(CHILD, {"a": new_a})  # unscoped: the child is there
    assert body["data"]["child"]["aNumber"] == new_a


def test_office_streams_carry_no_child_ice_assigns_to_no_office(push_gw: GatewayProcess, world: MockProcess,
                                                                unassigned: tuple[str, str, str]) -> None:
    """security #14 (subscriptions): a change to a child ICE assigns to no office is not routed to the office
    covering its sponsor's address; an unscoped subscriber to the child still hears of it."""
    new_a, assigned, office = unassigned

    async def flip(a: str) -> None:
        current = await asyncio.to_thread(record, world, "orr", a)
        flipped = "pending" if current["background_check"] == "cleared" else "cleared"  # type: ignore[index]
        await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                {"background_check": flipped})

    async def run() -> None:
        async with Subscriber(push_gw, mint("partner", field_offices=[office])) as scoped, \
                Subscriber(push_gw, mint("partner")) as unscoped:
            await scoped.subscribe("o", OFFICE_CHANGES, {"o": office})
            await unscoped.subscribe("c", CHANGED, {"a": new_a})
            await settle()
            await flip(new_a)
            await unscoped.until("c", lambda p: p["data"]["childStatusChanged"]["aNumber"] == new_a, 10)
            await flip(assigned)  # published after the first: the scoped stream's next event of either is this
            heard: list[str] = []
            while assigned not in heard:
                msg = await scoped.message("o", 10)
                assert msg["type"] == "next", msg
                heard.append(msg["payload"]["data"]["fieldOfficeChanges"]["aNumber"])
            assert new_a not in heard

    asyncio.run(run())
