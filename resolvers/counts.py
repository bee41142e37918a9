"""Counts over the whole world (one full scan per request): backlog, alerts and discrepancies per office."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import strawberry

from resolvers.alerts import AlertFact, AlertKind
from resolvers.backlog import AgeBucket, BacklogEntry, BacklogStage
from resolvers.discrepancies import Discrepancy, DiscrepancyKind
from resolvers.evidence import Severity


@strawberry.type
class StageCount:
    stage: BacklogStage
    count: int


@strawberry.type
class BucketCount:
    bucket: AgeBucket
    count: int


@strawberry.type(description="Backlog counts by NTA stage and by days since release.")
class BacklogCounts:
    field_office: str | None = strawberry.field(description="ICE's responsible office; null for all offices.")
    total: int
    by_stage: list[StageCount]
    by_age_bucket: list[BucketCount]


@strawberry.type
class AlertCount:
    kind: AlertKind
    count: int


@strawberry.type
class DiscrepancyCount:
    kind: DiscrepancyKind
    total: int
    high: int
    medium: int
    low: int


@dataclass
class Tally:
    """Running counts of one field office (or of all)."""

    children: int = 0
    stages: Counter[BacklogStage] = field(default_factory=Counter)
    buckets: Counter[AgeBucket] = field(default_factory=Counter)
    open_alerts: Counter[AlertKind] = field(default_factory=Counter)
    new_alerts: Counter[AlertKind] = field(default_factory=Counter)
    discrepancies: Counter[tuple[DiscrepancyKind, Severity]] = field(default_factory=Counter)

    def add(self, entry: BacklogEntry | None, alerts: Iterable[AlertFact], discrepancies: Iterable[Discrepancy],
            new_since: datetime, as_of: datetime) -> None:
        """Count one child."""
        self.children += 1
        if entry is not None:
            self.stages[entry.stage] += 1
            if entry.bucket is not None:
                self.buckets[entry.bucket] += 1
        for alert in alerts:
            self.open_alerts[alert.kind] += 1
            if alert.occurred_at is not None and new_since <= alert.occurred_at <= as_of:
                self.new_alerts[alert.kind] += 1
        for d in discrepancies:
            self.discrepancies[(d.kind, d.severity)] += 1

    def backlog(self, office: str | None) -> BacklogCounts:
        """The backlog counts (every stage and bucket listed, zeros included)."""
        return BacklogCounts(
            field_office=office, total=sum(self.stages.values()),
            by_stage=[StageCount(stage=s, count=self.stages[s]) for s in BacklogStage],
            by_age_bucket=[BucketCount(bucket=b, count=self.buckets[b]) for b in AgeBucket],
        )

    def alert_counts(self, new: bool) -> list[AlertCount]:
        """Alerts by kind (every kind listed)."""
        counter = self.new_alerts if new else self.open_alerts
        return [AlertCount(kind=k, count=counter[k]) for k in AlertKind]

    def discrepancy_counts(self) -> list[DiscrepancyCount]:
        """Discrepancies by kind and severity (every kind listed)."""
        out = []
        for kind in DiscrepancyKind:
            sev = {s: self.discrepancies[(kind, s)] for s in Severity}
            out.append(DiscrepancyCount(kind=kind, total=sum(sev.values()), high=sev[Severity.HIGH],
                                        medium=sev[Severity.MEDIUM], low=sev[Severity.LOW]))
        return out
