"""Start the mock agency services as a real subprocess and talk to them over HTTP.

    with MockProcess(seed=7, children=300) as mocks:
        mocks.orr                      # "http://127.0.0.1:PORT" (ports picked by the OS)
        status, body = mocks.admin("ice", "PUT", "/_admin/faults", {"latency_ms": 50})
        mocks.stats("ice")["by_route"]
        mocks.gateway_env(UCGW_CACHE_TTL_SECONDS="5")   # UCGW_ORR_URL etc. for a gateway process
        mocks.reset()                  # default faults and zeroed stats on all three services

Plain urllib, no third-party client, so any test can use it.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.logs import keep_output

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("orr", "ice", "eoir")


@dataclass
class Resp:
    """An HTTP response: status, headers (lower-case names), raw body."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float = 0.0

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def request(method: str, url: str, json_body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 15.0, data: bytes | None = None, context: ssl.SSLContext | None = None) -> Resp:
    """One HTTP request (`context`: the TLS client context of an https URL); 4xx/5xx come back as a Resp
    instead of raising."""
    hdrs = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            body = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.headers.items()}, body, time.perf_counter() - t0)
    except urllib.error.HTTPError as e:
        body = e.read()
        return Resp(e.code, {k.lower(): v for k, v in e.headers.items()}, body, time.perf_counter() - t0)


@dataclass
class MockProcess:
    """`python -m mocks` on free loopback ports, for the duration of a `with` block (or start()/stop())."""

    seed: int = 7
    children: int = 300
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # more environment (UCGW_WEBHOOK_SECRET for --webhook-url)
    startup_timeout: float = 60.0
    context: ssl.SSLContext | None = None  # TLS client context for mocks started with --tls-cert
    urls: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    stderr_path: str = ""

    @property
    def orr(self) -> str:
        """Base URL of the ORR service."""
        return self.urls["orr"]

    @property
    def ice(self) -> str:
        """Base URL of the ICE service."""
        return self.urls["ice"]

    @property
    def eoir(self) -> str:
        """Base URL of the EOIR service."""
        return self.urls["eoir"]

    def command(self) -> list[str]:
        """The command line used to start the services."""
        return [sys.executable, "-m", "mocks", "--host", "127.0.0.1", "--orr-port", "0", "--ice-port", "0",
                "--eoir-port", "0", "--seed", str(self.seed), "--children", str(self.children),
                *self.extra_args]

    def start(self) -> MockProcess:
        """Start the subprocess and wait for its READY line."""
        fd, self.stderr_path = tempfile.mkstemp(prefix="mocks-", suffix=".log")
        os.close(fd)
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env}
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        lines: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.append(line.strip())
                if line.strip() == "READY":
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not lines or lines[-1] != "READY":
            self.stop()
            raise RuntimeError(f"mocks did not become ready; stdout={lines!r} stderr={self.stderr()!r}")
        for line in lines[:-1]:
            name, _sep, url = line.partition(" ")
            self.urls[name.lower()] = url
        return self

    def stderr(self) -> str:
        """Everything the process logged so far."""
        return Path(self.stderr_path).read_text() if self.stderr_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the process and wait for it; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            rest = "" if self.proc.stdout.closed else self.proc.stdout.read()
            self.proc.stdout.close()
            keep_output("mocks", self.stderr() + rest)  # for the run's checks over every log line
        return self.proc.returncode

    def __enter__(self) -> MockProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.stderr_path:
            Path(self.stderr_path).unlink(missing_ok=True)

    # ---------------------------------------------------------------- helpers

    def request(self, source: str, method: str, path: str, json: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 15.0) -> Resp:
        """Any request to one service (path starts with '/')."""
        return request(method, self.urls[source] + path, json, headers, timeout, context=self.context)

    def admin(self, source: str, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """A tester-control call: (HTTP status, decoded JSON body)."""
        r = self.request(source, method, path, json)
        return r.status, r.json()

    def admin_ok(self, source: str, method: str, path: str, json: Any = None) -> Any:
        """A tester-control call that must succeed; returns the decoded JSON body."""
        r = self.request(source, method, path, json)
        assert r.status < 400, f"{method} {path} on {source}: {r.status} {r.body[:300]!r}"
        return r.json()

    def reset(self) -> None:
        """Default faults and zeroed stats on all three services (data and clock untouched)."""
        for s in SOURCES:
            self.admin_ok(s, "POST", "/_admin/reset")

    def stats(self, source: str) -> dict[str, Any]:
        """The request counters of one service: {"total", "by_route", "batch_sizes"}."""
        return self.admin_ok(source, "GET", "/_admin/stats")

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the shared simulation clock on; returns {"now", "events_applied", ...}."""
        return self.admin_ok("orr", "POST", "/_admin/clock", {"advance_seconds": seconds})

    def sample(self, n: int = 10, state: str | None = None) -> list[str]:
        """Deterministic A-numbers spread over every state, or only in one state."""
        q = f"/_admin/sample?n={n}" + (f"&state={state}" if state else "")
        return self.admin_ok("orr", "GET", q)["a_numbers"]

    def gateway_env(self, **overrides: str) -> dict[str, str]:
        """Environment pointing a gateway at these mocks (UCGW_ORR_URL, ...), plus any overrides."""
        return {"UCGW_ORR_URL": self.orr, "UCGW_ICE_URL": self.ice, "UCGW_EOIR_URL": self.eoir, **overrides}
