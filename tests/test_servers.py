"""The throwaway servers of testing/servers.py: what the store tests stand on."""

from __future__ import annotations

import asyncio

import psycopg
import redis.asyncio as aioredis

from testing.servers import PostgresServer, RedisServer, fresh_database, redis_prefix


def test_postgres_server_starts_restarts_and_keeps_data() -> None:
    with PostgresServer() as server:
        url = fresh_database(server.url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
        server.restart()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT sum(n) FROM t").fetchone() == (3,)


def test_session_database_gives_each_test_its_own(database_server_url: str, database_url: str) -> None:
    other = fresh_database(database_server_url)
    assert other != database_url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE mine (n int)")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'").fetchone() == (0,)


def test_redis_server_and_prefixes(redis_url: str) -> None:
    async def run() -> tuple[bytes | None, bytes | None]:
        client = aioredis.from_url(redis_url)
        a, b = redis_prefix(), redis_prefix()
        await client.set(a + "k", b"1")
        got = await client.get(a + "k"), await client.get(b + "k")
        await client.aclose()
        return got

    assert asyncio.run(run()) == (b"1", None)
    with RedisServer() as own:
        async def ping() -> bool:
            client = aioredis.from_url(own.url)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()
        assert asyncio.run(ping()) is True
