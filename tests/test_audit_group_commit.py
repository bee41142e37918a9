"""Group commit in the SQLite audit trail: concurrent appends share one transaction, each still durable on return.

The appends of one event-loop turn are committed together at the turn's end on the loop's thread; when the
connection is busy elsewhere they go to the writer thread. The tests that exercise the writer hold the
store's connection lock themselves (as a query in another thread would), so that appends are queued behind
it: the batching is then deterministic, without sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.http.admission import QUIET_SECONDS, InFlight
from stores.audit_trail import (
    _SCHEMA,
    ROWS_PER_STATEMENT,
    AuditEvent,
    AuditFilter,
    AuditStoreClosed,
    SQLiteAuditStore,
    utc_timestamp,
)

# the trail's schema as it was made before ids came from the rowid alone
SCHEMA_WITH_AUTOINCREMENT = _SCHEMA.replace("id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
assert SCHEMA_WITH_AUTOINCREMENT != _SCHEMA
WAIT = 10  # seconds; a bound on waiting for the writer thread, never a synchronisation by sleeping


def event(a_number: Any, request_id: str = "r") -> AuditEvent:
    """One ok read of `a_number` (None makes the INSERT fail: the column is NOT NULL)."""
    return AuditEvent(time=utc_timestamp(), request_id=request_id, subject="s", role="caseworker", client="c",
                      a_number=a_number, outcome="ok", sections_returned=("identity",))


def stored(path: Path) -> list[str]:
    """The a_numbers in the file, by id, read through a connection of our own."""
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT a_number FROM audit_event ORDER BY id")]
    finally:
        db.close()


HELD: list[HeldConnection] = []  # opened by the `store` fixture too, so that a failed test cannot hang close()


class HeldConnection:
    """The store's connection lock, held by the test (as a query in another thread would hold it) until `open`."""

    def __init__(self, store: SQLiteAuditStore) -> None:
        self.lock = store._lock
        self.lock.acquire()
        self.held = True
        HELD.append(self)

    def open(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


async def hold_writer(store: SQLiteAuditStore) -> tuple[HeldConnection, asyncio.Task[None]]:
    """Start one append and return once the writer thread has taken it and waits for the connection."""
    held = HeldConnection(store)
    try:
        first = asyncio.ensure_future(store.append([event("A000000000", "first")]))
        await until(lambda: store._writer is not None and store.waiting == 0)
    except BaseException:
        held.open()
        raise
    return held, first


async def until_queued(store: SQLiteAuditStore, n: int) -> None:
    """Let the just-created tasks run up to their enqueue (each needs one loop turn, no time)."""
    for _ in range(100):
        if store.waiting >= n:
            break
        await asyncio.sleep(0)
    assert store.waiting == n


async def until(condition: Any) -> None:
    """Poll `condition` (set by another thread) until it holds, at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3")
    yield s
    while HELD:
        HELD.pop().open()
    s.close()


def test_the_appends_of_one_loop_turn_are_one_commit_on_the_loop_thread(store: SQLiteAuditStore) -> None:
    wanted = [f"A{i:03d}000001" for i in range(40)]

    async def run() -> list[None]:
        return await asyncio.gather(*(store.append([event(a, f"r{i}")]) for i, a in enumerate(wanted)))

    assert asyncio.run(run()) == [None] * 40
    assert (store.commits, store.turn_commits, store.inline_commits, store.rows_written) == (1, 1, 0, 40)
    assert store._writer is None  # no thread was started: the loop's own thread committed them
    assert stored(store.path) == wanted  # in the order they were made


def test_concurrent_appends_share_one_commit(store: SQLiteAuditStore) -> None:
    wanted = [f"A{i:03d}{j}00000" for i in range(50) for j in range(2)]

    async def run() -> None:
        held, first = await hold_writer(store)
        group = asyncio.gather(*(store.append([event(wanted[2 * i], f"r{i}"), event(wanted[2 * i + 1], f"r{i}")])
                                 for i in range(50)))
        await until_queued(store, 50)
        held.open()
        assert await group == [None] * 50
        await first

    asyncio.run(run())
    assert store.commits == 2  # the held one alone, then all 50 waiting calls in one transaction
    assert store.rows_written == 101
    rows = stored(store.path)
    assert rows[0] == "A000000000" and sorted(rows[1:]) == sorted(wanted) and len(rows) == 101
    # each call's two events are adjacent: a call's rows are inserted together
    ids = {a: i for i, a in enumerate(rows)}
    assert all(ids[wanted[2 * i + 1]] == ids[wanted[2 * i]] + 1 for i in range(50))


def test_lone_append_commits_at_once_and_is_visible_on_return(store: SQLiteAuditStore) -> None:
    async def run() -> list[str]:
        await store.append([event("A111111111"), event("A222222222")])
        return stored(store.path)  # a second connection, right after the await returned

    assert asyncio.run(run()) == ["A111111111", "A222222222"]
    assert (store.commits, store.rows_written) == (1, 2)

    async def one_by_one() -> None:  # awaited one after another: nothing to group, one commit each
        for i in range(3):
            await store.append([event(f"A30000000{i}")])

    asyncio.run(one_by_one())
    assert (store.commits, store.rows_written) == (4, 5)


def test_a_new_trail_has_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    from stores.audit_trail import PAGE_SIZE

    def page_size(path: Path) -> int:
        db = sqlite3.connect(path)
        try:
            return int(db.execute("PRAGMA page_size").fetchone()[0])
        finally:
            db.close()

    new = SQLiteAuditStore(tmp_path / "new.sqlite3")
    new.append_sync([event("A111111111")])
    new.close()
    assert PAGE_SIZE == 1024 and page_size(tmp_path / "new.sqlite3") == 1024
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.execute("PRAGMA page_size=4096")
    db.execute("CREATE TABLE x (y)")  # a file made before: its page size is fixed
    db.close()
    store = SQLiteAuditStore(old)
    store.append_sync([event("A222222222")])
    store.close()
    assert page_size(old) == 4096 and stored(old) == ["A222222222"]


def test_ids_only_grow_without_a_sequence_table(tmp_path: Path) -> None:
    """A new trail numbers rows by rowid (no sqlite_sequence row rewritten by every commit); ids keep
    growing across a failed insert and a reopen, and a trail made with AUTOINCREMENT keeps it."""
    path = tmp_path / "audit.sqlite3"
    store = SQLiteAuditStore(path)
    store.append_sync([event("A111111111"), event("A222222222")])
    with pytest.raises(sqlite3.IntegrityError):
        store.append_sync([event(None)])
    store.close()
    store = SQLiteAuditStore(path)
    store.append_sync([event("A333333333")])
    ids = [e.id for e in store.query_sync(AuditFilter())]
    store.close()
    assert ids == [1, 2, 3] and stored(path) == ["A111111111", "A222222222", "A333333333"]
    db = sqlite3.connect(path)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()
    assert tables == {"audit_event"}

    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript(SCHEMA_WITH_AUTOINCREMENT)
    db.execute("INSERT INTO audit_event (id, time, request_id, subject, role, client, a_number, outcome, "
               "sections_returned, sections_denied, sections_failed) VALUES (7, 't', 'r', 's', 'r', 'c', "
               "'A000000007', 'ok', '[]', '[]', '[]')")
    db.commit()
    db.close()
    store = SQLiteAuditStore(old)
    store.append_sync([event("A444444444")])
    ids = [e.id for e in store.query_sync(AuditFilter())]
    store.close()
    assert ids == [7, 8]
    db = sqlite3.connect(old)
    try:
        assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_event'").fetchone() == (8,)
    finally:
        db.close()


def test_the_sync_level_is_the_one_configured(tmp_path: Path) -> None:
    from gateway.app import open_audit_store
    from gateway.config import load_settings

    levels = {}
    for mode in ("full", "normal"):
        settings = load_settings({"UCGW_DATA_DIR": str(tmp_path / mode), "UCGW_AUDIT_SYNC": mode})
        store = open_audit_store(settings)
        assert isinstance(store, SQLiteAuditStore) and store.synchronous == mode
        levels[mode] = store._db.execute("PRAGMA synchronous").fetchone()[0]
        store.append_sync([event("A111111111")])
        assert stored(store.path) == ["A111111111"]
        store.close()
    assert levels == {"full": 2, "normal": 1}  # SQLite's numbers for FULL and NORMAL
    assert load_settings({}).audit_sync == "full"
    with pytest.raises(ValueError, match="synchronous must be one of full, normal"):
        SQLiteAuditStore(tmp_path / "x.sqlite3", synchronous="off")


def test_after_a_slow_commit_on_the_loop_the_next_turns_go_to_the_writer_thread(tmp_path: Path) -> None:
    """A commit on the event loop as slow as `slow_commit_seconds` (0 here: every commit is) stalls everything
    the loop serves; the turns after it are committed by the writer thread, each read still durable on return,
    and a lone request no longer commits on the loop either."""
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: True, slow_commit_seconds=0.0)

    async def run() -> tuple[list[str], list[str]]:
        await s.append([event("A730000000")])  # a lone request: inline, on the loop, and "slow"
        first = stored(s.path)
        await asyncio.gather(*(s.append([event(f"A73000000{i}")]) for i in range(1, 4)))
        await s.append([event("A730000009")])
        return first, stored(s.path)

    try:
        first, after = asyncio.run(run())
        assert first == ["A730000000"]
        assert sorted(after) == ["A730000000", "A730000001", "A730000002", "A730000003", "A730000009"]
        assert (s.inline_commits, s.turn_commits, s.slow_commits, s.rows_written) == (1, 0, 1, 5)
        assert s._writer is not None and s.commits == 1 + 2  # the three together, then the last one
    finally:
        s.close()


def test_a_request_that_may_block_commits_on_its_own_thread(tmp_path: Path) -> None:
    may = [True]
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: may[0])

    async def run() -> list[str]:
        for i in range(3):
            await s.append([event(f"A70000000{i}")])
        seen = stored(s.path)  # committed before each await returned
        may[0] = False
        await s.append([event("A700000009")])
        return seen

    try:
        assert asyncio.run(run()) == ["A700000000", "A700000001", "A700000002"]
        assert (s.inline_commits, s.turn_commits, s.commits, s.rows_written) == (3, 1, 4, 4)
        assert s._writer is None  # the append that may not block waited for the end of its loop turn
    finally:
        s.close()
    assert stored(s.path)[-1] == "A700000009"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_in_flight_lets_a_lone_request_block_after_a_quiet_spell_or_on_one_steady_connection() -> None:
    clock = Clock()
    traffic = InFlight(clock)

    def arrive(connection: tuple[str, int], after: float) -> bool:
        clock.now += after
        traffic.enter(connection)
        try:
            return traffic.may_block()
        finally:
            traffic.leave()

    a, b = ("127.0.0.1", 5001), ("127.0.0.1", 5002)
    assert arrive(a, 0.0)  # the first request ever: quiet
    assert not arrive(a, 0.001)  # right after it, the same connection for only 1 ms
    assert arrive(a, 2 * QUIET_SECONDS)  # after a quiet spell
    assert [arrive(a, 0.001) for _ in range(120)][-21:] == [True] * 21  # one connection for 100 ms and more
    assert not arrive(b, 0.001)  # another connection: several clients now
    assert not arrive(a, 0.001) and not arrive(b, 0.001)
    assert arrive(b, 0.5)  # quiet again
    clock.now += 1
    traffic.enter(a)
    traffic.enter(b)  # two in flight: neither may block
    assert not traffic.may_block()
    traffic.leave()
    traffic.leave()
    assert traffic.count == 0


def test_a_request_that_may_block_still_queues_behind_a_busy_writer(tmp_path: Path) -> None:
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: True)

    async def run() -> None:
        s._lock.acquire()  # a commit in progress elsewhere holds the connection
        try:
            pending = asyncio.ensure_future(s.append([event("A710000000")]))
            await until(lambda: s.waiting == 0 and s._writer is not None)
            assert not pending.done() and s.commits == 0
        finally:
            s._lock.release()
        await asyncio.wait_for(pending, WAIT)

    try:
        asyncio.run(run())
        assert (s.inline_commits, s.commits) == (0, 1)
    finally:
        s.close()
    assert stored(s.path) == ["A710000000"]


def test_an_inline_commit_that_fails_stores_nothing_and_raises(tmp_path: Path) -> None:
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: True)

    async def run() -> None:
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            await s.append([event("A720000000"), event(None)])
        await s.append([event("A720000001")])

    try:
        asyncio.run(run())
        assert (s.inline_commits, s.commits, s.rows_written) == (1, 1, 1)
    finally:
        s.close()
    assert stored(s.path) == ["A720000001"]


def test_commits_of_one_statement_and_of_more_rows_than_it_holds_are_each_all_or_none(tmp_path: Path) -> None:
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: True)
    many = [f"A6{i:08d}" for i in range(ROWS_PER_STATEMENT + 1)]  # one row past a single INSERT

    async def run() -> None:
        await s.append([event(a) for a in many[:ROWS_PER_STATEMENT]])  # one statement
        await s.append([event(a) for a in many])  # BEGIN IMMEDIATE, the rows, COMMIT
        for bad_at_end in (ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT):  # a failing last row, both ways
            with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
                await s.append([event(a) for a in many[:bad_at_end]] + [event(None)])

    try:
        asyncio.run(run())
        assert (s.inline_commits, s.commits, s.rows_written) == (2, 2, 2 * ROWS_PER_STATEMENT + 1)
    finally:
        s.close()
    rows = stored(s.path)
    assert rows == many[:ROWS_PER_STATEMENT] + many  # in order, and nothing of the two failed commits


def test_a_commit_fits_an_older_sqlites_parameter_limit(tmp_path: Path) -> None:
    """SQLite before 3.32 takes 999 parameters a statement: the rows per INSERT follow the connection's limit."""
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3", may_block=lambda: True)
    s._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # as such a build has it: 90 rows of 11 columns
    many = [f"A7{i:08d}" for i in range(ROWS_PER_STATEMENT)]

    async def run() -> None:
        await s.append([event(a) for a in many[:90]])  # one statement of 990 parameters
        await s.append([event(a) for a in many[90:]])  # 410 rows: 4,510 parameters, so BEGIN ... COMMIT
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            await s.append([event(a) for a in many[:95]] + [event(None)])

    try:
        asyncio.run(run())
        assert (s.commits, s.rows_written) == (2, ROWS_PER_STATEMENT)
    finally:
        s.close()
    assert stored(s.path) == many


def test_a_failing_call_fails_alone(store: SQLiteAuditStore) -> None:
    good = [f"A5000000{i:02d}" for i in range(6)]

    async def run() -> list[Any]:
        held, first = await hold_writer(store)
        calls = [store.append([event(a, "good"), event(a + "x", "good")]) for a in good[:3]]
        calls.append(store.append([event("A599999999", "bad"), event(None, "bad")]))
        calls += [store.append([event(a, "good"), event(a + "x", "good")]) for a in good[3:]]
        group = asyncio.gather(*calls, return_exceptions=True)
        await until_queued(store, 7)
        held.open()
        await first
        return await group

    results = asyncio.run(run())
    assert results[:3] == [None] * 3 and results[4:] == [None] * 3
    assert isinstance(results[3], sqlite3.IntegrityError) and "NOT NULL" in str(results[3])
    # the held one; the grouped transaction rolled back; then the six good calls one transaction each
    assert (store.commits, store.rows_written) == (7, 13)
    rows = stored(store.path)
    assert sorted(rows) == sorted(["A000000000", *good, *(a + "x" for a in good)])
    assert "A599999999" not in rows  # the bad call is all-or-none too


def test_close_finishes_queued_work_then_refuses(store: SQLiteAuditStore) -> None:
    async def run() -> list[Any]:
        held, first = await hold_writer(store)
        group = asyncio.gather(*(store.append([event(f"A70000000{i}")]) for i in range(5)))
        await until_queued(store, 5)
        closing = asyncio.ensure_future(asyncio.to_thread(store.close))
        await until(lambda: store._closed)  # close() has queued its stop behind the five
        held.open()
        await closing
        await first
        return await group

    assert asyncio.run(run()) == [None] * 5
    assert store._writer is not None and not store._writer.is_alive()
    assert (store.commits, len(stored(store.path))) == (2, 6)
    with pytest.raises(AuditStoreClosed):
        asyncio.run(store.append([event("A799999999")]))
    with pytest.raises(AuditStoreClosed):
        store.append_sync([event("A799999999")])


def test_close_with_nothing_pending_is_prompt_and_appends_then_raise(store: SQLiteAuditStore) -> None:
    asyncio.run(store.append([event("A800000000")]))
    # committed on the loop: close() has no writer thread to wait for (a thread join is all it could wait on)
    assert store._writer is None and store.turn_commits == 1
    store.close()
    assert store._writer is None and store.turn_commits == 1  # and it started none
    store.close()  # twice is harmless

    async def after() -> None:
        await asyncio.wait_for(store.append([event("A800000001")]), WAIT)  # raises at once, never hangs

    with pytest.raises(AuditStoreClosed, match="closed"):
        asyncio.run(after())
    assert stored(store.path) == ["A800000000"]


def test_close_without_any_append_starts_no_writer(tmp_path: Path) -> None:
    s = SQLiteAuditStore(tmp_path / "audit.sqlite3")
    s.append_sync([event("A900000000")])
    assert s._writer is None and (s.commits, s.rows_written) == (1, 1)
    s.close()
    assert stored(tmp_path / "audit.sqlite3") == ["A900000000"]


def test_append_sync_and_query_alongside_the_writer(store: SQLiteAuditStore) -> None:
    async def run() -> list[AuditEvent]:
        await asyncio.gather(*(store.append([event(f"A61000000{i}")]) for i in range(5)),
                             asyncio.to_thread(store.append_sync, [event("A619999999")]))
        return await store.query(AuditFilter())

    events = asyncio.run(run())
    assert sorted(e.a_number for e in events) == sorted([*(f"A61000000{i}" for i in range(5)), "A619999999"])
    assert store.rows_written == 6 and 2 <= store.commits <= 6  # grouping here depends on thread timing


def test_a_caller_gone_with_its_loop_does_not_stop_the_writer(store: SQLiteAuditStore) -> None:
    gate: list[HeldConnection] = []

    async def abandon() -> None:
        held, first = await hold_writer(store)
        gate.append(held)
        asyncio.ensure_future(store.append([event("A620000001")]))
        await until_queued(store, 1)
        first.cancel()  # asyncio.run cancels the other one and closes the loop on return

    asyncio.run(abandon())
    gate[0].open()  # the writer now commits both and finds their loop closed
    asyncio.run(store.append([event("A620000002")]))
    assert stored(store.path) == ["A000000000", "A620000001", "A620000002"]
    assert store.rows_written == 3


def test_timestamps_of_now_sort_between_the_clock_readings_around_them() -> None:
    from datetime import UTC, datetime

    stamps = []
    for _ in range(3):
        before = utc_timestamp(datetime.now(UTC))
        now = utc_timestamp()
        after = utc_timestamp(datetime.now(UTC))
        stamps.append(now)
        assert before <= now <= after
        assert len(now) == 27 and now[10] == "T" and now[19] == "." and now.endswith("Z")
        assert datetime.fromisoformat(now.replace("Z", "+00:00")).tzinfo is not None
    assert stamps == sorted(stamps)
