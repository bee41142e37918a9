"""Unit tests of the SQLite concern store and the in-memory pub/sub (no network)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from stores.pubsub import MemoryPubSub
from stores.safety_concerns import (
    ACKNOWLEDGED,
    OPEN,
    RESOLVED,
    ConcernError,
    NewConcern,
    SqliteConcernStore,
    decode_cursor,
    encode_cursor,
)


def _new(a: str = "A123456789", office: str | None = "Houston", severity: str = "HIGH") -> NewConcern:
    return NewConcern(a_number=a, severity=severity, category="OTHER", description="free text",
                      reported_by="cw-1", reporter_role="caseworker", field_office=office, routed_by="ICE_RECORD")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_state_machine_records_who_and_when(tmp_path: Path) -> None:
    async def run() -> None:
        clock = Clock()
        st = SqliteConcernStore(tmp_path / "c.sqlite3", clock=clock)
        c = await st.report(_new())
        assert (c.status, c.reported_by, c.reported_at) == (OPEN, "cw-1", 1000.0)
        clock.now = 1060.0
        c = await st.acknowledge(c.id, "sup-1", "on it")
        assert (c.status, c.acknowledged_by, c.acknowledged_at, c.acknowledgement_note) == (
            ACKNOWLEDGED, "sup-1", 1060.0, "on it")
        with pytest.raises(ConcernError) as err:
            await st.acknowledge(c.id, "sup-1", None)
        assert err.value.code == "CONFLICT"
        clock.now = 1120.0
        c = await st.resolve(c.id, "sup-2", "visited")
        assert (c.status, c.resolved_by, c.resolved_at, c.age_seconds(5000.0)) == (RESOLVED, "sup-2", 1120.0, 120.0)
        with pytest.raises(ConcernError) as err:
            await st.resolve(c.id, "sup-2", "again")
        assert err.value.code == "CONFLICT"
        with pytest.raises(ConcernError) as err:
            await st.resolve("nope", "x", "y")
        assert err.value.code == "NOT_FOUND"
        direct = await st.report(_new())
        assert (await st.resolve(direct.id, "sup", "false alarm")).status == RESOLVED
        await st.close()

    asyncio.run(run())


def test_pages_counts_and_durability(tmp_path: Path) -> None:
    async def run() -> None:
        clock = Clock()
        path = tmp_path / "c.sqlite3"
        st = SqliteConcernStore(path, clock=clock)
        ids = []
        for i in range(7):
            clock.now = 1000.0 + i
            office = ["Houston", "Miami", None][i % 3]
            ids.append((await st.report(_new(f"A00000000{i}", office, ["LOW", "CRITICAL"][i % 2]))).id)
        await st.acknowledge(ids[0], "s", None)
        await st.resolve(ids[3], "s", "done")
        seen, after = [], 0
        while True:
            page = await st.page(limit=3, after_seq=after)
            seen += [c.id for c in page.items]
            assert page.total == 7
            if not page.has_next:
                break
            after = decode_cursor(encode_cursor(page.items[-1].seq))
        assert seen == ids
        houston = await st.page(field_offices=["houston"], statuses=[OPEN, ACKNOWLEDGED])
        assert [c.id for c in houston.items] == [ids[0], ids[6]]
        unrouted = await st.page(field_offices=[None])
        assert [c.id for c in unrouted.items] == [ids[2], ids[5]]
        counts = {c.field_office: c for c in await st.office_counts()}
        assert (counts["Houston"].open, counts["Houston"].acknowledged, counts["Houston"].oldest_reported_at) == (
            1, 1, 1000.0)
        assert counts["Miami"].unresolved == 2 and counts["Miami"].by_severity["CRITICAL"] == 1
        assert counts[None].unresolved == 2
        await st.close()
        # a second process sees every committed change (nothing buffered in memory)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM concerns").fetchone()[0] == 7
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    asyncio.run(run())


def test_bad_cursor_is_bad_input() -> None:
    with pytest.raises(ConcernError) as err:
        decode_cursor("not-a-cursor")
    assert err.value.code == "BAD_USER_INPUT"


def test_pubsub_topics_and_slow_subscriber() -> None:
    async def run() -> None:
        ps = MemoryPubSub(max_queue=2)
        async with ps.subscribe(["a", "b"]) as sub, ps.subscribe(["b"]) as other:
            assert ps.has_subscribers("a") and ps.subscriber_count() == 2
            assert await ps.publish("a", 1) == 1
            assert await ps.publish("b", 2) == 2
            assert await ps.publish("c", 3) == 0
            assert [await sub.get(), await sub.get()] == [1, 2]
            for i in range(5):
                await ps.publish("b", i)
            assert [await other.get(), await other.get()] == [3, 4]
            assert other.dropped == 4
            await ps.close()
            assert [e async for e in sub] == [3, 4]  # what was queued, then the end
            with pytest.raises(StopAsyncIteration):
                await sub.get()
        assert not ps.has_subscribers()

    asyncio.run(run())
