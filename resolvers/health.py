"""The `sources` query (breaker state, last success and error, recent latency per backend), and the operators'
`gatewayHealth` (the gateway's own counters, as the admin listener's /readyz shows them)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import strawberry
from strawberry.types import Info

from resolvers.permissions import capability_field
from resolvers.types import SourceEnum
from rules.roles import Capability
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


@strawberry.type(description="How this gateway process is doing, for operators.")
class GatewayHealth:
    ready: bool = strawberry.field(description="True while some system of record is usable.")
    status: str = strawberry.field(description="ok, or degraded while some system of record is not usable.")
    details: str = strawberry.field(description="What the admin listener's /readyz shows, as JSON text: "
                                                "sources, fetch, answer-cache, early-fetch, audit-trail, "
                                                "websocket and scan counters.")


@strawberry.type
class OperatorQuery:
    """The gateway's own health (the public /readyz says only whether it is ready)."""

    @strawberry.field(**capability_field("This gateway process's readiness and counters.", Capability.HEALTH_ADMIN))
    def gateway_health(self, info: Info) -> GatewayHealth | None:
        services: Services = info.context.services
        details = info.context.health_details
        facts = details() if details is not None else {"sources": services.health()}
        ready, status = services.readiness(facts["sources"])
        details = orjson.dumps({**facts, "ready": ready, "status": status}).decode()
        return GatewayHealth(ready=ready, status=status, details=details)
