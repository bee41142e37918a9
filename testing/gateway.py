"""Start the gateway as a real `ucgw serve` process on a free loopback port and talk to it over HTTP."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

from testing.logs import keep_output
from testing.mockproc import request

ROOT = Path(__file__).resolve().parents[1]
TEST_JWT_SECRET = "test-only-jwt-secret-of-the-suite-0123456789"  # not a real secret: tests only
TEST_AUDIT_HMAC_KEY = "test-only-audit-hmac-key-of-the-suite-0123456789"  # not a real key: tests only
AUDIENCE, ISSUER = "uc-status-gateway", "ucgw-demo"  # the gateway's defaults


def mint(role: str = "caseworker", *, ttl: float = 3600, subject: str | None = None,
         secret: str = TEST_JWT_SECRET, audience: str | None = AUDIENCE, issuer: str | None = ISSUER,
         **claims: Any) -> str:
    """An HS256 token as the gateway expects it (override any claim to make a bad one)."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": subject or f"test-{role}", "role": role, "iat": now, "exp": now + int(ttl)}
    if audience is not None:
        body["aud"] = audience
    if issuer is not None:
        body["iss"] = issuer
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256")


def without(node: Any, *keys: str) -> Any:
    """A decoded JSON answer with every member named in `keys` left out, at any depth."""
    if isinstance(node, dict):
        return {k: without(v, *keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [without(v, *keys) for v in node]
    return node


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0, raw: bytes | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange: (status, lower-cased headers, body bytes); 4xx/5xx are returned, not raised.
    `context`: the TLS client context of an https URL."""
    resp = request(method, url, json_body=body, headers=headers, timeout=timeout, data=raw, context=context)
    return resp.status, resp.headers, resp.body


def _temp_data_dir() -> str:
    path = tempfile.mkdtemp(prefix="ucgw-test-data-")
    atexit.register(shutil.rmtree, path, True)
    return path


class GatewayProcess:
    """A running gateway; `query` posts GraphQL and returns (HTTP status, decoded JSON).

    Unless `env` says otherwise the gateway verifies tokens with `TEST_JWT_SECRET`, keeps its audit
    trail in a fresh temporary `data_dir` under `TEST_AUDIT_HMAC_KEY`, serves its detailed readiness on an
    admin listener of its own (`admin_url`; `UCGW_ADMIN_PORT=""` turns it off), and has a rate limit too high
    to matter; every request carries a caseworker token unless `token` (or a per-call `token=`, "" for none)
    says otherwise.
    """

    def __init__(self, env: dict[str, str], token: str | None = None, port: int | None = None,
                 root: Path = ROOT, context: ssl.SSLContext | None = None) -> None:
        self.port = port or free_port()  # a fixed port when others must know the URL first (webhooks)
        self.context = context  # a TLS client context: the gateway serves HTTPS (UCGW_TLS_CERT_FILE in `env`)
        self.url = f"{'https' if context is not None else 'http'}://127.0.0.1:{self.port}"
        defaults = {"UCGW_JWT_SECRET": TEST_JWT_SECRET, "UCGW_AUDIT_HMAC_KEY": TEST_AUDIT_HMAC_KEY,
                    "UCGW_RATE_LIMIT_RPS": "10000", "UCGW_RATE_LIMIT_BURST": "100000",
                    "UCGW_ADMIN_PORT": str(free_port())}
        if "UCGW_DATA_DIR" not in env and "UCGW_DATA_DIR" not in os.environ:
            defaults["UCGW_DATA_DIR"] = _temp_data_dir()
        full_env = {**os.environ, **defaults, "UCGW_PORT": str(self.port), "UCGW_HOST": "127.0.0.1", **env}
        self.env = full_env
        self.data_dir = full_env.get("UCGW_DATA_DIR", "")
        admin_port = full_env.get("UCGW_ADMIN_PORT")
        self.admin_url = f"http://127.0.0.1:{admin_port}" if admin_port else None  # operators' /readyz
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"], cwd=root, env=full_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.token = token
        if token is None and full_env.get("UCGW_JWT_SECRET"):
            self.token = mint("caseworker", secret=full_env["UCGW_JWT_SECRET"],
                              audience=full_env.get("UCGW_JWT_AUDIENCE", AUDIENCE) or None,
                              issuer=full_env.get("UCGW_JWT_ISSUER", ISSUER) or None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                status, _, _ = http("GET", f"{self.url}/healthz", timeout=1, context=context)
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
                               headers=self.headers(token, headers), timeout=timeout, context=self.context)
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
        output = self.proc.stdout.read() if self.proc.stdout else ""
        keep_output("gateway", output)  # for the run's checks over every log line (testing/logs.py)
        return output
