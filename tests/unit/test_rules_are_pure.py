"""rules/ imports only the standard library and itself, so any caller (the read model too) can apply it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "rules"


def test_rules_import_only_the_standard_library_and_rules() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(RULES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top != "rules" and top not in sys.stdlib_module_names:
                    found.setdefault(path.name, set()).add(name)
    assert len(list(RULES.glob("*.py"))) >= 7
    assert found == {}
