"""The output of every process the harness ran, kept for checks over a whole test run.

When `UCGW_TEST_LOG_DIR` names a directory (tests/conftest.py makes one per run), `GatewayProcess.stop` and
`MockProcess.stop` append what their process printed to a file of their own there; `collected()` reads them
all back (tests/test_zz_logs_hold_no_pii.py and the run's last check look for personal data in them).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

LOG_DIR_ENV = "UCGW_TEST_LOG_DIR"
_SERIAL = itertools.count(1)


def log_dir() -> Path | None:
    """The directory the run's output is kept in, None when nothing is kept."""
    raw = os.environ.get(LOG_DIR_ENV)
    return Path(raw) if raw else None


def keep_output(kind: str, text: str) -> Path | None:
    """Keep one process's output (`kind`: gateway, mocks) under `log_dir()`; the file, or None."""
    where = log_dir()
    if where is None or not text:
        return None
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{kind}-{os.getpid()}-{next(_SERIAL)}.log"
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
    return path


def collected() -> dict[str, str]:
    """Every kept output so far, by file name."""
    where = log_dir()
    if where is None or not where.is_dir():
        return {}
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(where.glob("*.log"))}
