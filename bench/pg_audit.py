"""The PostgreSQL audit trail's group commit, measured: N concurrent callers each appending one event (as N
concurrent requests each with one child read do), for a fixed number of events; prints events/s, rows per
commit and round trips per event. Against a throwaway server (fsync on, as production) unless
`--database-url` names one (a superuser's URL; a fresh database is made on it).

    .venv/bin/python bench/pg_audit.py [--events 4000] [--concurrency 1 8 32 128]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stores.audit_pg import PgAuditStore  # noqa: E402
from stores.audit_trail import AuditEvent, utc_timestamp  # noqa: E402
from stores.pg import Database  # noqa: E402
from stores.schema_migrations import migrate  # noqa: E402
from testing.servers import PostgresServer, fresh_database  # noqa: E402


async def run(url: str, events: int, concurrency: int) -> dict[str, float]:
    database = Database(url, size=4)
    await database.open()
    store = PgAuditStore(database, b"bench-only-hmac-key-0123456789abcdef")
    event = AuditEvent(time=utc_timestamp(), request_id="bench", subject="bench", role="caseworker", client="bench",
                       a_number="A000000001", outcome="ok", sections_returned=("identity",))
    left = events

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await store.append([event])

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    facts = store.facts()
    await database.close()
    return {"concurrency": concurrency, "events_per_s": round(events / seconds),
            "rows_per_commit": round(facts["rowsWritten"] / facts["commits"], 1),
            "round_trips_per_event": round(facts["commits"] / facts["rowsWritten"], 3),
            "mean_ms_per_append": round(seconds * 1000 * concurrency / events, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a superuser's URL (default: a throwaway server, fsync on)")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        server_url = args.database_url
        if not server_url:
            server = stack.enter_context(PostgresServer(fsync=True))
            server_url = server.url
        for concurrency in args.concurrency:
            url = fresh_database(server_url)
            migrate(url)
            print(json.dumps(asyncio.run(run(url, args.events, concurrency))))


if __name__ == "__main__":
    main()
