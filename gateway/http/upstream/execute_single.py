"""strawberry's `AsyncBaseHTTPView.execute_single` (strawberry 0.341), overridden: the one place the view
depends on that method's signature and on how strawberry refuses a request (`HTTPException`).
tests/unit/test_upstream.py fails when strawberry's signature moves away from `UPSTREAM_PARAMETERS`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

try:
    from cross_web import HTTPException  # what strawberry raises to refuse a request (0.341)
except ImportError:  # pragma: no cover - strawberry releases before cross_web
    from strawberry.http.exceptions import HTTPException  # type: ignore[attr-defined,no-redef]

# the parameters of strawberry's `execute_single` this override was written against, in order
UPSTREAM_PARAMETERS = ("self", "request", "request_adapter", "sub_response", "context", "root_value", "request_data")
# operations an HTTP request may carry, by method (subscriptions need the websocket)
HTTP_OPERATIONS = {"GET": frozenset({OperationType.QUERY}),
                   "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}
SUBSCRIPTION_OVER_HTTP = ("subscriptions need a websocket (graphql-transport-ws) on /graphql or server-sent events "
                          "(graphql-sse) on /graphql/stream")


class SubscriptionsRefusedOverHTTP:
    """Mixin for strawberry's ASGI view (put it first): over HTTP a subscription is refused once parsed."""

    schema: Any
    allow_queries_via_get: bool

    async def execute_single(self, request: Request, request_adapter: Any, sub_response: Response,
                             context: Any, root_value: Any, request_data: Any) -> ExecutionResult:
        """strawberry's, except that over HTTP a subscription is refused (400 BAD_REQUEST, `__call__`) once
        parsed, before validation or any resolver: strawberry lets it run as a query, which fails inside
        its root field with an internal TypeError. A mutation over GET is a 405 (strawberry: 400). Queries
        (GET and POST) and mutations (POST) as before."""
        allowed = HTTP_OPERATIONS.get(request_adapter.method, frozenset())
        if request_adapter.method == "GET" and not self.allow_queries_via_get:
            allowed = frozenset()
        try:
            return await self.schema.execute(
                request_data.query, root_value=root_value, variable_values=request_data.variables,
                context_value=context, operation_name=request_data.operation_name,
                allowed_operation_types=allowed, operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason()) from e
        except InvalidOperationTypeError as e:
            if e.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_OVER_HTTP) from e
            if e.operation_type is OperationType.MUTATION and request_adapter.method == "GET":
                # the GraphQL-over-HTTP spec: a mutation over GET is a 405 (it must not run: GETs may be repeated)
                raise HTTPException(405, "mutations need POST") from e
            raise HTTPException(400, e.as_http_error_reason(request_adapter.method)) from e
        except MissingQueryError as e:
            raise HTTPException(400, "No GraphQL query found in the request") from e
