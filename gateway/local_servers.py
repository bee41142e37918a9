"""PostgreSQL and Redis servers of our own, from the binaries Debian installs: `ucgw cluster` runs its stack on
them, and the tests (testing/servers.py) start throwaway ones.

Each server runs on a loopback port with its data in a folder of its own, and is stopped (and its folder
removed, unless it was given one) when the context exits. Run as root, PostgreSQL is started as an
unprivileged user (`postgres` when Debian's package made it, else `nobody`), since `initdb` and `postgres`
refuse root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(binary: str) -> str:
    """A server binary: on PATH, else in Debian's versioned PostgreSQL folder."""
    found = shutil.which(binary) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"),
                                                    reverse=True)), None)
    if not found:
        raise RuntimeError(f"{binary} not found: `make test-deps` installs Debian's postgresql and redis-server")
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def _unprivileged() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL")


class _LocalServer:
    """What both servers share: a child process in a folder of its own, stopped and (when the folder was
    made here) removed by `close`; a context manager that starts it."""

    proc: subprocess.Popen[bytes] | None
    dir: Path
    _own_dir: bool

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` and wait for the process to exit (killed after 30 s)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresServer(_LocalServer):
    """One PostgreSQL server (trust auth on loopback, superuser `postgres`) on a free port."""

    def __init__(self, data_dir: str | Path | None = None, port: int | None = None, fsync: bool = False) -> None:
        self.fsync = fsync  # off for tests; on for `make cluster` and benchmarks that measure commits
        self._own_dir = data_dir is None
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ucgw-pg-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = _unprivileged()

    @property
    def url(self) -> str:
        """The superuser's URL of the `postgres` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict[str, int]:
        return {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}

    def start(self) -> Self:
        """initdb when the folder is new, then start and wait until it accepts connections."""
        data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._user:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        if not (data / "PG_VERSION").exists():
            done = subprocess.run([_find("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                   "--no-sync"], check=False, capture_output=True, cwd=self.dir, **self._run_as())
            if done.returncode:  # say why (as root: often a parent folder the postgres user cannot enter)
                raise RuntimeError(f"initdb of {data} failed: {done.stderr.decode(errors='replace').strip()}")
        self.proc = subprocess.Popen(
            [_find("postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.dir),
             "-c", f"fsync={'on' if self.fsync else 'off'}", "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "postgres.log", "ab"),  # noqa: SIM115
            cwd=self.dir, start_new_session=True, **self._run_as())
        _wait_port(self.port, self.proc, "postgres")
        self._wait_accepting()
        return self

    def _wait_accepting(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop the server (SIGINT: PostgreSQL's fast shutdown; SIGKILL: a crash) and wait for it to exit."""
        super().stop(sig)


class RedisServer(_LocalServer):
    """One Redis server (no persistence) on a free loopback port."""

    def __init__(self, data_dir: str | Path | None = None, port: int | None = None) -> None:
        self._own_dir = data_dir is None
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ucgw-redis-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [_find("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self.proc, "redis-server")
        return self

