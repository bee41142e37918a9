"""graphql-core's executor with plain fields completed inline.

A full child status resolves ~170 fields, and a `children` batch of 100 about 17,000; most are plain
attributes of the section objects (`Location.status`, `Address.city`, ...). For each of them graphql-core
builds a resolve-info object and calls strawberry's wrapper, which calls `getattr`, then completes the
value through several generic steps. `PlainFieldExecutor` completes such fields directly: `getattr`,
the type's own output coercion for scalars and enums, lists item by item, and nested objects the same way.

Inline means a strawberry field without arguments whose value is one of:
- an attribute read with `getattr` (a "basic" field: no resolver, no extension);
- such an attribute restricted to a capability (`resolvers.permissions.restricted_field`), when the
  caller holds the capability; a caller without it goes through the permission extension (null, a
  FORBIDDEN error and the audit record of the denial);
- a value computed from (source, context, path) by a function given in the field's metadata
  (`computed_inline`): `Provenance.ageSeconds` and `cacheStatus` (the function may record the value's
  path, an open value of a stored answer; recording is keyed by path, so doing it twice is harmless) and
  the Child sections (`location`, ...) whose records are all at hand; a function that raises sends the
  field to its resolver;
and whose type is a scalar, an enum, or an object type made only of such fields (lists and non-null of
these included). Everything else (root fields, sections still waiting for a source, fields a permission
refuses, `__typename` at the top) goes through graphql-core's `execute_field` unchanged. Anything unusual
on the inline path (a null where the schema forbids one, a value the scalar refuses, an exception, a
deferred fragment, a capability the caller lacks deeper down) hands the whole field back to
`execute_field`, which then resolves it, raises and locates the error exactly as before.
tests/test_execution.py compares answers with graphql-core's own executor over HTTP.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from graphql import (
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.permission import PermissionExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway.roles import Capability
from resolvers.permissions import Requires, holds

BACKREF = "strawberry-definition"
COMPUTE = "ucgw.compute"  # strawberry field metadata: the (source, context, path) function of the value

Compute = Callable[[Any, Any, Path], Any]
# (value, its path when a computed field lies below, the request's context) → the completed value
Completer = Callable[[Any, Path | None, Any], Any]


def computed_inline(compute: Compute) -> dict[str, Compute]:
    """Metadata for a `strawberry.field` that the inline executor completes with `compute(root, context,
    path)` instead of its resolver. `compute` returns what the resolver would return, or raises and the
    resolver runs; its side effects must be harmless to repeat."""
    return {COMPUTE: compute}


class _Slow(Exception):
    """The value needs graphql-core's full completion (it is an error to report, or of an unusual kind)."""


@dataclass(frozen=True, slots=True)
class _Plain:
    """How one field is completed inline."""

    attribute: str  # read with getattr, unless `compute` is set
    compute: Compute | None
    output: GraphQLOutputType
    capability: Capability | None  # the caller must hold it, else graphql-core resolves the field


def _restriction(definition: Any) -> Capability | None:
    """The capability of a field whose only extension is one `Requires` permission; else raises `_Slow`."""
    extensions = definition.extensions
    if len(extensions) != 1 or not isinstance(extensions[0], PermissionExtension):
        raise _Slow
    extension = extensions[0]
    if extension.fail_silently or len(extension.permissions) != 1 or type(extension.permissions[0]) is not Requires:
        raise _Slow
    return extension.permissions[0].capability


def _plain(field: Any) -> _Plain | None:
    """How a strawberry field is completed inline, or None when graphql-core must resolve it."""
    definition = (field.extensions or {}).get(BACKREF)
    if definition is None or field.args:
        return None
    try:
        if definition.base_resolver is not None:
            compute = (definition.metadata or {}).get(COMPUTE)
            if compute is None or definition.extensions:
                return None
            return _Plain(definition.python_name, compute, field.type, None)
        if getattr(definition, "default_resolver", None) is not getattr:
            return None
        capability = _restriction(definition) if definition.extensions else None
    except _Slow:
        return None
    return _Plain(str(definition.python_name), None, field.type, capability)


@functools.lru_cache(maxsize=1024)
def _inline_type(output: GraphQLOutputType) -> bool:
    """True when a value of this type completes without suspending and without resolvers of note."""
    named = get_named_type(output)
    if is_leaf_type(named):
        return True
    if not isinstance(named, GraphQLObjectType) or named.is_type_of is not None:
        return False
    plains = [_plain(f) for f in named.fields.values()]
    return all(p is not None and _inline_type(p.output) for p in plains)


@functools.lru_cache(maxsize=1024)
def _needs_path(output: GraphQLOutputType) -> bool:
    """True when a computed field (which is given its path) lies within a value of this inline type."""
    named = get_named_type(output)
    if not isinstance(named, GraphQLObjectType):
        return False
    return any(p.compute is not None or _needs_path(p.output) for p in _inline_fields(named).values())


@functools.lru_cache(maxsize=1024)
def _inline_fields(parent: GraphQLObjectType) -> dict[str, _Plain]:
    """The fields of `parent` that may be completed inline, by name."""
    out = {}
    for name, field in parent.fields.items():
        plain = _plain(field)
        if plain is not None and _inline_type(plain.output):
            out[name] = plain
    return out


_INT32 = range(-(2**31), 2**31)
# compiled completions shared by requests: (type, field nodes, capabilities held) → (type, nodes, completion)
_COMPILED: LRUCache[tuple[int, tuple[int, ...], frozenset[Capability]], tuple[Any, Any, Completer]] = \
    LRUCache(maxsize=4096)
_DIRECTIVES: LRUCache[int, tuple[Any, bool]] = LRUCache(maxsize=1024)  # id(operation) → (operation, has any)


def _has_directives(operation: OperationDefinitionNode, fragments: dict[str, Any]) -> bool:
    """True when the operation or a fragment it may use carries a directive anywhere in its selections (or
    the fragment takes variables): then what is selected depends on the variables."""
    entry = _DIRECTIVES.get(id(operation))
    if entry is None or entry[0] is not operation:
        found = _selections_have_directives(operation.selection_set) or any(
            f.variable_signatures or _selections_have_directives(f.definition.selection_set)
            for f in fragments.values())
        entry = _DIRECTIVES[id(operation)] = (operation, found)
    return entry[1]


def _selections_have_directives(selection_set: SelectionSetNode | None) -> bool:
    if selection_set is None:
        return False
    for node in selection_set.selections:
        if node.directives or _selections_have_directives(getattr(node, "selection_set", None)):
            return True
    return False


def _unchanged(named: Any) -> Callable[[Any], bool] | None:
    """For a built-in scalar other than String and ID (which `_leaf` tests itself), a test of the values its
    output coercion returns unchanged."""
    if named is GraphQLBoolean:
        return lambda v: type(v) is bool
    if named is GraphQLInt:
        return lambda v: type(v) is int and v in _INT32
    if named is GraphQLFloat:
        return lambda v: type(v) is float and math.isfinite(v)
    return None


@functools.lru_cache(maxsize=1024)
def _leaf(output: Any, nullable: bool) -> Completer:
    """Completion of a scalar or enum value: the type's own output coercion, with shortcuts for the values
    that coercion returns unchanged (strings, the commonest) or by a fixed table (strawberry enums)."""
    coerce = output.coerce_output_value

    def coerced(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise _Slow
        completed = coerce(value)
        if completed is None or completed is Undefined:
            raise _Slow
        return completed

    if output is GraphQLString or output is GraphQLID:
        def string(value: Any, path: Path | None, context: Any) -> Any:
            return value if type(value) is str else coerced(value)
        return string
    wrapped = getattr(output, "wrapped_cls", None)  # strawberry's enum type: Python enum member → GraphQL name
    if wrapped is not None:
        names = {id(member): name for member in wrapped for name, v in output.values.items()
                 if member.value == v.value}  # members live as long as their class: ids are not reused

        def enum(value: Any, path: Path | None, context: Any) -> Any:
            name = names.get(id(value)) if type(value) is wrapped else None
            return name if name is not None else coerced(value)
        return enum
    unchanged = _unchanged(output)

    def leaf(value: Any, path: Path | None, context: Any) -> Any:
        return value if unchanged is not None and unchanged(value) else coerced(value)
    return leaf


class PlainFieldExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor (graphql-core's), with basic attribute fields completed inline."""

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any, path: Path | None,
                       grouped_field_set: Any, position_context: Any) -> Any:
        manager = self.middleware_manager  # an extension that wraps every resolver must see every field
        inline = _inline_fields(parent_type) if manager is None or not manager.middlewares else {}
        if not inline:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        awaiting: list[str] = []
        context, type_name = self.context_value, parent_type.name
        try:
            for response_name, details, plain, complete in self._plan(parent_type, grouped_field_set, inline):
                if complete is not None:
                    try:
                        field_path = Path(path, response_name, type_name)
                        value = (getattr(source_value, plain.attribute) if plain.compute is None
                                 else plain.compute(source_value, context, field_path))
                        results[response_name] = complete(value, field_path, context)
                        continue
                    except Exception:  # noqa: BLE001 - graphql-core completes the field and reports the error
                        pass
                field_path = Path(path, response_name, type_name)
                result = self.execute_field(parent_type, source_value, details, field_path, position_context)
                if result is Undefined:
                    continue
                results[response_name] = result
                if self.is_awaitable(result):
                    awaiting.append(response_name)
        except Exception:
            if awaiting:
                self.settle_in_background([results[name] for name in awaiting])
            raise
        if not awaiting:
            return results

        async def get_results() -> dict[str, Any]:
            values = await gather_with_cancel(*(results[name] for name in awaiting))
            results.update(zip(awaiting, values, strict=True))
            return results

        return get_results()

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any,
              inline: dict[str, _Plain]) -> list[tuple[str, Any, _Plain, Completer | None]]:
        """Each field of a selection: (response name, details, how it is read, its inline completion or None
        when graphql-core resolves it). Made once per request and selection (the selections of a list's
        items are the same object)."""
        plans: dict[tuple[int, int], tuple[Any, list[Any]]] = self.__dict__.setdefault("_plans", {})
        key = (id(parent_type), id(grouped_field_set))
        entry = plans.get(key)
        if entry is None:
            plan = []
            for response_name, details in grouped_field_set.items():
                plain = inline.get(details[0].node.name.value)
                inlined = plain is not None and (plain.capability is None or self._holds(plain.capability))
                plan.append((response_name, details, plain,
                             self._completer(plain.output, details) if inlined else None))  # type: ignore[union-attr]
            entry = plans[key] = (grouped_field_set, plan)
        return entry[1]

    def _completer(self, output: GraphQLOutputType, details: Any) -> Completer:
        """The completion of `output` for the selection `details`.

        Compiled once per query text and caller's capabilities, and kept across requests (`_COMPILED`),
        unless the operation has directives (@skip/@include depend on the variables): then once per request.
        """
        local: dict[tuple[int, int], tuple[Any, Completer]] = self.__dict__.setdefault("_completers", {})
        key = (id(output), id(details))  # like graphql-core's subfield memo: `details` is kept alive with it
        entry = local.get(key)
        if entry is None:
            entry = local[key] = (details, self._shared(output, details))
        return entry[1]

    def _shared(self, output: GraphQLOutputType, details: Any) -> Completer:
        if _has_directives(self.operation, self.fragments):
            return self._compile(output, details)
        nodes = tuple(d.node for d in details)
        key = (id(output), tuple(map(id, nodes)), self._held())
        entry = _COMPILED.get(key)
        if entry is None:  # the type and the nodes are kept alive with it, so their ids are not reused
            entry = _COMPILED[key] = (output, nodes, self._compile(output, details))
        return entry[2]

    def _held(self) -> frozenset[Capability]:
        """The capabilities the caller holds (what the inline completion of restricted fields depends on)."""
        held = self.__dict__.get("_held_capabilities")
        if held is None:
            held = self.__dict__["_held_capabilities"] = frozenset(c for c in Capability if self._holds(c))
        return held

    def _compile(self, output: GraphQLOutputType, details: Any) -> Completer:
        """A function completing a plain value for `output` (see the module docstring); it raises `_Slow`
        when the value needs graphql-core. `path` is given only where a computed field lies below."""
        if isinstance(output, GraphQLNonNull):
            if is_leaf_type(output.of_type):
                return _leaf(output.of_type, nullable=False)
            inner = self._compile(output.of_type, details)

            def non_null(value: Any, path: Path | None, context: Any) -> Any:
                completed = inner(value, path, context)
                if completed is None:
                    raise _Slow
                return completed
            return non_null
        if isinstance(output, GraphQLList):
            item = self._compile(output.of_type, details)
            located = _needs_path(output.of_type)

            def listed(value: Any, path: Path | None, context: Any) -> Any:
                if value is None:
                    return None
                if not isinstance(value, list | tuple):
                    raise _Slow
                if located:
                    return [item(v, Path(path, i, None), context) for i, v in enumerate(value)]
                return [item(v, None, context) for v in value]
            return listed
        if is_leaf_type(output):
            return _leaf(output, nullable=True)
        assert isinstance(output, GraphQLObjectType)
        return self._compile_object(output, details)

    def _compile_object(self, output: GraphQLObjectType, details: Any) -> Completer:
        grouped, deferred, _ = self.collect_subfields(output, details)
        fields = _inline_fields(output)
        selected = [(name, sub, sub[0].node.name.value) for name, sub in grouped.items()]
        if deferred or any(f != "__typename" and fields[f].capability is not None
                           and not self._holds(fields[f].capability) for _, _, f in selected):  # type: ignore[arg-type]
            def slow(value: Any, path: Path | None, context: Any) -> Any:
                raise _Slow
            return slow
        type_name = output.name
        steps = []
        for response_name, sub, field_name in selected:
            if field_name == "__typename":
                steps.append((response_name, None, None, None, False))
                continue
            plain = fields[field_name]
            located = plain.compute is not None or _needs_path(plain.output)
            steps.append((response_name, plain.attribute, plain.compute, self._completer(plain.output, sub), located))

        def completed_object(value: Any, path: Path | None, context: Any) -> Any:
            if value is None:
                return None
            out: dict[str, Any] = {}
            for response_name, attribute, compute, complete, located in steps:
                if complete is None:
                    out[response_name] = type_name
                    continue
                sub_path = Path(path, response_name, type_name) if located else None
                raw = getattr(value, attribute) if compute is None else compute(value, context, sub_path)
                out[response_name] = complete(raw, sub_path, context)
            return out
        return completed_object

    def _holds(self, capability: Capability) -> bool:
        """True when the caller holds `capability` (the permission extension would let the field through)."""
        return holds(self.context_value, capability)
