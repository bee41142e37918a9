"""PostgreSQL stores (issue 24): the audit trail (per-writer hash chains, group commit, append-only for the
runtime role), safety concerns shared by replicas, feed cursors with fencing, and `ucgw migrate` — through
real gateways on a real server (tests/conftest.py `database_url`: a fresh database per test)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stores.feed_cursors import FencedOut, PgFeedCursorStore, SqliteFeedCursorStore
from stores.pg import Database
from testing.databases import database_env, runtime_role
from testing.gateway import ROOT, TEST_AUDIT_HMAC_KEY, GatewayProcess, http, mint
from testing.mockproc import MockProcess

CHILD = """query($a: ID!) { child(aNumber: $a) { aNumber identity { firstName } } }"""
REPORT = """mutation($i: ReportSafetyConcernInput!) { reportSafetyConcern(input: $i) { id status reportedBy } }"""
ACK = """mutation($id: ID!, $note: String) { acknowledgeSafetyConcern(id: $id, note: $note) {
  id status acknowledgedBy acknowledgementNote } }"""
RESOLVE = """mutation($id: ID!, $r: String!) { resolveSafetyConcern(id: $id, resolution: $r) {
  id status acknowledgedBy resolvedBy resolution } }"""
ONE = "query($id: ID!) { safetyConcern(id: $id) { id status acknowledgedBy resolvedBy } }"


@pytest.fixture()
def roles(database_url: str) -> tuple[str, str]:
    """(owner URL, runtime URL) of this test's database."""
    return database_url, runtime_role(database_url)


def gateway(mocks: MockProcess, roles: tuple[str, str], **extra: str) -> GatewayProcess:
    return GatewayProcess({**mocks.gateway_env(), **database_env(*roles), "UCGW_CHANGE_FEED_POLL_SECONDS": "0",
                           **extra})


def ucgw(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def rows(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def admin(gw: GatewayProcess) -> dict[str, Any]:
    status, _, body = http("GET", f"{gw.admin_url}/readyz")
    assert status == 200
    return json.loads(body)


def child_reads(gw: GatewayProcess, a_numbers: list[str], workers: int = 16) -> list[tuple[int, str, dict]]:
    """Each read's (status, X-Request-Id, body), sent `workers` at a time."""
    def one(a: str) -> tuple[int, str, dict]:
        status, headers, body = http("POST", f"{gw.url}/graphql", {"query": CHILD, "variables": {"a": a}},
                                     headers=gw.headers())
        return status, headers.get("x-request-id", ""), json.loads(body)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, a_numbers))


# ---------------------------------------------------------------------------------------------- migrations


def test_migrate_applies_once_and_the_runtime_role_may_only_insert_and_select_the_trail(
        roles: tuple[str, str]) -> None:
    owner, runtime = roles
    env = database_env(owner, runtime)
    status = ucgw("migrate", "--status", env=env)
    assert (status.returncode, status.stdout.strip()) == (0, "pending: 0001_stores")
    first = ucgw("migrate", env=env)
    assert (first.returncode, first.stdout.strip()) == (0, "applied: 0001_stores"), first.stderr
    again = ucgw("migrate", env=env)
    assert (again.returncode, again.stdout.strip()) == (0, "the schema is current")
    assert [r[0] for r in rows(owner, "SELECT name FROM schema_migrations ORDER BY version")] == ["0001_stores"]

    with psycopg.connect(runtime, autocommit=True) as conn:
        conn.execute("INSERT INTO audit_event (time, request_id, subject, role, client, a_number, outcome, "
                     "sections_returned, sections_denied, sections_failed, writer, seq, prev_hash, mac) VALUES "
                     "('t', 'r', 's', 'caseworker', 'c', 'A000000001', 'ok', '[]', '[]', '[]', 'w', 1, 'p', 'm')")
        assert conn.execute("SELECT count(*) FROM audit_event").fetchone() == (1,)
        for statement in ("UPDATE audit_event SET subject = 'someone else'", "DELETE FROM audit_event",
                          "TRUNCATE audit_event", "DROP TABLE audit_event", "DELETE FROM safety_concern",
                          "UPDATE schema_migrations SET name = 'x'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert rows(owner, "SELECT subject FROM audit_event") == [("s",)]


def test_migrate_without_a_database_url_is_a_usage_error(tmp_path: Path) -> None:
    out = ucgw("migrate", env={"UCGW_DATABASE_URL": "", "UCGW_DATABASE_MIGRATE_URL": ""})
    assert out.returncode == 2 and "UCGW_DATABASE_MIGRATE_URL" in out.stderr


# ---------------------------------------------------------------------------------------------- audit trail


def test_audit_trail_in_postgres_group_commits_and_verifies(mock_services: MockProcess,
                                                            roles: tuple[str, str]) -> None:
    owner, runtime = roles
    gw = gateway(mock_services, roles)
    try:
        a_numbers = mock_services.sample(40)
        answers = child_reads(gw, a_numbers * 2, workers=20)
        facts = admin(gw)["auditTrail"]
    finally:
        gw.stop()
    assert [s for s, _, _ in answers] == [200] * len(answers)
    # every answered read has its event, joined by request id
    stored = dict(rows(owner, "SELECT request_id, a_number FROM audit_event"))
    for (_, request_id, body), a in zip(answers, a_numbers * 2, strict=True):
        assert body["data"]["child"]["aNumber"] == a
        assert stored[request_id] == a
    assert facts["rowsWritten"] == len(answers) and facts["failedCommits"] == 0
    assert facts["commits"] < facts["rowsWritten"]  # concurrent requests shared commits
    # one writer, one chain, seq 1..n in id order
    chain = rows(owner, "SELECT writer, seq FROM audit_event ORDER BY id")
    assert len({w for w, _ in chain}) == 1 and [s for _, s in chain] == list(range(1, len(chain) + 1))
    env = {"UCGW_DATABASE_URL": runtime, "UCGW_AUDIT_HMAC_KEY": TEST_AUDIT_HMAC_KEY}
    verified = ucgw("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip() == f"ok: {len(answers)} events in 1 chains checked"
    listed = ucgw("audit", "--a-number", a_numbers[0], env=env)
    assert [json.loads(line)["a_number"] for line in listed.stdout.splitlines()] == [a_numbers[0]] * 2
    # an edited event is found by verify (the owner drops the guard to tamper; the runtime role cannot)
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_no_change")
        conn.execute("UPDATE audit_event SET subject = 'someone-else' WHERE id = (SELECT min(id) + 3 FROM audit_event)")
    broken = ucgw("audit", "verify", env=env)
    assert broken.returncode == 1 and "HMAC does not match" in broken.stdout


def test_two_replicas_write_one_trail_with_a_chain_each(mock_services: MockProcess, roles: tuple[str, str]) -> None:
    owner, runtime = roles
    a_numbers = mock_services.sample(10)
    gateways = [gateway(mock_services, roles) for _ in range(2)]
    try:
        answers = [child_reads(gw, a_numbers, workers=5) for gw in gateways]
    finally:
        for gw in gateways:
            gw.stop()
    assert all(s == 200 for replica in answers for s, _, _ in replica)
    per_writer = rows(owner, "SELECT writer, count(*), min(seq), max(seq) FROM audit_event GROUP BY writer")
    assert sorted(n for _, n, _, _ in per_writer) == [10, 10]
    assert all((lo, hi) == (1, 10) for _, _, lo, hi in per_writer)
    ids = [r[0] for r in rows(owner, "SELECT id FROM audit_event ORDER BY id")]
    assert len(set(ids)) == 20  # one order over both replicas' events
    verified = ucgw("audit", "verify", env={"UCGW_DATABASE_URL": runtime, "UCGW_AUDIT_HMAC_KEY": TEST_AUDIT_HMAC_KEY})
    assert verified.stdout.strip() == "ok: 20 events in 2 chains checked", verified.stdout + verified.stderr


# ---------------------------------------------------------------------------------------------- concerns


def _report(gw: GatewayProcess, a: str) -> str:
    status, body = gw.query(REPORT, {"i": {"aNumber": a, "severity": "HIGH", "category": "NOT_ENROLLED_IN_SCHOOL",
                                           "description": "Child says the sponsor keeps them home"}})
    assert status == 200 and not body.get("errors"), body
    assert body["data"]["reportSafetyConcern"]["status"] == "OPEN"
    return body["data"]["reportSafetyConcern"]["id"]


@pytest.fixture()
def three(mock_services: MockProcess, roles: tuple[str, str]) -> Iterator[list[GatewayProcess]]:
    gateways = [gateway(mock_services, roles) for _ in range(3)]
    yield gateways
    for gw in gateways:
        gw.stop()


def test_a_concern_reported_acknowledged_and_resolved_through_three_replicas(
        three: list[GatewayProcess], mock_services: MockProcess) -> None:
    a, b, c = three
    concern = _report(a, mock_services.sample(1)[0])
    status, acked = b.query(ACK, {"id": concern, "note": "calling the sponsor"}, token=mint(subject="acker-on-b"))
    assert status == 200 and acked["data"]["acknowledgeSafetyConcern"]["status"] == "ACKNOWLEDGED", acked
    status, resolved = c.query(RESOLVE, {"id": concern, "r": "school confirmed attendance"},
                               token=mint(subject="resolver-on-c"))
    assert status == 200, resolved
    assert resolved["data"]["resolveSafetyConcern"] == {
        "id": concern, "status": "RESOLVED", "acknowledgedBy": "acker-on-b", "resolvedBy": "resolver-on-c",
        "resolution": "school confirmed attendance"}
    for gw in three:  # every replica reads the same state
        assert gw.query(ONE, {"id": concern})[1]["data"]["safetyConcern"]["status"] == "RESOLVED"
    status, again = a.query(RESOLVE, {"id": concern, "r": "twice"})
    assert status == 200 and [e["extensions"]["code"] for e in again["errors"]] == ["CONFLICT"]


def test_concurrent_acknowledges_on_two_replicas_one_wins(three: list[GatewayProcess],
                                                         mock_services: MockProcess) -> None:
    for a_number in mock_services.sample(5):
        concern = _report(three[0], a_number)
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(lambda gw, c=concern: gw.query(ACK, {"id": c, "note": gw.url}), three))
        won = [body for _, body in outcomes if not body.get("errors")]
        lost = [body for _, body in outcomes if body.get("errors")]
        assert len(won) == 1 and len(lost) == 2, outcomes
        assert all([e["extensions"]["code"] for e in body["errors"]] == ["CONFLICT"] for body in lost)
        note = won[0]["data"]["acknowledgeSafetyConcern"]["acknowledgementNote"]
        assert three[1].query(ONE, {"id": concern})[1]["data"]["safetyConcern"]["status"] == "ACKNOWLEDGED"
        assert note in {gw.url for gw in three}


# ---------------------------------------------------------------------------------------------- feed cursors


def test_pg_feed_cursor_refuses_a_stale_epoch(roles: tuple[str, str]) -> None:
    owner, runtime = roles
    assert ucgw("migrate", env=database_env(owner, runtime)).returncode == 0

    async def run() -> None:
        database = Database(runtime)
        await database.open()
        store = PgFeedCursorStore(database)
        try:
            assert await store.claim("ORR", 1) is None  # nothing stored yet
            await store.save("ORR", "c-1", 1)
            assert await store.claim("ORR", 2) == "c-1"  # a new leader resumes where the old one stopped
            with pytest.raises(FencedOut) as fenced:
                await store.save("ORR", "c-old", 1)  # the paused old leader
            assert (fenced.value.epoch, fenced.value.newest) == (1, 2)
            with pytest.raises(FencedOut):
                await store.claim("ORR", 1)
            await store.save("ORR", "c-2", 2)
            assert await store.load("ORR") == "c-2"
            assert await store.load("ICE") is None
        finally:
            await database.close()

    asyncio.run(run())
    assert rows(owner, "SELECT source, cursor, epoch FROM feed_cursor") == [("ORR", "c-2", 2)]


def test_sqlite_feed_cursor_refuses_a_stale_epoch(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteFeedCursorStore(tmp_path / "feed.sqlite3")
        assert await store.claim("EOIR", 0) is None
        await store.save("EOIR", "c-1", 0)
        assert await store.claim("EOIR", 3) == "c-1"
        with pytest.raises(FencedOut):
            await store.save("EOIR", "c-0", 2)
        await store.close()
        reopened = SqliteFeedCursorStore(tmp_path / "feed.sqlite3")
        assert await reopened.load("EOIR") == "c-1"
        await reopened.close()

    asyncio.run(run())
