"""Benchmark harness: the mocks, the gateway and the floor as subprocesses, and an aiohttp load driver.

Everything the benchmark (`bench/run.py`) and the soak (`bench/soak.py`) start goes through here:

- `start_mocks`: `python -m mocks` (testing/mockproc.py `MockProcess`) with a fixed added latency
  and no jitter by default.
- `Gateway`: `ucgw serve` (testing/gateway.py `GatewayProcess`, uvicorn, one worker) in production
  mode with a random JWT secret, a token minted by `ucgw token`, and the rate limit raised out of the way
  (a load test sends far more than one caseworker would; the limiter still runs on every request).
- `Floor`: bench/floor_app.py under the same uvicorn settings, serving fixed bytes.
- The load driver runs in this (the calling) process: asyncio + aiohttp over loopback.

Only 127.0.0.1 is ever contacted. Every loop is bounded by a count and/or a duration.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testing.gateway import GatewayProcess, free_port, http  # noqa: E402
from testing.mockproc import SOURCES, MockProcess  # noqa: E402
from testing.tls import TestCA  # noqa: E402

COLLECTIONS = {"orr": "children", "ice": "subjects", "eoir": "cases"}
BATCH_ROUTES = {s: f"POST /v1/{c}/batch" for s, c in COLLECTIONS.items()}
DEFAULT_LATENCY_MS = 40.0
RATE_LIMIT_RPS = "1000000"  # raised for the load test: one benchmark client sends thousands of req/s
RATE_LIMIT_BURST = "1000000"

# The four sections of the status contract (location, sponsor, NTA, hearing), every field, with provenance.
PROVENANCE = "fragment P on Provenance { source fetchedAt sourceUpdatedAt ageSeconds cacheStatus stale recordFound }"
ADDRESS = "fragment A on Address { street unit city state zip quality }"
HEARING = "fragment H on Hearing { id type startsAt judge courtName courtAddress { ...A } medium outcome }"
STATUS_FIELDS = """
    location { status since facility { name type city state admittedAt dischargedAt } address { ...A }
               dischargeType iceCustodyStatus provenance { ...P } }
    sponsor { name relationship category phone address { ...A } releasedAt postReleaseServices provenance { ...P } }
    nta { status issuedOn servedOn serviceMethod filedOn fieldOffice
          addressOnFile { source kind address { ...A } asOf origin } provenance { ...P } }
    hearing { caseStatus nextHearing { ...H } pastHearings { ...H } missedHearingCount
              inAbsentiaOrder { orderedOn judge } decision { type decidedOn } addressOfRecord { ...A }
              changeOfAddressFiledOn provenance { ...P } }"""
FULL_STATUS = ("query Status($a: ID!, $m: Int) { child(aNumber: $a, maxAgeSeconds: $m) { aNumber"
               + STATUS_FIELDS + " } } " + PROVENANCE + " " + ADDRESS + " " + HEARING)
FULL_STATUS_MANY = ("query Statuses($as: [ID!]!, $m: Int) { children(aNumbers: $as, maxAgeSeconds: $m) { aNumber"
                    + STATUS_FIELDS + " } } " + PROVENANCE + " " + ADDRESS + " " + HEARING)
# the smallest selection that still reads all three sources (location: ORR + ICE, hearing: EOIR)
LIGHT_MANY = ("query Light($as: [ID!]!) { children(aNumbers: $as) { aNumber location { status } "
              "hearing { caseStatus } } }")


# ------------------------------------------------------------------------------------------------ statistics

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of an already sorted sequence; nan when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Sample:
    """Latencies (seconds) and outcomes of a batch of requests."""

    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: int = 0  # transport errors (no HTTP status)
    seconds: float = 0.0  # wall time of the measured window

    def add(self, other: Sample) -> None:
        """Merge another sample into this one."""
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.failures += other.failures
        self.seconds += other.seconds

    def summary(self) -> dict[str, Any]:
        """Count, req/s, p50/p95/p99/max in ms, status counts."""
        lat = sorted(self.latencies)
        out: dict[str, Any] = {"requests": len(lat)}
        if self.seconds:
            out["rps"] = round(len(lat) / self.seconds, 1)
        for name, q in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            out[name] = round(percentile(lat, q) * 1000, 2)
        out["max_ms"] = round(lat[-1] * 1000, 2) if lat else math.nan
        out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        if self.failures:
            out["transport_failures"] = self.failures
        return out


# ------------------------------------------------------------------------------------------------ processes

def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(),
    }


def cpu_calibration() -> float:
    """CPU seconds of a fixed pure-Python loop (10 million additions): how fast this machine is right now.

    The same run on the same machine varies by tens of percent from hour to hour (shared virtual CPUs);
    this figure, recorded with every result, shows which runs are comparable.
    """
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.process_time() - started, 3)


def start_mocks(children: int, latency_ms: float = DEFAULT_LATENCY_MS, seed: int = 7) -> tuple[MockProcess, float]:
    """The three mocks in one process, `latency_ms` added to every data request; (process, seconds to READY)."""
    started = time.perf_counter()
    mocks = MockProcess(seed=seed, children=children, extra_args=["--latency-ms", str(latency_ms)],
                        startup_timeout=300).start()
    return mocks, time.perf_counter() - started


class _Drain:
    """Reads a child's combined output in a thread so a chatty process never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen[str], keep: int = 400) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.counts: collections.Counter[str] = collections.Counter()  # log lines by level word
        self._thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self._thread.start()

    def _run(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip())
            for level in ("ERROR", "WARNING", "CRITICAL", "Traceback"):
                if level in line:
                    self.counts[level] += 1

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


class _Proc:
    """Shared bits of a server subprocess: RSS, CPU time, stop."""

    proc: subprocess.Popen[str]
    drain: _Drain

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        """Resident set size in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (all threads)."""
        t = psutil.Process(self.pid).cpu_times()
        return float(t.user + t.system)

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it will not go; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.drain.join()
        return self.proc.returncode


def mint_token(env: dict[str, str], role: str = "caseworker") -> str:
    """A token from `ucgw token`, as a user would get one, signed with the gateway's configured secret."""
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "--role", role, "--ttl", "43200",
                          "--subject", f"bench-{role}", "--client", "ucgw-bench"],
                         cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


class Gateway(_Proc):
    """`ucgw serve` in production mode against the given mocks; stop() ends it and removes its data dir."""

    def __init__(self, mocks: MockProcess, root: Path = ROOT, tls: bool = False, **env: str) -> None:
        """`root`: the source tree the gateway runs from (another checkout, to compare two builds); `tls`: serve
        HTTPS with a certificate of a throwaway CA (`context` is then the client context that trusts it)."""
        self.data_dir = tempfile.mkdtemp(prefix="ucgw-bench-data-")
        self.context = None
        if tls:
            ca = TestCA(Path(self.data_dir) / "tls", "bench CA")
            issued = ca.issue("gateway")
            env = {**env, "UCGW_TLS_CERT_FILE": issued.cert, "UCGW_TLS_KEY_FILE": issued.key}
            self.context = ca.client_context()
        self.env = mocks.gateway_env(
            UCGW_ENV="production",
            UCGW_JWT_SECRET=secrets.token_urlsafe(48),  # serve refuses to start without credentials
            UCGW_AUDIT_HMAC_KEY=secrets.token_urlsafe(48),  # ... and without a key to sign its audit trail
            UCGW_RATE_LIMIT_RPS=RATE_LIMIT_RPS, UCGW_RATE_LIMIT_BURST=RATE_LIMIT_BURST,
            UCGW_DATA_DIR=self.data_dir, **env,
        )
        self.token = mint_token(self.env)
        self._process = GatewayProcess(self.env, token=self.token, root=root, context=self.context)
        self.proc = self._process.proc
        self.url = self._process.url
        self.admin_url = self._process.admin_url  # the detailed /readyz (a build before the admin listener: None)
        self.graphql = f"{self.url}/graphql"
        self.headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        self.drain = _Drain(self.proc)

    def readyz(self) -> dict[str, Any]:
        """The detailed /readyz as JSON: the admin listener's; a build from before it had them on the public one."""
        try:
            _status, _headers, body = http("GET", f"{self.admin_url}/readyz", timeout=10)
        except OSError:  # no admin listener: an older build, compared side by side
            _status, _headers, body = http("GET", f"{self.url}/readyz", timeout=10)
        return json.loads(body)

    def calls(self) -> dict[str, int]:
        """Backend calls per source as the gateway counts them (SourceHealth.calls)."""
        return {f["source"].lower(): int(f["calls"]) for f in self.readyz()["sources"]}

    def breaker(self, source: str) -> str:
        """One source's breaker state as /readyz reports it."""
        return next(f["breaker_state"] for f in self.readyz()["sources"] if f["source"].lower() == source)

    def audit_bytes(self) -> int:
        """Size of the audit trail files (database + WAL)."""
        return sum(p.stat().st_size for p in Path(self.data_dir).glob("audit.sqlite3*"))

    def stop(self) -> int | None:
        code = super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return code


class Floor(_Proc):
    """bench/floor_app.py under the same uvicorn settings as the gateway: serving `body` at POST /graphql, or
    with `sources` (source name → base URL) the cold floor, which makes the three backend calls per request."""

    def __init__(self, body: bytes = b"{}", sources: dict[str, str] | None = None) -> None:
        fd, self.body_path = tempfile.mkstemp(prefix="ucgw-floor-", suffix=".json")
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.graphql = f"{self.url}/graphql"
        env = {**os.environ, "UCGW_FLOOR_BODY": self.body_path}
        argv = [sys.executable, str(ROOT / "bench" / "floor_app.py"), "--port", str(self.port)]
        if sources:
            argv += ["--sources", ",".join(f"{name}={url}" for name, url in sources.items())]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.drain = _Drain(self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("floor app exited: " + "\n".join(self.drain.lines))
            try:
                if http("GET", f"{self.url}/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("floor app did not start within 30 s")

    def stop(self) -> int | None:
        code = super().stop()
        Path(self.body_path).unlink(missing_ok=True)
        return code


# ------------------------------------------------------------------------------------------------ two builds

def ab_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every side-by-side comparison of two builds takes (bench/ab_warm.py, bench/ab_cpu.py)."""
    parser.add_argument("--base", type=Path, required=True, help="the checkout gateway A runs from")
    parser.add_argument("--env-a", action="append", default=[], metavar="UCGW_NAME=value (or OTEL_NAME=value)")
    parser.add_argument("--env-b", action="append", default=[], metavar="UCGW_NAME=value (or OTEL_NAME=value)")
    parser.add_argument("--tls-b", action="store_true", help="B serves HTTPS (a throwaway CA's certificate): the "
                                                             "cost of TLS, over keep-alive connections")


@contextlib.contextmanager
def ab_pair(args: argparse.Namespace, mocks: MockProcess, **env: str) -> Iterator[tuple[Gateway, Gateway]]:
    """Gateway A from the `--base` checkout and B from this tree, each with its `--env-a`/`--env-b` settings
    over `env`, on `mocks`; the gateways and the mocks are stopped when the block ends, however it ends."""
    base = args.base.resolve()
    if not (base / "gateway" / "cli.py").is_file():
        mocks.stop()
        raise SystemExit(f"--base {base} is not a checkout of this project")
    env_a, env_b = _settings(args.env_a), _settings(args.env_b)
    gateways: list[Gateway] = []
    try:
        gateways.append(Gateway(mocks, root=base, **{**env, **env_a}))
        gateways.append(Gateway(mocks, tls=getattr(args, "tls_b", False), **{**env, **env_b}))
        yield gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            gateway.stop()
        mocks.stop()


def _settings(pairs: list[str]) -> dict[str, str]:
    """`NAME=value` arguments as an environment for one gateway."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith(("UCGW_", "OTEL_")):  # OTEL_*: the tracing SDK's own settings
            raise SystemExit(f"--env-a/--env-b take UCGW_NAME=value or OTEL_NAME=value, not {pair!r}")
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------------ load driver

def session(connections: int = 0, context: Any = None) -> aiohttp.ClientSession:
    """A keep-alive client session; `connections` 0 = no pool limit; `context`: the TLS client context for
    https URLs (a `Gateway(tls=True)`'s). A connection idle 4 s is not reused: the servers (uvicorn) close
    theirs at 5 s, and a request sent on one as it closes would fail."""
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=4.0,
                                     ssl=context if context is not None else True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    """The POST body of one GraphQL request."""
    return json.dumps({"query": query, "variables": variables or {}}).encode()


async def post(client: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str]) -> tuple[float, int, bytes]:
    """(seconds, HTTP status, body) of one POST; status 0 on a transport error."""
    started = time.perf_counter()
    try:
        async with client.post(url, data=body, headers=headers) as resp:
            data = await resp.read()
            return time.perf_counter() - started, resp.status, data
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return time.perf_counter() - started, 0, repr(exc).encode()


async def closed_loop(client: aiohttp.ClientSession, url: str, body: bytes | Callable[[], bytes],
                      headers: dict[str, str], concurrency: int, seconds: float, warmup: float = 0.0,
                      max_requests: int = 10_000_000,
                      on_response: Callable[[int, bytes], None] | None = None) -> Sample:
    """`concurrency` workers each sending the next request as soon as the last one is answered.

    The first `warmup` seconds are not measured; then requests are measured for `seconds` (or until
    `max_requests`). `body` may be a function returning a fresh body per request.
    """
    sample = Sample()
    loop = asyncio.get_running_loop()
    start_measure = loop.time() + warmup
    stop_at = start_measure + seconds
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while loop.time() < stop_at and sent < max_requests:
            payload = body() if callable(body) else body
            began = loop.time()
            latency, status, data = await post(client, url, payload, headers)
            if began < start_measure:
                continue
            sent += 1
            sample.latencies.append(latency)
            if status:
                sample.statuses[status] += 1
            else:
                sample.failures += 1
            if on_response is not None:
                on_response(status, data)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.seconds = max(1e-9, loop.time() - start_measure)  # up to the last answer of the window
    return sample


async def one_at_a_time(items: Iterable[Any], send: Callable[[Any], Awaitable[tuple[float, int, bytes]]],
                        on_response: Callable[[Any, int, bytes], None] | None = None) -> Sample:
    """Send one request per item, sequentially; latencies in order."""
    sample = Sample()
    began = time.perf_counter()
    for item in items:
        latency, status, data = await send(item)
        sample.latencies.append(latency)
        sample.statuses[status] += 1
        if on_response is not None:
            on_response(item, status, data)
    sample.seconds = time.perf_counter() - began
    return sample


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = io.open(os.getenv("UCGW_WRK_BODY"), "rb"):read()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("UCGW_WRK_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
"""
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, body: bytes, token: str | None, concurrency: int, seconds: float) -> dict[str, Any]:
    """Debian's wrk (one thread, `concurrency` keep-alive connections) POSTing `body` to `url` for `seconds`:
    requests, req/s, p50/p99 ms and non-2xx answers, from its `--latency` report."""
    with tempfile.TemporaryDirectory(prefix="ucgw-wrk-") as tmp:
        script, payload = Path(tmp) / "post.lua", Path(tmp) / "body.json"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        payload.write_bytes(body)
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", str(script), url],
                             env={**os.environ, "UCGW_WRK_BODY": str(payload), "UCGW_WRK_TOKEN": token or ""},
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result: dict[str, Any] = {"non_2xx": 0}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = round(float(words[1]), 1)
        elif len(words) >= 2 and words[1] == "requests" and words[0].isdigit():
            result["requests"] = int(words[0])
        elif line.startswith("  Non-2xx or 3xx responses:"):
            result["non_2xx"] = int(words[-1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            number = words[1].rstrip("umsµ")
            unit = words[1][len(number):]
            result[f"p{words[0][:-1]}_ms"] = round(float(number) * _WRK_UNITS[unit], 3)
    return result


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class CpuTally:
    """CPU used by one process over several windows, as a share of one core over their total length."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    @contextlib.contextmanager
    def measuring(self, pid: int) -> Iterator[None]:
        """Add the window of the `with` block (CPU of process `pid`, wall time)."""
        process = psutil.Process(pid)
        cpu, began = _cpu_seconds(process), time.perf_counter()
        try:
            yield
        finally:
            self.cpu += _cpu_seconds(process) - cpu
            self.wall += time.perf_counter() - began

    def share(self) -> float:
        """CPU seconds over wall seconds of all windows so far."""
        return round(self.cpu / max(1e-9, self.wall), 2)


# ------------------------------------------------------------------------------------------------ mocks helpers

async def admin(client: aiohttp.ClientSession, mocks: MockProcess, source: str, method: str, path: str,
                body: Any = None) -> Any:
    """A tester-control call on one mock service."""
    async with client.request(method, mocks.urls[source] + path, json=body) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path} on {source}: {resp.status} {data}")
        return data


async def set_faults(client: aiohttp.ClientSession, mocks: MockProcess, faults: dict[str, Any],
                     sources: Iterable[str] = SOURCES) -> None:
    """PUT /_admin/faults on each named source."""
    await asyncio.gather(*(admin(client, mocks, s, "PUT", "/_admin/faults", faults) for s in sources))


async def batch_calls(client: aiohttp.ClientSession, mocks: MockProcess) -> dict[str, int]:
    """Batch-read calls each mock service has counted so far."""
    stats = await asyncio.gather(*(admin(client, mocks, s, "GET", "/_admin/stats") for s in SOURCES))
    return {s: int(st["by_route"].get(BATCH_ROUTES[s], 0)) for s, st in zip(SOURCES, stats, strict=True)}


async def all_a_numbers(client: aiohttp.ClientSession, mocks: MockProcess, limit: int) -> list[str]:
    """Up to `limit` A-numbers from ICE's listing (which holds every child), paged 500 at a time.

    ICE's added latency is switched off for the listing and restored afterwards.
    """
    faults = await admin(client, mocks, "ice", "GET", "/_admin/faults")
    await set_faults(client, mocks, {"latency_ms": 0, "jitter_ms": 0}, ["ice"])
    out: list[str] = []
    cursor: str | None = None
    try:
        for _ in range(limit // 500 + 2):
            params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            async with client.get(f"{mocks.ice}/v1/subjects", params=params) as resp:
                page = await resp.json(content_type=None)
            out += [r["a_number"] for r in page["records"]]
            cursor = page.get("next_cursor")
            if not cursor or len(out) >= limit:
                break
    finally:
        await set_faults(client, mocks, {"latency_ms": faults["latency_ms"], "jitter_ms": faults["jitter_ms"]},
                         ["ice"])
    return out[:limit]


def errors_of(body: bytes) -> list[dict[str, Any]]:
    """The GraphQL errors of a response body ([] when none or not JSON)."""
    try:
        return list(json.loads(body).get("errors") or [])
    except (ValueError, AttributeError):
        return []
