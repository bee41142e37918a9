"""The GraphQL schema: queries over children, assembled with the gateway's schema extensions."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any

import strawberry
from cachetools import LRUCache
from graphql import FragmentDefinitionNode, GraphQLError, get_operation_ast
from strawberry.extensions import (
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, Info
from strawberry.types.graphql import OperationType

from resolvers.anumber import canonical_a_number
from resolvers.audit_query import AuditQuery
from resolvers.audit_reads import AuditTrail
from resolvers.child import Child, needed_sources, prefetch_children, resolve_child, selected_names
from resolvers.complexity import Complexity, QueryLimits, RequestErrorCodes
from resolvers.context import RequestContext
from resolvers.errors import bad_input
from resolvers.health import OperatorQuery, SourceStatus, source_statuses
from resolvers.introspection import IntrospectionByCapability
from resolvers.masking import InternalErrorMask
from resolvers.oversight import OversightQuery
from resolvers.permissions import (
    NOT_FOUND,
    capability_field,
    not_in_scope,
    office_scope_error,
    principal_of,
    scoped,
)
from resolvers.prefetch_plans import learn
from resolvers.safety import SafetyMutation, SafetyQuery
from resolvers.subscriptions import PushSubscription, StreamAudit
from resolvers.upstream.execution_context import PlainFieldExecutor
from resolvers.upstream.extension_hooks import HookRunner
from resolvers.upstream.hide_suggestions import without_suggestions
from resolvers.upstream.validate_document import validate_document
from resolvers.viewer import ViewerQuery
from rules.roles import Capability
from sources.settings import Settings
from sources.systems import Source

STORABLE_ROOTS = frozenset({"child", "children", "__typename"})

log = logging.getLogger("ucgw.app")  # the name unexpected errors were always logged under


def _max_age(value: int | None) -> float | None:
    if value is not None and value < 0:
        raise bad_input("maxAgeSeconds must be 0 or more (0 = fetch from the source now)")
    return None if value is None else float(value)


async def _read_child(info: Info[RequestContext, None], a_number: str, max_age: float | None,
                      sources: list[Source]) -> Child | GraphQLError | None:
    """One child for the caller: None when unknown; for a caller scoped to field offices, one NOT_FOUND error
    both when unknown and outside the caller's offices (security #7: the answer is no existence oracle).

    Every outcome is reported to the request's audit recorder.
    """
    reads = info.context.reads
    child = await resolve_child(info, a_number, max_age, sources)
    reads.found(a_number, child is not None)
    if child is None:
        return not_in_scope() if scoped(info) else None
    error = await office_scope_error(info, a_number, max_age)
    if error is not None:
        if (error.extensions or {}).get("code") == NOT_FOUND:
            reads.forbidden(a_number)
        else:
            reads.scope_unverified(a_number)
        return error
    return child


def _sources_for(info: Info[RequestContext, None]) -> list[Source]:
    """The sources the selection needs, plus ICE when the caller is scoped to field offices."""
    sources = needed_sources(info)
    principal = principal_of(info)
    if principal is not None and principal.field_offices is not None and Source.ICE not in sources:
        sources = [s for s in Source if s in sources or s is Source.ICE]
    return sources


@strawberry.type
class StatusQuery:
    """One child, a list of children, and the sources' health."""

    @strawberry.field(**capability_field("One child by A-number (any common typed form); null when no "
                                         "system knows it.", Capability.CHILD_STATUS))
    async def child(
        self,
        info: Info[RequestContext, None],
        a_number: strawberry.ID,
        max_age_seconds: int | None = strawberry.UNSET,
    ) -> Child | None:
        max_age = _max_age(None if max_age_seconds is strawberry.UNSET else max_age_seconds)
        canonical = canonical_a_number(str(a_number))
        sources = _sources_for(info)
        learn(info, 1, sources)
        outcome = await _read_child(info, canonical, max_age, sources)
        if isinstance(outcome, GraphQLError):
            raise outcome
        return outcome

    @strawberry.field(**capability_field("Up to 100 children, in the order asked; null for A-numbers no "
                                         "system knows.", Capability.CHILD_STATUS))
    async def children(
        self,
        info: Info[RequestContext, None],
        a_numbers: list[strawberry.ID],
        max_age_seconds: int | None = strawberry.UNSET,
    ) -> list[Child | None]:
        limit = info.context.services.settings.max_children
        if len(a_numbers) > limit:
            raise bad_input(f"children takes at most {limit} A-numbers per call (got {len(a_numbers)})")
        max_age = _max_age(None if max_age_seconds is strawberry.UNSET else max_age_seconds)
        canonical = [canonical_a_number(str(a)) for a in a_numbers]
        sources = _sources_for(info)
        learn(info, len(canonical), sources)
        await prefetch_children(info, canonical, max_age, sources)
        # every record is at hand now, so each read completes without waiting: awaited in turn, they need no
        # task each. An error in the list becomes null plus an error at that element's path.
        return [await _read_child(info, a, max_age, sources) for a in canonical]

    @strawberry.field(**capability_field("Health of each system of record as the gateway sees it.",
                                         Capability.HEALTH_READ))
    def sources(self, info: Info[RequestContext, None]) -> list[SourceStatus] | None:
        return source_statuses(info.context.services)


class ValidationByText(SchemaExtension):
    """Validation verdicts cached by query text and rule set, in a cache owned by one schema.

    strawberry's ValidationCache keys its LRU by the parsed document, and graphql-core hashes a document
    by walking every node of it on each lookup: a cost per request that grows with the query. The parser
    cache already maps one text to one document, so the text (hashed in one pass) is the key here.
    """

    def __init__(self, cache: LRUCache[tuple[str, tuple[Any, ...]], list[GraphQLError]],
                 hide_suggestions: bool = False) -> None:
        self.cache = cache
        self.hide_suggestions = hide_suggestions  # production: no "Did you mean" (it maps the schema for strangers)

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.query is not None and ctx.graphql_document is not None:
            key = (ctx.query, tuple(ctx.validation_rules))
            errors = self.cache.get(key)
            if errors is None:
                errors = self.cache[key] = validate_document(ctx.schema._schema, ctx.graphql_document,
                                                             ctx.validation_rules, self.hide_suggestions)
            ctx.pre_execution_errors = errors
        yield


class AnswerEligibility(SchemaExtension):
    """Decides, before execution, whether a request's answer may be stored (gateway/http/answer_memo.py): a query
    whose root fields are only `child`/`children`, whose answers depend on nothing but the records they read
    and the caller's view. Any other operation runs without recording what it reads."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        context = ctx.context
        if getattr(context, "answer", None) is not None and not self._storable(ctx):
            context.answer.release()  # identical requests waiting for this one run on their own
            context.answer = None
        yield

    @staticmethod
    def _storable(ctx: Any) -> bool:
        if ctx.operation_type is not OperationType.QUERY or ctx.graphql_document is None:
            return False
        operation = get_operation_ast(ctx.graphql_document, ctx.operation_name)
        if operation is None:
            return False
        fragments = {d.name.value: d for d in ctx.graphql_document.definitions
                     if isinstance(d, FragmentDefinitionNode)}
        roots = selected_names([operation.selection_set], fragments)
        return bool(roots) and roots <= STORABLE_ROOTS


class ResponseWarnings(SchemaExtension):
    """Adds `extensions.warnings` when a section was served stale because its source failed, or while this
    replica cannot reach the shared Redis (its answers then come from its own caches: docs/redis.md)."""

    def get_results(self) -> dict[str, Any]:
        ctx = self.execution_context.context
        warnings = list(getattr(ctx, "warnings", None) or ())
        redis_down = getattr(getattr(ctx, "services", None), "redis_down", None)
        if redis_down is not None and redis_down():
            warnings.append(SHARED_STATE_WARNING)
        return {"warnings": warnings} if warnings else {}


SHARED_STATE_WARNING = {
    "source": "REDIS", "code": "SHARED_STATE_UNAVAILABLE",
    "message": "the replicas' shared cache is unreachable: this answer comes from one replica's own cache, "
               "and a change another replica read may not show yet",
}


# Each feature contributes its root fields here (one class per feature module).
QUERIES: tuple[type, ...] = (StatusQuery, AuditQuery, OversightQuery, SafetyQuery, OperatorQuery, ViewerQuery)
MUTATIONS: tuple[type, ...] = (SafetyMutation,)
SUBSCRIPTIONS: tuple[type, ...] = (PushSubscription,)

Query = merge_types("Query", QUERIES)
Mutation = merge_types("Mutation", MUTATIONS) if MUTATIONS else None
Subscription = merge_types("Subscription", SUBSCRIPTIONS) if SUBSCRIPTIONS else None


class GatewaySchema(strawberry.Schema):
    """strawberry's schema, logging only unexpected errors: type, path and stack, never the message (it may
    hold record values). Errors the resolvers raise on purpose (GraphQLError) are the caller's, not a fault."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError):
                continue
            stack = "".join(traceback.format_tb(original.__traceback__))
            log.error("unexpected %s at path %s\n%s", type(original).__name__, error.path, stack.rstrip())

    def create_extensions_runner(self, execution_context: ExecutionContext,
                                 extensions: list[SchemaExtension]) -> SchemaExtensionsRunner:
        """strawberry's runner, its hooks' factories made once per extension class (`HookRunner`)."""
        return HookRunner(execution_context=execution_context, extensions=extensions)


def build_schema(settings: Settings | None = None,
                 schema_class: type[GatewaySchema] = GatewaySchema) -> strawberry.Schema:
    """The schema with its extensions; limits come from `settings` (defaults when None). `schema_class` is the
    federation subgraph's for `UCGW_FEDERATION` (resolvers/federation.py `build_subgraph`).

    Order matters: error masking is outermost (last on the way out); the complexity limits run when
    execution would start and refuse it; the audit trail is written when execution ends. Every entry is
    a class or a factory: an extension instance would be shared by concurrent requests.
    """
    settings = settings or Settings()
    show_type = not settings.production
    validated: LRUCache[tuple[str, tuple[Any, ...]], list[GraphQLError]] = LRUCache(maxsize=256)
    measured: LRUCache[tuple[str, str | None], Complexity] = LRUCache(maxsize=256)
    extensions: list[Any] = [
        lambda: InternalErrorMask(show_type=show_type),
        RequestErrorCodes,
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=256),  # the parse cache itself is shared at module level
        *([IntrospectionByCapability] if settings.production else []),  # before validation: it adds a rule
        lambda: ValidationByText(validated, settings.production),  # same text and rules, same verdict
        lambda: QueryLimits(settings.max_query_depth, settings.max_aliases, settings.max_query_cost, measured),
        AuditTrail,
        AnswerEligibility,
        StreamAudit,
        ResponseWarnings,
    ]
    executor = PlainFieldExecutor if settings.inline_plain_fields else None
    if settings.production:
        executor = without_suggestions(executor or StrawberryGraphQLCoreExecutionContext)
    return schema_class(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions,
                        execution_context_class=executor)
