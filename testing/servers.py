"""Throwaway PostgreSQL and Redis servers for tests (the server classes live in gateway/local_servers.py, which
`ucgw cluster` runs its stack on too).

`database_url()` and `redis_url()` give what the ordinary tests use: `UCGW_TEST_DATABASE_URL` /
`UCGW_TEST_REDIS_URL` when set, else a server started once per test session. `fresh_database(url)` makes an
empty database on that server for one test, and `redis_prefix()` a key prefix of its own, so tests sharing a
server never see each other's rows or keys. A test that stops or kills a server uses a PostgresServer /
RedisServer of its own, never the machine's shared server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from gateway.local_servers import PostgresServer, RedisServer

__all__ = ["PostgresServer", "RedisServer", "database_server", "fresh_database", "redis_prefix", "redis_server"]

DATABASE_URL_ENV = "UCGW_TEST_DATABASE_URL"
REDIS_URL_ENV = "UCGW_TEST_REDIS_URL"


def fresh_database(server_url: str, name: str | None = None) -> str:
    """Create an empty database on the server of `server_url` (a superuser's URL); return its URL."""
    import psycopg

    name = name or f"ucgw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def redis_prefix() -> str:
    """A key prefix of one test's own (`ucgw:t-<random>:`)."""
    return f"ucgw:t-{uuid.uuid4().hex[:10]}:"


@contextlib.contextmanager
def database_server() -> Iterator[str]:
    """A superuser's URL of a PostgreSQL server for a test session: `UCGW_TEST_DATABASE_URL`, or a throwaway one."""
    if os.environ.get(DATABASE_URL_ENV):
        yield os.environ[DATABASE_URL_ENV]
        return
    with PostgresServer() as server:
        yield server.url


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL for a test session: `UCGW_TEST_REDIS_URL`, or a throwaway server."""
    if os.environ.get(REDIS_URL_ENV):
        yield os.environ[REDIS_URL_ENV]
        return
    with RedisServer() as server:
        yield server.url
