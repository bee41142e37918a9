"""Push: the sources' changes applied: the record cache invalidated, events published to subscribers.

`ChangeProcessor.handle` is the one path for both transports (the feed follower in
`sources/change_feed.py` and the webhook in `gateway/http/webhooks.py`): it drops the changed records from
the cache, publishes a `ChangeEvent` per change (to the child's topic and its field office's), and looks
for new court alerts in changed EOIR records. Logs carry counts and sources, never A-numbers.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from rules.roles import scope_office
from sources.change_feed import Change, change_time
from sources.errors import SourceError
from sources.fetcher import Fetched, SourceFetcher
from sources.settings import Settings
from sources.systems import Source
from stores.pubsub import PubSub
from sync.change_events import (
    ALL_ALERTS,
    ALL_CHANGES,
    IN_ABSENTIA_ORDER,
    MISSED_HEARING,
    AlertEvent,
    ChangeEvent,
    child_alert_topic,
    child_topic,
    office_alert_topic,
    office_topic,
)

log = logging.getLogger("ucgw.changefeed")

ALERT_FIELDS = frozenset({"hearings", "in_absentia_order", "decision", "case_status"})
RECENT_SECONDS = 2 * 86_400  # with no earlier copy to compare, an event this close to updated_at is new
MAX_PENDING = 10_000
SEEN_CHANGES = 10_000  # changes remembered per source, so one that both poll and webhook bring is handled once
K = TypeVar("K")


class Recent(Generic[K]):
    """The latest `size` distinct keys added, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: K) -> None:
        """Remember `key` (again: it becomes the newest)."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def first(self, key: K) -> bool:
        """True the first time `key` is seen (while remembered); it is remembered from now on."""
        if key in self._keys:
            return False
        self.add(key)
        return True

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()


class ChangeProcessor:
    """Invalidate, enrich and publish one batch of changes from one source."""

    def __init__(self, settings: Settings, fetchers: Mapping[Source, SourceFetcher], pubsub: PubSub) -> None:
        self.settings = settings
        self.fetchers = fetchers
        self.pubsub = pubsub
        self._seen_changes: dict[Source, Recent[tuple[Change, str]]] = {s: Recent(SEEN_CHANGES) for s in Source}
        self.processed = 0
        self.applied: dict[str, int] = {s.value: 0 for s in Source}  # new changes handled, per source
        self.alerts = 0
        self._alerted: Recent[tuple[str, str]] = Recent(100_000)
        self._pending_alert_checks: dict[str, dict[str, Any] | None] = {}

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.request_deadline_seconds

    async def handle(self, source: Source, changes: Sequence[Change], via: str) -> int:
        """Process the changes the other transport has not brought already; returns how many were new.

        With both polling and the webhook on, each change arrives twice and is handled once. A change is
        known by its whole entry (seq, A-number, time, fields), not by a high-water mark of seqs: a source
        that restarts numbers its feed from 1 again, and one wrong seq from a sender must not hide every
        later change. A transport bringing a change again (a webhook's retry) gets it handled again:
        a repeated event costs less than a lost one.
        """
        seen = self._seen_changes[source]
        other = "webhook" if via == "poll" else "poll"
        fresh = [c for c in changes if (c, other) not in seen]
        for c in fresh:
            seen.add((c, via))
        if not fresh:
            return 0
        fetcher = self.fetchers[source]
        previous: dict[str, dict[str, Any] | None] = {}
        for c in fresh:
            entry = fetcher.cache.get(fetcher.key(c.a_number))
            previous.setdefault(c.a_number, entry.record if entry is not None else None)
            fetcher.invalidate(c.a_number)
        a_numbers = list(dict.fromkeys(c.a_number for c in fresh))
        await fetcher.invalidate_shared(a_numbers)  # every replica's copy (and answers built on it) with Redis
        alert_candidates = [a for a in a_numbers if source is Source.EOIR
                            and any(ALERT_FIELDS.intersection(c.fields) or not c.fields
                                    for c in fresh if c.a_number == a)]
        need_offices = self.pubsub.has_subscribers("office:") or self.pubsub.has_subscribers("alert:office:") \
            or bool(alert_candidates)
        offices = await self._offices(source, a_numbers, previous, fresh) if need_offices else {}
        now = time.time()
        for c in fresh:
            event = ChangeEvent(source, c.a_number, c.seq, c.updated_at, c.fields,
                                offices.get(c.a_number, ()), now, via)
            await self.pubsub.publish(child_topic(c.a_number), event)
            await self.pubsub.publish(ALL_CHANGES, event)
            for office in event.field_offices:
                await self.pubsub.publish(office_topic(office), event)
        self.processed += len(fresh)
        self.applied[source.value] += len(fresh)
        for a in alert_candidates:
            self._pending_alert_checks.setdefault(a, previous.get(a))
        await self.check_alerts(offices)
        return len(fresh)

    def source_restarted(self, source: Source) -> None:
        """Forget the source's changes seen so far: its renumbered feed may repeat their entries."""
        self._seen_changes[source].clear()

    async def _offices(self, source: Source, a_numbers: list[str], previous: Mapping[str, dict[str, Any] | None],
                       changes: Sequence[Change]) -> dict[str, tuple[str, ...]]:
        """Responsible field office(s) per child by the one scope rule (`scope_office`: ICE's office only;
        none when ICE assigns none, never one routed from the sponsor's address, security #14)."""
        out: dict[str, tuple[str, ...]] = {}
        to_fetch: list[str] = []
        for a in a_numbers:
            old = scope_office(previous.get(a)) if source is Source.ICE else None
            moved = any("field_office" in c.fields for c in changes if c.a_number == a)
            if old is not None and not moved:
                out[a] = (old,)
            else:
                to_fetch.append(a)
        if to_fetch:
            ice = await self._load(Source.ICE, to_fetch, None)
            for a in to_fetch:
                old = scope_office(previous.get(a)) if source is Source.ICE else None
                names = [o for o in (old, scope_office(ice.get(a))) if o is not None]
                out[a] = tuple(dict.fromkeys(names))
        return out

    async def _load(self, source: Source, a_numbers: list[str], max_age: float | None) -> dict[str, dict | None]:
        """Records through the cached fetcher; failures leave the A-number out (logged by count)."""
        outcomes = await self.fetchers[source].load_many(a_numbers, max_age, self._deadline())
        out: dict[str, dict | None] = {}
        failed = 0
        for a, o in zip(a_numbers, outcomes, strict=True):
            if isinstance(o, Fetched):
                out[a] = o.record
            else:
                failed += 1
        if failed:
            log.warning("change enrichment: %s did not answer for %d record(s)", source.value, failed)
        return out

    async def check_alerts(self, offices: Mapping[str, tuple[str, ...]] | None = None) -> int:
        """Re-fetch changed EOIR records (max age 0) and publish new missed-hearing and in-absentia alerts.

        Records whose fetch fails stay pending and are checked again on the next call.
        """
        if not self._pending_alert_checks:
            return 0
        pending = dict(self._pending_alert_checks)
        a_numbers = list(pending)
        outcomes = await self.fetchers[Source.EOIR].load_many(a_numbers, 0.0, self._deadline())
        found: list[AlertEvent] = []
        now = time.time()
        for a, outcome in zip(a_numbers, outcomes, strict=True):
            if isinstance(outcome, SourceError):
                continue
            del self._pending_alert_checks[a]
            if outcome.record is not None:
                found += self._alerts_in(a, pending[a], outcome, now)
        if len(self._pending_alert_checks) > MAX_PENDING:
            log.warning("dropping %d pending alert checks (EOIR unavailable too long)",
                        len(self._pending_alert_checks) - MAX_PENDING)
            for a in list(self._pending_alert_checks)[: len(self._pending_alert_checks) - MAX_PENDING]:
                del self._pending_alert_checks[a]
        if not found:
            return 0
        known = dict(offices or {})
        missing = [a for a in dict.fromkeys(al.a_number for al in found) if a not in known]
        if missing:
            known.update(await self._offices(Source.EOIR, missing, {}, ()))
        for alert in found:
            office = next(iter(known.get(alert.a_number, ())), None)
            alert = AlertEvent(alert.kind, alert.a_number, office, alert.hearing_id, alert.hearing_starts_at,
                               alert.court_name, alert.ordered_on, alert.evidence, alert.detected_at)
            await self.pubsub.publish(child_alert_topic(alert.a_number), alert)
            await self.pubsub.publish(ALL_ALERTS, alert)
            if office:
                await self.pubsub.publish(office_alert_topic(office), alert)
        self.alerts += len(found)
        log.debug("published %d court alert(s)", len(found))
        return len(found)

    def _alerts_in(self, a: str, before: dict[str, Any] | None, fetched: Fetched, now: float) -> list[AlertEvent]:
        """New failed-to-appear hearings and a new in-absentia order in one EOIR record."""
        rec = fetched.record or {}
        updated = change_time(rec.get("updated_at"))
        out: list[AlertEvent] = []

        def recent(iso: str | None) -> bool:
            at = change_time(iso)
            return at is not None and updated is not None and updated - at <= RECENT_SECONDS

        old_hearings = {h.get("id"): h for h in (before or {}).get("hearings", []) if isinstance(h, dict)}
        for h in rec.get("hearings") or []:
            if not isinstance(h, dict) or h.get("outcome") != "failed_to_appear":
                continue
            hid = str(h.get("id"))
            if before is not None:
                new = old_hearings.get(hid, {}).get("outcome") != "failed_to_appear"
            else:
                new = recent(h.get("starts_at"))
            if new and self._alerted.first((a, f"H:{hid}")):
                out.append(AlertEvent(MISSED_HEARING, a, None, hid, h.get("starts_at"), h.get("court_name"),
                                      None, fetched, now))
        order = rec.get("in_absentia_order")
        if isinstance(order, dict):
            old_order = (before or {}).get("in_absentia_order")
            new = old_order is None if before is not None else recent(order.get("ordered_on"))
            if new and self._alerted.first((a, f"IA:{order.get('ordered_on')}")):
                last_fta = next((h for h in reversed(rec.get("hearings") or [])
                                 if isinstance(h, dict) and h.get("outcome") == "failed_to_appear"), None)
                out.append(AlertEvent(IN_ABSENTIA_ORDER, a, None, last_fta.get("id") if last_fta else None,
                                      last_fta.get("starts_at") if last_fta else None,
                                      last_fta.get("court_name") if last_fta else None,
                                      order.get("ordered_on"), fetched, now))
        return out
