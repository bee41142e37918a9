"""PostgreSQL schema migrations: the versioned SQL files in `stores/migrations/` (`NNNN_name.sql`), applied
in order, each in its own transaction, by the owning role (`UCGW_DATABASE_MIGRATE_URL`), and recorded in
`schema_migrations` with a checksum (an applied file that was edited afterwards is refused, not re-run).

An advisory lock makes replicas that start together apply each file once. The files grant the runtime
role's privileges to `ucgw_runtime` (NOLOGIN); `migrate` grants that role to the user of
`UCGW_DATABASE_URL` when it is not the owner, so the gateway's own role may only INSERT and SELECT the audit
trail. Blocking (psycopg's sync API): run by `ucgw migrate`, or at start in a worker thread.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

MIGRATIONS = Path(__file__).parent / "migrations"
RUNTIME_ROLE = "ucgw_runtime"
LOCK_KEY = 0x75636777  # "ucgw": pg_advisory_xact_lock key of the migration run
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class MigrationError(RuntimeError):
    """A migration run that cannot go on (an edited applied file, a failing statement)."""


def available(folder: Path = MIGRATIONS) -> list[Migration]:
    """The migration files, by version."""
    out = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: a migration file is named NNNN_lower_case_name.sql")
        out.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    if len({m.version for m in out}) != len(out):
        raise MigrationError("two migration files share a version number")
    return out


def _user(url: str) -> str | None:
    """The user a connection URL names (None: libpq's default)."""
    name = urlsplit(url).username
    return unquote(name) if name else None


def migrate(migrate_url: str, runtime_url: str = "", folder: Path = MIGRATIONS) -> list[str]:
    """Apply the pending migrations through `migrate_url`; grant `ucgw_runtime` to `runtime_url`'s user when
    that is another role. Returns the names applied (empty: the schema was current)."""
    applied: list[str] = []
    with psycopg.connect(migrate_url, autocommit=True, connect_timeout=10) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                         "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}
            for m in available(folder):
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(f"{m.name} was applied and has been edited since; add a new file "
                                             "instead of changing an applied one")
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.text.encode())  # several statements: the simple query protocol
                        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                     (m.version, m.name, m.checksum))
                except psycopg.Error as exc:
                    raise MigrationError(f"{m.name} failed: {exc}") from exc
                applied.append(m.name)
            conn.execute(f"GRANT SELECT ON schema_migrations TO {RUNTIME_ROLE}")
        runtime = _user(runtime_url) if runtime_url else None
        owner = conn.execute("SELECT current_user").fetchone()
        if runtime and owner and runtime != owner[0]:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(RUNTIME_ROLE), sql.Identifier(runtime)))
    return applied


def pending(url: str, folder: Path = MIGRATIONS) -> list[str]:
    """Names of the migrations not applied yet on the database of `url` (any role that may read the table)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")} if exists and exists[0] else set()
    return [m.name for m in available(folder) if m.version not in done]
