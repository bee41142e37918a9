"""Early fetches: a repeated status query's backend calls go out as soon as the request is admitted.

Before GraphQL sees a request, strawberry parses and validates it, runs its extensions and the root
resolver: about a millisecond before the first backend call, added in full to every cold answer. A
caseworker's screen or a partner app sends the same query text again and again with other variables,
so once a text has run, the gateway knows where its A-numbers come from and which sources it reads.

The root resolvers `child` and `children` note that (`learn`) by query text, operation name, role and
field-office scope, once their arguments have passed and the caller was allowed in. For a later request
with the same key, the guard's early hook (`EarlyFetch`, after authentication, the rate limit and the
body limit) reads the A-numbers from the request's variables, starts the calls the execution would make
(`SourceFetcher.start`: fresh cache entries need none, calls in flight are joined) and lets them go out
before GraphQL's own work begins. The request's context then takes those calls' answers as its own
(`RequestContext.ready`/`fetch`/`prefetch`): the same records, batches and counts as without this,
only sooner.

Only what the execution will certainly ask is started: a text learned after it passed validation and the
complexity limits; one root field with no directives; variables only for the A-number(s) and
`maxAgeSeconds`, none with a default; values that the resolver would accept as they are (strings that
are valid A-numbers, a list no longer than one that already ran, a non-negative integer age). Anything
else runs as before, with no early call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cachetools import LRUCache
from starlette.datastructures import Headers
from starlette.types import Scope

from gateway.http.answer_memo import is_json, json_request
from gateway.http.request_state import RequestState
from resolvers.prefetch_plans import Argument, Plan, PlanKey, PrefetchStart
from rules.anumber import InvalidANumber, canonical_a_number
from sync.services import Services

# loop turns a started call needs before its request is on the wire: aiohttp (3.14) writes a request on its
# task's second turn (seen by timestamping the transport's writes); with fewer, the calls would wait for
# GraphQL's own work and start no earlier than without this
WRITE_TURNS = 2


class Prefetcher:
    """The guard's early hook: starts a known query text's backend calls before GraphQL runs."""

    def __init__(self, services: Services, max_plans: int = 256) -> None:
        self.services = services
        self.plans: LRUCache[PlanKey, Plan] = LRUCache(maxsize=max_plans)
        self.requests = 0  # requests whose calls were started here
        self.records = 0  # (source, A-number) answers they were started for

    def facts(self) -> dict[str, int]:
        """Counters, for /readyz."""
        return {"plans": len(self.plans), "requests": self.requests, "records": self.records}

    async def __call__(self, scope: Scope, state: RequestState, headers: Headers, body: bytes) -> None:
        if scope.get("method") != "POST" or not is_json(headers):
            return
        request = json_request(body)
        if request is None:
            return
        query, variables, operation_name = request
        principal = state.principal
        assert principal is not None  # the guard admits a request only with one
        key: PlanKey = (query, operation_name, principal.role, principal.field_offices is not None)
        deadline = state.deadline
        start = state.prefetch = PrefetchStart(key, self.plans, deadline)
        plan = self.plans.get(key)
        if plan is None:
            return
        wanted = _arguments(plan, variables or {})
        if wanted is None:
            return
        numbers, max_age = wanted
        for source in plan.sources:
            for a, call in self.services.fetchers[source].start(numbers, max_age, deadline).items():
                start.calls[(source, max_age, a)] = call
        if start.calls:
            self.requests += 1
            self.records += len(start.calls)
            for _ in range(WRITE_TURNS):  # the calls' requests are written before GraphQL's own work
                await asyncio.sleep(0)


def _arguments(plan: Plan, variables: dict[str, Any]) -> tuple[list[str], float | None] | None:
    """The canonical A-numbers and max age this request's execution will use; None when unsure."""
    raw = _value(plan.numbers, variables)
    if plan.root == "child":
        raw = [raw]
    if not isinstance(raw, list) or not raw or len(raw) > plan.max_count or not all(isinstance(a, str) for a in raw):
        return None
    age = None if plan.max_age is None else _value(plan.max_age, variables)
    if age is not None and (type(age) is not int or age < 0):
        return None
    try:
        numbers = [canonical_a_number(a) for a in raw]
    except InvalidANumber:
        return None
    return numbers, None if age is None else float(age)


def _value(argument: Argument, variables: dict[str, Any]) -> Any:
    is_variable, value = argument
    return variables.get(value) if is_variable else value
