"""Node clients the tests drive (tests/clients/<name>/: package.json, package-lock.json and scripts).

Each client's packages are installed with `npm ci` from its committed lock into a folder of the test run's
own under `var/node/` (git-ignored), named by the lock's hash: an unchanged lock is installed once, a changed
one gets a fresh folder. Install scripts do not run (`--ignore-scripts`): the packages are plain JavaScript.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / "tests" / "clients"
INSTALLS = ROOT / "var" / "node"


def installed(name: str) -> Path:
    """The folder holding client `name`'s files and its locked `node_modules`, installed when missing."""
    source = CLIENTS / name
    lock = (source / "package-lock.json").read_bytes()
    folder = INSTALLS / f"{name}-{hashlib.sha256(lock).hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as held:  # one install at a time, should two runs share the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        for path in source.iterdir():  # the scripts may have changed since the install; the lock has not
            if path.is_file():
                shutil.copyfile(path, folder / path.name)
        if not (folder / "node_modules" / ".installed").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                           cwd=folder, check=True, capture_output=True, timeout=600)
            (folder / "node_modules" / ".installed").touch()
    return folder


def run(name: str, script: str, *args: Any, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `node <script> <args as JSON>` in client `name`'s folder; stdout carries its JSON lines."""
    folder = installed(name)
    return subprocess.run(["node", script, *(json.dumps(a) for a in args)], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def start(name: str, script: str, *args: Any) -> subprocess.Popen[str]:
    """Start `node <script> <args as JSON>` in client `name`'s folder (line-buffered stdout, for reading as it
    goes, and a stdin pipe for a server to end on when it closes); the caller stops it."""
    folder = installed(name)
    return subprocess.Popen(["node", script, *(json.dumps(a) for a in args)], cwd=folder, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
