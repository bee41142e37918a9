"""Helpers shared by the access-control, audit and limits tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from testing.gateway import ROOT, http

QUIET = {"UCGW_CHANGE_FEED_POLL_SECONDS": "0"}  # no background calls: backend call counts stay exact
SOURCES = ("orr", "ice", "eoir")
PATHS = {"orr": "children", "ice": "subjects", "eoir": "cases"}

FULL = """query($a: ID!) { child(aNumber: $a) { aNumber
  identity { firstName lastName dateOfBirth countryOfBirth orrCaseId }
  location { status since facility { name city state } address { street unit city state zip } }
  sponsor { name relationship category phone address { street unit city state zip } releasedAt }
  followUpCall { outcome safetyConcern awareOfCourtDate }
  nta { status issuedOn servedOn filedOn fieldOffice addressOnFile { address { street city zip } } }
  hearing { caseStatus missedHearingCount addressOfRecord { street city zip }
            nextHearing { startsAt courtName judge courtAddress { street city state zip } } }
  addressesOnFile { kind address { street unit city zip } }
} }"""


def gateway_env(mock_services: Any, **extra: str) -> dict[str, str]:
    """Environment pointing a gateway at the mocks, plus `extra` (and QUIET)."""
    if hasattr(mock_services, "gateway_env"):
        return {**mock_services.gateway_env(**{**QUIET, **extra})}
    urls = {f"UCGW_{s.upper()}_URL": getattr(mock_services, s) for s in SOURCES}
    return {**urls, **QUIET, **extra}


def raw(mock_services: Any, source: str, a: str) -> dict[str, Any] | None:
    """A mock's own record (None when it has none)."""
    status, _, body = http("GET", f"{getattr(mock_services, source)}/v1/{PATHS[source]}/{a}")
    if status == 404:
        return None
    assert status == 200, (source, status)
    return json.loads(body)


def records(mock_services: Any, a: str) -> dict[str, dict[str, Any] | None]:
    """The three sources' records of one child."""
    return {s: raw(mock_services, s, a) for s in SOURCES}


def backend_calls(mock_services: Any) -> int:
    """Requests the three mocks have answered since their last reset."""
    return sum(int(mock_services.stats(s)["total"]) for s in SOURCES)


def strings(value: Any) -> Iterator[str]:
    """Every string inside a decoded JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def error_paths(body: dict[str, Any], code: str | None = None) -> set[str]:
    """`a.b.0.c` paths of the response's errors (of one code when given)."""
    return {".".join(map(str, e["path"])) for e in body.get("errors", [])
            if e.get("path") and (code is None or e.get("extensions", {}).get("code") == code)}


def ucgw(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway.cli ARGS` and capture its output."""
    import os

    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def audit_cli(data_dir: str, *filters: str) -> list[dict[str, Any]]:
    """Events printed by `ucgw audit --data-dir DIR FILTERS`."""
    done = ucgw("audit", "--data-dir", data_dir, *filters)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def by_office(mock_services: Any, n: int = 80) -> dict[str, list[str]]:
    """`n` sampled A-numbers grouped by the field office ICE holds responsible (children ICE assigns to no
    office left out); at least two offices."""
    groups: dict[str, list[str]] = {}
    for a in mock_services.sample(n):
        ice = raw(mock_services, "ice", a)
        if ice and ice.get("field_office"):
            groups.setdefault(ice["field_office"], []).append(a)
    assert len(groups) >= 2
    return groups
