"""The one synthetic world shared by the three services: records, simulation clock, events, change feeds.

Records are stored as canonical JSON bytes (sorted keys, compact), which keeps 100,000 children well under
1 GB and lets reads answer without re-encoding. Steps from `mocks.sim` change them: all steps up to the
simulation start at generation, later ones when the clock moves.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import pickle
import subprocess
import sys
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator
from random import Random
from typing import Any

from mocks import refdata as rd
from mocks.schemas import RECORD_SCHEMAS, validate
from mocks.sim import SPREAD_AFTER, SPREAD_BEFORE, STEPS, Child, arrival_time, same_place
from mocks.util import A_NUMBER_RE, DAY, DEFAULT_START, FIRST_TS, LAST_TS, dumps, iso, parse_iso

log = logging.getLogger("mocks.world")

SOURCES = ("orr", "ice", "eoir")
FEED_CAP = 200_000
Event = tuple[int, int, str, str, Any, int]  # (time, seq, kind, a_number, arg, rng seed)
Listener = Callable[[str, list[dict[str, Any]]], None]

# A-numbers are drawn without replacement: canonical ones from NEW_NUMBERS, a LEGACY_SHARE from LEGACY_NUMBERS.
NEW_NUMBERS = range(100_000_000, 300_000_000)
LEGACY_NUMBERS = range(10_000_000, 100_000_000)
LEGACY_SHARE = 0.04


def _legacy_count(children: int) -> int:
    return int(children * LEGACY_SHARE)


def _max_children() -> int:
    lo, hi = 1, len(NEW_NUMBERS) + len(LEGACY_NUMBERS)  # the largest world both ranges can number
    while lo < hi:
        mid = (lo + hi + 1) // 2
        legacy = _legacy_count(mid)
        if mid - legacy <= len(NEW_NUMBERS) and legacy <= len(LEGACY_NUMBERS):
            lo = mid
        else:
            hi = mid - 1
    return lo


MAX_CHILDREN = _max_children()
# The start must leave room for the dates generation writes around it (mocks.sim SPREAD_*).
EARLIEST_START = FIRST_TS + SPREAD_BEFORE
LATEST_START = LAST_TS - SPREAD_AFTER
# The simulation clock never passes LAST_TS; these are the limits of one move and of the auto speed.
MAX_ADVANCE_SECONDS = 20 * 365 * DAY
MAX_SPEED = 1e7


def children_problem(children: int) -> str | None:
    """Why World.generate cannot number this many children (as a flag message), or None."""
    if not 1 <= children <= MAX_CHILDREN:
        return f"--children must be in [1, {MAX_CHILDREN}] (the A-number ranges hold no more)"
    return None


def start_problem(start_ts: int) -> str | None:
    """Why World.generate cannot start at this time (as a flag message), or None."""
    if not EARLIEST_START <= start_ts <= LATEST_START:
        return (f"--start must be in [{iso(EARLIEST_START)}, {iso(LATEST_START)}] (the world spreads dates "
                f"up to {SPREAD_BEFORE // (365 * DAY)} years before and {SPREAD_AFTER // (365 * DAY)} years "
                "after it, within the years 1000-9999)")
    return None


class Feed:
    """One service's change feed: consecutive sequence numbers, the oldest trimmed past FEED_CAP."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.first_seq = 1
        self.last_seq = 0

    def append(self, a_number: str, updated_at: str, fields: list[str]) -> dict[str, Any]:
        """Record one change and return it."""
        self.last_seq += 1
        item = {"seq": self.last_seq, "a_number": a_number, "updated_at": updated_at, "fields": fields}
        self.items.append(item)
        if len(self.items) > FEED_CAP:
            drop = len(self.items) - FEED_CAP + FEED_CAP // 10
            del self.items[:drop]
            self.first_seq += drop
        return item

    def after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """Up to limit changes with a sequence number greater than seq."""
        start = max(seq + 1 - self.first_seq, 0)
        return self.items[start:start + limit]


CATEGORY_ORDER = [
    "in_dhs_custody", "no_orr_record", "referred", "in_care", "released", "unauthorized_departure", "aged_out",
    "repatriated", "in_ice_custody", "removed", "transfer_late", "nta_not_issued", "nta_issued", "nta_served",
    "nta_filed", "released_nta_unserved", "hearing_scheduled", "missed_hearing", "in_absentia",
    "case_closed", "bad_release_address", "address_mismatch", "ice_address_missing", "court_address_only",
    "name_mismatch", "dob_mismatch", "missing_fields", "nta_filed_no_case", "case_without_filed_nta",
    "follow_up_pending", "follow_up_no_contact", "safety_concern", "field_office_mismatch",
]


def classify(orr: dict[str, Any] | None, ice: dict[str, Any] | None, eoir: dict[str, Any] | None,
             now: float) -> list[str]:
    """The sample states a child is in (names from CATEGORY_ORDER), computed from its three records."""
    out: list[str] = []
    if ice is not None:
        if ice["custody_status"] != "transferred_to_orr":
            out.append(ice["custody_status"])
        if ice["transfer_late"]:
            out.append("transfer_late")
        out.append("nta_" + ice["nta"]["status"])
    if orr is None:
        out.append("no_orr_record")
    else:
        out.append(orr["status"])
        rel = orr["release"]
        if rel is not None:
            addr = rel["sponsor"]["address"]
            if addr["quality"] != "valid":
                out.append("bad_release_address")
            if ice is not None:
                if ice["address_on_file"] is None:
                    out.append("ice_address_missing")
                elif not same_place(addr, ice["address_on_file"]):
                    out.append("address_mismatch")
                if addr["state"] and rd.office_for(addr["city"], addr["state"]) != ice["field_office"]:
                    out.append("field_office_mismatch")
            if orr["status"] == "released" and ice is not None and ice["nta"]["status"] in ("not_issued",
                                                                                            "issued"):
                out.append("released_nta_unserved")
        call = orr["follow_up_call"]
        if call is not None:
            if call["called_at"] is None:
                out.append("follow_up_pending")
            elif call["outcome"] == "no_contact":
                out.append("follow_up_no_contact")
            if call["safety_concern"]:
                out.append("safety_concern")
    if eoir is not None:
        hearings = eoir["hearings"]
        if any(h["outcome"] is None and parse_iso(h["starts_at"]) > now for h in hearings):
            out.append("hearing_scheduled")
        if any(h["outcome"] == "failed_to_appear" for h in hearings):
            out.append("missed_hearing")
        if eoir["in_absentia_order"] is not None:
            out.append("in_absentia")
        if eoir["case_status"] != "pending":
            out.append("case_closed")
        if eoir["change_of_address_filed_on"] is not None:
            out.append("court_address_only")
    filed = ice is not None and ice["nta"]["status"] == "filed"
    if filed and eoir is None:
        out.append("nta_filed_no_case")
    if eoir is not None and not filed:
        out.append("case_without_filed_nta")
    people = [r for r in (orr, ice, eoir) if r is not None]
    if len({(r["first_name"], r["last_name"]) for r in people}) > 1:
        out.append("name_mismatch")
    if len({r["date_of_birth"] for r in people}) > 1:
        out.append("dob_mismatch")
    if any(r.get("country_of_birth", "") is None for r in people) or (
            orr is not None and (orr["background_check"] is None and orr["status"] != "referred"
                                 or orr["release"] is not None and orr["release"]["sponsor"]["phone"] is None)):
        out.append("missing_fields")
    return out


def generate_chunk(seed: int, start_ts: int, first_idx: int, numbers: list[int]
                   ) -> tuple[dict[str, dict[str, bytes]], list[tuple[int, str, str, Any, int]]]:
    """Run every child's steps up to the start; returns stored records and the still-future steps."""
    stores: dict[str, dict[str, bytes]] = {s: {} for s in SOURCES}
    orr, ice, eoir = stores["orr"], stores["ice"], stores["eoir"]
    future: list[tuple[int, str, str, Any, int]] = []
    steps = STEPS
    heappush, heappop = heapq.heappush, heapq.heappop
    for idx, num in enumerate(numbers, start=first_idx):
        a = f"A{num:09d}"
        crng = Random(seed * 1_000_003 + idx)
        c = Child(a, idx)
        heap: list[tuple[int, int, str, Any]] = [(arrival_time(crng, start_ts), 0, "apprehend", None)]
        counter = [1]

        def sched(ts: int, kind: str, arg: Any, _heap: list = heap, _n: list = counter) -> None:
            heappush(_heap, (int(ts), _n[0], kind, arg))
            _n[0] += 1

        while heap:
            ts, _k, kind, arg = heappop(heap)
            if ts > start_ts:
                future.append((ts, kind, a, arg, crng.getrandbits(60)))
            else:
                steps[kind](c, crng, ts, arg, sched)
        for store, rec in ((orr, c.orr), (ice, c.ice), (eoir, c.eoir)):
            if rec is not None:
                rec["updated_at"] = iso(rec["updated_at"])
                store[a] = dumps(rec)
    return stores, future


def _parallel(chunks: list[tuple[int, int, int, list[int]]]) -> list[Any]:
    """Run generate_chunk for each chunk in its own interpreter (`python -m mocks.genworker`).

    Plain subprocesses rather than multiprocessing: nothing depends on how the caller's main module
    was started, and no fork happens inside a process that may already run an event loop or threads.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = []
    for chunk in chunks:
        p = subprocess.Popen([sys.executable, "-m", "mocks.genworker"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
        assert p.stdin is not None
        p.stdin.write(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))
        p.stdin.close()
        procs.append(p)
    parts = []
    for p in procs:
        assert p.stdout is not None
        data = p.stdout.read()
        if p.wait() != 0:
            raise RuntimeError(f"world generation worker failed with exit code {p.returncode}")
        parts.append(pickle.loads(data))
    return parts


class World:
    """All records of the three agencies, the shared simulation clock and the pending events."""

    def __init__(self, seed: int, children: int, start: int) -> None:
        self.seed = seed
        self.children = children
        self.start = start
        self.now: float = float(start)
        self.speed = 0.0
        self.stores: dict[str, dict[str, bytes]] = {s: {} for s in SOURCES}
        self.order: dict[str, list[str]] = {s: [] for s in SOURCES}
        self.events: list[Event] = []
        self._event_seq = 0
        self.feeds = {s: Feed() for s in SOURCES}
        self.listeners: list[Listener] = []
        self.version = 0
        self._cat_cache: tuple[int, float, dict[str, list[str]]] | None = None

    # ---------------------------------------------------------------------------------- generation

    @classmethod
    def generate(cls, seed: int = 7, children: int = 5000, start: str | int = DEFAULT_START,
                 workers: int | None = None) -> World:
        """Build the world deterministically: same seed and size give byte-identical records and events.

        Large worlds are generated by several processes (`workers`, default: one per CPU up to 8, and one
        for worlds under 20,000 children); the result does not depend on the number of workers.
        """
        start_ts = parse_iso(start) if isinstance(start, str) else int(start)
        problem = children_problem(children) or start_problem(start_ts)
        if problem:
            raise ValueError(problem)
        w = cls(seed, children, start_ts)
        rng = Random(seed)
        legacy = _legacy_count(children)
        numbers = rng.sample(NEW_NUMBERS, children - legacy)
        numbers += rng.sample(LEGACY_NUMBERS, legacy)
        rng.shuffle(numbers)
        if workers is None:
            workers = 1 if children < 20_000 else max(1, min(os.cpu_count() or 1, 8))
        if workers <= 1:
            parts = [generate_chunk(seed, start_ts, 0, numbers)]
        else:
            size = -(-children // workers)
            parts = _parallel([(seed, start_ts, i, numbers[i:i + size]) for i in range(0, children, size)])
        future: list[Event] = []
        for stores, events in parts:
            for s in SOURCES:
                w.stores[s].update(stores[s])
            base = len(future)
            future.extend((ts, base + i, kind, a, arg, sub) for i, (ts, kind, a, arg, sub) in enumerate(events))
        for s in SOURCES:
            w.order[s] = sorted(w.stores[s])
        w.events = future
        heapq.heapify(w.events)
        w._event_seq = len(future)
        return w

    def digest(self) -> str:
        """SHA-256 over every record (in a_number order) and every pending event: equal worlds, equal digest."""
        h = hashlib.sha256()
        for s in SOURCES:
            for a in self.order[s]:
                h.update(s.encode() + b"\0" + self.stores[s][a] + b"\n")
        for ev in sorted(self.events):
            h.update(dumps([ev[0], ev[2], ev[3], ev[4], ev[5]]) + b"\n")
        return h.hexdigest()

    # ---------------------------------------------------------------------------------- reads

    def get(self, source: str, a: str) -> bytes | None:
        """The stored JSON of one record, or None."""
        return self.stores[source].get(a)

    def page(self, source: str, after: str | None, limit: int, needles: tuple[bytes, ...] = ()
             ) -> tuple[list[bytes], str | None]:
        """Records in a_number order after the given one, keeping those whose JSON contains every needle.

        Returns the page and the last a_number on it when more matching records remain (else None).
        """
        order = self.order[source]
        store = self.stores[source]
        i = bisect_right(order, after) if after else 0
        out: list[bytes] = []
        last: str | None = None
        n = len(order)
        while i < n and len(out) < limit:
            raw = store[order[i]]
            if all(nd in raw for nd in needles):
                out.append(raw)
                last = order[i]
            i += 1
        if needles:
            while i < n and not all(nd in store[order[i]] for nd in needles):
                i += 1
        return out, (last if i < n else None)

    # ---------------------------------------------------------------------------------- changes

    def _schedule(self, ts: int, kind: str, a: str, arg: Any, subseed: int) -> None:
        if ts > LAST_TS:  # the clock never gets there
            return
        self._event_seq += 1
        heapq.heappush(self.events, (int(ts), self._event_seq, kind, a, arg, subseed))

    def _commit(self, source: str, a: str, new: dict[str, Any], before: dict[str, Any] | None, ts: float,
                out: dict[str, list[dict[str, Any]]]) -> bool:
        if before is None:
            fields = sorted(k for k in new if k != "updated_at")
        else:
            fields = sorted(k for k in new if k != "updated_at" and before.get(k) != new[k])
            fields += sorted(k for k in before if k not in new)
        if not fields:
            return False
        new["updated_at"] = iso(ts)
        if a not in self.stores[source]:
            insort(self.order[source], a)
        self.stores[source][a] = dumps(new)
        out[source].append(self.feeds[source].append(a, new["updated_at"], fields))
        self.version += 1
        return True

    def _load(self, a: str) -> tuple[Child, dict[str, dict[str, Any] | None]]:
        raws = {s: self.stores[s].get(a) for s in SOURCES}
        before = {s: (json.loads(r) if r is not None else None) for s, r in raws.items()}
        c = Child(a, 0, *(json.loads(r) if r is not None else None for r in raws.values()))
        return c, before

    def _apply(self, ev: Event, out: dict[str, list[dict[str, Any]]]) -> bool:
        ts, _seq, kind, a, arg, subseed = ev
        c, before = self._load(a)
        rng = Random(subseed)

        def sched(t2: int, kind2: str, arg2: Any) -> None:
            self._schedule(max(int(t2), ts), kind2, a, arg2, rng.getrandbits(60))

        try:
            STEPS[kind](c, rng, ts, arg, sched)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            log.warning("event %s for %s skipped: record no longer fits (%r)", kind, a, exc)
            return False
        changed = False
        for s in SOURCES:
            new = getattr(c, s)
            if new is not None:
                changed |= self._commit(s, a, new, before[s], ts, out)
        return changed

    def advance(self, seconds: float) -> int:
        """Move the clock on (never past LAST_TS), applying due events in time order; returns changed records."""
        target = min(self.now + max(seconds, 0.0), float(LAST_TS))
        out: dict[str, list[dict[str, Any]]] = {s: [] for s in SOURCES}
        applied = 0
        while self.events and self.events[0][0] <= target:
            ev = heapq.heappop(self.events)
            self.now = max(self.now, float(ev[0]))
            applied += self._apply(ev, out)
        self.now = target
        self._publish(out)
        return applied

    def _publish(self, out: dict[str, list[dict[str, Any]]]) -> None:
        for s in SOURCES:
            if out[s]:
                for listener in self.listeners:
                    try:
                        listener(s, out[s])
                    except Exception:  # a broken listener must never break the service
                        log.exception("change listener failed")

    def stage(self, source: str, a: str, body: Any, replace: bool) -> tuple[int, Any]:
        """PUT (replace=True: create or replace) or PATCH (merge top-level fields) one record.

        Returns (HTTP status, record dict or list of validation errors).
        """
        if not A_NUMBER_RE.match(a):
            return 400, ["a_number: expected canonical form A + 9 digits"]
        if not isinstance(body, dict):
            return 400, ["$: expected a JSON object"]
        if body.get("a_number", a) != a:
            return 400, ["$.a_number: does not match the path"]
        raw = self.stores[source].get(a)
        before = json.loads(raw) if raw is not None else None
        if replace:
            new = dict(body)
        elif before is None:
            return 404, ["no record to patch; create it with PUT"]
        else:
            new = {**before, **body}
        new["a_number"] = a
        new["updated_at"] = iso(self.now)
        errors = validate(new, RECORD_SCHEMAS[source])
        if errors:
            return 400, errors
        out: dict[str, list[dict[str, Any]]] = {s: [] for s in SOURCES}
        if not self._commit(source, a, new, before, self.now, out) and before is not None:
            new = before
        self._rearm(source, a, new)
        self._publish(out)
        return (201 if before is None else 200), json.loads(self.stores[source][a])

    def _rearm(self, source: str, a: str, rec: dict[str, Any]) -> None:
        """Queue the clock-driven steps a staged record implies (future hearings, a pending follow-up call)."""
        now = self.now
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{a}:{self.version}".encode()).digest()[:7], "big")
        if source == "eoir" and rec.get("case_status") == "pending":
            for h in rec["hearings"]:
                ts = parse_iso(h["starts_at"])
                if h["outcome"] is None and ts > now:
                    self._schedule(ts, "hearing", a, h["id"], seed)
        if source == "orr":
            call = rec.get("follow_up_call")
            if call is not None and call["called_at"] is None and call["outcome"] == "not_attempted":
                ts = max(parse_iso(call["due_on"]), int(now)) + DAY
                self._schedule(ts, "follow_up", a, None, seed)

    # ---------------------------------------------------------------------------------- sampling

    def a_numbers(self) -> list[str]:
        """Every A-number known to any service, sorted."""
        return sorted(set(self.order["ice"]) | set(self.order["orr"]) | set(self.order["eoir"]))

    def iter_children(self) -> Iterator[tuple[str, dict | None, dict | None, dict | None]]:
        """(a_number, orr, ice, eoir) parsed, in a_number order."""
        st = self.stores
        for a in self.a_numbers():
            yield a, *(json.loads(st[s][a]) if a in st[s] else None for s in SOURCES)  # type: ignore[misc]

    def categories(self) -> dict[str, list[str]]:
        """Sorted A-numbers per sample state; recomputed only after a record changes.

        (Moving the clock past a hearing plays it, which changes the record, so the states stay current.)
        """
        if self._cat_cache and self._cat_cache[0] == self.version:
            return self._cat_cache[2]
        cats: dict[str, list[str]] = {k: [] for k in CATEGORY_ORDER}
        for a, orr, ice, eoir in self.iter_children():
            for k in classify(orr, ice, eoir, self.now):
                cats[k].append(a)
        self._cat_cache = (self.version, self.now, cats)
        return cats

    def sample(self, n: int, state: str | None = None) -> list[str]:
        """Deterministic sample: round-robin over every non-empty state, or evenly spread within one state."""
        cats = self.categories()
        if state is not None:
            members = cats[state]
            if len(members) <= n:
                return list(members)
            return [members[i * len(members) // n] for i in range(n)]
        picked: list[str] = []
        seen: set[str] = set()
        pools = [(k, cats[name]) for k, name in enumerate(CATEGORY_ORDER) if cats[name]]
        depth = 0
        while len(picked) < n and any(depth < len(p) for _k, p in pools):
            for k, p in pools:
                if depth < len(p):
                    a = p[(depth * 7919 + k * 104729) % len(p)]  # 7919 is prime: a walk over the whole pool
                    if a not in seen:
                        seen.add(a)
                        picked.append(a)
                        if len(picked) == n:
                            break
            depth += 1
        if len(picked) < n:
            picked += [a for a in self.a_numbers() if a not in seen][: n - len(picked)]
        return picked
