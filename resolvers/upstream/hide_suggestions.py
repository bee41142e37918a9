"""graphql-core's `ExecutionContext.build(hide_suggestions=...)`, switched on for production (security #11).

Validation's "Did you mean" suggestions are stripped by the schema's validation rules (`resolvers/schema.py`);
a variable's bad enum value is coerced at execution, where graphql-core takes `hide_suggestions` only as an
argument of `build`, which strawberry never passes. tests/unit/test_upstream.py checks the parameter is
still there.
"""

from __future__ import annotations

from typing import Any

UPSTREAM_BUILD_PARAMETER = "hide_suggestions"


def without_suggestions(base: type[Any]) -> type[Any]:
    """`base` executor with graphql-core's `hide_suggestions` on."""

    class Executor(base):  # type: ignore[misc,valid-type]
        @classmethod
        def build(cls, *args: Any, **kwargs: Any) -> Any:
            kwargs[UPSTREAM_BUILD_PARAMETER] = True
            return super().build(*args, **kwargs)

    Executor.__name__ = Executor.__qualname__ = f"{base.__name__}WithoutSuggestions"
    return Executor
