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
import dataclasses
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from graphql import (
    GraphQLError,
    IntValueNode,
    ListValueNode,
    OperationType,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from starlette.datastructures import Headers
from strawberry.types import Info

from gateway.answer_cache import is_json, json_request
from gateway.fetcher import PendingCall
from gateway.guard import REQUEST_DEADLINE
from gateway.roles import Principal
from gateway.services import Services
from gateway.sources import Source
from resolvers.anumber import canonical_a_number

EARLY_KEY = "ucgw.early"  # ASGI scope entry: the request's EarlyStart
NUMBER_ARGUMENTS = {"child": "aNumber", "children": "aNumbers"}
MAX_AGE_ARGUMENT = "maxAgeSeconds"
# loop turns a started call needs before its request is on the wire: aiohttp (3.14) writes a request on its
# task's second turn (seen by timestamping the transport's writes); with fewer, the calls would wait for
# GraphQL's own work and start no earlier than without this
WRITE_TURNS = 2

PlanKey = tuple[str, str | None, str, bool]  # query text, operation name, role, scoped to field offices
Argument = tuple[bool, Any]  # (True, variable name) or (False, the literal's value)
EarlyKey = tuple[Source, float | None, str]  # source, max age, A-number


@dataclass(frozen=True, slots=True)
class Plan:
    """Where one query text's A-numbers and max age come from, and which sources it reads first."""

    root: str  # "child" or "children"
    numbers: Argument
    max_age: Argument | None
    sources: tuple[Source, ...]
    max_count: int = 1  # children: the longest list this text has run with (its cost grows with the list)


@dataclass
class EarlyStart:
    """One request's early calls, and the key under which its execution may teach a plan."""

    key: PlanKey
    plans: MutableMapping[PlanKey, Plan]
    deadline: float
    calls: dict[EarlyKey, PendingCall] = field(default_factory=dict)


class EarlyFetch:
    """The guard's early hook: starts a known query text's backend calls before GraphQL runs."""

    def __init__(self, services: Services, max_plans: int = 256) -> None:
        self.services = services
        self.plans: LRUCache[PlanKey, Plan] = LRUCache(maxsize=max_plans)
        self.requests = 0  # requests whose calls were started here
        self.records = 0  # (source, A-number) answers they were started for

    def facts(self) -> dict[str, int]:
        """Counters, for /readyz."""
        return {"plans": len(self.plans), "requests": self.requests, "records": self.records}

    async def __call__(self, scope: MutableMapping[str, Any], headers: Headers, body: bytes,
                       principal: Principal) -> None:
        if scope.get("method") != "POST" or not is_json(headers):
            return
        request = json_request(body)
        if request is None:
            return
        query, variables, operation_name = request
        key: PlanKey = (query, operation_name, principal.role, principal.field_offices is not None)
        deadline = scope[REQUEST_DEADLINE]  # the guard sets it before this hook
        start = scope[EARLY_KEY] = EarlyStart(key, self.plans, deadline)
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
    except GraphQLError:
        return None
    return numbers, None if age is None else float(age)


def _value(argument: Argument, variables: dict[str, Any]) -> Any:
    is_variable, value = argument
    return variables.get(value) if is_variable else value


def learn(info: Info[Any, None], count: int, sources: Sequence[Source]) -> None:
    """Note how the current root field's request gets its A-numbers (`count` of them), for early fetches of
    the same text. Call from `child`/`children` once the arguments passed and the caller was allowed."""
    start: EarlyStart | None = getattr(info.context, "early", None)
    if start is None or start.calls:
        return
    known = start.plans.get(start.key)
    if known is not None:
        if count > known.max_count:
            start.plans[start.key] = dataclasses.replace(known, max_count=count)
        return
    plan = _plan(info, count, sources)
    if plan is not None:
        start.plans[start.key] = plan


def _plan(info: Info[Any, None], count: int, sources: Sequence[Source]) -> Plan | None:
    raw = info._raw_info
    operation, node = raw.operation, raw.field_nodes[0]
    if (operation.operation is not OperationType.QUERY or len(raw.field_nodes) != 1 or node.directives
            or list(operation.selection_set.selections) != [node] or node.name.value not in NUMBER_ARGUMENTS):
        return None
    arguments = {a.name.value: a.value for a in node.arguments}
    numbers = _argument(arguments.get(NUMBER_ARGUMENTS[node.name.value]))
    if numbers is None:
        return None
    max_age = _argument(arguments[MAX_AGE_ARGUMENT]) if MAX_AGE_ARGUMENT in arguments else None
    if MAX_AGE_ARGUMENT in arguments and max_age is None:
        return None
    used = {value for is_variable, value in (numbers, max_age or (False, None)) if is_variable}
    definitions = operation.variable_definitions or ()
    if any(d.default_value is not None or d.variable.name.value not in used for d in definitions):
        return None  # another variable could change the answer's cost; a default is not in the request
    return Plan(node.name.value, numbers, max_age, tuple(sources), count)


def _argument(node: ValueNode | None) -> Argument | None:
    """A variable's name, or a literal string, integer or list of strings; None for anything else."""
    if isinstance(node, VariableNode):
        return True, node.name.value
    if isinstance(node, StringValueNode):
        return False, node.value
    if isinstance(node, IntValueNode):
        return False, int(node.value)
    if isinstance(node, ListValueNode) and all(isinstance(v, StringValueNode) for v in node.values):
        return False, [v.value for v in node.values]  # type: ignore[attr-defined]
    return None

