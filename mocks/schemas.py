"""JSON Schemas of the three record types (one source for OpenAPI documents and admin validation).

Schemas use the JSON Schema dialect of OpenAPI 3.1 (`type: [..., "null"]` for nullable values). A small
validator covering the keywords used here checks records staged through `/_admin/records`.
"""

from __future__ import annotations

import copy
from typing import Any

from mocks.util import valid_date, valid_datetime

Schema = dict[str, Any]

A_NUMBER_PATTERN = r"^A\d{9}$"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def nullable(schema: Schema) -> Schema:
    """Copy of schema that also accepts null."""
    out = copy.deepcopy(schema)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    elif isinstance(t, list) and "null" not in t:
        out["type"] = [*t, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def obj(props: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """Closed object schema; every property required unless a list is given."""
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def enum(*values: str) -> Schema:
    """String enumeration."""
    return {"type": "string", "enum": list(values)}


STR: Schema = {"type": "string", "minLength": 1}
BOOL: Schema = {"type": "boolean"}
DATETIME: Schema = {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}
DATE: Schema = {"type": "string", "format": "date", "pattern": DATE_PATTERN}
A_NUMBER: Schema = {"type": "string", "pattern": A_NUMBER_PATTERN, "description": "Canonical A-number"}

ADDRESS_PROPS: dict[str, Schema] = {
    "street": nullable(STR),
    "unit": nullable(STR),
    "city": nullable(STR),
    "state": {"type": ["string", "null"], "pattern": "^[A-Z]{2}$"},
    "zip": {"type": ["string", "null"], "pattern": r"^\d{5}$"},
    "quality": enum("valid", "blank", "undeliverable", "missing_unit"),
}
ADDRESS: Schema = obj(ADDRESS_PROPS)
ICE_ADDRESS: Schema = nullable(obj({
    **ADDRESS_PROPS,
    "source": enum("orr_release", "change_of_address", "field_visit", "tip"),
    "as_of": DATE,
}))

CHILD_STATUSES = ("referred", "in_care", "released", "unauthorized_departure", "aged_out", "repatriated")
FACILITY_TYPES = ("shelter", "staff_secure", "secure", "transitional_foster_care", "long_term_foster_care",
                  "residential_treatment_center")
RELATIONSHIPS = ("parent", "legal_guardian", "sibling", "aunt_uncle", "grandparent", "cousin", "family_friend",
                 "other")
FOLLOW_UP_OUTCOMES = ("reached", "sponsor_only", "not_residing", "no_contact", "not_attempted")
CUSTODY_STATUSES = ("in_dhs_custody", "transferred_to_orr", "in_ice_custody", "removed")
NTA_STATUSES = ("not_issued", "issued", "served", "filed")
CASE_STATUSES = ("pending", "decided", "administratively_closed", "terminated")
DECISIONS = ("removal_order", "removal_in_absentia", "voluntary_departure", "terminated", "dismissed",
             "administratively_closed")

CHILD: Schema = obj({
    "a_number": A_NUMBER,
    "orr_case_id": STR,
    "first_name": STR,
    "last_name": STR,
    "date_of_birth": DATE,
    "country_of_birth": nullable(STR),
    "status": enum(*CHILD_STATUSES),
    "custody_episodes": {"type": "array", "items": obj({
        "facility_name": STR,
        "facility_type": enum(*FACILITY_TYPES),
        "city": STR,
        "state": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "admitted_at": DATETIME,
        "discharged_at": nullable(DATETIME),
    })},
    "release": nullable(obj({
        "released_at": DATETIME,
        "sponsor": obj({
            "name": STR,
            "relationship": enum(*RELATIONSHIPS),
            "category": enum("1", "2A", "2B", "3"),
            "phone": nullable(STR),
            "address": ADDRESS,
        }),
        "post_release_services": enum("none", "virtual_check_ins", "case_management", "intensive"),
    })),
    "follow_up_call": nullable(obj({
        "due_on": DATE,
        "called_at": nullable(DATETIME),
        "outcome": enum(*FOLLOW_UP_OUTCOMES),
        "residing_with_sponsor": nullable(BOOL),
        "enrolled_in_school": nullable(BOOL),
        "aware_of_court_date": nullable(BOOL),
        "safety_concern": BOOL,
    })),
    "discharge": nullable(obj({
        "type": enum("aged_out", "repatriated", "unauthorized_departure"),
        "discharged_at": DATETIME,
    })),
    "background_check": nullable(enum("cleared", "pending")),
    "updated_at": DATETIME,
})

SUBJECT: Schema = obj({
    "a_number": A_NUMBER,
    "first_name": STR,
    "last_name": STR,
    "date_of_birth": DATE,
    "country_of_birth": nullable(STR),
    "apprehension": obj({"apprehended_at": DATETIME, "place": STR, "component": enum("USBP", "OFO")}),
    "uc_determined_at": DATETIME,
    "transferred_to_orr_at": nullable(DATETIME),
    "transfer_late": BOOL,
    "custody_status": enum(*CUSTODY_STATUSES),
    "nta": obj({
        "status": enum(*NTA_STATUSES),
        "issued_on": nullable(DATE),
        "served_on": nullable(DATE),
        "service_method": nullable(enum("personal", "mail")),
        "filed_on": nullable(DATE),
    }),
    "address_on_file": ICE_ADDRESS,
    "field_office": STR,
    "updated_at": DATETIME,
})

HEARING: Schema = obj({
    "id": STR,
    "type": enum("master_calendar", "individual"),
    "starts_at": DATETIME,
    "judge": STR,
    "court_name": STR,
    "court_address": ADDRESS,
    "medium": enum("in_person", "video", "telephone"),
    "outcome": nullable(enum("held", "adjourned", "failed_to_appear")),
})

CASE: Schema = obj({
    "a_number": A_NUMBER,
    "first_name": STR,
    "last_name": STR,
    "date_of_birth": DATE,
    "case_opened_on": DATE,
    "case_status": enum(*CASE_STATUSES),
    "hearings": {"type": "array", "items": HEARING},
    "in_absentia_order": nullable(obj({"ordered_on": DATE, "judge": STR})),
    "decision": nullable(obj({"type": enum(*DECISIONS), "decided_on": DATE})),
    "address_of_record": ADDRESS,
    "change_of_address_filed_on": nullable(DATE),
    "updated_at": DATETIME,
})

RECORD_SCHEMAS: dict[str, Schema] = {"orr": CHILD, "ice": SUBJECT, "eoir": CASE}


def _types_ok(value: Any, types: list[str]) -> bool:
    for t in types:
        if t == "null" and value is None:
            return True
        if t == "string" and isinstance(value, str):
            return True
        if t == "boolean" and isinstance(value, bool):
            return True
        if t == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t == "object" and isinstance(value, dict):
            return True
        if t == "array" and isinstance(value, list):
            return True
    return False


def validate(value: Any, schema: Schema, path: str = "$") -> list[str]:
    """Errors (as 'path: message' strings) of value against schema; empty when valid."""
    import re

    errors: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = [t] if isinstance(t, str) else t
        if not _types_ok(value, types):
            return [f"{path}: expected {' or '.join(types)}"]
    if value is None:
        return errors
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: must be one of {[v for v in schema['enum'] if v is not None]}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']}")
        fmt = schema.get("format")
        if fmt == "date" and not valid_date(value):
            errors.append(f"{path}: not a valid date (YYYY-MM-DD)")
        if fmt == "date-time" and not valid_datetime(value):
            errors.append(f"{path}: not a valid UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        for name, item in value.items():
            if name in props:
                errors.extend(validate(item, props[name], f"{path}.{name}"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}.{name}: unknown field")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errors
