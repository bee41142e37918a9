"""Schema evolution rules (gateway/schema_evolution.py) and `ucgw schema-check` on this repository and on
copies of it with a released schema the served one breaks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from gateway.schema_evolution import evolution

ROOT = Path(__file__).resolve().parents[2]
RELEASED = '''# ucgw 1.4.0: released
type Query {
  child(aNumber: ID!): Child
  old: String @deprecated(reason: "use child")
}
type Child { aNumber: ID! name: String }
enum Kind { A B }
'''
CURRENT = '''type Query { child(aNumber: ID!): Child  kind: Kind }
type Child { aNumber: ID! }
enum Kind { A B C }
'''
CHANGELOG = "# Changelog\n\n## {version}\n\n### Removed\n- {lines}\n\n## 1.4.0\n- first\n"


def test_an_additive_change_passes_and_dangerous_ones_are_noted() -> None:
    verdict = evolution(RELEASED, RELEASED.replace("name: String", "name: String nickname: String"), "")
    assert verdict == type(verdict)([], [])
    verdict = evolution(RELEASED, RELEASED.replace("enum Kind { A B }", "enum Kind { A B C }"), "")
    assert verdict.problems == [] and verdict.notes == ["VALUE_ADDED_TO_ENUM: Enum value Kind.C was added."]


def test_a_silent_removal_fails_even_when_listed() -> None:
    listed = CHANGELOG.format(version="2.0.0", lines="Field Query.old was removed.\n- Field Child.name was removed.")
    problems = evolution(RELEASED, CURRENT, listed).problems
    assert problems == ["FIELD_REMOVED: Field Child.name was removed. It was not @deprecated in the released schema: "
                        "deprecate it (@deprecated(reason: ...)) in a release first, remove it later."]


def test_a_breaking_change_needs_its_entry_under_a_new_major_version() -> None:
    released = RELEASED.replace("name: String", 'name: String @deprecated(reason: "gone in 2.0")')
    advice = "This breaks clients of 1.x: list it verbatim in CHANGELOG.md under a version 2.0.0 or later."
    assert evolution(released, CURRENT, "").problems == [
        f"FIELD_REMOVED: Field Query.old was removed. {advice}",
        f"FIELD_REMOVED: Field Child.name was removed. {advice}"]
    both = "Field Query.old was removed.\n- Field Child.name was removed."
    assert len(evolution(released, CURRENT, CHANGELOG.format(version="1.5.0", lines=both)).problems) == 2
    assert evolution(released, CURRENT, CHANGELOG.format(version="2.0.0", lines=both)).problems == []


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "schema-check", "--root", str(root)], cwd=ROOT,
                          capture_output=True, text=True)


def test_this_repository_passes() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stderr


def copy(tmp: Path) -> Path:
    (tmp / "schema").mkdir()
    for name in ("schema.graphql", "schema.federation.graphql", "schema/released.graphql", "CHANGELOG.md"):
        shutil.copyfile(ROOT / name, tmp / name)
    return tmp


def test_a_field_the_served_schema_dropped_fails_the_check(tmp_path: Path) -> None:
    root = copy(tmp_path)
    released = (root / "schema" / "released.graphql").read_text()
    legacy = '  legacyStatus: String @deprecated(reason: "use hearing")\n'
    extra = released.replace("type Child {\n", "type Child {\n" + legacy)
    (root / "schema" / "released.graphql").write_text(extra)
    done = check(root)
    assert done.returncode == 1
    assert "FIELD_REMOVED: Field Child.legacyStatus was removed. This breaks clients of 0.x" in done.stderr
    changelog = (root / "CHANGELOG.md").read_text()
    (root / "CHANGELOG.md").write_text(changelog.replace(
        "## Unreleased", "## 1.0.0\n\n### Removed\n- Field Child.legacyStatus was removed."))
    assert check(root).returncode == 0


def test_a_stale_committed_schema_fails_the_check(tmp_path: Path) -> None:
    root = copy(tmp_path)
    committed = (root / "schema.graphql").read_text()
    (root / "schema.graphql").write_text(committed.replace("type Child {\n", "type Child {\n  stale: Int\n"))
    done = check(root)
    assert done.returncode == 1
    assert "schema.graphql is not the schema the gateway serves (Field Child.stale was removed.): run `ucgw " \
           "export-schema > schema.graphql`" in done.stderr
