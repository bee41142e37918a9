"""The mocks' personal data, read from their records over HTTP, and where it shows up in the run's logs.

`personal_values` walks each child's ORR, ICE and EOIR records (`/_admin/records/{a}` of each mock) for names
(given and family names together, a sponsor's or a person's `name`), birth dates, street addresses and phone
numbers. `pii_in_logs` looks for the values listed in the run's log directory (`personal-data.json`, written
by the test that read them) in every output testing/logs.py kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from testing.logs import collected, log_dir
from testing.mockproc import MockProcess

LIST_FILE = "personal-data.json"
VALUE_KEYS = {"date_of_birth": "birth date", "phone": "phone", "street": "address", "name": "name",
              "full_name": "name"}
NOT_PEOPLE = ("facility", "court", "office", "judge")  # `name`s under these keys are places and officials


def _walk(node: Any, found: set[tuple[str, str]], path: str = "") -> None:
    if isinstance(node, dict):
        first, last = node.get("first_name"), node.get("last_name")
        if isinstance(first, str) and isinstance(last, str) and first and last:
            found.add(("name", f"{first} {last}"))
            found.add(("name", f"{last}, {first}"))
        for key, value in node.items():
            kind = VALUE_KEYS.get(key)
            if kind and isinstance(value, str) and len(value) >= 6 and not any(w in path for w in NOT_PEOPLE):
                found.add((kind, value))
            _walk(value, found, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            _walk(value, found, path)


def personal_values(mocks: MockProcess, a_numbers: Iterable[str]) -> list[tuple[str, str]]:
    """(kind, value) of every name, birth date, street address and phone number in these children's records."""
    found: set[tuple[str, str]] = set()
    for a_number in a_numbers:
        for source in ("orr", "ice", "eoir"):
            response = mocks.request(source, "GET", f"/_admin/records/{a_number}")
            if response.status == 200:
                _walk(response.json(), found)
    return sorted(found)


def save_list(values: list[tuple[str, str]]) -> None:
    """Keep the list for the run's last check (tests/conftest.py `pytest_sessionfinish`)."""
    where = log_dir()
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
        (where / LIST_FILE).write_text(json.dumps(values), encoding="utf-8")


def find(values: list[tuple[str, str]], logs: dict[str, str]) -> list[tuple[str, str, str]]:
    """(file, kind, value) of each listed value found in a log (as a whole word or date)."""
    if not values:
        return []
    pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(v)}(?![\w-])" for _, v in values))
    kinds = {v: k for k, v in values}
    return [(name, kinds.get(m.group(0), "?"), m.group(0)) for name, text in logs.items()
            for m in pattern.finditer(text)]


def pii_in_logs() -> list[tuple[str, str, str]]:
    """Every listed value found in the run's kept logs; [] when no list was written."""
    where = log_dir()
    if where is None or not (where / LIST_FILE).is_file():
        return []
    values = [tuple(v) for v in json.loads((where / LIST_FILE).read_text(encoding="utf-8"))]
    return find(values, collected())  # type: ignore[arg-type]
