"""NTA backlog (OIG recommendation on unserved NTAs): released children whose NTA is not yet with the court.

A child is in the backlog as of `as_of` when released to a sponsor at or before `as_of` and ICE's NTA was
then not issued, issued but not served, or served but not filed. The stage at `as_of` comes from the NTA's
`issued_on`, `served_on` and `filed_on`: a step dated after `as_of` had not happened yet (a date counts from
00:00 UTC of its day; a step the record reached but does not date is taken as done). Age is whole days from
the release to `as_of`, bucketed 0–30, 31–90, 91–365 and over 365.

What the records do not date is judged as it is now: whether the child is released (ICE's custody changes
carry no date, so a child ICE holds or removed since is left out), and the field office (ICE's reassignments
carry no date).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.dates import dated_by, parse_date, parse_datetime

Record = dict[str, Any]

NTA_STEPS = ("not_issued", "issued", "served", "filed")  # ICE's NTA status values, in the order they happen
ORR_STATUSES = frozenset({"referred", "in_care", "released", "aged_out", "repatriated", "unauthorized_departure"})
ICE_CUSTODY_STATUSES = frozenset({"in_dhs_custody", "transferred_to_orr", "in_ice_custody", "removed"})
HELD_BY_ICE = frozenset({"in_ice_custody", "removed"})  # custody facts that outrank ORR's release


class BacklogStage(enum.Enum):
    NOT_ISSUED = "not_issued"
    ISSUED = "issued"
    SERVED = "served"


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


@dataclass(frozen=True, slots=True)
class Release:
    """A release to a sponsor; `at` is None when ORR does not date it."""

    at: datetime | None


def release_as_of(orr: Record | None, ice: Record | None, as_of: datetime) -> Release | None:
    """The child's release when the child is released to a sponsor now (ICE neither holds nor removed the
    child, ORR's status is `released`) and was released at or before `as_of` (an undated release counts).

    A status value neither agency uses raises ValueError, as the child's location does: an ORR status is
    not judged when ICE's custody decides the location (held, removed, or in DHS custody before ORR)."""
    custody = ice.get("custody_status") if ice else None
    if custody is not None and custody not in ICE_CUSTODY_STATUSES:
        raise ValueError(f"unknown ICE custody status {custody!r}")
    if custody in HELD_BY_ICE:
        return None
    status = orr.get("status") if orr else None
    if status != "released":
        if status is not None and status not in ORR_STATUSES and custody != "in_dhs_custody":
            raise ValueError(f"unknown ORR status {status!r}")
        return None
    raw = (orr.get("release") or {}).get("released_at")  # type: ignore[union-attr]
    at = parse_datetime(raw) if raw else None
    if at is not None and at > as_of:
        return None
    return Release(at)


def nta_status_as_of(ice: Record | None, as_of: datetime) -> str:
    """ICE's NTA status as it stood at `as_of` (a source status value): steps dated after it are undone."""
    if ice is None:
        return "not_issued"
    nta = ice["nta"]  # every ICE subject has one; its absence is a malformed record
    step = NTA_STEPS.index(nta["status"])  # an unknown status raises ValueError
    dates = (None, parse_date(nta.get("issued_on")), parse_date(nta.get("served_on")), parse_date(nta.get("filed_on")))
    while step > 0 and not dated_by(dates[step], as_of):
        step -= 1
    return NTA_STEPS[step]


def backlog_entry(orr: Record | None, ice: Record | None, as_of: datetime) -> BacklogEntry | None:
    """The child's backlog entry as of `as_of`, or None when the child was not in the backlog then."""
    if ice is None:
        return None
    release = release_as_of(orr, ice, as_of)
    if release is None:
        return None
    status = nta_status_as_of(ice, as_of)
    if status == "filed":
        return None
    since = release.at
    days = max(0, (as_of - since).days) if since else None
    return BacklogEntry(
        stage=BacklogStage(status), released_at=since, days_since_release=days,
        bucket=age_bucket(days) if days is not None else None, field_office=ice.get("field_office"),
    )
