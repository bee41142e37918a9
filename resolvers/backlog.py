"""NTA backlog (OIG recommendation on unserved NTAs): released children whose NTA is not yet with the court.

A child is in the backlog as of `asOf` when released to a sponsor (derived location RELEASED_TO_SPONSOR)
at or before `asOf` and ICE's NTA was then not issued, issued but not served, or served but not filed. The
stage at `asOf` comes from the NTA's `issued_on`, `served_on` and `filed_on`: a step dated after `asOf` had
not happened yet (a date counts from 00:00 UTC of its day; a step the record reached but does not date is
taken as done). Age is whole days from the release to `asOf`, bucketed 0–30, 31–90, 91–365 and over 365.

What the records do not date is judged as it is now: the location (ICE's custody changes carry no date, so a
child ICE holds or removed since is left out), and the field office (ICE's reassignments carry no date).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import strawberry

from resolvers import sections as build
from resolvers.types import Location, LocationStatus
from sources.fetcher import Fetched


@strawberry.enum(description="How far a backlogged NTA got: not issued, issued but not served, served but not filed.")
class BacklogStage(enum.Enum):
    NOT_ISSUED = "not_issued"
    ISSUED = "issued"
    SERVED = "served"


@strawberry.enum(description="Days since release to the sponsor.")
class AgeBucket(enum.Enum):
    DAYS_0_30 = "0-30"
    DAYS_31_90 = "31-90"
    DAYS_91_365 = "91-365"
    OVER_365 = ">365"


def age_bucket(days: int) -> AgeBucket:
    """The bucket of an age in whole days (negative ages count as 0)."""
    if days <= 30:
        return AgeBucket.DAYS_0_30
    if days <= 90:
        return AgeBucket.DAYS_31_90
    if days <= 365:
        return AgeBucket.DAYS_91_365
    return AgeBucket.OVER_365


@dataclass(frozen=True, slots=True)
class BacklogEntry:
    """Why one child is in the backlog."""

    stage: BacklogStage
    released_at: datetime | None
    days_since_release: int | None
    bucket: AgeBucket | None
    field_office: str | None


def dated_by(day: date | None, as_of: datetime) -> bool:
    """True when a fact dated by day only had happened by `as_of` (from 00:00 UTC of its day; undated: True)."""
    return day is None or datetime.combine(day, time(0), UTC) <= as_of


def released_as_of(orr: Fetched, ice: Fetched, as_of: datetime) -> Location | None:
    """The child's location when released to a sponsor at or before `as_of` (an undated release counts)."""
    location = build.location(orr, ice)
    if location.status is not LocationStatus.RELEASED_TO_SPONSOR:
        return None
    if location.since is not None and location.since > as_of:
        return None
    return location


NTA_STEPS = ("not_issued", "issued", "served", "filed")


def nta_status_as_of(ice: Fetched, as_of: datetime) -> str:
    """ICE's NTA status as it stood at `as_of` (a source status value): steps dated after it are undone."""
    nta = build.nta(ice)
    if nta is None:
        return "not_issued"
    step = NTA_STEPS.index(nta.status.value)
    dates = (None, nta.issued_on, nta.served_on, nta.filed_on)
    while step > 0 and not dated_by(dates[step], as_of):
        step -= 1
    return NTA_STEPS[step]


def backlog_entry(orr: Fetched, ice: Fetched, as_of: datetime) -> BacklogEntry | None:
    """The child's backlog entry as of `as_of`, or None when the child was not in the backlog then."""
    if ice.record is None:
        return None
    location = released_as_of(orr, ice, as_of)
    if location is None:
        return None
    status = nta_status_as_of(ice, as_of)
    if status == "filed":
        return None
    days = max(0, (as_of - location.since).days) if location.since else None
    return BacklogEntry(
        stage=BacklogStage(status), released_at=location.since, days_since_release=days,
        bucket=age_bucket(days) if days is not None else None, field_office=ice.record.get("field_office"),
    )
