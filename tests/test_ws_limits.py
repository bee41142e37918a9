"""Websocket limits over real websockets (security #5, and #13's API-key half): the connection_init timeout,
sockets awaiting connection_init per address, operations per socket and per caller (with a code), the size
of a message, and API-key sockets closed when their key leaves the key file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from gateway.http.auth import hash_api_key, new_api_key
from testing.access import gateway_env
from testing.gateway import GatewayProcess, mint

WS = "graphql-transport-ws"
WATCH = 'subscription { childStatusChanged(aNumber: "A000000001") { sequence } }'


def ws_url(gateway: GatewayProcess) -> str:
    return gateway.url.replace("http://", "ws://") + "/graphql"


async def joined(url: str, payload: dict[str, str]) -> Any:
    ws = await websockets.connect(url, subprotocols=[WS])
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
    return ws


async def closed_with(ws: Any) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    return closed.value.rcvd.code, closed.value.rcvd.reason  # type: ignore[union-attr]


async def subscribe(ws: Any, op: str, query: str = WATCH) -> None:
    await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query}}))


async def refused(ws: Any, op: str) -> dict[str, Any]:
    """The `error` message answering operation `op`."""
    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["id"] == op and message["type"] == "error", message
    [error] = message["payload"]
    return error  # type: ignore[no-any-return]


def test_socket_limits(mock_services: Any) -> None:
    """connection_init within the timeout (4408), at most N sockets awaiting it per address (4429), a message
    no bigger than max_body_bytes (1009)."""
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_WS_INIT_TIMEOUT_SECONDS="1",
                                         UCGW_WS_UNAUTHENTICATED_PER_ADDRESS="2", UCGW_MAX_BODY_BYTES="3000"))
    url = ws_url(gateway)

    async def run() -> None:
        silent = await websockets.connect(url, subprotocols=[WS])
        assert await closed_with(silent) == (4408, "Connection initialisation timeout")
        first = await websockets.connect(url, subprotocols=[WS])
        second = await websockets.connect(url, subprotocols=[WS])
        third = await websockets.connect(url, subprotocols=[WS])
        assert await closed_with(third) == (4429, "too many websockets awaiting connection_init from this address "
                                                  "(at most 2)")
        for ws in (first, second):  # once they have sent connection_init, the address may open more
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {mint()}"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        fourth = await joined(url, {"Authorization": f"Bearer {mint()}"})
        await fourth.send(json.dumps({"id": "big", "type": "subscribe",
                                      "payload": {"query": "{ __typename }", "variables": {"x": "y" * 5000}}}))
        assert (await closed_with(fourth))[0] == 1009
        await subscribe(first, "t", "{ __typename }")
        assert json.loads(await asyncio.wait_for(first.recv(), 10))["payload"] == {"data": {"__typename": "Query"}}
        for ws in (first, second):
            await ws.close()

    try:
        asyncio.run(run())
    finally:
        log = gateway.stop()
    assert "Traceback" not in log


def test_operations_per_socket_and_per_caller_are_capped_with_a_code(mock_services: Any) -> None:
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_WS_OPERATIONS_PER_SOCKET="2",
                                         UCGW_SUBSCRIPTIONS_PER_CLIENT="3"))
    url = ws_url(gateway)
    alice = {"Authorization": f"Bearer {mint(subject='alice')}"}
    bob = {"Authorization": f"Bearer {mint(subject='bob')}"}

    async def run() -> None:
        one, two = await joined(url, alice), await joined(url, alice)
        await subscribe(one, "a")
        await subscribe(one, "b")
        await subscribe(one, "c")
        error = await refused(one, "c")
        assert error == {"message": "too many operations running on this websocket (at most 2)",
                         "extensions": {"code": "TOO_MANY_OPERATIONS"}}
        await subscribe(two, "d")
        await subscribe(two, "e")
        error = await refused(two, "e")
        assert error == {"message": "too many operations running over all your websockets (at most 3)",
                         "extensions": {"code": "TOO_MANY_OPERATIONS"}}
        other = await joined(url, bob)  # another caller has its own count
        await subscribe(other, "x")
        await subscribe(other, "y")
        await one.send(json.dumps({"id": "a", "type": "complete"}))  # ending one frees its place
        for _ in range(50):
            await subscribe(two, "f", "{ __typename }")
            answer = json.loads(await asyncio.wait_for(two.recv(), 10))
            if answer["type"] == "next":
                break
            assert answer["payload"][0]["extensions"]["code"] == "TOO_MANY_OPERATIONS"
            await asyncio.sleep(0.1)
        assert answer == {"id": "f", "type": "next", "payload": {"data": {"__typename": "Query"}}}
        for ws in (one, two, other):
            await ws.close()

    try:
        asyncio.run(run())
    finally:
        log = gateway.stop()
    assert "Traceback" not in log


def test_a_revoked_api_key_closes_its_sockets_and_stops_working(mock_services: Any, tmp_path: Path) -> None:
    """The key file is re-read when it changes (checked every UCGW_API_KEYS_RECHECK_SECONDS, at most 60): a
    removed key's open websockets close with 4401 and its HTTP requests get 401; a kept key goes on."""
    gone, kept = new_api_key(), new_api_key()
    keys = tmp_path / "keys.toml"

    def write(*entries: tuple[str, str]) -> None:
        keys.write_text("".join(f'[[api_key]]\nsha256 = "{hash_api_key(k)}"\nclient = "{c}"\nrole = "partner"\n\n'
                                for k, c in entries))

    write((gone, "app-gone"), (kept, "app-kept"))
    gateway = GatewayProcess(gateway_env(mock_services, UCGW_API_KEYS_FILE=str(keys),
                                         UCGW_API_KEYS_RECHECK_SECONDS="1"))
    url = ws_url(gateway)

    async def run() -> None:
        doomed, staying = await joined(url, {"X-API-Key": gone}), await joined(url, {"X-API-Key": kept})
        await subscribe(staying, "s")
        assert gateway.query("{ __typename }", token=gone)[0] == 200
        write((kept, "app-kept"))
        assert await closed_with(doomed) == (4401, "API key revoked")
        assert gateway.query("{ __typename }", token=gone)[0] == 401
        assert gateway.query("{ __typename }", token=kept)[0] == 200
        await staying.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(staying.recv(), 10)) == {"type": "pong"}
        await staying.close()

    try:
        asyncio.run(run())
    finally:
        log = gateway.stop()
    assert "Traceback" not in log and gone not in log
