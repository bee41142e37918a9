"""`ucgw serve` never imports the mock services: started with `mocks` made unimportable, it answers a query."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from testing.access import FULL, gateway_env
from testing.gateway import ROOT, GatewayProcess

# imported by Python at start-up (sitecustomize) from PYTHONPATH: any import of `mocks` or `mocks.*` fails
BLOCKER = '''
import importlib.abc
import sys


class BlockMocks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mocks" or name.startswith("mocks."):
            raise ImportError(f"{name} is blocked: ucgw serve must not import the mocks")
        return None


sys.meta_path.insert(0, BlockMocks())
'''


def _blocked_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_blocker_makes_mocks_unimportable(tmp_path: Path) -> None:
    env = {**os.environ, **_blocked_env(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "import mocks"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "mocks is blocked" in proc.stderr


def test_serve_answers_with_mocks_unimportable(mock_services: Any, tmp_path: Path) -> None:
    a = mock_services.sample(1)[0]
    gateway = GatewayProcess({**gateway_env(mock_services), **_blocked_env(tmp_path)})
    try:
        status, body = gateway.query(FULL, {"a": a})
    finally:
        output = gateway.stop()
    assert status == 200, output
    assert "errors" not in body
    assert body["data"]["child"]["aNumber"] == a
    assert "blocked" not in output
