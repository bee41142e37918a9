"""Small shared helpers: time formatting and parsing, canonical A-numbers, JSON encoding, cursors."""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import time
from datetime import date, datetime
from functools import lru_cache
from typing import Any

A_NUMBER_RE = re.compile(r"^A\d{9}\Z", re.ASCII)  # ASCII: `\d` alone takes any script's digits
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z", re.ASCII)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z", re.ASCII)
DAY = 86400
HOUR = 3600
DEFAULT_START = "2026-11-01T12:00:00Z"
# The times this module writes as 'YYYY-MM-DD...': four-digit years (time.strftime does not pad years below 1000)
FIRST_TS = calendar.timegm((1000, 1, 1, 0, 0, 0))  # 1000-01-01T00:00:00Z
LAST_TS = calendar.timegm((9999, 12, 31, 23, 59, 59))  # 9999-12-31T23:59:59Z


@lru_cache(maxsize=65536)
def day_str(day: int) -> str:
    """'YYYY-MM-DD' for a day number counted from the Unix epoch; ValueError outside years 1000-9999."""
    if not FIRST_TS <= day * DAY <= LAST_TS:
        raise ValueError(f"day {day} is outside the years 1000-9999")
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


_TIME_OF_DAY = [f"T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)]


def iso(ts: float) -> str:
    """Epoch seconds -> 'YYYY-MM-DDTHH:MM:SSZ' (UTC, whole seconds)."""
    d, rem = divmod(int(ts), DAY)
    return day_str(d) + _TIME_OF_DAY[rem]


def date_of(ts: float) -> str:
    """Epoch seconds -> 'YYYY-MM-DD' (UTC)."""
    return day_str(int(ts) // DAY)


@lru_cache(maxsize=65536)
def _day_epoch(ymd: str) -> int:
    return calendar.timegm((int(ymd[0:4]), int(ymd[5:7]), int(ymd[8:10]), 0, 0, 0))


def parse_iso(value: str) -> int:
    """'YYYY-MM-DDTHH:MM:SSZ' or 'YYYY-MM-DD' -> epoch seconds (shape checked; use valid_* for calendars)."""
    if len(value) == 20 and value[10] == "T" and value[19] == "Z":
        return _day_epoch(value[:10]) + int(value[11:13]) * HOUR + int(value[14:16]) * 60 + int(value[17:19])
    if len(value) == 10 and DATE_RE.match(value):
        return _day_epoch(value)
    raise ValueError(f"not an ISO-8601 UTC time: {value!r}")


def valid_date(value: str) -> bool:
    """True when value is a real calendar date in 'YYYY-MM-DD' form."""
    if not DATE_RE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def valid_datetime(value: str) -> bool:
    """True when value is a real UTC time in 'YYYY-MM-DDTHH:MM:SSZ' form."""
    if not ISO_RE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def http_date(ts: float) -> str:
    """Epoch seconds -> RFC 7231 HTTP-date for Last-Modified."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(ts)))


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any) -> bytes:
    """Canonical compact JSON: sorted keys, no spaces, UTF-8."""
    return _ENCODER.encode(obj).encode()


def b64e(text: str) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def b64d(token: str) -> str | None:
    """Inverse of b64e; None when the token is not valid base64 text."""
    if not token or len(token) > 200 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
