"""strawberry's federation schema (strawberry 0.341) made to see one type as an entity for one schema only.

strawberry finds entities by the `@key` directives on a type's definition (`__strawberry_definition__`), read
while the schema is built; the built GraphQL type keeps a reference to that definition, which its printer (the
SDL of `_service`) reads later. Putting `@key` on `Child` itself would print it in the plain schema too, so
`as_entity` gives the class a copy of its definition with the directive while one schema is built, and puts
the plain one back: the federated schema keeps the copy, every other schema the original. As the copy is not
the class's definition, `_Entity` cannot tell a `Child` by it; `entity` marks each one it returns
(`strawberry.cast`, which strawberry's union resolution checks first, by the definition's origin class).
tests/unit/test_upstream.py fails when strawberry's definition or its entity lookup moves.

`ENTITIES_RESOLVER` names the method of strawberry's federation `Schema` that serves `_entities`, which the
subgraph overrides (resolvers/federation.py), with its parameters (`UPSTREAM_PARAMETERS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import strawberry

T = TypeVar("T")

ENTITIES_RESOLVER = "entities_resolver"
UPSTREAM_PARAMETERS = ("self", "info", "representations")


@contextmanager
def as_entity(cls: Any, key: object) -> Iterator[None]:
    """While the block runs, `cls` is a strawberry type carrying the `key` directive (a federation `Key`)."""
    plain = cls.__strawberry_definition__
    cls.__strawberry_definition__ = dataclasses.replace(plain, directives=[*(plain.directives or ()), key])
    try:
        yield
    finally:
        cls.__strawberry_definition__ = plain


def entity(value: T) -> T:
    """`value` (an instance of a class given to `as_entity`, or an error or None, passed through) marked as its
    class for `_Entity`'s type resolution."""
    if value is None or isinstance(value, Exception):
        return value
    return strawberry.cast(type(value), value)
