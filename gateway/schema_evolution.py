"""Schema evolution: the served schema may only break what the released one promised in a new major version.

`ucgw schema-check` (run by `make test`) compares, with graphql-core's `find_breaking_changes`:
- the served schema with the committed `schema.graphql` (and the subgraph SDL with `schema.federation.graphql`):
  they must be equal, so the file partners read is the truth;
- the released schema (`schema/released.graphql`, whose first line names its version) with the served one:
  each breaking change must be listed, in graphql-core's words, in CHANGELOG.md under a version whose major
  number is above the released one; a field (or enum value) removed must have been `@deprecated` in the
  released schema first, never removed silently. Dangerous changes (an argument's default changed, an enum
  value or union member added) are reported, not refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from graphql import GraphQLEnumType, GraphQLError, GraphQLObjectType, GraphQLSchema, build_schema
from graphql.utilities import BreakingChangeType, find_breaking_changes, find_dangerous_changes

RELEASED_VERSION = re.compile(r"^#\s*ucgw\s+v?(\d+)\.(\d+)\.(\d+)\b")
CHANGELOG_VERSION = re.compile(r"^##\s+\[?v?(\d+)\.(\d+)\.(\d+)\b", re.MULTILINE)
REMOVALS = (BreakingChangeType.FIELD_REMOVED, BreakingChangeType.VALUE_REMOVED_FROM_ENUM)


@dataclass(frozen=True)
class Verdict:
    """What a comparison found: problems fail the check; notes are for the reader."""

    problems: list[str]
    notes: list[str]


def released_major(released_sdl: str) -> int:
    """The major version the released schema's first line names (`# ucgw 1.2.3: ...`)."""
    match = RELEASED_VERSION.match(released_sdl)
    if match is None:
        raise ValueError("schema/released.graphql must begin with '# ucgw <major>.<minor>.<patch>: ...'")
    return int(match.group(1))


def changelog_sections(changelog: str) -> dict[tuple[int, int, int], str]:
    """Each version's section of CHANGELOG.md (`## 2.0.0 ...` up to the next `## `), by version."""
    heads = list(CHANGELOG_VERSION.finditer(changelog))
    out: dict[tuple[int, int, int], str] = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(changelog)
        out[(int(head.group(1)), int(head.group(2)), int(head.group(3)))] = changelog[head.end():end]
    return out


def _deprecated(schema: GraphQLSchema, description: str) -> bool:
    """True when the field or enum value a removal's description names (`Type.name was removed...`) carried
    `@deprecated` in `schema`."""
    match = re.match(r"^(?:Field |Enum value )?(\w+)\.(\w+) was removed", description)
    if match is None:
        return False
    owner = schema.get_type(match.group(1))
    if isinstance(owner, GraphQLObjectType) and match.group(2) in owner.fields:
        return owner.fields[match.group(2)].deprecation_reason is not None
    if isinstance(owner, GraphQLEnumType) and match.group(2) in owner.values:
        return owner.values[match.group(2)].deprecation_reason is not None
    return False


def evolution(released_sdl: str, served_sdl: str, changelog: str) -> Verdict:
    """The released schema against the served one, under CHANGELOG.md's breaking-change entries."""
    released, served = build_schema(released_sdl), build_schema(served_sdl)
    major = released_major(released_sdl)
    allowed = "\n".join(text for (m, _, _), text in changelog_sections(changelog).items() if m > major)
    problems: list[str] = []
    for change in find_breaking_changes(released, served):
        if change.type in REMOVALS and not _deprecated(released, change.description):
            problems.append(f"{change.type.name}: {change.description} It was not @deprecated in the released "
                            "schema: deprecate it (@deprecated(reason: ...)) in a release first, remove it later.")
        elif change.description not in allowed:
            problems.append(f"{change.type.name}: {change.description} This breaks clients of {major}.x: list "
                            f"it verbatim in CHANGELOG.md under a version {major + 1}.0.0 or later.")
    notes = [f"{c.type.name}: {c.description}" for c in find_dangerous_changes(released, served)]
    return Verdict(problems, notes)


def differences(committed_sdl: str, served_sdl: str, file: str, command: str) -> list[str]:
    """Why a committed SDL file is not the served schema (none when equal)."""
    if committed_sdl == served_sdl:
        return []
    try:  # a subgraph SDL names federation's directives without defining them
        changes = find_breaking_changes(build_schema(committed_sdl, assume_valid_sdl=True),
                                        build_schema(served_sdl, assume_valid_sdl=True))
        found = "; ".join(c.description for c in changes) or "additions or descriptions only"
    except (TypeError, GraphQLError) as exc:
        found = f"the committed file does not build: {exc}"
    return [f"{file} is not the schema the gateway serves ({found}): run `{command} > {file}`"]


def check(root: Path, served_sdl: str, subgraph_sdl: str) -> Verdict:
    """Every check above, on the files under `root` (the repository)."""
    problems = differences((root / "schema.graphql").read_text(), served_sdl, "schema.graphql", "ucgw export-schema")
    problems += differences((root / "schema.federation.graphql").read_text(), subgraph_sdl,
                            "schema.federation.graphql", "ucgw export-schema --federation")
    released = evolution((root / "schema" / "released.graphql").read_text(), served_sdl,
                         (root / "CHANGELOG.md").read_text())
    return Verdict(problems + released.problems, released.notes)
