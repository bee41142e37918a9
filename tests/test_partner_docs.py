"""docs/partners.md's copy-paste examples (Apollo Client, urql, Python gql) run as written against a live
gateway with a partner API key: each block marked `<!-- example: NAME -->` is taken from the page, run with
the locked npm packages (tests/clients/) or this virtualenv's Python, and its printed child compared with
the same query sent directly."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.gateway import ROOT, GatewayProcess, without
from testing.mockproc import MockProcess
from testing.node_clients import run_script

DOC = ROOT / "docs" / "partners.md"
PARTNER_KEY = "ucgw_test-only-partner-docs-key"  # a test value
EXPECTED = """query CaseStatus($a: ID!) { child(aNumber: $a) { aNumber location { status } nta { status }
  hearing { caseStatus nextHearing { startsAt courtName } } } }"""


def examples() -> dict[str, tuple[str, str]]:
    """{name: (language, code)} of every marked block of the page."""
    found = re.findall(r"<!-- example: (\w+) -->\n```(\w+)\n(.*?)\n```", DOC.read_text(), re.S)
    return {name: (language, code) for name, language, code in found}


@pytest.fixture(scope="module")
def world() -> Iterator[MockProcess]:
    with MockProcess(seed=37, children=20) as mocks:
        yield mocks


@pytest.fixture(scope="module")
def gw(world: MockProcess) -> Iterator[GatewayProcess]:
    with tempfile.TemporaryDirectory(prefix="ucgw-partner-docs-") as folder:
        keys = Path(folder) / "keys.toml"
        keys.write_text(f'[[api_key]]\nclient = "docs-example"\nrole = "partner"\n'
                        f'sha256 = "{hashlib.sha256(PARTNER_KEY.encode()).hexdigest()}"\n')
        gateway = GatewayProcess({**world.gateway_env(), "UCGW_API_KEYS_FILE": str(keys)})
        yield gateway
        gateway.stop()


def test_the_page_has_the_three_examples() -> None:
    assert {name: language for name, (language, _) in examples().items()} == {
        "apollo": "js", "urql": "js", "gql": "python"}


@pytest.mark.parametrize("name", ["apollo", "urql", "gql"])
def test_a_partner_example_runs_as_written(gw: GatewayProcess, world: MockProcess, name: str) -> None:
    a_number = world.sample(1)[0]
    language, code = examples()[name]
    env = {"UCGW_URL": f"{gw.url}/graphql", "UCGW_API_KEY": PARTNER_KEY, "A_NUMBER": a_number}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / (f"doc_{name}.mjs" if language == "js" else f"doc_{name}.py")
        script.write_text(code + "\n")
        if language == "js":
            done = run_script(script, env=env)
        else:
            done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    printed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    status, direct = gw.query(EXPECTED, {"a": a_number}, headers={"X-API-Key": PARTNER_KEY}, token="")
    assert status == 200 and "errors" not in direct
    assert without(printed, "__typename") == direct["data"]["child"]
    assert printed["aNumber"] == a_number and printed["location"]["status"]
