"""What a status query's text teaches the early fetch (`gateway/http/prefetch.py`): where its A-numbers and
max age come from and which sources it reads, keyed by query text, operation name, role and field-office
scope.

The root resolvers `child` and `children` note that (`learn`) once their arguments have passed and the
caller was allowed in; for a later request with the same key, the HTTP layer starts those backend calls
before GraphQL's own work begins and hands them to the request's context in a `PrefetchStart`. Only what
the execution will certainly ask is learned: a text that passed validation and the complexity limits; one
root field with no directives; variables only for the A-number(s) and `maxAgeSeconds`, none with a
default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import IntValueNode, ListValueNode, OperationType, StringValueNode, ValueNode, VariableNode
from strawberry.types import Info

from resolvers.upstream.raw_info import graphql_resolve_info
from sources.fetcher import PendingCall
from sources.systems import Source

NUMBER_ARGUMENTS = {"child": "aNumber", "children": "aNumbers"}
MAX_AGE_ARGUMENT = "maxAgeSeconds"
PlanKey = tuple[str, str | None, str, bool]  # query text, operation name, role, scoped to field offices
Argument = tuple[bool, Any]  # (True, variable name) or (False, the literal's value)
PrefetchKey = tuple[Source, float | None, str]  # source, max age, A-number


@dataclass(frozen=True, slots=True)
class Plan:
    """Where one query text's A-numbers and max age come from, and which sources it reads first."""

    root: str  # "child" or "children"
    numbers: Argument
    max_age: Argument | None
    sources: tuple[Source, ...]
    max_count: int = 1  # children: the longest list this text has run with (its cost grows with the list)


@dataclass
class PrefetchStart:
    """One request's early calls, and the key under which its execution may teach a plan."""

    key: PlanKey
    plans: MutableMapping[PlanKey, Plan]
    deadline: float
    calls: dict[PrefetchKey, PendingCall] = field(default_factory=dict)


def learn(info: Info[Any, None], count: int, sources: Sequence[Source]) -> None:
    """Note how the current root field's request gets its A-numbers (`count` of them), for early fetches of
    the same text. Call from `child`/`children` once the arguments passed and the caller was allowed."""
    start: PrefetchStart | None = getattr(info.context, "early", None)
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
    raw = graphql_resolve_info(info)
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

