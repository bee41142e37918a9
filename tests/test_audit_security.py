"""Security of the audit trail (issue 22): field-office scope of `auditEvents` (item 4); denials, 401s and
reads of the trail itself recorded, and tampering made evident by per-writer hash chains under an HMAC
key kept outside the database, checked by `ucgw audit checkpoint` / `ucgw audit verify` (item 12)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.access import gateway_env, raw, ucgw
from testing.gateway import TEST_AUDIT_HMAC_KEY, GatewayProcess, http, mint

EVENTS = """query($s: String, $a: ID, $first: Int!) {
  auditEvents(subject: $s, aNumber: $a, first: $first) {
    id subject role client aNumber fieldOffice outcome sectionsReturned sectionsDenied sectionsFailed purpose
  } }"""
CHILD = "query($a: ID!) { child(aNumber: $a) { aNumber nta { status } } }"
UNKNOWN = "A999999997"  # no system knows it: ICE assigns it no office


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-security")


@pytest.fixture(scope="module")
def gateway(mock_services: Any, data_dir: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data_dir)))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def two_offices(mock_services: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two children ICE assigns to two different field offices: (A-number, office) each."""
    seen: dict[str, str] = {}
    for a in mock_services.sample(60):
        ice = raw(mock_services, "ice", a)
        if ice and ice.get("field_office") and ice["field_office"] not in seen.values():
            seen[a] = ice["field_office"]
        if len(seen) == 2:
            break
    assert len(seen) == 2
    (a1, o1), (a2, o2) = seen.items()
    return (a1, o1), (a2, o2)


def who() -> str:
    return f"tester-{uuid.uuid4().hex[:8]}"


def events(gw: GatewayProcess, token: str | None = None, **filters: Any) -> list[dict[str, Any]]:
    status, body = gw.query(EVENTS, {"first": 1000, **filters}, token=token or mint("auditor"))
    assert status == 200 and "errors" not in body, body
    return list(body["data"]["auditEvents"])


# ------------------------------------------------------------------------------------------- item 4: scope


def test_a_scoped_auditor_reads_only_events_about_children_of_its_offices(
        gateway: GatewayProcess, two_offices: Any) -> None:
    (a1, office1), (a2, office2) = two_offices
    reader = who()
    for a in (a1, a2, UNKNOWN):
        status, _ = gateway.query(CHILD, {"a": a}, token=mint(subject=reader))
        assert status == 200
    everyone = events(gateway, s=reader)
    assert [(e["aNumber"], e["fieldOffice"]) for e in everyone] == [(a1, office1), (a2, office2), (UNKNOWN, None)]
    scoped = mint("auditor", subject=who(), field_offices=[office1.upper()])  # any typed form of the office
    assert [e["aNumber"] for e in events(gateway, scoped, s=reader)] == [a1]
    assert events(gateway, scoped, s=reader, a=a2) == []  # naming a child elsewhere finds nothing
    both = mint("auditor", subject=who(), field_offices=[office1, office2])
    assert [e["aNumber"] for e in events(gateway, both, s=reader)] == [a1, a2]  # never the office-less child


# ------------------------------------------------------------------------------------- item 12: gaps


def test_denied_lists_and_fields_and_scope_refusals_are_audited(gateway: GatewayProcess, two_offices: Any) -> None:
    (a1, office1), (a2, _) = two_offices
    partner = who()
    status, body = gateway.query("{ auditEvents(first: 1) { id } }", token=mint("partner", subject=partner))
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    scoped = mint("partner", subject=partner, field_offices=[office1])
    status, body = gateway.query(CHILD, {"a": a2}, token=scoped)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"  # to the caller, as for an unknown child
    got = events(gateway, s=partner)
    assert [(e["aNumber"], e["outcome"], e["sectionsDenied"]) for e in got] == [
        (None, "FORBIDDEN", ["auditEvents"]), (a2, "FORBIDDEN", [])]


def test_a_401_is_audited_with_the_unverified_subject_and_never_the_token(gateway: GatewayProcess) -> None:
    mallory = who()
    forged = mint("caseworker", subject=mallory, secret="a-secret-the-gateway-does-not-know-0123456789")
    status, body = gateway.query(CHILD, {"a": UNKNOWN}, token=forged, headers={"X-Purpose": "probing"})
    assert status == 401 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    status, _, _ = http("POST", f"{gateway.url}/graphql", {"query": "{ __typename }"},
                        headers={"Authorization": "Bearer not-a-jwt"})
    assert status == 401
    [event] = events(gateway, s=f"unverified:{mallory}")
    assert (event["outcome"], event["role"], event["aNumber"], event["purpose"]) == (
        "UNAUTHENTICATED", "none", None, "probing")
    everything = json.dumps(events(gateway, s="anonymous"))
    assert "not-a-jwt" not in everything and forged not in json.dumps(event)
    assert json.loads(everything)[-1]["outcome"] == "UNAUTHENTICATED"


def test_reads_of_the_audit_trail_are_audited(gateway: GatewayProcess) -> None:
    auditor = who()
    events(gateway, mint("auditor", subject=auditor), a="A000000001")
    [event] = events(gateway, s=auditor)
    assert (event["role"], event["outcome"], event["sectionsReturned"], event["aNumber"]) == (
        "auditor", "OK", ["auditEvents"], None)


# ------------------------------------------------------------------------------------- item 12: chain


def verify(trail: Path, *args: str, key: str = TEST_AUDIT_HMAC_KEY) -> Any:
    return ucgw("audit", "verify", *args, env={"UCGW_AUDIT_DB": str(trail), "UCGW_AUDIT_HMAC_KEY": key})


def tampered(trail: Path, tmp_path: Path, name: str, *sql: str) -> Path:
    """A copy of the trail changed as someone with the file (and without the key) could change it."""
    copy = tmp_path / f"{name}.sqlite3"
    shutil.copy(trail, copy)
    db = sqlite3.connect(copy)
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + ";".join(sql))
    db.commit()
    db.close()
    return copy


def test_tampering_is_reported_and_a_checkpoint_catches_a_deleted_last_row(mock_services: Any,
                                                                           tmp_path: Path) -> None:
    data = tmp_path / "data"
    for _ in range(2):  # two processes: two writers, each with its own chain
        gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(data)))
        try:
            for a in mock_services.sample(4):
                assert gw.query(CHILD, {"a": a})[0] == 200
        finally:
            gw.stop()
    trail = data / "audit.sqlite3"
    db = sqlite3.connect(trail)
    rows = db.execute("SELECT id, writer, seq FROM audit_event ORDER BY id").fetchall()
    db.close()
    writers = list(dict.fromkeys(w for _, w, _ in rows))
    assert len(writers) == 2 and len(rows) == 8
    first = [(i, s) for i, w, s in rows if w == writers[0]]
    assert [s for _, s in first] == [1, 2, 3, 4]

    done = ucgw("audit", "checkpoint", env={"UCGW_AUDIT_DB": str(trail)})
    assert done.returncode == 0, done.stderr
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(done.stdout)
    heads = json.loads(done.stdout)["chains"]
    assert sorted(heads) == sorted(writers) and heads[writers[0]]["seq"] == 4
    ok = verify(trail, "--checkpoint", str(checkpoint))
    assert ok.returncode == 0 and "8 events" in ok.stdout, ok.stdout + ok.stderr

    edited = tampered(trail, tmp_path, "edited", f"UPDATE audit_event SET subject = 'someone' WHERE id = {first[1][0]}")
    out = verify(edited)
    assert out.returncode == 1 and writers[0] in out.stdout and f"event {first[1][0]}" in out.stdout
    assert "HMAC" in out.stdout and writers[1] not in out.stdout

    middle = tampered(trail, tmp_path, "middle", f"DELETE FROM audit_event WHERE id = {first[1][0]}")
    out = verify(middle)
    assert out.returncode == 1 and f"event {first[2][0]}" in out.stdout and "missing" in out.stdout

    last = tampered(trail, tmp_path, "last", f"DELETE FROM audit_event WHERE id = {first[-1][0]}")
    assert verify(last).returncode == 0  # a chain cut short looks whole without its head kept elsewhere
    out = verify(last, "--checkpoint", str(checkpoint))
    assert out.returncode == 1 and writers[0] in out.stdout and "seq 4" in out.stdout, out.stdout

    wrong_key = verify(trail, key="another-key-of-at-least-32-bytes-0123456789")
    assert wrong_key.returncode == 1 and "HMAC" in wrong_key.stdout
    assert verify(trail, key="").returncode == 2  # no key: a usage error
    assert verify(trail, "--checkpoint", str(tmp_path / "missing.json")).returncode == 2


def test_serve_refuses_to_start_without_an_audit_hmac_key(mock_services: Any) -> None:
    for key, says in (("", "UCGW_AUDIT_HMAC_KEY"), ("too-short", "at least 32 bytes")):
        with pytest.raises(RuntimeError, match=says):
            GatewayProcess(gateway_env(mock_services, UCGW_AUDIT_HMAC_KEY=key))


def test_a_subscription_refused_for_scope_is_audited(gateway: GatewayProcess, two_offices: Any) -> None:
    """A scoped partner subscribing to a child of another office is refused (NOT_FOUND, as for an unknown
    child) and the refusal is in the trail as FORBIDDEN, as it is for a query."""
    import asyncio

    from tests.test_safety_and_push import Subscriber

    (_, office1), (a2, _) = two_offices
    partner = who()
    query = "subscription($a: ID!) { childStatusChanged(aNumber: $a) { source } }"

    async def run() -> dict[str, Any]:
        async with Subscriber(gateway, mint("partner", subject=partner, field_offices=[office1])) as sub:
            await sub.subscribe("x", query, {"a": a2})
            return await sub.message("x")

    refused = asyncio.run(run())
    assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "NOT_FOUND", refused
    assert [(e["aNumber"], e["outcome"]) for e in events(gateway, s=partner)] == [(a2, "FORBIDDEN")]
