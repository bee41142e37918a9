"""The npm clients of tests/clients/, installed from their lock into a folder of the test run's own and run.

`npm ci` installs exactly what `tests/clients/package-lock.json` pins into `var/node-clients/<lock hash>/`
(ignored by git), once per lock: a rerun finds the folder complete and installs nothing. A script of
tests/clients/ is copied next to that folder's `node_modules` and run with Node, so that its `import`s
resolve to the locked packages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from testing.gateway import ROOT

CLIENTS = ROOT / "tests" / "clients"
LOCK = CLIENTS / "package-lock.json"
DONE = ".installed"  # written last: a folder without it was interrupted and is installed again


def install_dir() -> Path:
    """The folder holding the locked packages, installed now if they are not there yet."""
    digest = hashlib.sha256(LOCK.read_bytes() + (CLIENTS / "package.json").read_bytes()).hexdigest()[:16]
    target = ROOT / "var" / "node-clients" / digest
    if (target / DONE).exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(CLIENTS / name, target / name)
    done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=target,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {target}: {done.stderr[-2000:]}")
    (target / DONE).write_text("ok\n")
    return target


def run_script(script: str | Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a Node script (a file of tests/clients/, or a path) beside the locked packages."""
    source = Path(script) if Path(script).is_absolute() else CLIENTS / script
    target = install_dir()
    copy = target / source.name
    shutil.copy(source, copy)
    return subprocess.run(["node", str(copy), *args], cwd=target, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def run_json(script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """`run_script`, its exit status checked and its last line of output decoded as JSON."""
    done = run_script(script, *args, env=env, timeout=timeout)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
