"""One request's state as the HTTP layer hands it along: one typed object in one ASGI scope entry, built by
the guard when it admits a request (or a websocket handshake with credentials) and read by the GraphQL view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.types import Scope

from rules.roles import Principal

if TYPE_CHECKING:
    from gateway.http.answer_memo import AnswerKey
    from resolvers.context import RequestContext
    from resolvers.prefetch_plans import PrefetchStart

REQUEST_STATE = "ucgw.request"  # the one ASGI scope entry the gateway adds


@dataclass(slots=True, eq=False)
class RequestState:
    """Who asked, by when it must be answered, and what the admission hooks prepared for the GraphQL view."""

    principal: Principal | None
    deadline: float = 0.0  # the `time.monotonic()` by which an admitted request must be answered
    request_id: str = ""  # the request's id (gateway/http/request_ids.py): its answer's, audit events', logs'
    answer_key: AnswerKey | None = None  # the request's answer may be stored under this key
    # ends the request's lead (`AnswerCache.lead`); the guard schedules it once the GraphQL app has finished
    answer_lead: Callable[[], None] | None = None
    prefetch: PrefetchStart | None = None  # the backend calls started before GraphQL ran
    context: RequestContext | None = None  # the request's GraphQL context, for `process_result` and release
    operation: str = "unknown"  # the metrics' operation-name label (gateway/http/metrics.py), when metrics are on
    status: int = 0  # the answer's HTTP status, set by whoever answers (the stored answer, the GraphQL view)
    errors: bool = False  # the answer held GraphQL errors
    request_error: bool = False  # the answer's errors came before execution (parse, validation, variables)
    registration: Callable[[], Awaitable[None]] | None = None  # stores the APQ document it sent, once valid
    media_type: str = "application/json"  # what the answer is sent as, chosen from its Accept header (bodies.py)


def request_state(scope: Scope) -> RequestState | None:
    """The state the guard put in `scope`; None for a request it did not admit with one (the GraphiQL page,
    a websocket handshake without credentials)."""
    return scope.get(REQUEST_STATE)
