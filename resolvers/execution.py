"""graphql-core's executor with plain attribute fields completed inline.

A full child status resolves ~170 fields, and a `children` batch of 100 about 17,000; most are plain
attributes of the section objects (`Location.status`, `Address.city`, ...). For each of them graphql-core
builds a resolve-info object and calls strawberry's wrapper, which calls `getattr`, then completes the
value through several generic steps. `PlainFieldExecutor` completes such fields directly: `getattr`,
the type's own output coercion for scalars and enums, lists item by item, and nested objects the same way.

Inline means a "basic" strawberry field (no resolver, no extension, no arguments, read with `getattr`)
whose type is a scalar, an enum, or an object type made only of such fields (lists and non-null of
these included). Everything else (section resolvers, permission-checked fields, `Provenance.ageSeconds`,
root fields, `__typename` at the top) goes through graphql-core's `execute_field` unchanged. Inline
completion has no side effects, so anything unusual on it (a null where the schema forbids one, a value
the scalar refuses, an exception, a deferred fragment) hands the whole field back to `execute_field`,
which then raises and locates the error exactly as before. tests/test_execution.py compares answers
with graphql-core's own executor over HTTP.
"""

from __future__ import annotations

import functools
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
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

BACKREF = "strawberry-definition"


class _Slow(Exception):
    """The value needs graphql-core's full completion (it is an error to report, or of an unusual kind)."""


def _is_basic(field: Any) -> str | None:
    """The attribute name of a strawberry field read with plain `getattr`, else None."""
    definition = (field.extensions or {}).get(BACKREF)
    if definition is None or field.args or not getattr(definition, "is_basic_field", False):
        return None
    if getattr(definition, "default_resolver", None) is not getattr:
        return None
    return str(definition.python_name)


@functools.lru_cache(maxsize=1024)
def _inline_type(output: GraphQLOutputType) -> bool:
    """True when a value of this type completes without suspending and without resolvers of note."""
    named = get_named_type(output)
    if is_leaf_type(named):
        return True
    if not isinstance(named, GraphQLObjectType) or named.is_type_of is not None:
        return False
    return all(_is_basic(f) is not None and _inline_type(f.type) for f in named.fields.values())


@functools.lru_cache(maxsize=1024)
def _inline_fields(parent: GraphQLObjectType) -> dict[str, tuple[str, GraphQLOutputType]]:
    """The fields of `parent` completed inline: name → (attribute, type)."""
    out = {}
    for name, field in parent.fields.items():
        attribute = _is_basic(field)
        if attribute is not None and _inline_type(field.type):
            out[name] = (attribute, field.type)
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
                if plain is not None:
                    attribute, output = plain
                    try:
                        results[response_name] = self._complete(output, details, field_path,
                                                                getattr(source_value, attribute))
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
            attribute, sub_type = fields[name]
            completed_object[response_name] = self._complete(sub_type, sub, Path(path, response_name, output.name),
                                                             getattr(value, attribute))
        return completed_object
