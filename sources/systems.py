"""The three agency systems of record and where their APIs keep each record kind."""

from __future__ import annotations

import enum


class Source(enum.Enum):
    """A backend system of record."""

    ORR = "ORR"
    ICE = "ICE"
    EOIR = "EOIR"

    # Members are singletons compared by identity, so the identity hash (C) serves; Enum's own __hash__
    # is a Python call, and sources are in the keys the request context looks up per section.
    __hash__ = object.__hash__

    @property
    def collection(self) -> str:
        """Path segment of this source's record collection (`/v1/<collection>`)."""
        return {"ORR": "children", "ICE": "subjects", "EOIR": "cases"}[self.value]


# The top-level fields of each source's records: the gateway's copy of the sources' published contract
# (the mocks serve it as OpenAPI; tests/unit/test_source_contract.py checks the two agree). A webhook post
# naming any other field is refused.
RECORD_FIELDS: dict[Source, frozenset[str]] = {
    Source.ORR: frozenset({
        "a_number", "background_check", "country_of_birth", "custody_episodes", "date_of_birth", "discharge",
        "first_name", "follow_up_call", "last_name", "orr_case_id", "release", "status", "updated_at",
    }),
    Source.ICE: frozenset({
        "a_number", "address_on_file", "apprehension", "country_of_birth", "custody_status", "date_of_birth",
        "field_office", "first_name", "last_name", "nta", "transfer_late", "transferred_to_orr_at",
        "uc_determined_at", "updated_at",
    }),
    Source.EOIR: frozenset({
        "a_number", "address_of_record", "case_opened_on", "case_status", "change_of_address_filed_on",
        "date_of_birth", "decision", "first_name", "hearings", "in_absentia_order", "last_name", "updated_at",
    }),
}
