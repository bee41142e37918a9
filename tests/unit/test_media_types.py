"""The response media type chosen from Accept (gateway/http/bodies.py): the GraphQL-over-HTTP spec's rules, and
the table of common headers answering as the rules would."""

from __future__ import annotations

import pytest

from gateway.http.bodies import COMMON_ACCEPTS, GRAPHQL_RESPONSE_JSON, LEGACY_JSON, response_media_type


@pytest.mark.parametrize(("accept", "media"), [
    (None, LEGACY_JSON), ("", LEGACY_JSON), (" ", LEGACY_JSON), ("*/*", LEGACY_JSON), ("application/*", LEGACY_JSON),
    ("application/json", LEGACY_JSON), ("APPLICATION/JSON; charset=utf-8", LEGACY_JSON),
    (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON), (f"{LEGACY_JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
    (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {LEGACY_JSON}", LEGACY_JSON), (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", LEGACY_JSON),
    ("text/html", None), ("application/json;q=0", None), ("text/*, image/png", None), ("application/json;q=x", None),
])
def test_the_spec_rules(accept: str | None, media: str | None) -> None:
    assert response_media_type(accept) == media


@pytest.mark.parametrize("accept", sorted(COMMON_ACCEPTS))
def test_every_common_header_is_answered_as_the_rules_answer_it(accept: str) -> None:
    assert COMMON_ACCEPTS[accept] == response_media_type(accept + " ")  # the space: past the table, parsed
