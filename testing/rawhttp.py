"""Raw-socket HTTP/1.1 for edge tests: send exact bytes (malformed ones too), read the one answer."""

from __future__ import annotations

import json
import socket
from typing import Any


def exchange(port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 30.0) -> bytes:
    """Send `data` at full speed on a new connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after an answer keeps what arrived)."""
    out = bytearray()
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return bytes(out)


def answer(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, lower-cased headers, decoded JSON body or None) of the first answer in `raw`."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"no HTTP answer: {raw[:200]!r}")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    length = int(headers.get("content-length", len(body)))
    payload = body[:length]
    return int(lines[0].split()[1]), headers, json.loads(payload) if payload else None


def code_of(body: Any) -> str | None:
    """`extensions.code` of the first error in a JSON error body."""
    try:
        return str(body["errors"][0]["extensions"]["code"])
    except (KeyError, IndexError, TypeError):
        return None
