"""Query complexity limits: depth, aliases and cost, checked before any resolver runs.

One pass over the operation, with each fragment measured once (memoised), so a "fragment bomb"
(fragments spreading the next one twice, 2^n fields from a few hundred tokens) is measured in linear
time. strawberry's QueryDepthLimiter and MaxAliasesLimiter expand fragments without memoising and
take seconds on such a document; these limits replace them.

Cost: every field with a sub-selection costs 1 plus its sub-selection; list fields sized by an argument
(`aNumbers`: its length, `first`/`last`: its value, literal or variable) multiply that by the size.
Leaf fields are free (they touch no backend).

Introspection (`__schema`, `__type`) is measured too: its aliases and cost count as any field's, so a
document cannot hide thousands of aliased `__schema` walks from the limits. Its depth is kept apart
(`introspection_depth`) and has a limit of its own, `INTROSPECTION_MAX_DEPTH`: the depth of the standard
introspection query (graphql-core's `get_introspection_query`, which GraphiQL and code generators send),
which is deeper than an ordinary query may be (its type references nest `ofType` eight times), and
nothing deeper.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_introspection_query,
    parse,
)
from graphql.utilities import get_operation_ast, value_from_ast_untyped
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError

from resolvers.errors import BAD_USER_INPUT

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED = "GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"
LIST_SIZE_ARGUMENTS = ("aNumbers",)
COUNT_ARGUMENTS = ("first", "last")
INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@dataclass(frozen=True)
class Complexity:
    """What one operation asks of the gateway."""

    depth: int
    aliases: int
    cost: int
    introspection_depth: int = 0  # depth of the deepest `__schema`/`__type` selection (from the root)


def too_complex(message: str, **facts: Any) -> GraphQLError:
    """A rejection with code QUERY_TOO_COMPLEX and the measured facts."""
    return GraphQLError(message, extensions={"code": QUERY_TOO_COMPLEX, **facts})


class _Measure:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any],
                 defaults: Mapping[str, Any]) -> None:
        self.fragments = fragments
        self.variables = variables
        self.defaults = defaults
        self.memo: dict[str, Complexity] = {}
        self.active: set[str] = set()
        self.read_variables = False  # whether the result depends on the request's variables

    def selection_set(self, node: SelectionSetNode | None) -> Complexity:
        depth = aliases = cost = intro = 0
        for part in self._parts(node):
            depth, aliases, cost = max(depth, part.depth), aliases + part.aliases, cost + part.cost
            intro = max(intro, part.introspection_depth)
        return Complexity(depth, aliases, cost, intro)

    def _parts(self, node: SelectionSetNode | None) -> Iterator[Complexity]:
        for sel in node.selections if node else ():
            if isinstance(sel, FieldNode):
                yield self.field(sel)
            elif isinstance(sel, InlineFragmentNode):
                yield self.selection_set(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode):
                yield self.fragment(sel.name.value)

    def fragment(self, name: str) -> Complexity:
        if name in self.memo:
            return self.memo[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.active:  # invalid documents are rejected by validation anyway
            return Complexity(0, 0, 0)
        self.active.add(name)
        self.memo[name] = result = self.selection_set(fragment.selection_set)
        self.active.discard(name)
        return result

    def field(self, node: FieldNode) -> Complexity:
        alias = 1 if node.alias else 0
        if node.selection_set is None:
            return Complexity(0, alias, 0)
        inner = self.selection_set(node.selection_set)
        cost = (1 + inner.cost) * self.size(node)
        if node.name.value in INTROSPECTION_ROOTS:  # its depth counts against the introspection limit only
            return Complexity(0, inner.aliases + alias, cost, max(inner.depth, inner.introspection_depth) + 1)
        return Complexity(inner.depth + 1, inner.aliases + alias, cost, inner.introspection_depth)

    def size(self, node: FieldNode) -> int:
        """How many elements a list field will return, from its sizing argument (1 when unsized)."""
        for arg in node.arguments or ():
            name = arg.name.value
            if name not in LIST_SIZE_ARGUMENTS and name not in COUNT_ARGUMENTS:
                continue
            if isinstance(arg.value, VariableNode):
                self.read_variables = True
                var = arg.value.name.value
                value = self.variables.get(var, self.defaults.get(var))
            elif isinstance(arg.value, ListValueNode | IntValueNode):
                value = value_from_ast_untyped(arg.value)
            else:
                value = None
            if name in LIST_SIZE_ARGUMENTS:
                n = len(value) if isinstance(value, list) else 1
            else:
                n = value if isinstance(value, int) and not isinstance(value, bool) else 1
            return max(1, n)
        return 1


def measure(document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None) -> Complexity:
    """Depth, aliases and cost of the operation that would run."""
    return _measure(document, operation_name, variables)[0]


def _measure(document: DocumentNode, operation_name: str | None,
             variables: Mapping[str, Any] | None) -> tuple[Complexity, bool]:
    """`measure`, and whether the result depends on the variables (a list size given by a variable)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return Complexity(0, 0, 0), False
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    m = _Measure(fragments, variables or {}, _variable_defaults(operation))
    return m.selection_set(operation.selection_set), m.read_variables


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    return {d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or () if d.default_value is not None}


def _introspection_max_depth() -> int:
    """The depth of the standard introspection query with every option on (the deepest it comes)."""
    query = get_introspection_query(descriptions=True, specified_by_url=True, directive_is_repeatable=True,
                                    schema_description=True, input_value_deprecation=True)
    return measure(parse(query), None, None).introspection_depth


INTROSPECTION_MAX_DEPTH = _introspection_max_depth()


def check(c: Complexity, max_depth: int, max_aliases: int, max_cost: int) -> GraphQLError | None:
    """The first limit `c` breaks, as an error; None when within every limit (0 disables a limit; the
    introspection depth limit is fixed)."""
    if max_depth and c.depth > max_depth:
        return too_complex(f"query depth {c.depth} exceeds the limit of {max_depth}",
                           limit="depth", value=c.depth, max=max_depth)
    if c.introspection_depth > INTROSPECTION_MAX_DEPTH:
        return too_complex(f"introspection depth {c.introspection_depth} exceeds the limit of "
                           f"{INTROSPECTION_MAX_DEPTH} (that of the standard introspection query)",
                           limit="introspectionDepth", value=c.introspection_depth, max=INTROSPECTION_MAX_DEPTH)
    if max_aliases and c.aliases > max_aliases:
        return too_complex(f"query uses {c.aliases} aliases; the limit is {max_aliases}",
                           limit="aliases", value=c.aliases, max=max_aliases)
    if max_cost and c.cost > max_cost:
        return too_complex(f"query cost {c.cost} exceeds the limit of {max_cost} (a list costs per element "
                           f"it asks for: per A-number of `children`, per `first` of a page; ask for fewer "
                           f"elements or fewer fields)",
                           limit="cost", value=c.cost, max=max_cost)
    return None


AMBIGUOUS = "Must provide operation name if query contains multiple operations."  # graphql-js's wording


class AmbiguousOperation(GraphQLError, CannotGetOperationTypeError):
    """A document of several operations with no `operationName`: GraphQL requires the one to run be named
    (strawberry would run the first). Raised before execution: over HTTP strawberry lets this kind of error
    through to the view, which answers 400; on a websocket it is the operation's GraphQL error (BAD_REQUEST)."""

    def __init__(self) -> None:
        GraphQLError.__init__(self, AMBIGUOUS, extensions={"code": "BAD_REQUEST"})
        self.operation_name = None

    def as_http_error_reason(self) -> str:
        """The HTTP 400's message."""
        return AMBIGUOUS


def _named_or_single(ctx: Any) -> bool:
    """False for a document of several operations when the request named none (strawberry keeps the name
    the request gave, if any, in `_provided_operation_name`)."""
    if getattr(ctx, "_provided_operation_name", None) is not None:
        return True
    return sum(isinstance(d, OperationDefinitionNode) for d in ctx.graphql_document.definitions) <= 1


class QueryLimits(SchemaExtension):
    """Rejects an operation over the depth, alias or cost limit before execution starts, and a document of
    several operations that does not name the one to run (`AmbiguousOperation`).

    With a `cache` (shared by the requests of one schema), the measure of an operation that does not
    depend on its variables is kept by query text and operation name and not taken again.
    """

    def __init__(self, max_depth: int, max_aliases: int, max_cost: int,
                 cache: MutableMapping[tuple[str, str | None], Complexity] | None = None) -> None:
        self.max_depth, self.max_aliases, self.max_cost = max_depth, max_aliases, max_cost
        self.cache = cache

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.result is None:
            if not _named_or_single(ctx):
                raise AmbiguousOperation
            key = (ctx.query, ctx.operation_name) if self.cache is not None and ctx.query is not None else None
            complexity = self.cache.get(key) if key is not None and self.cache is not None else None
            if complexity is None:
                complexity, by_variables = _measure(ctx.graphql_document, ctx.operation_name, ctx.variables)
                if key is not None and self.cache is not None and not by_variables:
                    self.cache[key] = complexity
            error = check(complexity, self.max_depth, self.max_aliases, self.max_cost)
            if error is not None:
                ctx.result = ExecutionResult(data=None, errors=[error])
        yield


class RequestErrorCodes(SchemaExtension):
    """Gives every error of the request itself a code, as the resolvers' errors have one.

    A document that does not parse: GRAPHQL_PARSE_FAILED (QUERY_TOO_COMPLEX when strawberry's
    MaxTokensLimiter stopped the parser); one that fails validation: GRAPHQL_VALIDATION_FAILED; variables
    that do not fit their declared types: BAD_USER_INPUT. With the parser cache a syntax error is raised
    from the parsing hook and passes through this hook as an exception; without it, it arrives in the
    result. Both are tagged. Errors that carry a code keep it.
    """

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLSyntaxError as error:
            _tag(error, syntax_code(error))
            raise
        for error in getattr(self.execution_context.result, "errors", None) or ():
            if isinstance(error, GraphQLSyntaxError):
                _tag(error, syntax_code(error))
            elif error.path is None and isinstance(error.original_error, GraphQLError | None):
                _tag(error, BAD_USER_INPUT)  # variables that do not coerce

    def on_validate(self) -> Iterator[None]:
        yield
        for error in self.execution_context.pre_execution_errors or ():  # the validation's own, here
            _tag(error, GRAPHQL_VALIDATION_FAILED)


def syntax_code(error: GraphQLSyntaxError) -> str:
    """QUERY_TOO_COMPLEX for a document stopped at the token limit, else GRAPHQL_PARSE_FAILED."""
    return QUERY_TOO_COMPLEX if "more than" in error.message and "tokens" in error.message else GRAPHQL_PARSE_FAILED


def _tag(error: GraphQLError, code: str) -> None:
    """Set `code` (and `limit` for the token limit) unless the error has a code already."""
    if (error.extensions or {}).get("code"):
        return
    extra = {"limit": "tokens"} if code == QUERY_TOO_COMPLEX else {}
    error.extensions = {**(error.extensions or {}), "code": code, **extra}
