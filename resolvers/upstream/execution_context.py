"""graphql-core's executor with plain fields completed inline (a subclass of strawberry's execution context).

A full child status resolves ~170 fields, and a `children` batch of 100 about 17,000; most are plain
attributes of the section objects (`Location.status`, `Address.city`, ...). For each of them graphql-core
builds a resolve-info object and calls strawberry's wrapper, which calls `getattr`, then completes the
value through several generic steps. `PlainFieldExecutor` completes such fields directly: `getattr`,
the type's own output coercion for scalars and enums, lists item by item, and nested objects the same way.
The completion of an object selection is one generated Python function (each field's read and leaf
coercion written out), compiled once per query text and caller's capabilities.

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
import keyword
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

from resolvers.permissions import Requires, holds
from rules.roles import Capability

# the upstream methods this executor overrides or calls, as written against strawberry 0.341 / graphql-core 3.3
# (tests/unit/test_upstream.py compares them with the installed signatures)
UPSTREAM_PARAMETERS = {
    "execute_fields": ("self", "parent_type", "source_value", "path", "grouped_field_set", "position_context"),
    "execute_field": ("self", "parent_type", "source", "field_details_list", "path", "position_context"),
    "settle_in_background": ("self", "awaitables"),
}
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
# graphql-core's Path is a NamedTuple, whose constructor is a Python function: made directly by tuple's
# own __new__ (in C) a Path costs half as much, and a cold children(100) makes ~2,500 of them.
_new = tuple.__new__
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


@functools.lru_cache(maxsize=1024)
def _leaf(output: Any, nullable: bool) -> Completer:
    """Completion of a scalar or enum value: the type's own output coercion, with shortcuts for the values
    that coercion returns unchanged (strings, the commonest) or by a fixed table (strawberry enums)."""
    env: dict[str, Any] = {}
    lines = ["def leaf(v0, path, context):"] + _leaf_lines(output, nullable, 0, env) + ["    return r0"]
    return _generated("leaf", lines, env, f"<completion of {output.name}>")


@dataclass(frozen=True, slots=True)
class _Step:
    """One selected field of an object completion: `plain` None means `__typename`."""

    response_name: str
    plain: _Plain | None
    complete: Completer | None


def _shortcut(output: GraphQLOutputType, v: str) -> str | None:
    """A Python expression true when `_leaf`'s completion of value `v` of the scalar `output` is `v` itself
    (its own shortcuts, written out); None when there is none."""
    if output is GraphQLString or output is GraphQLID:
        return f"type({v}) is str"
    if output is GraphQLBoolean:
        return f"type({v}) is bool"
    if output is GraphQLInt:
        return f"type({v}) is int and {_INT32.start} <= {v} < {_INT32.stop}"
    if output is GraphQLFloat:
        return f"type({v}) is float and isfinite({v})"
    return None


def _leaf_lines(output: Any, nullable: bool, i: int, env: dict[str, Any]) -> list[str]:
    """Generated lines completing the value `v{i}` of the scalar or enum `output` into `r{i}`: null where
    allowed, a value the type returns unchanged as it is, an enum member by a fixed table, another value by
    the type's own output coercion (a value it refuses raises; a null where none is allowed is `_Slow`)."""
    v, r = f"v{i}", f"r{i}"
    env.update(_Slow=_Slow, Undefined=Undefined, isfinite=math.isfinite)
    env[f"s{i}"] = output.coerce_output_value
    coerced = [f"{r} = s{i}({v})", f"if {r} is None or {r} is Undefined:", "    raise _Slow"]
    lines = [f"if {v} is None:", f"    {r} = None" if nullable else "    raise _Slow"]
    shortcut = _shortcut(output, v)
    enum = _enum_names(output)
    if shortcut is not None:
        lines += [f"elif {shortcut}:", f"    {r} = {v}", "else:"] + [f"    {line}" for line in coerced]
    elif enum is not None:
        env[f"w{i}"], env[f"n{i}"] = enum
        lines += ["else:", f"    {r} = n{i}.get(id({v})) if type({v}) is w{i} else None", f"    if {r} is None:"]
        lines += [f"        {line}" for line in coerced]
    else:
        lines += ["else:"] + [f"    {line}" for line in coerced]
    return [f"    {line}" for line in lines]


def _enum_names(output: Any) -> tuple[type, dict[int, str]] | None:
    """For a strawberry enum type: its Python class and member id → GraphQL name."""
    wrapped = getattr(output, "wrapped_cls", None)
    if wrapped is None:
        return None
    # members live as long as their class: ids are not reused
    return wrapped, {id(m): name for m in wrapped for name, v in output.values.items() if m.value == v.value}


def _object_source(type_name: str, steps: list[_Step], nullable: bool, env: dict[str, Any]) -> list[str]:
    """The source lines of `completed_object(value, path, context)` for `steps`, filling `env` with what
    they use.

    It does what the closures of the other completions do, field by field: read the attribute (or call the
    computed field with its path), then complete the value: a leaf inline (`_leaf_lines`), anything else by
    the field's own completer (which raises `_Slow` for graphql-core to take over)."""
    env.update(Path=Path, _new=_new, _Slow=_Slow, TYPE=type_name)
    lines = ["def completed_object(value, path, context):",
             "    if value is None:",
             "        return None" if nullable else "        raise _Slow"]
    names = []
    for i, step in enumerate(steps):
        plain, result = step.plain, f"r{i}"
        names.append(f"{step.response_name!r}: {result}")
        if plain is None:
            lines.append(f"    {result} = TYPE")
            continue
        where = "None"
        if plain.compute is not None or _needs_path(plain.output):
            where = f"p{i}"
            lines.append(f"    {where} = _new(Path, (path, {step.response_name!r}, TYPE))")
        if plain.compute is not None:
            env[f"k{i}"] = plain.compute
            lines.append(f"    v{i} = k{i}(value, context, {where})")
        elif plain.attribute.isidentifier() and not keyword.iskeyword(plain.attribute):
            lines.append(f"    v{i} = value.{plain.attribute}")
        else:
            lines.append(f"    v{i} = getattr(value, {plain.attribute!r})")
        nullable_leaf = not isinstance(plain.output, GraphQLNonNull)
        named = plain.output if nullable_leaf else plain.output.of_type  # type: ignore[attr-defined]
        if is_leaf_type(named):
            lines += _leaf_lines(named, nullable_leaf, i, env)
        else:
            env[f"c{i}"] = step.complete
            lines.append(f"    {result} = c{i}(v{i}, {where}, context)")
    lines.append("    return {" + ", ".join(names) + "}")
    return lines


def _generated(name: str, lines: list[str], env: dict[str, Any], filename: str) -> Completer:
    """The function `name` that `lines` define, compiled with the names in `env`."""
    exec(compile("\n".join(lines) + "\n", filename, "exec"), env)  # noqa: S102 - our own generated source
    return env[name]  # type: ignore[no-any-return]


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
                        field_path = _new(Path, (path, response_name, type_name))
                        value = (getattr(source_value, plain.attribute) if plain.compute is None
                                 else plain.compute(source_value, context, field_path))
                        results[response_name] = complete(value, field_path, context)
                        continue
                    except Exception:  # noqa: BLE001 - graphql-core completes the field and reports the error
                        pass
                field_path = _new(Path, (path, response_name, type_name))
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
            if isinstance(output.of_type, GraphQLObjectType):
                return self._compile_object(output.of_type, details, nullable=False)
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
                    return [item(v, _new(Path, (path, i, None)), context) for i, v in enumerate(value)]
                return [item(v, None, context) for v in value]
            return listed
        if is_leaf_type(output):
            return _leaf(output, nullable=True)
        assert isinstance(output, GraphQLObjectType)
        return self._compile_object(output, details)

    def _compile_object(self, output: GraphQLObjectType, details: Any, nullable: bool = True) -> Completer:
        """The completion of an object value for the selection `details`: Python source generated for this
        selection (one function, each field's read and leaf shortcut inline; see `_object_source`)."""
        grouped, deferred, _ = self.collect_subfields(output, details)
        fields = _inline_fields(output)
        selected = [(name, sub, sub[0].node.name.value) for name, sub in grouped.items()]
        if deferred or any(f != "__typename" and fields[f].capability is not None
                           and not self._holds(fields[f].capability) for _, _, f in selected):  # type: ignore[arg-type]
            def slow(value: Any, path: Path | None, context: Any) -> Any:
                raise _Slow
            return slow
        steps: list[_Step] = []
        for response_name, sub, field_name in selected:
            if field_name == "__typename":
                steps.append(_Step(response_name, None, None))
                continue
            plain = fields[field_name]
            steps.append(_Step(response_name, plain, self._completer(plain.output, sub)))
        env: dict[str, Any] = {}
        lines = _object_source(output.name, steps, nullable, env)
        return _generated("completed_object", lines, env, f"<completion of {output.name}>")

    def _holds(self, capability: Capability) -> bool:
        """True when the caller holds `capability` (the permission extension would let the field through)."""
        return holds(self.context_value, capability)
