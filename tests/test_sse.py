"""Subscriptions over server-sent events (`/graphql/stream`, the graphql-sse protocol's distinct connections
mode): the npm `graphql-sse` client receives a real change event, and over plain HTTP the stream keeps the
websocket path's auth, limits, scope rules and audit, and a client that leaves gives its slot back."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from testing import node
from testing.gateway import GatewayProcess, http, mint
from testing.mockproc import MockProcess

PUSH = {"UCGW_CHANGE_FEED_POLL_SECONDS": "0.2", "UCGW_CACHE_TTL_SECONDS": "300"}
CHANGED = """subscription($a: ID!) { childStatusChanged(aNumber: $a) { aNumber source changedFields
  child { aNumber identity { firstName } location { status } } } }"""
OFFICE = "subscription($o: String!) { fieldOfficeChanges(fieldOffice: $o) { aNumber } }"
EVENTS = """query($a: ID) { auditEvents(aNumber: $a, first: 1000) { subject aNumber outcome sectionsReturned } }"""


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=29, children=300) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess({**world.gateway_env(), **PUSH})
    yield gateway
    gateway.stop()


def open_connections(gw: GatewayProcess) -> int:
    """Subscription connections (websockets and event streams) the gateway holds open, from its admin /readyz."""
    return int(json.loads(http("GET", f"{gw.admin_url}/readyz")[2])["websockets"]["open"])


def wait_for(check: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


def known_child(world: MockProcess) -> str:
    for a in world.sample(100):
        if world.request("ice", "GET", f"/_admin/records/{a}").status == 200 \
                and world.request("orr", "GET", f"/_admin/records/{a}").status == 200:
            return a
    raise AssertionError("no child with ICE and ORR records")


def flip_background_check(world: MockProcess, a: str) -> dict[str, Any]:
    """Stage a change of the child's ORR record through the mocks' admin API (it enters ORR's change feed)."""
    world.advance(60)
    current = world.request("orr", "GET", f"/_admin/records/{a}").json()["background_check"]
    return world.admin_ok("orr", "PATCH", f"/_admin/records/{a}",
                          {"background_check": "pending" if current == "cleared" else "cleared"})


# ---------------------------------------------------------------------------------------------- graphql-sse client


class Lines:
    """A node process's JSON lines, read as they come."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(json.loads(line))

    def next(self, timeout: float = 20.0) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the client; stderr: {self.proc.stderr.read()}") from None


def test_graphql_sse_client_receives_a_change_event(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)
    first_name = world.request("ice", "GET", f"/_admin/records/{a}").json()["first_name"]
    token = mint("caseworker", subject="sse-caseworker")
    assert open_connections(gw) == 0
    proc = node.start("sse", "subscribe.mjs", f"{gw.url}/graphql/stream", {"Authorization": f"Bearer {token}"},
                      CHANGED, {"a": a}, 1)
    try:
        out = Lines(proc)
        assert out.next() == {"connected": True}
        wait_for(lambda: open_connections(gw) == 1)
        time.sleep(0.8)  # the subscription registers and the feed follower reaches the feed's end
        staged = flip_background_check(world, a)
        event = out.next()["next"]
        assert out.next() == {"done": 1}
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    change = event["data"]["childStatusChanged"]
    assert "errors" not in event
    assert (change["aNumber"], change["source"], change["changedFields"]) == (a, "ORR", ["background_check"])
    assert change["child"]["identity"]["firstName"] == first_name
    assert staged["background_check"] in ("pending", "cleared")
    wait_for(lambda: open_connections(gw) == 0)  # the client's leaving released its slot
    events = gw.query(EVENTS, {"a": a}, token=mint("auditor"))[1]["data"]["auditEvents"]
    pushed = [e for e in events if e["subject"] == "sse-caseworker"]
    assert [(e["outcome"], e["sectionsReturned"]) for e in pushed] == [("OK", ["identity", "location"])]


def test_graphql_sse_client_is_refused_without_credentials(gw: GatewayProcess) -> None:
    done = node.run("sse", "subscribe.mjs", f"{gw.url}/graphql/stream", {}, CHANGED, {"a": "A123456789"}, 1)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 0, done.stderr
    assert len(lines) == 2 and lines[1] == {"done": 0}
    assert lines[0]["status"] == 401 and lines[0]["body"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert open_connections(gw) == 0


# ---------------------------------------------------------------------------------------------- plain HTTP


class Stream:
    """One `/graphql/stream` request over a raw connection: status, headers, then events as they come."""

    def __init__(self, gw: GatewayProcess, body: dict[str, Any] | None, token: str | None = None,
                 method: str = "POST", headers: dict[str, str] | None = None, target: str = "/graphql/stream") -> None:
        self.gw, self.body, self.token, self.method, self.target = gw, body, token, method, target
        self.headers = {"accept": "text/event-stream", "content-type": "application/json", **(headers or {})}
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Stream:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.gw.port)
        data = b"" if self.body is None else json.dumps(self.body).encode()
        head = [f"{self.method} {self.target} HTTP/1.1", f"host: 127.0.0.1:{self.gw.port}",
                f"content-length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.token:
            head.append(f"authorization: Bearer {self.token}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await self.writer.drain()
        status_line = await asyncio.wait_for(self.reader.readline(), 20)
        self.status = int(status_line.split()[1])
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
            await self.writer.wait_closed()

    async def chunk(self) -> bytes:
        """The next piece of a chunked body (b"" at its end)."""
        assert self.reader is not None
        size = int((await asyncio.wait_for(self.reader.readline(), 20)).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def error(self) -> dict[str, Any]:
        """A refusal's JSON body (content-length framed)."""
        assert self.reader is not None
        return json.loads(await self.reader.readexactly(int(self.response_headers["content-length"])))

    async def events(self) -> list[tuple[str, Any]]:
        """Every event until `complete` (comments skipped), as (event, decoded data)."""
        out: list[tuple[str, Any]] = []
        buffer = b""
        while True:
            buffer += await self.chunk()
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(b": ", 1) if b": " in line else (line.rstrip(b":"), b"")
                              for line in block.split(b"\n") if not line.startswith(b":"))
                if not fields:
                    continue
                kind = fields[b"event"].decode()
                out.append((kind, json.loads(fields[b"data"]) if fields[b"data"] else None))
                if kind == "complete":
                    return out


def test_a_query_streams_one_result_then_completes(gw: GatewayProcess, world: MockProcess) -> None:
    a = known_child(world)

    async def run() -> None:
        async with Stream(gw, {"query": "query($a: ID!) { child(aNumber: $a) { aNumber } }", "variables": {"a": a}},
                          mint("caseworker")) as s:
            assert s.status == 200
            assert s.response_headers["content-type"] == "text/event-stream; charset=utf-8"
            assert s.response_headers["cache-control"] == "no-store" and s.response_headers["x-request-id"]
            assert await s.events() == [("next", {"data": {"child": {"aNumber": a}}}), ("complete", None)]

    asyncio.run(run())


def test_refusals_before_the_stream(gw: GatewayProcess) -> None:
    query = {"query": CHANGED, "variables": {"a": "A123456789"}}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"token": None}, 401, "UNAUTHENTICATED"),
        ({"token": mint("caseworker", secret="x" * 40)}, 401, "UNAUTHENTICATED"),
        ({"method": "PUT"}, 405, "METHOD_NOT_ALLOWED"),
        ({"headers": {"accept": "application/json"}}, 406, "NOT_ACCEPTABLE"),
        ({"headers": {"content-type": "text/plain"}}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        ({"body": {"query": 5}}, 400, "BAD_REQUEST"),
        ({"body": {"query": "{ __typename }", "variables": []}}, 400, "BAD_REQUEST"),
    ]

    async def run() -> None:
        for given, status, code in cases:
            args = {"body": query, "token": mint("caseworker"), **given}
            async with Stream(gw, **args) as s:
                assert (s.status, (await s.error())["errors"][0]["extensions"]["code"]) == (status, code), given

    asyncio.run(run())
    assert open_connections(gw) == 0


def test_role_and_office_scope_hold(gw: GatewayProcess, world: MockProcess) -> None:
    """A role without child:status, and a token scoped to other field offices, get the websocket path's errors
    as the stream's one event."""
    a = known_child(world)
    office = world.request("ice", "GET", f"/_admin/records/{a}").json()["field_office"]

    async def run() -> None:
        async with Stream(gw, {"query": CHANGED, "variables": {"a": a}}, mint("auditor")) as s:
            (kind, result), end = await s.events()
            assert (kind, end) == ("next", ("complete", None))
            assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN" and result["data"] is None
        async with Stream(gw, {"query": OFFICE, "variables": {"o": office}},
                          mint("caseworker", field_offices=["NOWHERE"])) as s:
            (kind, result), end = await s.events()
            assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        async with Stream(gw, {"query": "subscription { childStatusChanged(aNumber: 5, x: 1) { aNumber } }"},
                          mint("caseworker")) as s:
            (kind, result), end = await s.events()
            assert result["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

    asyncio.run(run())


def test_streams_count_with_websockets_and_a_leaving_client_frees_its_slot(world: MockProcess) -> None:
    """Two connections and three operations per caller: websockets and event streams share both caps."""
    gw = GatewayProcess({**world.gateway_env(), **PUSH, "UCGW_WEBSOCKETS_PER_CLIENT": "2",
                         "UCGW_SUBSCRIPTIONS_PER_CLIENT": "3", "UCGW_SSE_KEEPALIVE_SECONDS": "0.2"})
    token = mint("caseworker", subject="limited")
    sub = {"query": OFFICE, "variables": {"o": "NYC"}}

    async def run() -> None:
        ws = await websockets.connect(gw.url.replace("http://", "ws://") + "/graphql",
                                      subprotocols=["graphql-transport-ws"])
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for op in ("1", "2"):
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": sub}))
        wait_for(lambda: open_connections(gw) == 1)
        first = await Stream(gw, sub, token).__aenter__()
        assert first.status == 200  # connections 2 of 2, operations 3 of 3
        assert await first.chunk() == b":\n\n"  # a quiet stream's keep-alive comment
        await ws.send(json.dumps({"id": "3", "type": "subscribe", "payload": sub}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (refused["id"], refused["type"]) == ("3", "error")
        assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_OPERATIONS"
        async with Stream(gw, sub, token) as second:
            assert second.status == 429 and (await second.error())["errors"][0]["extensions"]["code"] == \
                "TOO_MANY_CONNECTIONS"
        async with Stream(gw, sub, mint("caseworker", subject="someone-else")) as other:
            assert other.status == 200  # the caps are per caller
        await ws.close()
        await asyncio.to_thread(wait_for, lambda: open_connections(gw) == 1)
        await first.close()  # the client leaves without waiting for the end
        await asyncio.to_thread(wait_for, lambda: open_connections(gw) == 0)
        async with Stream(gw, sub, token) as again, Stream(gw, sub, token) as twice:
            assert (again.status, twice.status) == (200, 200)
            async with Stream(gw, sub, token) as third:
                assert third.status == 429

    try:
        asyncio.run(run())
    finally:
        gw.stop()


def test_a_stream_ends_when_its_token_expires(gw: GatewayProcess) -> None:
    async def run() -> None:
        async with Stream(gw, {"query": OFFICE, "variables": {"o": "NYC"}}, mint("caseworker", ttl=2)) as s:
            assert s.status == 200
            (kind, result), end = await s.events()
            assert (kind, end) == ("next", ("complete", None))
            assert result == {"errors": [{"message": "token expired", "extensions": {"code": "UNAUTHENTICATED"}}]}
            assert await s.chunk() == b""  # the response is over

    asyncio.run(run())
    wait_for(lambda: open_connections(gw) == 0)
