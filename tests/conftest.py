"""Shared fixtures. `mock_services`: the ORR, ICE and EOIR mocks as one real subprocess for the session.

The fixture object (testing/mockproc.MockProcess) has `.orr`, `.ice`, `.eoir` base URLs and helpers
`request(source, method, path, json=None, headers=None)` -> Resp, `admin(source, method, path, json=None)`
-> (status, body), `admin_ok(...)` -> body, `reset()`, `stats(source)`, `advance(seconds)`,
`sample(n, state=None)` and `gateway_env(**overrides)`. World: seed 7, 300 children.
Tests that switch faults on must call `reset()` when done; tests that need their own clock or a webhook
start their own `MockProcess`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator

import pytest

from testing.logs import LOG_DIR_ENV
from testing.mockproc import MockProcess
from testing.personal_data import pii_in_logs
from testing.servers import database_server, fresh_database, redis_server

MOCK_SEED = 7
MOCK_CHILDREN = 300


@pytest.fixture(scope="session")
def mock_services() -> Iterator[MockProcess]:
    """The three mock services on free loopback ports (seed 7, 300 children), stopped at session end."""
    with MockProcess(seed=MOCK_SEED, children=MOCK_CHILDREN) as mocks:
        yield mocks


def pytest_configure(config: pytest.Config) -> None:
    """Keep every gateway's and mock's output of this run (testing/logs.py) for the personal-data check."""
    if not os.environ.get(LOG_DIR_ENV):
        os.environ[LOG_DIR_ENV] = tempfile.mkdtemp(prefix="ucgw-test-logs-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's last check: once every process has stopped (the session's mocks included), no log line of
    the run holds a value of the mocks' personal data that tests/test_zz_logs_hold_no_pii.py listed (the
    check runs when that test ran)."""
    found = pii_in_logs()
    if found:
        print(f"\npersonal data in the logs of this run: {found[:10]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def database_server_url() -> Iterator[str]:
    """A PostgreSQL superuser URL shared by the session (testing/servers.py); `fresh_database` gives a test its
    own database on it."""
    with database_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL shared by the session (testing/servers.py); give each test its own `redis_prefix()`."""
    with redis_server() as url:
        yield url


@pytest.fixture()
def database_url(database_server_url: str) -> str:
    """An empty PostgreSQL database of this test's own."""
    return fresh_database(database_server_url)
