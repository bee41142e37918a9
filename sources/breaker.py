"""A per-source circuit breaker: closed → open after N consecutive failures → half-open probe → closed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("ucgw.breaker")

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


class CircuitBreaker:
    """Counts consecutive failures; while open, calls fail fast until `reset_seconds` pass."""

    def __init__(
        self, name: str, failure_threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> str:
        """CLOSED, OPEN or HALF_OPEN (an open breaker whose reset time has passed reads HALF_OPEN)."""
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            return HALF_OPEN
        return self._state

    @property
    def opened_at(self) -> float:
        """When the breaker last opened (its clock); tells one open period from the next."""
        return self._opened_at

    def allow(self) -> bool:
        """Whether a call may go to the backend now; in half-open state only one probe at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probe_in_flight:
            self._state = HALF_OPEN
            self._probe_in_flight = True
            log.info("breaker %s half-open: probing", self.name)
            return True
        return False

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        if self._state != CLOSED:
            log.info("breaker %s closed", self.name)
        self._state = CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def abandon(self) -> None:
        """The half-open probe ended with no outcome (cancelled): the next call may probe instead (else
        the breaker would wait for this one for ever, failing every call fast)."""
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """A call failed: count it and open the breaker at the threshold (or when a probe fails)."""
        self._failures += 1
        if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
            if self._state != OPEN:
                log.warning("breaker %s opened after %d consecutive failures", self.name, self._failures)
            self._state = OPEN
            self._opened_at = self._clock()
        self._probe_in_flight = False
