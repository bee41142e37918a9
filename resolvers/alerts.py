"""Court alerts as GraphQL values: rules.court_alerts judges them as of a time (its docstring has the rules);
this module adds each alert's hearing as the schema shows it and its evidence as sources' claims."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

import strawberry

from resolvers import sections as build
from resolvers.evidence import SourceClaim, claims_of
from resolvers.types import Hearing
from rules import court_alerts as alert_rules
from rules.court_alerts import AlertKind, CourtAsOf, HearingAsOf
from sources.fetcher import Fetched

__all__ = ["AlertFact", "AlertKind", "court_alerts", "court_as_of"]

strawberry.enum(AlertKind, description="A kind of court alert.")  # the rules' own enum


@dataclass(frozen=True, slots=True)
class AlertFact:
    """One alert about one child, before it is shown (the list adds the child)."""

    kind: AlertKind
    occurred_at: datetime | None  # when the fact arose; None for a forward-looking alert
    hearing: Hearing | None
    evidence: list[SourceClaim]


def court_as_of(eoir: Fetched, as_of: datetime) -> CourtAsOf:
    """EOIR's case as of `as_of`, the present being now (see rules.court_alerts)."""
    return alert_rules.court_as_of(eoir.record, as_of, datetime.now(UTC))


def _hearing(h: HearingAsOf) -> Hearing:
    """The hearing as the schema shows it, with its outcome as of the time judged."""
    shown = build.hearing(h.record)
    return dataclasses.replace(shown, outcome=None) if h.outcome is None and shown.outcome is not None else shown


def court_alerts(orr: Fetched, ice: Fetched, eoir: Fetched, as_of: datetime, within_days: int) -> list[AlertFact]:
    """The child's court alerts as of `as_of`, in AlertKind order (missed hearings oldest first)."""
    found = alert_rules.court_alerts(orr.record, ice.record, eoir.record, as_of, within_days, datetime.now(UTC))
    return [AlertFact(a.kind, a.occurred_at, _hearing(a.hearing) if a.hearing is not None else None,
                      claims_of(a.evidence, orr, ice, eoir)) for a in found]
