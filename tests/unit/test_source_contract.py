"""The gateway's copy of the sources' record contract (the field names a webhook post may name) is the one
the sources publish: the mocks' record schemas, served as their OpenAPI documents."""

from __future__ import annotations

from mocks.schemas import RECORD_SCHEMAS
from sources.systems import RECORD_FIELDS, Source


def test_record_fields_are_the_sources_published_fields() -> None:
    published = {source: frozenset(RECORD_SCHEMAS[source.value.lower()]["properties"]) for source in Source}
    assert RECORD_FIELDS == published
