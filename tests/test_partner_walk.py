"""security #3: a partner reads no restricted value, raw or derived, anywhere in the schema.

Queries are generated from introspection: every field of every type reachable from Query and Subscription
(to a depth that reaches every type), lists at their largest page. They run as a partner against a
gateway over the mocks, for children whose records are read from the mocks' own APIs. The test looks for
those children's restricted values in the response text, in every decoded cursor and in every error; and
checks that every field whose description names a capability a partner lacks came back null.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from graphql import get_introspection_query

from testing.gateway import GatewayProcess, mint
from testing.mockproc import MockProcess
from tests.test_safety_and_push import PUSH, Subscriber, record, settle

LIMITS = {"UCGW_MAX_QUERY_DEPTH": "30", "UCGW_MAX_QUERY_COST": "100000000", "UCGW_MAX_TOKENS": "100000",
          "UCGW_MAX_ALIASES": "1000"}
PARTNER_LACKS = ("child:identity", "child:contact", "child:welfare", "audit:read")
LEAF_KINDS = ("SCALAR", "ENUM")
LIST_ARGS = {"first": 100, "withinDays": 3650}  # optional arguments given: the largest pages, every alert


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=47, children=200) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess({**world.gateway_env(), **PUSH, **LIMITS})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def schema(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    status, body = gw.query(get_introspection_query())
    assert status == 200 and "errors" not in body
    return {t["name"]: t for t in body["data"]["__schema"]["types"]}


def _named(type_ref: dict[str, Any]) -> str:
    while type_ref.get("ofType"):
        type_ref = type_ref["ofType"]
    return type_ref["name"]  # type: ignore[no-any-return]


def _restricted(field: dict[str, Any]) -> bool:
    """True when the field's description names a capability a partner lacks ("Requires X (roles)")."""
    found = re.search(r"Requires (\S+) \(", field.get("description") or "")
    return found is not None and found.group(1) in PARTNER_LACKS


def selection(schema: dict[str, dict[str, Any]], name: str, path: frozenset[str] = frozenset()) -> str:
    """Every field of type `name`, recursively (a type already on the path is not entered again)."""
    parts = ["__typename"]
    for field in schema[name]["fields"] or []:
        if any(a["type"]["kind"] == "NON_NULL" and a["defaultValue"] is None for a in field["args"]):
            continue  # nested fields take no required arguments in this schema; roots are handled below
        target = _named(field["type"])
        args = {a["name"]: LIST_ARGS[a["name"]] for a in field["args"] if a["name"] in LIST_ARGS}
        call = field["name"] + (f"({', '.join(f'{k}: {v}' for k, v in args.items())})" if args else "")
        kind = schema[target]["kind"]
        if kind in LEAF_KINDS:
            parts.append(call)
        elif kind == "OBJECT" and target not in path:
            parts.append(f"{call} {{ {selection(schema, target, path | {target})} }}")
    return " ".join(parts)


def root_operations(schema: dict[str, dict[str, Any]], root: str, keyword: str,
                    values: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """One operation per root field: its required arguments from `values`, list arguments at their largest."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for field in schema[root]["fields"]:
        decls, args, variables = [], [], {}
        for a in field["args"]:
            required = a["type"]["kind"] == "NON_NULL" and a["defaultValue"] is None
            if required:
                assert a["name"] in values, f"{root}.{field['name']} takes an argument the walk does not know"
                decls.append(f"${a['name']}: {_type_text(a['type'])}")
                args.append(f"{a['name']}: ${a['name']}")
                variables[a["name"]] = values[a["name"]]
            elif a["name"] in LIST_ARGS:
                args.append(f"{a['name']}: {LIST_ARGS[a['name']]}")
        target = _named(field["type"])
        body = field["name"] + (f"({', '.join(args)})" if args else "")
        if schema[target]["kind"] not in LEAF_KINDS:
            body += f" {{ {selection(schema, target, frozenset({target}))} }}"
        out[field["name"]] = (f"{keyword}{'(' + ', '.join(decls) + ')' if decls else ''} {{ {body} }}", variables)
    return out


def _type_text(ref: dict[str, Any]) -> str:
    if ref["kind"] == "NON_NULL":
        return _type_text(ref["ofType"]) + "!"
    if ref["kind"] == "LIST":
        return f"[{_type_text(ref['ofType'])}]"
    return ref["name"]  # type: ignore[no-any-return]


def leaves(value: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) of every member inside a decoded JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)


def nulls_where_restricted(schema: dict[str, dict[str, Any]], value: Any, type_name: str, path: str,
                           bad: list[str]) -> None:
    """Collect paths where a field restricted to capabilities a partner lacks holds a value."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            nulls_where_restricted(schema, v, type_name, f"{path}.{i}", bad)
        return
    if not isinstance(value, dict) or schema[type_name]["kind"] != "OBJECT":
        return
    fields = {f["name"]: f for f in schema[type_name]["fields"]}
    for key, v in value.items():
        if key not in fields:
            continue
        if _restricted(fields[key]) and v is not None:
            bad.append(f"{path}.{key}")
        nulls_where_restricted(schema, v, _named(fields[key]["type"]), f"{path}.{key}", bad)


def decoded_cursors(body: Any) -> list[bytes]:
    out = []
    for key, v in leaves(body):
        if key in ("cursor", "endCursor") and isinstance(v, str):
            for part in v.split("."):
                try:
                    out.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
                except (binascii.Error, ValueError):
                    out.append(part.encode())
    return out


def secrets_of(world: MockProcess, gw: GatewayProcess, a: str) -> tuple[set[str], set[str]]:
    """(values found anywhere that would be a leak; values that are a leak as a whole string next to the child).

    Names, birth dates, countries of birth, phones and street lines are distinct enough to look for in any
    text; states, ZIPs, cities, categories, relationships and the routed office only as whole values, and
    only those no public field of the child holds (a court in the sponsor's city is public).
    """
    orr, ice, eoir = (record(world, s, a) or {} for s in ("orr", "ice", "eoir"))
    anywhere: set[str] = set()
    whole: set[str] = set()
    for rec in (orr, ice, eoir):
        for key in ("first_name", "last_name", "date_of_birth", "country_of_birth", "orr_case_id"):
            if isinstance(rec.get(key), str) and len(rec[key]) >= 3:
                anywhere.add(rec[key])
    sponsor = ((orr.get("release") or {}).get("sponsor")) or {}
    addresses = [sponsor.get("address"), ice.get("address_on_file"), eoir.get("address_of_record")]
    for addr in filter(None, addresses):
        if addr.get("street"):
            anywhere.add(addr["street"])
        whole.update(v for k, v in addr.items() if k in ("unit", "city", "state", "zip") and v)
    for key in ("name", "phone"):
        if sponsor.get(key):
            anywhere.add(sponsor[key])
    whole.update(v for k, v in sponsor.items() if k in ("relationship", "category") and v)
    status, body = gw.query("query($a: ID!) { fieldOfficeRouting(aNumber: $a) { routedOffice } }", {"a": a})
    routed = ((body.get("data") or {}).get("fieldOfficeRouting") or {}).get("routedOffice")
    if routed:
        whole.add(routed)
    public = {ice.get("field_office")} | {v for _k, v in leaves(eoir.get("hearings")) if isinstance(v, str)} \
        | {v for _k, v in leaves(orr.get("custody_episodes")) if isinstance(v, str)}
    return anywhere, whole - public


def check(schema: dict[str, dict[str, Any]], root: str, name: str, body: dict[str, Any],
          secrets: dict[str, tuple[set[str], set[str]]]) -> None:
    """No restricted value anywhere in `body` (text, decoded cursors, errors); restricted fields null."""
    text = json.dumps(body, ensure_ascii=False)
    raw_cursors = decoded_cursors(body)
    for a, (anywhere, whole) in secrets.items():
        for value in anywhere:
            assert value not in text, (name, a, "value in response")
            assert not any(value.encode() in c for c in raw_cursors), (name, a, "value in a cursor")
        for node in (n for _k, n in leaves(body) if isinstance(n, dict) and n.get("aNumber") == a):
            near = {v for _k, v in leaves(node) if isinstance(v, str)}
            assert not (near & whole), (name, a, sorted(near & whole))
    for error in body.get("errors", []):
        assert error.get("extensions", {}).get("code"), (name, error)
    bad: list[str] = []
    nulls_where_restricted(schema, body.get("data") or {}, root, "", bad)
    assert not bad, (name, bad)


@pytest.fixture(scope="module")
def known(world: MockProcess, gw: GatewayProcess) -> dict[str, Any]:
    """Released children with a sponsor address and records at every agency, the first routed elsewhere than
    ICE's office (to an office no public field of the child names); their restricted values."""
    picked: list[str] = []
    mismatched = False
    for a in world.sample(150):
        orr, ice, eoir = (record(world, s, a) for s in ("orr", "ice", "eoir"))
        if not (orr and ice and eoir and orr.get("release")):
            continue
        status, body = gw.query("query($a: ID!) { fieldOfficeRouting(aNumber: $a) { matches routedOffice } }",
                                {"a": a})
        routing = body["data"]["fieldOfficeRouting"]
        if routing["matches"] is False and not mismatched and routing["routedOffice"] in secrets_of(world, gw, a)[1]:
            mismatched = True
            picked.insert(0, a)
        elif len(picked) < 4:
            picked.append(a)
        if mismatched and len(picked) >= 4:
            break
    assert mismatched, "the world should hold a child routed to another office than ICE's"
    return {"a_numbers": picked, "secrets": {a: secrets_of(world, gw, a) for a in picked},
            "office": record(world, "ice", picked[0])["field_office"]}  # type: ignore[index]


def test_partner_reads_no_restricted_value_in_any_query(gw: GatewayProcess, schema: dict[str, dict[str, Any]],
                                                        known: dict[str, Any]) -> None:
    a_numbers = known["a_numbers"]
    operations = root_operations(schema, "Query", "query",
                                 {"aNumber": a_numbers[0], "aNumbers": a_numbers, "id": "no-such-concern"})
    assert {"child", "children", "caseload", "courtAlerts", "discrepancies", "fieldOfficeRouting",
            "ntaBacklog", "oversightSummary"} <= set(operations)
    partner = mint("partner")
    for a in a_numbers:  # every single-child field for each known child
        for name, (query, variables) in operations.items():
            if "aNumber" not in variables and a != a_numbers[0]:
                continue
            status, body = gw.query(query, {**variables, "aNumber": a} if "aNumber" in variables else variables,
                                    token=partner)
            assert status == 200, (name, body)
            check(schema, "Query", name, body, known["secrets"])
    # the walk is not vacuous: a caseworker's answers hold the values the partner's must not
    status, body = gw.query(*operations["child"])
    text = json.dumps(body, ensure_ascii=False)
    anywhere, whole = known["secrets"][a_numbers[0]]
    assert sum(v in text for v in anywhere) >= 3
    status, body = gw.query(*operations["fieldOfficeRouting"])
    routing = body["data"]["fieldOfficeRouting"]
    assert routing["matches"] is False and routing["routedOffice"] in whole
    # whether the routed office matches shows in no other form: no FIELD_OFFICE_MISMATCH for the partner
    kinds = "query($a: ID!) { child(aNumber: $a) { discrepancies { kind } } }"
    seen = {d["kind"] for d in gw.query(kinds, {"a": a_numbers[0]})[1]["data"]["child"]["discrepancies"]}
    assert "FIELD_OFFICE_MISMATCH" in seen
    status, body = gw.query(kinds, {"a": a_numbers[0]}, token=partner)
    assert "FIELD_OFFICE_MISMATCH" not in {d["kind"] for d in body["data"]["child"]["discrepancies"]}
    # nor do the kinds derived from names and birth dates: their very existence is identity data
    derived = {"FIELD_OFFICE_MISMATCH", "NAME_MISMATCH", "DOB_MISMATCH"}
    listing = ("{ discrepancies(first: 100, filter: {kinds: [FIELD_OFFICE_MISMATCH, NAME_MISMATCH, DOB_MISMATCH]}) "
               "{ edges { node { aNumber kind } } } oversightSummary { totals { discrepancies { kind } } } }")
    status, body = gw.query(listing)
    assert {e["node"]["kind"] for e in body["data"]["discrepancies"]["edges"]} == derived  # the world holds each
    status, body = gw.query(listing, token=partner)
    assert body["data"]["discrepancies"]["edges"] == []
    assert not derived & {d["kind"] for d in body["data"]["oversightSummary"]["totals"]["discrepancies"]}


def test_partner_reads_no_restricted_value_in_any_subscription(gw: GatewayProcess, world: MockProcess,
                                                               schema: dict[str, dict[str, Any]],
                                                               known: dict[str, Any]) -> None:
    a = known["a_numbers"][0]
    operations = root_operations(schema, "Subscription", "subscription",
                                 {"aNumber": a, "fieldOffice": known["office"], "filter": {}})

    async def run() -> dict[str, list[dict[str, Any]]]:
        got: dict[str, list[dict[str, Any]]] = {name: [] for name in operations}
        async with Subscriber(gw, mint("partner")) as sub:
            for name, (query, variables) in operations.items():
                await sub.subscribe(name, query, variables)
            await settle()
            current = await asyncio.to_thread(record, world, "orr", a)
            flipped = "pending" if current["background_check"] == "cleared" else "cleared"  # type: ignore[index]
            await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                    {"background_check": flipped})
            for name in ("childStatusChanged", "fieldOfficeChanges", "caseloadChanges"):
                got[name].append(await sub.until(name, lambda p, n=name: p["data"][n]["aNumber"] == a, 10))
            got["courtAlerts"] = [m["payload"] for m in sub.backlog if m.get("id") == "courtAlerts"]
        return got

    got = asyncio.run(run())
    for name, payloads in got.items():
        for payload in payloads:
            check(schema, "Subscription", name, payload, known["secrets"])
    assert all(got[n] for n in ("childStatusChanged", "fieldOfficeChanges", "caseloadChanges"))


def test_walk_finds_the_derived_fields_restricted(schema: dict[str, dict[str, Any]]) -> None:
    """The rule is written in the schema: each derived field names the capability it needs."""
    def described(type_name: str, field: str) -> str:
        return next(f["description"] for f in schema[type_name]["fields"] if f["name"] == field) or ""

    for type_name, field, capability in (("FieldOfficeRouting", "routedOffice", "child:contact"),
                                         ("FieldOfficeRouting", "basis", "child:contact"),
                                         ("FieldOfficeRouting", "matches", "child:contact"),
                                         ("Sponsor", "category", "child:contact"),
                                         ("Identity", "countryOfBirth", "child:identity")):
        assert re.search(rf"Requires {capability} \(caseworker\)", described(type_name, field)), (type_name, field)
