"""A gateway's two PostgreSQL roles for tests and benchmarks: the owning role (migrations) and a runtime
role of its own, which `ucgw migrate` grants `ucgw_runtime` (INSERT and SELECT on the audit trail only)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit


def runtime_role(owner_url: str) -> str:
    """Create a login role on the server of `owner_url` (a superuser's URL, trust auth) and return the URL of
    the same database as that role. It holds no privilege until a migration grants it `ucgw_runtime`."""
    import psycopg

    name = f"ucgw_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{name}@{host}"))


def database_env(owner_url: str, runtime_url: str) -> dict[str, str]:
    """A gateway's environment for these roles (migrating at start through the owner)."""
    return {"UCGW_DATABASE_URL": runtime_url, "UCGW_DATABASE_MIGRATE_URL": owner_url}
