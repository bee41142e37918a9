"""schemathesis fuzzes /graphql in GraphQL mode with a caseworker token: no answer may be a 5xx (issue 5)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from testing.access import gateway_env
from testing.gateway import GatewayProcess

EXAMPLES = 150


def test_fuzzed_queries_never_get_a_server_error(mock_services: Any) -> None:
    gw = GatewayProcess(gateway_env(mock_services))
    statuses: Counter[int] = Counter()
    answered_with_data = 0
    codes: Counter[str] = Counter()
    try:
        auth = gw.headers()
        schema = schemathesis.graphql.from_url(f"{gw.url}/graphql", headers=auth, timeout=30)

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy())
        def call(case: Any) -> None:
            nonlocal answered_with_data
            response = case.call(headers=auth, timeout=30)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (response.status_code, case.body, response.text[:500])
            body = response.json()
            assert "data" in body or "errors" in body
            if body.get("data"):
                answered_with_data += 1
            codes.update(e.get("extensions", {}).get("code", "-") for e in body.get("errors", []))

        call()
    finally:
        gw.stop()
    assert sum(statuses.values()) >= EXAMPLES * 0.8, statuses  # the requests really went out
    assert statuses[200] > 0 and answered_with_data > 0, statuses  # and were authenticated and executed
    assert codes["INTERNAL_SERVER_ERROR"] == 0, codes  # a masked internal error is a bug too
