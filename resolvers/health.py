"""The `sources` query: breaker state, last success and error, recent latency per backend."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from resolvers.types import SourceEnum
from sources.systems import Source
from sync.services import Services


@strawberry.type(description="How one system of record is doing, as seen by this gateway process.")
class SourceStatus:
    source: SourceEnum  # type: ignore[valid-type]
    breaker_state: str = strawberry.field(description="CLOSED, OPEN or HALF_OPEN.")
    usable: bool
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    calls: int
    retries: int


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def source_statuses(services: Services) -> list[SourceStatus]:
    """`SourceStatus` objects for the GraphQL `sources` query."""
    out = []
    for f in services.health():
        out.append(SourceStatus(
            source=Source(f["source"]), breaker_state=str(f["breaker_state"]), usable=bool(f["usable"]),
            last_success_at=_ts(f["last_success_at"]), last_error_at=_ts(f["last_error_at"]),  # type: ignore[arg-type]
            last_error=f["last_error"], latency_p50_ms=f["latency_p50_ms"],  # type: ignore[arg-type]
            latency_p95_ms=f["latency_p95_ms"], calls=int(f["calls"]), retries=int(f["retries"]),  # type: ignore[arg-type]
        ))
    return out
