"""strawberry's schema-extension runner with each hook's context-manager factory made once per class.

For every request and phase (operation, parsing, validation, execution) strawberry's context managers ask
each extension for its hook (`ExtensionContextManagerBase.get_hook`): `inspect.isgeneratorfunction`, then
`contextlib.contextmanager(types.MethodType(hook, extension))`, whose `functools.wraps` copies the
function's attributes. With the gateway's ten extensions that is 40 lookups and nine wrapped generator
functions per request, about as much CPU as the rest of a cold request's GraphQL preparation.

Here the wrapped factory is made once per list of extension classes and phase
(`contextlib.contextmanager(hook)`, unbound) and bound per request with `functools.partial(factory,
extension)`: calling it makes the same `_GeneratorContextManager(hook, (extension,), {})` that strawberry's
bound factory makes, so entering and leaving a phase, and any exception thrown into a hook, behave exactly
as upstream. A hook that is not a generator function (a plain or coroutine function) takes strawberry's
own `get_hook` path.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner

# the upstream pieces this module builds on, as written against strawberry 0.341
# (tests/unit/test_upstream.py compares them with the installed ones)
UPSTREAM_FIELDS = ("extension", "hook", "is_async")  # WrappedHook
UPSTREAM_SLOTS = ("async_exit_stack", "default_hook", "exit_stack", "hooks")  # ExtensionContextManagerBase
UPSTREAM_RUNNER_METHODS = ("operation", "validation", "parsing", "executing")

_UNSET = object()
# (hook name, the extensions' classes in order) → for each extension taking part in that phase: its index and
# (is_async, unbound factory), or _UNSET where strawberry's own `get_hook` must wrap it
_PLANS: dict[tuple[str, tuple[type, ...]], tuple[tuple[int, Any], ...]] = {}


def _plan(name: str, classes: tuple[type, ...]) -> tuple[tuple[int, Any], ...]:
    """How the extensions of `classes` take part in phase `name`, worked out once per list of classes."""
    plan = _PLANS.get((name, classes))
    if plan is None:
        steps = []
        for i, cls in enumerate(classes):
            hook = getattr(cls, name)
            if hook is getattr(SchemaExtension, name):
                continue
            if inspect.isgeneratorfunction(hook):
                steps.append((i, (False, contextlib.contextmanager(hook))))
            elif inspect.isasyncgenfunction(hook):
                steps.append((i, (True, contextlib.asynccontextmanager(hook))))
            else:
                steps.append((i, _UNSET))
        plan = _PLANS[(name, classes)] = tuple(steps)
    return plan


class _Hooks(ExtensionContextManagerBase):
    """`ExtensionContextManagerBase.__init__` with the factories above: the same hooks, in the same order."""

    __slots__ = ()

    def __init__(self, extensions: list[SchemaExtension]) -> None:
        name = self.HOOK_NAME
        self.default_hook = getattr(SchemaExtension, name)
        hooks: list[WrappedHook] = []
        for i, found in _plan(name, tuple(map(type, extensions))):
            extension = extensions[i]
            if found is _UNSET:
                wrapped = self.get_hook(extension)
                if wrapped is not None:
                    hooks.append(wrapped)
            else:
                hooks.append(_new(WrappedHook, (extension, functools.partial(found[1], extension), found[0])))
        self.hooks = hooks


_new = tuple.__new__  # WrappedHook is a NamedTuple, whose constructor is a Python function


class _Operation(_Hooks, OperationContextManager):
    __slots__ = ()


class _Validation(_Hooks, ValidationContextManager):
    __slots__ = ()


class _Parsing(_Hooks, ParsingContextManager):
    __slots__ = ()


class _Executing(_Hooks, ExecutingContextManager):
    __slots__ = ()


class HookRunner(SchemaExtensionsRunner):
    """strawberry's runner whose phase context managers bind hook factories made once per class."""

    def operation(self) -> OperationContextManager:
        return _Operation(self.extensions)

    def validation(self) -> ValidationContextManager:
        return _Validation(self.extensions)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self.extensions)
