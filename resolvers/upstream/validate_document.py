"""strawberry's `validate_document`, with graphql-core's `hide_suggestions` (security #11).

strawberry validates with the schema's rules plus two of its own (`UPSTREAM_RULES`) and passes no
`hide_suggestions`; this copy adds the flag, so production answers carry no "Did you mean" that would map the
schema for strangers. tests/unit/test_upstream.py checks strawberry's function still has the signature and
the extra rules copied here.
"""

from __future__ import annotations

from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, validate
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

UPSTREAM_PARAMETERS = ("schema", "document", "validation_rules")
UPSTREAM_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)


def validate_document(schema: GraphQLSchema, document: DocumentNode, validation_rules: tuple[Any, ...],
                      hide_suggestions: bool = False) -> list[GraphQLError]:
    """strawberry's validation of `document`, suggestions hidden when asked."""
    return validate(schema, document, (*validation_rules, *UPSTREAM_RULES), hide_suggestions=hide_suggestions)
