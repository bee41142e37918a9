"""Shared fixtures. `mock_services`: the ORR, ICE and EOIR mocks as one real subprocess for the session.

The fixture object (testing/mockproc.MockProcess) has `.orr`, `.ice`, `.eoir` base URLs and helpers
`request(source, method, path, json=None, headers=None)` -> Resp, `admin(source, method, path, json=None)`
-> (status, body), `admin_ok(...)` -> body, `reset()`, `stats(source)`, `advance(seconds)`,
`sample(n, state=None)` and `gateway_env(**overrides)`. World: seed 7, 300 children.
Tests that switch faults on must call `reset()` when done; tests that need their own clock or a webhook
start their own `MockProcess`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.mockproc import MockProcess

MOCK_SEED = 7
MOCK_CHILDREN = 300


@pytest.fixture(scope="session")
def mock_services() -> Iterator[MockProcess]:
    """The three mock services on free loopback ports (seed 7, 300 children), stopped at session end."""
    with MockProcess(seed=MOCK_SEED, children=MOCK_CHILDREN) as mocks:
        yield mocks
