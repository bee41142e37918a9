"""Start the gateway as a real `ucgw serve` process on a free loopback port and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0, raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange: (status, headers, body bytes); 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class GatewayProcess:
    """A running gateway; `query` posts GraphQL and returns (HTTP status, decoded JSON)."""

    def __init__(self, env: dict[str, str], token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = env.get("UCGW_DATA_DIR", "")
        full_env = {**os.environ, "UCGW_PORT": str(self.port), "UCGW_HOST": "127.0.0.1", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, env=full_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.token = token
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                status, _, _ = http("GET", f"{self.url}/healthz", timeout=1)
                if status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gateway did not become healthy within 30 s")

    def headers(self, token: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Default request headers (the process token unless another is given)."""
        out = dict(extra or {})
        tok = token if token is not None else self.token
        if tok:
            out["Authorization"] = f"Bearer {tok}"
        return out

    def query(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None,
              headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        """POST one GraphQL operation."""
        status, _, body = http("POST", f"{self.url}/graphql", {"query": query, "variables": variables or {}},
                               headers=self.headers(token, headers), timeout=timeout)
        return status, json.loads(body) if body else {}

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the process and return what it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stdout.read() if self.proc.stdout else ""
