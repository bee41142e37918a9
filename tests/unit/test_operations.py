"""The ready-made operations GraphiQL offers (gateway/http/operations/*.graphql) are valid against the served
schema, name real capabilities, and fill in every variable they declare."""

from __future__ import annotations

from graphql import OperationDefinitionNode, parse, validate

from gateway.http.graphiql import OPERATIONS_DIR, ready_made_operations
from resolvers.schema import build_schema
from rules.roles import ROLE_CAPABILITIES, Capability

EXPECTED = {"child_status", "office_caseload", "office_court_alerts", "office_nta_backlog",
            "report_safety_concern", "child_changes"}


def test_every_ready_made_operation_validates_against_the_schema() -> None:
    schema = build_schema()._schema
    operations = ready_made_operations()
    assert {op.id for op in operations} == EXPECTED == {p.stem for p in OPERATIONS_DIR.glob("*.graphql")}
    kinds = {}
    for op in operations:
        document = parse(op.query)
        assert validate(schema, document) == [], op.id
        (definition,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        kinds[op.id] = definition.operation.value
        declared = {v.variable.name.value for v in definition.variable_definitions}
        required = {v.variable.name.value for v in definition.variable_definitions
                    if v.type.kind == "non_null_type" and v.default_value is None}
        assert required <= set(op.variables) <= declared, op.id
        assert op.title and op.description and set(op.requires) <= {c.value for c in Capability}
    assert kinds == {"child_status": "query", "office_caseload": "query", "office_court_alerts": "query",
                     "office_nta_backlog": "query", "report_safety_concern": "mutation",
                     "child_changes": "subscription"}


def test_the_list_a_role_sees_follows_its_capabilities() -> None:
    def offered(role: str) -> set[str]:
        held = {c.value for c in ROLE_CAPABILITIES[role]}
        return {op.id for op in ready_made_operations() if set(op.requires) <= held}

    assert offered("caseworker") == EXPECTED
    assert offered("partner") == EXPECTED - {"report_safety_concern"}
    assert offered("auditor") == offered("operator") == set()
