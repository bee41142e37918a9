"""The sources' change feeds, read: `GET /v1/changes` polled per source, each page validated into `Change`s
and handed to a `ChangeHandler` (the applier in `sync/feed_applier.py`, which invalidates and publishes).

`ChangeFollower` polls each source whose feed this process leads (`FeedPositions`, sync/feed_leadership.py:
one replica per source when replicas share Redis, else this process), from the cursor stored after the last
applied batch, so changes made while no follower ran are applied when one starts; with no stored cursor
(the first start) from the feed's current end. After each applied batch the new cursor is stored, under
the leader's fencing epoch. It retries with backoff through outages, reads a feed that no longer knows its
cursor (the source restarted) from the feed's first change, and ends with the app. Logs carry counts and
sources, never A-numbers.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from sources.client import source_connector
from sources.settings import Settings
from sources.source_access import SourceAccess
from sources.systems import Source

log = logging.getLogger("ucgw.changefeed")

A_NUMBER = re.compile(r"A[0-9]{9}")  # fullmatch, ASCII digits


def change_time(iso: str | None) -> float | None:
    """Seconds since the epoch of a feed's `updated_at` (ISO date-time or date, UTC); None when it is not one."""
    if not iso:
        return None
    try:
        return float(calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        try:
            return float(calendar.timegm(time.strptime(iso[:10], "%Y-%m-%d")))
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Change:
    """One validated entry of a change feed."""

    seq: int
    a_number: str
    updated_at: str | None
    fields: tuple[str, ...]


def parse_changes(raw: object) -> tuple[list[Change], int]:
    """Valid changes of a feed page or webhook body, and how many malformed entries were skipped."""
    if not isinstance(raw, list):
        raise ValueError("changes must be a list")
    out, bad = [], 0
    for item in raw:
        if not isinstance(item, dict):
            bad += 1
            continue
        seq, a, updated, fields = item.get("seq"), item.get("a_number"), item.get("updated_at"), item.get("fields")
        if (not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(a, str) or not A_NUMBER.fullmatch(a)
                or not (updated is None or isinstance(updated, str))):
            bad += 1
            continue
        names = tuple(f for f in fields if isinstance(f, str)) if isinstance(fields, list) else ()
        out.append(Change(seq, a, updated, names))
    return out, bad


class ChangeHandler(Protocol):
    """What the follower hands changes to (`sync.feed_applier.ChangeProcessor`)."""

    async def handle(self, source: Source, changes: Sequence[Change], via: str) -> int:
        """Apply a page of changes; the number that were new."""

    async def check_alerts(self, offices: Mapping[str, tuple[str, ...]] | None = None) -> int:
        """Look again for court alerts whose moment has come (called on an EOIR poll with no change)."""

    def source_restarted(self, source: Source) -> None:
        """The source numbers its changes anew: forget the ones seen."""


@dataclass(frozen=True, slots=True)
class Lead:
    """This process leads a source's feed; `cursor`: where the last leader left it (None: nowhere yet)."""

    cursor: str | None


class FeedPositions(Protocol):
    """Who follows each source's feed, and where it was left (`sync.feed_leadership.FeedLeadership`)."""

    retry_seconds: float  # how often a replica that does not lead asks again

    async def take(self, source: Source) -> Lead | None:
        """Lead the source's feed if nobody else does (None: another replica does, or it cannot be told)."""

    def leading(self, source: Source) -> bool:
        """True while this process surely still leads the source (its lease is current)."""

    async def keep(self, source: Source, cursor: str) -> bool:
        """Store the cursor after an applied batch; False when a newer leader has taken over (fenced out)."""


class AlwaysLead:
    """One process alone: it leads every feed and remembers nothing across restarts (tests, tools)."""

    retry_seconds = 1.0

    async def take(self, source: Source) -> Lead | None:
        return Lead(None)

    def leading(self, source: Source) -> bool:
        return True

    async def keep(self, source: Source, cursor: str) -> bool:
        return True


class CursorExpired(Exception):
    """The feed no longer holds changes after our cursor (HTTP 410)."""


class CursorRejected(Exception):
    """The feed does not know our cursor (HTTP 400): the source restarted and numbers its changes anew."""


class ChangeFollower:
    """Polls each source's change feed and hands the changes to the processor."""

    def __init__(self, settings: Settings, processor: ChangeHandler, positions: FeedPositions | None = None,
                 access: dict[Source, SourceAccess] | None = None) -> None:
        self.settings = settings
        # each source's TLS and token (its client's, shared); built here when none is given
        self.access = access or {s: SourceAccess(s, settings) for s in Source}
        self.processor = processor
        self.positions: FeedPositions = positions or AlwaysLead()
        self.interval = settings.change_feed_poll_seconds
        self.limit = settings.change_feed_batch_limit
        self.cursors: dict[Source, str] = {}
        self.failures: dict[Source, int] = {}
        self.polls = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        """False when polling is switched off (interval 0)."""
        return self.interval > 0

    async def start(self) -> None:
        """Start one polling task per source (nothing when disabled)."""
        if not self.enabled or self._tasks:
            return
        timeout = aiohttp.ClientTimeout(total=self.settings.source_timeout_seconds * 2)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=source_connector(self.settings))
        self._tasks = [asyncio.create_task(self._follow(s), name=f"changefeed-{s.value}") for s in Source]

    async def stop(self) -> None:
        """Cancel the polling tasks and close the session."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, source: Source, since: str, limit: int) -> tuple[list[Change], str]:
        assert self._session is not None
        url = f"{self.settings.source_url(source).rstrip('/')}/v1/changes"
        params = {"since": since, "limit": str(limit)} if since else {"limit": str(limit)}
        access = self.access[source]
        extra: dict[str, Any] = {"ssl": access.ssl} if access.ssl is not None else {}
        token = await access.tokens.token() if access.tokens is not None else None
        if token is not None:
            extra["headers"] = {"Authorization": f"Bearer {token}"}
        async with self._session.get(url, params=params, **extra) as resp:
            if resp.status == 401 and token is not None and access.tokens is not None:
                access.tokens.invalidate(token)  # the next poll asks for a new one
                raise RuntimeError("HTTP 401: the source refused our access token")
            if resp.status == 410:
                raise CursorExpired
            if resp.status == 400 and since not in ("", "latest"):
                raise CursorRejected
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or "next_cursor" not in body:
            raise RuntimeError("change feed answer lacks next_cursor")
        changes, bad = parse_changes(body.get("changes"))
        if bad:
            log.warning("%s change feed: skipped %d malformed change(s)", source.value, bad)
        cursor = body["next_cursor"]
        return changes, (str(cursor) if cursor is not None else since)

    async def _lead(self, source: Source) -> bool:
        """Whether this process leads the source's feed now; on taking the lead, resume where it was left."""
        positions = self.positions
        if positions.leading(source) and source in self.cursors:
            return True
        self.cursors.pop(source, None)
        lead = await positions.take(source)
        if lead is None:
            return False
        if lead.cursor is not None:
            self.cursors[source] = lead.cursor
            log.info("%s change feed: resuming from the stored cursor", source.value)
            return True
        _, cursor = await self._get(source, "latest", 1)
        if not await positions.keep(source, cursor):
            return False
        self.cursors[source] = cursor
        log.info("%s change feed: no stored cursor; following from its current end", source.value)
        return True

    async def _keep(self, source: Source, cursor: str) -> bool:
        """Store the cursor after an applied batch (False: fenced out). While the store is unreachable the
        cursor moves on in memory only (a successor may then apply those changes again: rather twice than
        never); the next batch stores it."""
        try:
            return await self.positions.keep(source, cursor)
        except Exception as exc:  # noqa: BLE001 - the cursor store's outage must not stop the feed
            log.warning("%s change feed: could not store the cursor (%s); keeping it in memory", source.value,
                        type(exc).__name__)
            return True

    async def _follow(self, source: Source) -> None:
        while True:
            try:
                if not await self._lead(source):
                    await asyncio.sleep(self.positions.retry_seconds)
                    continue
                since = self.cursors[source]
                changes, cursor = await self._get(source, since, self.limit)
                self.polls += 1
                if not self.positions.leading(source):  # the lease ran out while we read: the next leader applies
                    continue
                if changes and since.isdigit() and changes[0].seq > int(since) + 1:
                    log.warning("%s change feed: %d change(s) were trimmed before we read them; "
                                "affected cache entries expire by TTL", source.value,
                                changes[0].seq - int(since) - 1)
                if changes:
                    await self.processor.handle(source, changes, "poll")
                elif source is Source.EOIR:
                    await self.processor.check_alerts()
                if cursor != since and not await self._keep(source, cursor):
                    self.cursors.pop(source, None)
                    continue
                self.cursors[source] = cursor
                if self.failures.get(source):
                    log.info("%s change feed: reachable again", source.value)
                self.failures[source] = 0
                if len(changes) < self.limit:
                    await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except CursorRejected:
                log.warning("%s change feed: our cursor is not one the feed issued (the source restarted?); "
                            "reading the feed from its first change", source.value)
                self.cursors[source] = ""
                self.processor.source_restarted(source)
                await self._keep(source, "")
            except CursorExpired:
                log.warning("%s change feed: our cursor expired (changes were dropped before we read them); "
                            "following from the current end, missed changes expire by TTL", source.value)
                self.cursors[source] = "latest"  # the next poll reads no change and returns the end's cursor
            except Exception as exc:  # an outage or a bad answer: log, back off, keep going
                n = self.failures[source] = self.failures.get(source, 0) + 1
                delay = min(30.0, self.interval * 2 ** min(n, 6)) * (0.5 + random.random())
                log.warning("%s change feed failed (%s); retry %d in %.1f s", source.value,
                            type(exc).__name__, n, delay)
                await asyncio.sleep(delay)


