"""The NTA backlog's GraphQL enums and one child's entry from the fetched records (rules.nta_backlog judges)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from rules import nta_backlog
from rules.nta_backlog import AgeBucket, BacklogEntry, BacklogStage
from sources.fetcher import Fetched

__all__ = ["AgeBucket", "BacklogEntry", "BacklogStage", "backlog_entry"]

strawberry.enum(BacklogStage, description="How far a backlogged NTA got: not issued, issued but not served, served "
                                          "but not filed.")  # the rules' own enums, shown as they are
strawberry.enum(AgeBucket, description="Days since release to the sponsor.")


def backlog_entry(orr: Fetched, ice: Fetched, as_of: datetime) -> BacklogEntry | None:
    """The child's backlog entry as of `as_of`, or None when the child was not in the backlog then."""
    return nta_backlog.backlog_entry(orr.record, ice.record, as_of)
