"""Safety concerns and push (issue 6, part B), over real HTTP and graphql-transport-ws against the mocks.

The tests move the simulation clock and stage records, so they run their own mock process (seed 23,
1000 children) instead of the session world. Expected alerts are computed here from the mock's own EOIR
records before and after the clock moves, never from the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from mocks.runner import signed_headers
from testing.gateway import GatewayProcess, free_port, mint
from testing.mockproc import MockProcess

SEED, CHILDREN = 23, 1000
PUSH = {"UCGW_CHANGE_FEED_POLL_SECONDS": "0.2", "UCGW_CACHE_TTL_SECONDS": "300"}
WS = "graphql-transport-ws"

REPORT = """mutation($i: ReportSafetyConcernInput!) { reportSafetyConcern(input: $i) {
  id aNumber severity category description status fieldOffice routedBy reportedBy reportedAt ageSeconds } }"""
ACK = """mutation($id: ID!, $note: String) { acknowledgeSafetyConcern(id: $id, note: $note) {
  id status acknowledgedBy acknowledgedAt acknowledgementNote } }"""
RESOLVE = """mutation($id: ID!, $r: String!) { resolveSafetyConcern(id: $id, resolution: $r) {
  id status resolvedBy resolvedAt resolution ageSeconds } }"""
ONE = """query($id: ID!) { safetyConcern(id: $id) { id aNumber status fieldOffice reportedBy reportedAt
  acknowledgedBy acknowledgedAt resolvedBy resolvedAt description } }"""
LIST = """query($o: String, $s: ConcernStatus, $a: ID, $first: Int!, $after: String) {
  safetyConcerns(fieldOffice: $o, status: $s, aNumber: $a, first: $first, after: $after) {
    totalCount edges { cursor node { id aNumber status fieldOffice ageSeconds } } pageInfo { hasNextPage endCursor }
  } }"""
COUNTS = "{ openSafetyConcernsByOffice { fieldOffice open acknowledged unresolved critical oldestAgeSeconds } }"
EVENTS = """query($a: ID) { auditEvents(aNumber: $a, first: 1000) { subject role aNumber outcome sectionsReturned
  sectionsDenied } }"""


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    """A mock world of our own: the clock moves and records are staged here."""
    with MockProcess(seed=SEED, children=CHILDREN) as mocks:
        yield mocks


def env_for(mocks: MockProcess, **extra: str) -> dict[str, str]:
    return {**mocks.gateway_env(), **PUSH, **extra}


@pytest.fixture(scope="module")
def gw(world: MockProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(env_for(world, UCGW_DATA_DIR=str(tmp_path_factory.mktemp("push-data"))))
    yield gateway
    gateway.stop()


def record(mocks: MockProcess, source: str, a: str) -> dict[str, Any] | None:
    r = mocks.request(source, "GET", f"/_admin/records/{a}")
    return r.json() if r.status == 200 else None


def listing(mocks: MockProcess, source: str) -> dict[str, dict[str, Any]]:
    """Every record of one mock service, by A-number."""
    path = {"orr": "children", "ice": "subjects", "eoir": "cases"}[source]
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        body = mocks.request(source, "GET", f"/v1/{path}?limit=500" + (f"&cursor={cursor}" if cursor else "")).json()
        out.update({r["a_number"]: r for r in body["records"]})
        cursor = body["next_cursor"]
        if not cursor:
            return out


def ok(gw: GatewayProcess, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
    status, body = gw.query(query, variables, token=token)
    assert status == 200 and not body.get("errors"), body
    return body["data"]


def codes(body: dict[str, Any]) -> set[str]:
    return {e.get("extensions", {}).get("code") for e in body.get("errors", [])}


def report(gw: GatewayProcess, a: str, token: str | None = None, severity: str = "HIGH",
           description: str = "Child says the sponsor keeps them home from school") -> dict[str, Any]:
    return ok(gw, REPORT, {"i": {"aNumber": a, "severity": severity, "category": "NOT_ENROLLED_IN_SCHOOL",
                                 "description": description}}, token)["reportSafetyConcern"]


def known_child(mocks: MockProcess, *, with_ice: bool = True, released: bool | None = None,
                skip: set[str] | None = None) -> str:
    """A child the mocks know (ICE record present, optionally released by ORR)."""
    for a in mocks.sample(200):
        if skip and a in skip:
            continue
        ice, orr = record(mocks, "ice", a), record(mocks, "orr", a)
        if with_ice and ice is None:
            continue
        if released is not None and (orr is not None and orr.get("release") is not None) != released:
            continue
        return a
    raise AssertionError("no child fits")


# ---------------------------------------------------------------------------------------------- websockets


class Subscriber:
    """A graphql-transport-ws client speaking the real protocol messages; keeps other operations' messages."""

    def __init__(self, gw: GatewayProcess, token: str | None, payload: dict[str, Any] | None = None) -> None:
        self.url = gw.url.replace("http://", "ws://") + "/graphql"
        self.payload = payload if payload is not None else ({"Authorization": f"Bearer {token}"} if token else {})
        self.ws: Any = None
        self.backlog: list[dict[str, Any]] = []

    async def __aenter__(self) -> Subscriber:
        self.ws = await websockets.connect(self.url, subprotocols=[WS])
        assert self.ws.subprotocol == WS
        await self.ws.send(json.dumps({"type": "connection_init", "payload": self.payload}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables or {}}}))

    async def _receive(self, timeout: float) -> dict[str, Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return msg

    async def message(self, op_id: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next message (of `op_id` when given), backlog first."""
        for i, msg in enumerate(self.backlog):
            if op_id is None or msg.get("id") == op_id:
                return self.backlog.pop(i)
        end = time.monotonic() + timeout
        while True:
            msg = await self._receive(max(0.01, end - time.monotonic()))
            if op_id is None or msg.get("id") == op_id:
                return msg
            self.backlog.append(msg)

    async def until(self, op_id: str, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first `next` payload of `op_id` that satisfies `pred` (earlier ones of `op_id` are dropped)."""
        end = time.monotonic() + timeout
        while True:
            msg = await self.message(op_id, max(0.01, end - time.monotonic()))
            if msg["type"] == "next" and pred(msg["payload"]):
                return msg["payload"]


async def settle() -> None:
    """Give the subscription time to register and the follower time to reach the feed's end."""
    await asyncio.sleep(0.8)


# ---------------------------------------------------------------------------------------------- concerns


def test_report_acknowledge_resolve_with_who_and_when(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    alice, bob, carol = (mint("caseworker", subject=s) for s in ("cw-alice", "cw-bob", "cw-carol"))
    t0 = time.time()
    c = report(gw, f"{a[1:4]}-{a[4:7]}-{a[7:]}", alice, severity="CRITICAL")  # a typed form: made canonical
    assert (c["aNumber"], c["status"], c["fieldOffice"], c["routedBy"], c["reportedBy"], c["severity"]) == (
        a, "OPEN", office, "ICE_RECORD", "cw-alice", "CRITICAL")
    assert t0 - 1 <= _epoch(c["reportedAt"]) <= time.time() + 1 and c["ageSeconds"] >= 0

    acked = ok(gw, ACK, {"id": c["id"], "note": "calling the sponsor"}, bob)["acknowledgeSafetyConcern"]
    assert (acked["status"], acked["acknowledgedBy"], acked["acknowledgementNote"]) == (
        "ACKNOWLEDGED", "cw-bob", "calling the sponsor")
    assert _epoch(acked["acknowledgedAt"]) >= _epoch(c["reportedAt"])

    # invalid transitions: a clear code, nothing changed
    status, body = gw.query(ACK, {"id": c["id"]}, token=bob)
    assert codes(body) == {"CONFLICT"} and body["data"]["acknowledgeSafetyConcern"] is None
    status, body = gw.query(ACK, {"id": "no-such-concern"}, token=bob)
    assert codes(body) == {"NOT_FOUND"}
    status, body = gw.query(RESOLVE, {"id": c["id"], "r": "   "}, token=carol)
    assert codes(body) == {"BAD_USER_INPUT"}

    done = ok(gw, RESOLVE, {"id": c["id"], "r": "home visit: child enrolled"}, carol)["resolveSafetyConcern"]
    assert (done["status"], done["resolvedBy"], done["resolution"]) == ("RESOLVED", "cw-carol",
                                                                         "home visit: child enrolled")
    assert _epoch(done["resolvedAt"]) >= _epoch(acked["acknowledgedAt"])
    status, body = gw.query(RESOLVE, {"id": c["id"], "r": "again"}, token=carol)
    assert codes(body) == {"CONFLICT"}
    status, body = gw.query(ACK, {"id": c["id"]}, token=carol)
    assert codes(body) == {"CONFLICT"}

    # an OPEN concern may be resolved directly
    direct = report(gw, a, alice, severity="LOW")
    assert ok(gw, RESOLVE, {"id": direct["id"], "r": "duplicate"}, bob)["resolveSafetyConcern"]["status"] == \
        "RESOLVED"

    got = ok(gw, ONE, {"id": c["id"]})["safetyConcern"]
    assert (got["reportedBy"], got["acknowledgedBy"], got["resolvedBy"], got["status"]) == (
        "cw-alice", "cw-bob", "cw-carol", "RESOLVED")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_routing_falls_back_to_the_sponsor_address(gw: GatewayProcess, world: MockProcess) -> None:
    template = next(r for r in listing(world, "orr").values() if r.get("release"))
    new_a = "A999000111"
    staged = json.loads(json.dumps(template))
    staged["a_number"] = new_a
    staged["release"]["sponsor"]["address"].update({"street": "1 State St", "city": "Trenton", "state": "NJ",
                                                    "zip": "08608", "quality": "valid"})
    assert world.request("orr", "PUT", f"/_admin/records/{new_a}", staged).status in (200, 201)
    assert record(world, "ice", new_a) is None
    c = report(gw, new_a)
    assert (c["fieldOffice"], c["routedBy"]) == ("Newark", "SPONSOR_ADDRESS")  # NJ is Newark's alone
    status, body = gw.query(REPORT, {"i": {"aNumber": "A999000999", "severity": "LOW", "category": "OTHER",
                                           "description": "x"}})
    assert codes(body) == {"BAD_USER_INPUT"}  # no system knows it: probably mistyped
    status, body = gw.query(REPORT, {"i": {"aNumber": "12-34", "severity": "LOW", "category": "OTHER",
                                           "description": "x"}})
    assert codes(body) == {"BAD_USER_INPUT"}
    control = "description must not hold control characters (other than line breaks and tabs)"
    for text, message in (("\u0000\u0000\u0000", control), ("\u0001\u0002\u001b[31mred\u0007", control),
                          ("late\u0000night", control), ("\u200b\u200b", "description must hold some visible text")):
        status, body = gw.query(REPORT, {"i": {"aNumber": new_a, "severity": "LOW", "category": "OTHER",
                                               "description": text}})
        assert (body["data"], [(e["message"], e["extensions"]["code"]) for e in body["errors"]]) \
            == ({"reportSafetyConcern": None}, [(message, "BAD_USER_INPUT")]), text
    multi = report(gw, new_a, description="Line one.\n\tLine two.\r\n")  # line breaks and tabs are text
    assert multi["description"] == "Line one.\n\tLine two."


def test_lists_pages_and_counts_per_office(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    mine = [report(gw, a, severity=s)["id"] for s in ("LOW", "MEDIUM", "CRITICAL")]
    ok(gw, ACK, {"id": mine[0]})
    seen, after = [], None
    while True:
        page = ok(gw, LIST, {"o": office.upper(), "a": a, "first": 2, "after": after})["safetyConcerns"]
        assert len(page["edges"]) <= 2
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert [i for i in seen if i in mine] == mine and len(seen) == len(set(seen)) == page["totalCount"]
    open_ids = {e["node"]["id"] for e in ok(gw, LIST, {"o": office, "s": "OPEN", "first": 100})["safetyConcerns"]
                ["edges"]}
    assert mine[1] in open_ids and mine[2] in open_ids and mine[0] not in open_ids
    # counts agree with the list of unresolved concerns, per office
    everything = []
    after = None
    while True:
        page = ok(gw, LIST, {"first": 100, "after": after})["safetyConcerns"]
        everything += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    counts = {c["fieldOffice"]: c for c in ok(gw, COUNTS)["openSafetyConcernsByOffice"]}
    for off, row in counts.items():
        unresolved = [n for n in everything if n["fieldOffice"] == off and n["status"] != "RESOLVED"]
        assert row["unresolved"] == len(unresolved) == row["open"] + row["acknowledged"]
        assert row["oldestAgeSeconds"] >= max(n["ageSeconds"] for n in unresolved) - 5
    assert counts[office]["critical"] >= 1
    status, body = gw.query(LIST, {"first": 0})
    assert codes(body) == {"BAD_USER_INPUT"}
    status, body = gw.query(LIST, {"first": 5, "after": "bogus"})
    assert codes(body) == {"BAD_USER_INPUT"}
    for seq in ("9" * 30, str(2**63), "\u0664"):  # past SQLite's integers (was an OverflowError); not ASCII
        cursor = base64.urlsafe_b64encode(f"concern:{seq}".encode()).decode()
        status, body = gw.query(LIST, {"first": 5, "after": cursor})
        assert (status, [(e["message"], e["extensions"]["code"]) for e in body["errors"]]) \
            == (200, [("after: not a cursor returned by this list", "BAD_USER_INPUT")]), seq


def test_roles_and_field_office_scope(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    other = "Seattle" if office != "Seattle" else "Miami"
    c = report(gw, a, description="PRIVATE-DETAIL-123")
    for role in ("partner", "auditor"):
        tok = mint(role)
        status, body = gw.query(REPORT, {"i": {"aNumber": a, "severity": "LOW", "category": "OTHER",
                                               "description": "x"}}, token=tok)
        assert codes(body) == {"FORBIDDEN"} and body["data"]["reportSafetyConcern"] is None
        for query, variables in ((ACK, {"id": c["id"]}), (RESOLVE, {"id": c["id"], "r": "x"}),
                                 (LIST, {"first": 5}), (ONE, {"id": c["id"]})):
            status, body = gw.query(query, variables, token=tok)
            assert codes(body) == {"FORBIDDEN"}, (role, query)
            assert "PRIVATE-DETAIL-123" not in json.dumps(body)
    assert ok(gw, COUNTS, token=mint("auditor"))["openSafetyConcernsByOffice"]  # counts, no child data
    status, body = gw.query(COUNTS, token=mint("partner"))
    assert codes(body) == {"FORBIDDEN"}
    status, body = gw.query(COUNTS, token="")
    assert status == 401

    scoped = mint("caseworker", field_offices=[other])
    status, body = gw.query(REPORT, {"i": {"aNumber": a, "severity": "LOW", "category": "OTHER",
                                           "description": "x"}}, token=scoped)
    assert codes(body) == {"NOT_FOUND"}  # as for an unknown A-number (security #7)
    status, body = gw.query(ACK, {"id": c["id"]}, token=scoped)
    assert codes(body) == {"FORBIDDEN"}
    listed = ok(gw, LIST, {"first": 100}, scoped)["safetyConcerns"]["edges"]
    assert all(e["node"]["fieldOffice"].casefold() == other.casefold() for e in listed)
    status, body = gw.query(LIST, {"o": office, "first": 5}, token=scoped)
    assert codes(body) == {"FORBIDDEN"}
    assert {r["fieldOffice"] for r in ok(gw, COUNTS, token=scoped)["openSafetyConcernsByOffice"]} <= {other}
    own = mint("caseworker", field_offices=[office.lower()])
    assert ok(gw, ACK, {"id": c["id"]}, own)["acknowledgeSafetyConcern"]["status"] == "ACKNOWLEDGED"
    # the office spelled otherwise (in the claim, in the argument) is the same office
    variant = " " + "  ".join(office.upper().replace(".", "").split()) + ". "
    spelled = mint("caseworker", field_offices=[variant])
    for variables in ({"first": 100}, {"o": variant, "first": 100}):
        ids = [e["node"]["id"] for e in ok(gw, LIST, variables, spelled)["safetyConcerns"]["edges"]]
        assert c["id"] in ids, variables
    assert office in {r["fieldOffice"] for r in ok(gw, COUNTS, token=spelled)["openSafetyConcernsByOffice"]}


def test_every_change_is_in_the_audit_trail(world: MockProcess, tmp_path: Any) -> None:
    gateway = GatewayProcess(env_for(world, UCGW_DATA_DIR=str(tmp_path)))
    try:
        a = known_child(world)
        dana = mint("caseworker", subject="cw-dana")
        c = report(gateway, a, dana, description="SECRET-NOTE-42")
        ok(gateway, ACK, {"id": c["id"]}, dana)
        ok(gateway, RESOLVE, {"id": c["id"], "r": "closed"}, dana)
        events = ok(gateway, EVENTS, {"a": a}, mint("auditor"))["auditEvents"]
        changes = [s for e in events if e["subject"] == "cw-dana" for s in e["sectionsReturned"]
                   if s.startswith("safetyConcern.")]
        assert changes == [f"safetyConcern.{act}:{c['id']}" for act in ("report", "acknowledge", "resolve")]
        assert all(e["role"] == "caseworker" and e["outcome"] == "OK" for e in events), events
        # reading the concern back is a read of the child's record, and is recorded too
        ok(gateway, LIST, {"a": a, "first": 10}, dana)
        events = ok(gateway, EVENTS, {"a": a}, mint("auditor"))["auditEvents"]
        assert any("safetyConcerns" in e["sectionsReturned"] for e in events)
    finally:
        log = gateway.stop()
    assert "SECRET-NOTE-42" not in log and a not in log  # no description, no A-number in the logs


def test_concerns_survive_kill_9(world: MockProcess, tmp_path: Any) -> None:
    env = env_for(world, UCGW_DATA_DIR=str(tmp_path))
    first = GatewayProcess(env)
    a = known_child(world)
    c = report(first, a, mint("caseworker", subject="cw-erin"))
    ok(first, ACK, {"id": c["id"], "note": "seen"}, mint("caseworker", subject="cw-frank"))
    other = report(first, a)
    first.stop(signal.SIGKILL)
    assert first.proc.returncode == -signal.SIGKILL
    second = GatewayProcess(env)
    try:
        got = ok(second, ONE, {"id": c["id"]})["safetyConcern"]
        assert (got["status"], got["reportedBy"], got["acknowledgedBy"], got["aNumber"]) == (
            "ACKNOWLEDGED", "cw-erin", "cw-frank", a)
        assert ok(second, ONE, {"id": other["id"]})["safetyConcern"]["status"] == "OPEN"
        events = ok(second, EVENTS, {"a": a}, mint("auditor"))["auditEvents"]
        assert {f"safetyConcern.report:{c['id']}", f"safetyConcern.acknowledge:{c['id']}"} <= {
            s for e in events for s in e["sectionsReturned"]}
    finally:
        second.stop()


# ---------------------------------------------------------------------------------------------- push


def _new_missed(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    out = set()
    for a, rec in after.items():
        old = {h["id"]: h["outcome"] for h in (before.get(a) or {}).get("hearings", [])}
        for h in rec["hearings"]:
            if h["outcome"] == "failed_to_appear" and old.get(h["id"]) != "failed_to_appear":
                out.add((a, h["id"]))
    return out


def _new_orders(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    return {a for a, rec in after.items()
            if rec["in_absentia_order"] is not None and (before.get(a) or {}).get("in_absentia_order") is None}


ALERTS = """subscription($a: ID, $o: String) { courtAlerts(aNumber: $a, fieldOffice: $o) {
  kind aNumber fieldOffice hearingId hearingStartsAt courtName orderedOn detectedAt
  evidence { source field value provenance { source cacheStatus sourceUpdatedAt } } } }"""
CHANGED = """subscription($a: ID!) { childStatusChanged(aNumber: $a) {
  aNumber source changedFields sourceUpdatedAt sequence fieldOffices receivedAt } }"""


def test_missed_hearing_reaches_a_subscriber_within_seconds(gw: GatewayProcess, world: MockProcess) -> None:
    """Move the clock until hearings are missed; every new missed hearing and order arrives as an alert."""
    eoir = listing(world, "eoir")
    now = world.admin_ok("orr", "GET", "/_admin/clock")["now"]
    upcoming = sorted((h["starts_at"], a) for a, r in eoir.items() if r["case_status"] == "pending"
                      for h in r["hearings"] if h["outcome"] is None and h["starts_at"] > now)
    watched = upcoming[0][1]

    async def run() -> None:
        async with Subscriber(gw, mint("caseworker")) as sub:
            await sub.subscribe("alerts", ALERTS)
            await sub.subscribe("child", CHANGED, {"a": watched})
            await settle()
            before = eoir
            expected_missed: set[tuple[str, str]] = set()
            expected_orders: set[str] = set()
            got: list[dict[str, Any]] = []
            for _ in range(30):  # one simulated day at a time, until hearings were missed
                await asyncio.to_thread(world.advance, 86_400)
                after = await asyncio.to_thread(listing, world, "eoir")
                expected_missed |= _new_missed(before, after)
                expected_orders |= _new_orders(before, after)
                before = after
                wanted = len(expected_missed) + len(expected_orders)
                while len(got) < wanted:
                    # each alert is pushed before the clock moves on (5 s bounds the wait, it is not a timing)
                    payload = await sub.until("alerts", lambda p: True, timeout=5)
                    got.append(payload["data"]["courtAlerts"])
                if len(expected_missed) >= 2:
                    break
            assert expected_missed, "the clock produced no missed hearing"
            missed = {(g["aNumber"], g["hearingId"]) for g in got if g["kind"] == "MISSED_HEARING"}
            orders = {g["aNumber"] for g in got if g["kind"] == "IN_ABSENTIA_ORDER"}
            assert missed == expected_missed and orders == expected_orders
            ice = listing(world, "ice")
            for g in got:
                rec = before[g["aNumber"]]
                if g["aNumber"] in ice:
                    assert g["fieldOffice"] == ice[g["aNumber"]]["field_office"]
                prov = g["evidence"][0]["provenance"]
                assert g["evidence"][0]["source"] == "EOIR" and prov["cacheStatus"] == "MISS"
                if g["kind"] == "MISSED_HEARING":
                    hearing = next(h for h in rec["hearings"] if h["id"] == g["hearingId"])
                    assert _epoch(g["hearingStartsAt"]) == _epoch(hearing["starts_at"].replace("Z", "+00:00"))
                    assert g["courtName"] == hearing["court_name"]
            # nothing more: no duplicate alerts
            with pytest.raises(asyncio.TimeoutError):
                await sub.until("alerts", lambda p: True, timeout=1.0)
            # the watched child's first hearing has passed: its record change reached the child subscriber
            change = await sub.until("child", lambda p: p["data"]["childStatusChanged"]["source"] == "EOIR", 5)
            ev = change["data"]["childStatusChanged"]
            assert ev["aNumber"] == watched and "hearings" in ev["changedFields"]

    asyncio.run(run())


LOCATION = """query($a: ID!) { child(aNumber: $a) { location { status
  provenance { source cacheStatus sourceUpdatedAt } } } }"""


def test_changed_record_is_invalidated(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world, released=True)

    def orr_prov() -> dict[str, Any]:
        prov = ok(gw, LOCATION, {"a": a})["child"]["location"]["provenance"]
        return next(p for p in prov if p["source"] == "ORR")

    orr_prov()
    assert orr_prov()["cacheStatus"] == "HIT"
    world.advance(3600)  # the staged change gets a newer updated_at than the record's last one
    current = record(world, "orr", a)
    flipped = "pending" if current["background_check"] == "cleared" else "cleared"  # type: ignore[index]

    async def run() -> dict[str, Any]:
        async with Subscriber(gw, mint("caseworker")) as sub:
            await sub.subscribe("c", CHANGED, {"a": a})
            await settle()
            staged = await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                             {"background_check": flipped})
            payload = await sub.until("c", lambda p: p["data"]["childStatusChanged"]["source"] == "ORR", 5)
            return {"event": payload["data"]["childStatusChanged"], "staged": staged}

    out = asyncio.run(run())
    ev, staged = out["event"], out["staged"]
    assert ev["changedFields"] == ["background_check"]
    assert _epoch(ev["sourceUpdatedAt"]) == _epoch(staged["updated_at"].replace("Z", "+00:00"))
    after = orr_prov()  # no maxAgeSeconds: the cache entry is gone, so this is a fresh read
    assert after["cacheStatus"] == "MISS"
    assert _epoch(after["sourceUpdatedAt"]) == _epoch(staged["updated_at"].replace("Z", "+00:00"))


IDENTITY = """subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source changedFields
  child { aNumber identity { firstName lastName dateOfBirth } nta { status } hearing { caseStatus }
          location { status provenance { source sourceUpdatedAt } } } } }"""


def test_partner_subscriptions_see_statuses_not_personal_data(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world, released=True)
    ice = record(world, "ice", a)
    assert ice is not None
    personal = {ice["first_name"], ice["last_name"], ice["date_of_birth"]}

    async def run() -> None:
        async with Subscriber(gw, mint("partner", subject="lsp-1")) as partner, \
                Subscriber(gw, mint("caseworker")) as cw:
            await partner.subscribe("p", IDENTITY, {"a": a})
            await cw.subscribe("c", IDENTITY, {"a": a})
            await settle()
            current = (await asyncio.to_thread(record, world, "orr", a))["background_check"]  # type: ignore
            flipped = "pending" if current == "cleared" else "cleared"
            for value in (flipped, current):  # two changes: each event must read the record afresh
                await asyncio.to_thread(world.advance, 60)
                staged = await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                                 {"background_check": value})
                seen = await partner.until("p", lambda p: True, 5)
                text = json.dumps(seen)
                assert not any(v and v in text for v in personal)
                data = seen["data"]["childStatusChanged"]["child"]
                assert data["identity"] == {"firstName": None, "lastName": None, "dateOfBirth": None}
                assert data["nta"]["status"] and {e["extensions"]["code"] for e in seen["errors"]} == {"FORBIDDEN"}
                orr = next(p for p in data["location"]["provenance"] if p["source"] == "ORR")
                assert _epoch(orr["sourceUpdatedAt"]) == _epoch(staged["updated_at"].replace("Z", "+00:00"))
                full = await cw.until("c", lambda p: True, 5)
                assert full["data"]["childStatusChanged"]["child"]["identity"]["firstName"] == ice["first_name"]

        # partner's pushed reads are in the audit trail, with what was refused
        events = ok(gw, EVENTS, {"a": a}, mint("auditor"))["auditEvents"]
        pushed = [e for e in events if e["subject"] == "lsp-1"]
        assert len(pushed) >= 2 and all("identity.firstName" in e["sectionsDenied"] for e in pushed)

    asyncio.run(run())


def test_subscriptions_need_a_token_and_the_right_role(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    other = "Seattle" if office != "Seattle" else "Miami"

    async def refused(payload: dict[str, Any]) -> int:
        ws = await websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS])
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        return closed.value.rcvd.code  # type: ignore[union-attr]

    async def run() -> None:
        assert await refused({}) == 4403
        assert await refused({"Authorization": "Bearer not-a-token"}) == 4403
        assert await refused({"Authorization": f"Bearer {mint('caseworker', ttl=-120)}"}) == 4403
        async with Subscriber(gw, mint("auditor")) as aud:
            await aud.subscribe("x", CHANGED, {"a": a})
            msg = await aud.message("x")
            assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        async with Subscriber(gw, mint("partner", field_offices=[other])) as scoped:
            await scoped.subscribe("o", "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) "
                                        "{ aNumber } }", {"o": office})
            msg = await scoped.message("o")
            assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN"
            await scoped.subscribe("c", CHANGED, {"a": a})
            msg = await scoped.message("c")
            assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        # the handshake header counts as well as the connection_init payload
        headers = {"Authorization": f"Bearer {mint('partner')}"}
        async with websockets.connect(gw.url.replace("http://", "ws://") + "/graphql", subprotocols=[WS],
                                      additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"

    asyncio.run(run())


CASELOAD = """subscription($f: CaseloadFilter!) { caseloadChanges(filter: $f) { aNumber source changedFields } }"""


def test_field_office_and_caseload_subscriptions(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world, released=True)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    other = "Seattle" if office != "Seattle" else "Miami"

    async def run() -> None:
        async with Subscriber(gw, mint("partner", field_offices=[office])) as sub:
            await sub.subscribe("o", "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) "
                                     "{ aNumber source fieldOffices } }", {"o": office.upper()})
            await sub.subscribe("match", CASELOAD, {"f": {"fieldOffice": office,
                                                          "locationStatus": "RELEASED_TO_SPONSOR"}})
            await sub.subscribe("miss", CASELOAD, {"f": {"fieldOffice": other}})
            await sub.subscribe("contact", CASELOAD, {"f": {"sponsorState": "TX"}})  # partner: no addresses
            msg = await sub.message("contact")
            assert msg["type"] == "error" and msg["payload"][0]["extensions"]["code"] == "FORBIDDEN"
            await settle()
            current = await asyncio.to_thread(record, world, "orr", a)
            flipped = "pending" if current["background_check"] == "cleared" else "cleared"  # type: ignore[index]
            await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                    {"background_check": flipped})
            got = await sub.until("o", lambda p: p["data"]["fieldOfficeChanges"]["aNumber"] == a, 5)
            assert got["data"]["fieldOfficeChanges"]["fieldOffices"] == [office]
            got = await sub.until("match", lambda p: p["data"]["caseloadChanges"]["aNumber"] == a, 5)
            assert got["data"]["caseloadChanges"]["changedFields"] == ["background_check"]
            with pytest.raises(asyncio.TimeoutError):
                await sub.until("miss", lambda p: p["data"]["caseloadChanges"]["aNumber"] == a, 1.5)

    asyncio.run(run())


def data_reads(world: MockProcess, source: str) -> int:
    """Record reads one mock has served (single and batch; change-feed polls not counted)."""
    routes = world.stats(source)["by_route"]
    return sum(n for route, n in routes.items() if "/changes" not in route and "/_admin" not in route
               and not route.endswith("/healthz"))


def test_one_fetch_per_change_serves_every_caseload_subscriber(gw: GatewayProcess, world: MockProcess) -> None:
    """Security #5: six caseloadChanges subscriptions on three sockets, all matching one child; one change to
    its ORR record makes as many ORR reads as one subscription would (the change's one refetch), not one per
    subscription, and every subscription receives the event."""
    a = known_child(world, released=True)
    office = record(world, "ice", a)["field_office"]  # type: ignore[index]
    wanted = {"f": {"fieldOffice": office, "locationStatus": "RELEASED_TO_SPONSOR"}}

    async def changed(subscribers: list[Subscriber]) -> int:
        """ORR reads made while one change reaches every subscription of `subscribers`."""
        await settle()
        before = await asyncio.to_thread(data_reads, world, "orr")
        current = await asyncio.to_thread(record, world, "orr", a)
        flipped = "pending" if current["background_check"] == "cleared" else "cleared"  # type: ignore[index]
        await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}", {"background_check": flipped})
        for sub in subscribers:
            for op in ("c1", "c2"):
                got = await sub.until(op, lambda p: p["data"]["caseloadChanges"]["aNumber"] == a, 10)
                assert got["data"]["caseloadChanges"]["changedFields"] == ["background_check"]
        await settle()
        return await asyncio.to_thread(data_reads, world, "orr") - before

    async def run() -> tuple[int, int]:
        async with Subscriber(gw, mint("caseworker")) as one:
            await one.subscribe("c1", CASELOAD, wanted)
            await one.subscribe("c2", CASELOAD, wanted)
            alone = await changed([one])
        async with (Subscriber(gw, mint("caseworker")) as s1, Subscriber(gw, mint("caseworker")) as s2,
                    Subscriber(gw, mint("partner")) as s3):
            for sub in (s1, s2, s3):
                await sub.subscribe("c1", CASELOAD, wanted)
                await sub.subscribe("c2", CASELOAD, wanted)
            many = await changed([s1, s2, s3])
        return alone, many

    alone, many = asyncio.run(run())
    assert alone >= 1 and many == alone, (alone, many)


def test_webhook_pushes_changes_without_polling(tmp_path: Any) -> None:
    """The mocks POST their changes to /hooks/changes, signed with the shared secret; polling is off. A
    secret in the URL or a header (as before) is no longer accepted."""
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hooks/changes"
    secret = "hook-secret-of-the-push-test-0123456789"
    with MockProcess(seed=SEED, children=200, extra_args=["--webhook-url", hook],
                     env={"UCGW_WEBHOOK_SECRET": secret}) as mocks:
        env = {**mocks.gateway_env(), "UCGW_CHANGE_FEED_POLL_SECONDS": "0", "UCGW_WEBHOOK_SECRET": secret,
               "UCGW_DATA_DIR": str(tmp_path)}
        gateway = GatewayProcess(env, port=port)
        try:
            a = next(iter(listing(mocks, "orr")))

            async def run() -> None:
                async with Subscriber(gateway, mint("caseworker")) as sub:
                    await sub.subscribe("c", CHANGED, {"a": a})
                    await settle()
                    cur = await asyncio.to_thread(record, mocks, "orr", a)
                    flipped = "pending" if cur["background_check"] == "cleared" else "cleared"  # type: ignore
                    await asyncio.to_thread(mocks.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                            {"background_check": flipped})
                    got = await sub.until("c", lambda p: True, 5)
                    assert got["data"]["childStatusChanged"]["changedFields"] == ["background_check"]

            asyncio.run(run())
            assert "GET /v1/changes" not in mocks.stats("orr")["by_route"]
            from testing.gateway import http

            empty = {"source": "orr", "changes": []}
            status, _, _ = http("POST", f"{gateway.url}/hooks/changes?token={secret}", empty)
            assert status == 401
            status, _, _ = http("POST", f"{gateway.url}/hooks/changes", empty,
                                headers={"X-UCGW-Webhook-Secret": secret})
            assert status == 401
            body = json.dumps(empty).encode()
            status, _, _ = http("POST", f"{gateway.url}/hooks/changes", raw=body,
                                headers=signed_headers(secret.encode(), body))
            assert status == 202
        finally:
            gateway.stop()


def test_follower_reads_a_restarted_sources_feed_anew(tmp_path: Any) -> None:
    """The mocks restart on the same ports, their feeds numbered from 1 again: changes still arrive.

    Before, the follower's old cursor got HTTP 400 at every poll (retried forever), and the processor's
    high-water mark of seqs would have dropped every change numbered below the old feed's last one.
    """
    ports = {name: free_port() for name in ("orr", "ice", "eoir")}
    fixed = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    mocks = MockProcess(seed=SEED, children=200, extra_args=fixed).start()
    gateway = GatewayProcess(env_for(mocks, UCGW_DATA_DIR=str(tmp_path), UCGW_CHANGE_FEED_POLL_SECONDS="0.1"))
    try:
        a = next(iter(listing(mocks, "orr")))

        async def flip(world: MockProcess) -> None:
            cur = await asyncio.to_thread(record, world, "orr", a)
            flipped = "pending" if cur["background_check"] == "cleared" else "cleared"  # type: ignore[index]
            await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                    {"background_check": flipped})

        async def run() -> None:
            nonlocal mocks
            async with Subscriber(gateway, mint("caseworker")) as sub:
                await sub.subscribe("c", CHANGED, {"a": a})
                await settle()
                seqs = []
                for _ in range(3):  # the first feed reaches seq 3
                    await flip(mocks)
                    seqs.append((await sub.until("c", lambda p: True, 10))["data"]["childStatusChanged"]["sequence"])
                assert seqs == [1, 2, 3]
                mocks.stop()
                mocks = MockProcess(seed=SEED, children=200, extra_args=fixed).start()
                assert await asyncio.to_thread(orr_cache_status) == "MISS"
                assert await asyncio.to_thread(orr_cache_status) == "HIT"
                await flip(mocks)  # seq 1 of the new feed
                got = (await sub.until("c", lambda p: True, 20))["data"]["childStatusChanged"]
                assert (got["sequence"], got["changedFields"]) == (1, ["background_check"])
                assert await asyncio.to_thread(orr_cache_status) == "MISS"  # the change dropped the cached record

        def orr_cache_status() -> str:
            query = f'{{ child(aNumber: "{a}") {{ location {{ provenance {{ source cacheStatus }} }} }} }}'
            status, body = gateway.query(query)
            assert status == 200 and "errors" not in body, body
            return {p["source"]: p["cacheStatus"] for p in body["data"]["child"]["location"]["provenance"]}["ORR"]

        asyncio.run(run())
    finally:
        out = gateway.stop()
        mocks.stop()
    assert "ORR change feed: our cursor is not one the feed issued" in out and "Traceback" not in out, out


def test_follower_survives_a_backend_outage_and_ends_cleanly(world: MockProcess, tmp_path: Any) -> None:
    gateway = GatewayProcess(env_for(world, UCGW_DATA_DIR=str(tmp_path)))
    try:
        a = known_child(world, released=True)
        time.sleep(1.0)  # the follower has read where each feed ends
        world.admin_ok("orr", "PUT", "/_admin/faults", {"down": True})
        time.sleep(1.5)  # the follower fails a few times, backs off, keeps going

        async def run() -> None:
            async with Subscriber(gateway, mint("caseworker")) as sub:
                await sub.subscribe("c", CHANGED, {"a": a})
                await asyncio.sleep(0.3)
                world.admin_ok("orr", "PUT", "/_admin/faults", {"down": False})
                cur = await asyncio.to_thread(record, world, "orr", a)
                flipped = "pending" if cur["background_check"] == "cleared" else "cleared"  # type: ignore
                await asyncio.to_thread(world.admin_ok, "orr", "PATCH", f"/_admin/records/{a}",
                                        {"background_check": flipped})
                got = await sub.until("c", lambda p: True, 15)  # after backoff (at most a few seconds here)
                assert got["data"]["childStatusChanged"]["aNumber"] == a

        asyncio.run(run())
    finally:
        world.reset()
        out = gateway.stop(signal.SIGTERM)
    # uvicorn re-raises SIGTERM after a clean shutdown, so the exit status is -15; the log shows the rest
    assert gateway.proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert "reachable again" in out and "Traceback" not in out and a not in out
