"""NTA backlog (OIG recommendation on unserved NTAs): released children whose NTA is not yet with the court.

A child is in the backlog while released to a sponsor (derived location RELEASED_TO_SPONSOR) and ICE's
NTA is not issued, issued but not served, or served but not filed. Age is whole days since release as of
`asOf`, bucketed 0–30, 31–90, 91–365 and over 365.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import strawberry

from gateway.fetcher import Fetched
from resolvers import build
from resolvers.types import LocationStatus


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


def backlog_entry(orr: Fetched, ice: Fetched, as_of: datetime) -> BacklogEntry | None:
    """The child's backlog entry, or None when the child is not in the backlog."""
    if ice.record is None:
        return None
    location = build.location(orr, ice)
    if location.status is not LocationStatus.RELEASED_TO_SPONSOR:
        return None
    nta = build.nta(ice)
    status = nta.status.value if nta is not None else "not_issued"
    if status == "filed":
        return None
    days = max(0, (as_of - location.since).days) if location.since else None
    return BacklogEntry(
        stage=BacklogStage(status), released_at=location.since, days_since_release=days,
        bucket=age_bucket(days) if days is not None else None, field_office=ice.record.get("field_office"),
    )
