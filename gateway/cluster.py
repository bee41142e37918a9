"""`ucgw cluster` (`make cluster`): the replicated deployment on one machine, every part a real server.

PostgreSQL and Redis (gateway/local_servers.py, from Debian's binaries), `ucgw migrate`, the three mocks,
N gateway replicas (`ucgw serve`, each with its own port, admin port and replica id) and HAProxy in front
(deploy/haproxy/cluster.cfg), all on loopback, with their data and logs under one folder (`var/cluster/`).
The replicas share the settings of deploy/kubernetes/configmap.yaml, so what runs here is what the Kubernetes
manifests run, and secrets made once into `<root>/secrets.env` (mode 0600). The state of a running cluster
(ports, pids, URLs) is written to `<root>/cluster.json` for tests, benchmarks and people.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from gateway.local_servers import PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIGMAP = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy" / "cluster.cfg"
# where things are: set by the launcher per replica, whatever the ConfigMap or the caller's environment says
LOCAL_KEYS = ("UCGW_HOST", "UCGW_PORT", "UCGW_ADMIN_HOST", "UCGW_ADMIN_PORT", "UCGW_REPLICA_ID", "UCGW_DATA_DIR",
              "UCGW_ORR_URL", "UCGW_ICE_URL", "UCGW_EOIR_URL", "UCGW_DATABASE_URL", "UCGW_REDIS_URL")
SECRET_KEYS = ("UCGW_JWT_SECRET", "UCGW_CURSOR_SECRET", "UCGW_AUDIT_HMAC_KEY")
DATABASE, OWNER_ROLE, RUNTIME_ROLE = "ucgw", "ucgw_owner", "ucgw_app"
START_TIMEOUT = 90.0  # seconds a replica or mock may take to answer on 2 busy cores


def shared_settings(path: Path = CONFIGMAP) -> dict[str, str]:
    """The `data` of the replicas' ConfigMap, without the keys the launcher sets itself."""
    import yaml  # PyYAML, installed with uvicorn[standard]; only the launcher reads YAML

    data = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
    return {str(k): str(v) for k, v in data.items() if k not in LOCAL_KEYS}


def cluster_secrets(root: Path) -> dict[str, str]:
    """The cluster's secrets, made once into `<root>/secrets.env` (0600) and read back on every later run, so
    that tokens and audit chains outlive a restart."""
    path = root / "secrets.env"
    if not path.exists():
        lines = [f"{key}={secrets.token_urlsafe(48)}" for key in SECRET_KEYS]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# made by `ucgw cluster` for this folder's cluster only; never reuse elsewhere\n")
            out.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # also when an older file was looser
    values = dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                  if line and not line.startswith("#"))
    missing = [k for k in SECRET_KEYS if not values.get(k)]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}: delete it to have new secrets made")
    return {k: values[k] for k in SECRET_KEYS}


def has_command(name: str) -> bool:
    """Whether `ucgw` has sub-command `name` (`migrate` comes with the PostgreSQL stores)."""
    from gateway.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return name in sub.choices


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = START_TIMEOUT,
              ok: tuple[int, ...] = (200,)) -> None:
    """Wait until GET `url` answers with a status in `ok`, or fail when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s")


def haproxy_maxconn_flag(maxconn: int = 10_000) -> list[str]:
    """HAProxy wants about 2 x maxconn descriptors and refuses to start without them: where the hard limit is
    lower, `-n` lowers its maxconn to what fits (as tests/test_edge.py does)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 2 * maxconn + 200:
        return []
    return ["-n", str((hard - 200) // 2)]


def haproxy_servers(stats_socket: Path | str) -> dict[str, dict[str, Any]]:
    """The `gateway` backend's servers from HAProxy's `show stat` (CSV): status and sessions of each."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    lines = raw.decode().splitlines()
    columns = lines[0].lstrip("# ").split(",")
    servers = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        if row.get("pxname") == "gateway" and row.get("svname") not in ("BACKEND", "FRONTEND"):
            servers[row["svname"]] = {"status": row["status"].split(" ")[0], "sessions": int(row["stot"] or 0)}
    return servers


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Replica:
    """One `ucgw serve` process of the cluster."""

    id: str
    port: int
    admin_port: int
    data_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # this replica's own settings, over the cluster's
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    """The whole stack; `start()` brings it up in dependency order, `stop()` ends what it started, newest first.

    `env` holds UCGW_* settings that win over the ConfigMap (a benchmark's rate limit, say); `redis=False`
    leaves Redis out (the replicas then share nothing but PostgreSQL)."""

    root: Path
    replicas: int = 3
    port: int = 8000
    children: int = 5000
    seed: int = 7
    clock_speed: float = 0.0
    redis: bool = True
    restart_after: float = 0.0  # `ucgw cluster` starts a replica that died again after this long (0: never)
    env: dict[str, str] = field(default_factory=dict)
    say: Any = print
    postgres: PostgresServer | None = None
    redis_server: RedisServer | None = None
    mocks: subprocess.Popen[bytes] | None = None
    haproxy: subprocess.Popen[bytes] | None = None
    members: list[Replica] = field(default_factory=list)
    mock_ports: dict[str, int] = field(default_factory=dict)
    stats_port: int = 0

    # -- where things are ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://{RUNTIME_ROLE}@127.0.0.1:{self.postgres.port}/{DATABASE}" if self.postgres else ""

    @property
    def migrate_url(self) -> str:
        return f"postgresql://{OWNER_ROLE}@127.0.0.1:{self.postgres.port}/{DATABASE}" if self.postgres else ""

    @property
    def redis_url(self) -> str:
        return self.redis_server.url if self.redis_server else ""

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def _environment(self) -> dict[str, str]:
        """The environment every replica (and `ucgw migrate`) starts from: ConfigMap < caller's UCGW_* <
        this cluster's `env`, with the secrets and the shared stores' URLs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("UCGW_")}
        env.update(shared_settings())
        env.update({k: v for k, v in os.environ.items() if k.startswith("UCGW_") and k not in LOCAL_KEYS})
        env.update(self.env)
        env.update(cluster_secrets(self.root))
        env["UCGW_DATABASE_URL"] = self.database_url
        env["UCGW_REDIS_URL"] = self.redis_url
        for name, port in self.mock_ports.items():
            env[f"UCGW_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
        return env

    # -- bringing it up -----------------------------------------------------------------------------------
    def start(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        cluster_secrets(self.root)
        try:
            self._start_postgres()
            if self.redis:
                self.redis_server = RedisServer(self.root / "redis").start()
                self.say(f"redis       {self.redis_url}")
            self._migrate()
            self._start_mocks()
            for index in range(self.replicas):
                self.members.append(self._new_replica(index + 1))
            for replica in self.members:
                self.start_replica(replica)
            self._start_haproxy()
            self.write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_postgres(self) -> None:
        import psycopg

        self.postgres = PostgresServer(self.root / "postgres", fsync=True).start()  # the audit trail is durable
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:  # idempotent: a second run keeps the data
            for role in (OWNER_ROLE, RUNTIME_ROLE):
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(f"CREATE ROLE {role} LOGIN" + (" CREATEROLE" if role == OWNER_ROLE else ""))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}")
        self.say(f"postgresql  {self.database_url} (runtime role; migrations as {OWNER_ROLE})")

    def _migrate(self) -> None:
        """`ucgw migrate` as the owning role; the runtime role gets only what the migrations grant it."""
        if not has_command("migrate"):
            self.say("migrate     skipped: this build has no `ucgw migrate` (no PostgreSQL stores yet)")
            return
        env = {**self._environment(), "UCGW_DATABASE_MIGRATE_URL": self.migrate_url}
        with open(self.logs / "migrate.log", "ab") as log:
            done = subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            raise RuntimeError(f"`ucgw migrate` failed ({done.returncode}): see {self.logs / 'migrate.log'}")
        self.say("migrate     done")

    def _start_mocks(self) -> None:
        self.mock_ports = {name: free_port() for name in ("orr", "ice", "eoir")}
        cmd = [sys.executable, "-m", "gateway.cli", "mocks", "--seed", str(self.seed), "--children",
               str(self.children), "--clock-speed", str(self.clock_speed)]
        for name, port in self.mock_ports.items():
            cmd += [f"--{name}-port", str(port)]
        self.mocks = subprocess.Popen(cmd, stdout=open(self.logs / "mocks.log", "ab"),  # noqa: SIM115
                                      stderr=subprocess.STDOUT, start_new_session=True)
        for port in self.mock_ports.values():
            wait_http(f"http://127.0.0.1:{port}/healthz", self.mocks, "the mocks", ok=(200, 404))
        self.say("mocks       " + "  ".join(f"{n.upper()} http://127.0.0.1:{p}" for n, p in self.mock_ports.items()))

    def _new_replica(self, number: int) -> Replica:
        rid = f"gw{number}"
        data_dir = self.root / "replicas" / rid
        data_dir.mkdir(parents=True, exist_ok=True)
        return Replica(rid, free_port(), free_port(), data_dir, self.logs / f"{rid}.log")

    def start_replica(self, replica: Replica, wait: bool = True) -> None:
        """Start (or start again, on the same ports) one replica, and wait until its /readyz answers 200."""
        env = {**self._environment(), **replica.env, "UCGW_HOST": "127.0.0.1", "UCGW_PORT": str(replica.port),
               "UCGW_ADMIN_HOST": "127.0.0.1", "UCGW_ADMIN_PORT": str(replica.admin_port),
               "UCGW_REPLICA_ID": replica.id, "UCGW_DATA_DIR": str(replica.data_dir)}
        replica.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env,
                                        stdout=open(replica.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                        start_new_session=True)
        if wait:
            self.wait_replica(replica)
        self.say(f"replica     {replica.id} {replica.url} (admin {replica.admin_url}, pid {replica.proc.pid})")

    def wait_replica(self, replica: Replica) -> None:
        assert replica.proc is not None
        wait_http(f"{replica.url}/readyz", replica.proc, f"replica {replica.id} (log: {replica.log})")

    def _start_haproxy(self) -> None:
        self.stats_port = free_port()
        config = self.root / "haproxy.cfg"
        servers = "\n".join(f"    server {r.id} 127.0.0.1:{r.port}" for r in self.members)
        config.write_text(Template(HAPROXY_TEMPLATE.read_text(encoding="utf-8")).substitute(
            host="127.0.0.1", port=self.port, stats_port=self.stats_port,
            stats_socket=self.root / "haproxy.sock", servers=servers), encoding="utf-8")
        command = ["haproxy", *haproxy_maxconn_flag(), "-f", str(config)]
        check = subprocess.run([*command, "-c", "-q"], capture_output=True, check=False)
        if check.returncode:
            raise RuntimeError(f"haproxy refused {config}: {check.stderr.decode(errors='replace')}")
        self.haproxy = subprocess.Popen([*command, "-db"], stdout=open(self.logs / "haproxy.log", "ab"),  # noqa: SIM115
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.url}/readyz", self.haproxy, f"haproxy (log: {self.logs / 'haproxy.log'})")
        self.say(f"haproxy     {self.url}  (stats http://127.0.0.1:{self.stats_port}/)")

    # -- while it runs ------------------------------------------------------------------------------------
    def kill(self, replica: Replica, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one replica (SIGKILL: a crash) and wait for it to be gone."""
        if replica.proc is not None and replica.proc.poll() is None:
            replica.proc.send_signal(sig)
            replica.proc.wait(timeout=30)

    def haproxy_servers(self) -> dict[str, dict[str, Any]]:
        """Each replica as HAProxy sees it, from its stats socket: `status` (UP, DOWN, ...) and `sessions`
        (requests sent to it so far)."""
        return haproxy_servers(self.root / "haproxy.sock")

    def state(self) -> dict[str, Any]:
        return {
            "url": self.url, "stats_url": f"http://127.0.0.1:{self.stats_port}/", "root": str(self.root),
            "haproxy_pid": self.haproxy.pid if self.haproxy else None,
            "haproxy_socket": str(self.root / "haproxy.sock"),
            "database_url": self.database_url, "migrate_url": self.migrate_url,
            "database_superuser_url": self.postgres.url if self.postgres else "",
            "redis_url": self.redis_url, "mocks": {n: f"http://127.0.0.1:{p}" for n, p in self.mock_ports.items()},
            "secrets": str(self.root / "secrets.env"),
            "replicas": [{"id": r.id, "url": r.url, "admin_url": r.admin_url, "pid": r.proc.pid if r.proc else None,
                          "log": str(r.log)} for r in self.members],
        }

    def write_state(self) -> None:
        (self.root / "cluster.json").write_text(json.dumps(self.state(), indent=2) + "\n", encoding="utf-8")

    # -- taking it down -----------------------------------------------------------------------------------
    def stop(self) -> None:
        _stop(self.haproxy)
        for replica in reversed(self.members):
            _stop(replica.proc)
        _stop(self.mocks)
        if self.redis_server:
            self.redis_server.stop()
        if self.postgres:
            self.postgres.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "cluster.json").unlink()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sample_a_number(orr_url: str) -> str:
    """A child of the mocks' world with a hearing scheduled (the richest answer)."""
    with urllib.request.urlopen(f"{orr_url}/_admin/sample?n=1&state=hearing_scheduled", timeout=10) as resp:
        return str(json.load(resp)["a_numbers"][0])


TOKEN_TTL = 12 * 3600  # the banner's tokens; `ucgw token` makes others with the same secret


def banner(cluster: Cluster) -> list[str]:
    """What a person needs: the URL, tokens, a query to paste, and how to watch a replica die."""
    from gateway.config import load_settings
    from gateway.http.auth import mint_token
    from rules.roles import ROLES

    settings = load_settings(environ=cluster._environment())  # noqa: SLF001
    ttl = min(TOKEN_TTL, settings.jwt_max_ttl_seconds)
    tokens = {role: mint_token(settings, role, ttl=ttl, client="ucgw-cluster") for role in ROLES}
    first = cluster.members[0]
    query = json.dumps({"query": f'{{ child(aNumber: "{sample_a_number(cluster.state()["mocks"]["orr"])}") '
                                 "{ aNumber location { status provenance { source fetchedAt cacheStatus } } } }"})
    lines = [
        "", f"uc-status-gateway cluster: {len(cluster.members)} replicas behind HAProxy",
        f"  GraphQL       {cluster.url}/graphql   (UCGW_ENV=production, as deploy/kubernetes: no GraphiQL)",
        f"  HAProxy stats http://127.0.0.1:{cluster.stats_port}/",
        f"  state         {cluster.root / 'cluster.json'}  (ports, pids, URLs)   logs {cluster.logs}/",
        "", f"Tokens ({ttl / 3600:g} h, signed with the secret in {cluster.root / 'secrets.env'}):",
        *(f"  {role:<11} {token}" for role, token in tokens.items()),
        "", "Ask through HAProxy (the answer's X-Request-Id names the request in the replicas' logs and the audit):",
        f"  TOKEN={tokens['caseworker']}",
        f"  curl -si {cluster.url}/graphql -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\",
        f"       -d '{query}'",
        "", "Kill a replica and watch HAProxy take it out" + (
            f" (this command starts it again after {cluster.restart_after:g} s):" if cluster.restart_after else ":"),
        f"  kill -9 {first.proc.pid if first.proc else '<pid>'}     # {first.id}; the others' pids are in cluster.json",
        "", "Ctrl-C stops everything this command started.",
    ]
    return lines


def run_cluster(args: argparse.Namespace) -> int:
    """Bring the cluster up, print the banner, restart crashed replicas, and end everything on Ctrl-C."""
    if args.replicas < 1:
        print("ucgw cluster: --replicas must be at least 1", file=sys.stderr)
        return 2
    cluster = Cluster(Path(args.root).resolve(), replicas=args.replicas, port=args.port, children=args.children,
                      seed=args.seed, clock_speed=args.clock_speed, redis=not args.no_redis,
                      restart_after=args.restart_after,
                      say=lambda line: print(line, flush=True))
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (a service manager, `kill`) stops the cluster as Ctrl-C does

    signal.signal(signal.SIGTERM, interrupted)
    try:
        cluster.start()
        for line in banner(cluster):
            print(line, flush=True)
        print(f"READY {cluster.url}", flush=True)
        dead_since: dict[str, float] = {}
        while True:  # a supervisor, as Kubernetes would be: a replica that died is started again
            time.sleep(0.5)
            for replica in cluster.members:
                if replica.alive:
                    continue
                since = dead_since.setdefault(replica.id, time.monotonic())
                if cluster.restart_after and time.monotonic() - since >= cluster.restart_after:
                    code = replica.proc.returncode if replica.proc else None
                    print(f"replica {replica.id} exited ({code}); starting it again", flush=True)
                    cluster.start_replica(replica, wait=False)
                    dead_since.pop(replica.id)
                    cluster.write_state()
    except KeyboardInterrupt:
        print("\nstopping the cluster", flush=True)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # a part would not start: say which, no trace
        print(f"ucgw cluster: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        cluster.stop()
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default="var/cluster", help="folder of the cluster's data, secrets and logs")
    parser.add_argument("--replicas", type=int, default=int(os.environ.get("UCGW_REPLICAS", "3")),
                        help="gateway replicas (default UCGW_REPLICAS, else 3)")
    parser.add_argument("--port", type=int, default=8000, help="HAProxy's port (default 8000)")
    parser.add_argument("--children", type=int, default=5000, help="children in the mocks' world")
    parser.add_argument("--seed", type=int, default=7, help="the mocks' world seed")
    parser.add_argument("--clock-speed", type=float, default=0.0,
                        help="the mocks' simulated seconds per real second (0: changes only on demand)")
    parser.add_argument("--no-redis", action="store_true", help="leave Redis out (replicas share only PostgreSQL)")
    parser.add_argument("--restart-after", type=float, default=5.0,
                        help="start a replica that died again after this many seconds (0: never)")
