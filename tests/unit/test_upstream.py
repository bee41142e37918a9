"""The strawberry and graphql-core internals the gateway overrides or reads still have the shape they were
written against: a new upstream release that moves one fails here, by name, before anything subtler."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest
from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import ExtensionContextManagerBase, WrappedHook
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.schema import schema as strawberry_schema
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.http import edge
from gateway.http.upstream import execute_single
from resolvers.schema import build_schema
from resolvers.upstream import execution_context, extension_hooks, hide_suggestions, raw_info, validate_document
from sources.settings import Settings


def _parameters(function: object) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_execute_single_matches_strawberrys() -> None:
    assert _parameters(AsyncBaseHTTPView.execute_single) == execute_single.UPSTREAM_PARAMETERS
    ours = execute_single.SubscriptionsRefusedOverHTTP.execute_single
    assert _parameters(ours) == execute_single.UPSTREAM_PARAMETERS


def test_execution_context_methods_match_graphql_cores() -> None:
    for name, parameters in execution_context.UPSTREAM_PARAMETERS.items():
        assert _parameters(getattr(StrawberryGraphQLCoreExecutionContext, name)) == parameters, name
    ours = execution_context.PlainFieldExecutor.execute_fields
    assert _parameters(ours) == execution_context.UPSTREAM_PARAMETERS["execute_fields"]


def test_info_still_holds_graphql_cores_resolve_info() -> None:
    assert tuple(f.name for f in dataclasses.fields(Info)) == raw_info.UPSTREAM_FIELDS


def test_execution_context_build_still_takes_hide_suggestions() -> None:
    assert hide_suggestions.UPSTREAM_BUILD_PARAMETER in _parameters(StrawberryGraphQLCoreExecutionContext.build)


def test_validate_document_matches_strawberrys() -> None:
    assert _parameters(strawberry_schema.validate_document) == validate_document.UPSTREAM_PARAMETERS
    source = inspect.getsource(strawberry_schema.validate_document)
    assert [rule.__name__ for rule in validate_document.UPSTREAM_RULES if rule.__name__ not in source] == []


def test_uvicorn_httptools_protocol_still_has_what_the_edge_uses() -> None:
    for name, parameters in edge.UPSTREAM_METHODS.items():
        assert _parameters(getattr(HttpToolsProtocol, name)) == parameters, name
    assert STATUS_LINE[413].startswith(b"HTTP/1.1 413")


def test_federation_entity_override_matches_strawberrys() -> None:
    """The subgraph's `_entities` overrides strawberry's resolver by name and parameters; `as_entity` replaces a
    definition's `directives` for one build, and leaves the class's own definition as it was."""
    from strawberry.federation import Schema as FederationSchema
    from strawberry.federation.schema_directives import Key
    from strawberry.types.base import StrawberryObjectDefinition

    from resolvers.child import Child
    from resolvers.federation import SubgraphSchema
    from resolvers.upstream import federation_entity

    upstream = getattr(FederationSchema, federation_entity.ENTITIES_RESOLVER)
    assert _parameters(upstream) == federation_entity.UPSTREAM_PARAMETERS
    assert _parameters(getattr(SubgraphSchema, federation_entity.ENTITIES_RESOLVER)) == \
        federation_entity.UPSTREAM_PARAMETERS
    assert "directives" in {f.name for f in dataclasses.fields(StrawberryObjectDefinition)}
    plain = Child.__strawberry_definition__
    with federation_entity.as_entity(Child, Key(fields="aNumber")):  # type: ignore[arg-type]
        assert [type(d) for d in Child.__strawberry_definition__.directives] == [Key]
        assert Child.__strawberry_definition__.origin is Child
    assert Child.__strawberry_definition__ is plain and not plain.directives


def test_extension_context_managers_still_have_the_shape_hook_runner_builds() -> None:
    assert tuple(WrappedHook._fields) == extension_hooks.UPSTREAM_FIELDS
    assert tuple(ExtensionContextManagerBase.__slots__) == extension_hooks.UPSTREAM_SLOTS
    for name in extension_hooks.UPSTREAM_RUNNER_METHODS:
        assert _parameters(getattr(SchemaExtensionsRunner, name)) == ("self",), name
    assert _parameters(ExtensionContextManagerBase.__init__) == ("self", "extensions")
    assert "create_extensions_runner" in vars(strawberry_schema.Schema)


def test_hook_runner_gives_each_phase_strawberrys_hooks_in_strawberrys_order() -> None:
    schema = build_schema(Settings(env="production"))
    extensions = schema.get_extensions()
    ours = extension_hooks.HookRunner(execution_context=None, extensions=extensions)  # type: ignore[arg-type]
    theirs = SchemaExtensionsRunner(execution_context=None, extensions=extensions)  # type: ignore[arg-type]
    taking_part = 0
    for name in extension_hooks.UPSTREAM_RUNNER_METHODS:
        mine, upstream = getattr(ours, name)(), getattr(theirs, name)()
        assert type(mine).HOOK_NAME == type(upstream).HOOK_NAME
        assert [(h.extension, h.is_async) for h in mine.hooks] == [(h.extension, h.is_async) for h in upstream.hooks]
        taking_part += len(mine.hooks)
    assert taking_part >= 9  # the gateway's extensions: masking, error codes, limits, audit, answer eligibility...


class _Recorder(SchemaExtension):
    calls: ClassVar[list[str]] = []

    def on_operation(self) -> Iterator[None]:
        self.calls.append("enter")
        try:
            yield
        except ValueError as exc:
            self.calls.append(f"raised {exc}")
            raise
        self.calls.append("exit")

    async def on_execute(self) -> AsyncIterator[None]:
        self.calls.append("execute enter")
        yield
        self.calls.append("execute exit")


def test_hook_runner_drives_each_hook_as_strawberry_does() -> None:
    extension = _Recorder()
    runner = extension_hooks.HookRunner(execution_context=None, extensions=[extension])  # type: ignore[arg-type]
    with runner.operation():
        pass
    with pytest.raises(ValueError, match="refused"), runner.operation():
        raise ValueError("refused")

    async def execute() -> None:
        async with runner.executing():
            pass

    asyncio.run(execute())
    assert _Recorder.calls == ["enter", "exit", "enter", "raised refused", "execute enter", "execute exit"]
