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
- a value computed from (source, context, path) by a function the field's resolver is a view of
  (`computed_inline`: `Provenance.ageSeconds` and `cacheStatus`). The function may record the value's path
  (the answer store's open values); recording is keyed by path, so doing it twice is harmless;
and whose type is a scalar, an enum, or an object type made only of such fields (lists and non-null of
these included). Everything else (section resolvers, root fields, `__typename` at the top) goes through
graphql-core's `execute_field` unchanged. Anything unusual on the inline path (a null where the schema
forbids one, a value the scalar refuses, an exception, a deferred fragment, a capability the caller lacks
deeper down) hands the whole field back to `execute_field`, which then resolves it, raises and locates the
error exactly as before. tests/test_execution.py compares answers with graphql-core's own executor over HTTP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
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


def computed_inline(compute: Compute) -> dict[str, Compute]:
    """Metadata for a `strawberry.field` whose resolver returns `compute(root, info.context, info.path)`:
    the inline executor calls `compute` itself. Nothing else may differ between the two."""
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

    def value(self, source: Any, context: Any, path: Path) -> Any:
        return getattr(source, self.attribute) if self.compute is None else self.compute(source, context, path)


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
def _inline_fields(parent: GraphQLObjectType) -> dict[str, _Plain]:
    """The fields of `parent` that may be completed inline, by name."""
    out = {}
    for name, field in parent.fields.items():
        plain = _plain(field)
        if plain is not None and _inline_type(plain.output):
            out[name] = plain
    return out


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
        try:
            for response_name, details in grouped_field_set.items():
                field_path = Path(path, response_name, parent_type.name)
                plain = inline.get(details[0].node.name.value)
                if plain is not None and (plain.capability is None or self._holds(plain.capability)):
                    try:
                        value = plain.value(source_value, self.context_value, field_path)
                        results[response_name] = self._complete(plain.output, details, field_path, value)
                        continue
                    except Exception:  # noqa: BLE001 - graphql-core completes the field and reports the error
                        pass
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

    def _complete(self, output: GraphQLOutputType, details: Any, path: Path, value: Any) -> Any:
        """A plain value completed for `output` (see the module docstring); raises when it needs more."""
        if isinstance(output, GraphQLNonNull):
            completed = self._complete(output.of_type, details, path, value)
            if completed is None:
                raise _Slow
            return completed
        if value is None:
            return None
        if isinstance(output, GraphQLList):
            if not isinstance(value, list | tuple):
                raise _Slow
            item = output.of_type
            return [self._complete(item, details, Path(path, i, None), v) for i, v in enumerate(value)]
        if is_leaf_type(output):
            completed = output.coerce_output_value(value)  # type: ignore[union-attr]
            if completed is None or completed is Undefined:
                raise _Slow
            return completed
        assert isinstance(output, GraphQLObjectType)
        grouped, deferred, _ = self.collect_subfields(output, details)
        if deferred:
            raise _Slow
        fields = _inline_fields(output)
        completed_object: dict[str, Any] = {}
        for response_name, sub in grouped.items():
            name = sub[0].node.name.value
            if name == "__typename":
                completed_object[response_name] = output.name
                continue
            plain = fields[name]
            if plain.capability is not None and not self._holds(plain.capability):
                raise _Slow
            sub_path = Path(path, response_name, output.name)
            completed_object[response_name] = self._complete(plain.output, sub, sub_path,
                                                             plain.value(value, self.context_value, sub_path))
        return completed_object

    def _holds(self, capability: Capability) -> bool:
        """True when the caller holds `capability` (the permission extension would let the field through)."""
        return holds(self.context_value, capability)
