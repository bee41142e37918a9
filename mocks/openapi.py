"""Hand-written OpenAPI 3.1 documents of the three mock services (data routes and health only).

The tester controls under `/_admin` are documented in mocks/README.md, not here, so that schema-driven
fuzzers exercise the data API without switching faults on or moving the clock.
"""

from __future__ import annotations

from typing import Any

from mocks.schemas import (
    A_NUMBER,
    CASE,
    CASE_STATUSES,
    CHILD,
    CHILD_STATUSES,
    CUSTODY_STATUSES,
    DATETIME,
    NTA_STATUSES,
    SUBJECT,
    enum,
    obj,
)

SERVICES: dict[str, dict[str, Any]] = {
    "orr": {"title": "ORR mock: children in and released from HHS custody", "collection": "children",
            "record": "Child", "schema": CHILD, "filters": {"status": enum(*CHILD_STATUSES)}},
    "ice": {"title": "ICE ERO mock: subjects, Notices to Appear, addresses, field offices",
            "collection": "subjects", "record": "Subject", "schema": SUBJECT,
            "filters": {"field_office": {"type": "string", "minLength": 1},
                        "nta_status": enum(*NTA_STATUSES), "custody_status": enum(*CUSTODY_STATUSES)}},
    "eoir": {"title": "EOIR mock: immigration-court cases and hearings", "collection": "cases",
             "record": "Case", "schema": CASE, "filters": {"case_status": enum(*CASE_STATUSES)}},
}

ERROR_CODES = ("BAD_REQUEST", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "CURSOR_EXPIRED", "METHOD_NOT_ALLOWED",
               "INTERNAL_ERROR", "UNAVAILABLE")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Malformed input (A-number, body, cursor or query)", 404: "Unknown A-number or path",
            410: "Cursor older than the retained change history", 413: "More than 500 A-numbers",
            500: "Injected server error", 503: "Service down or injected outage"}
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


FRESHNESS_HEADERS = {
    "ETag": {"description": "Strong validator of the response body", "required": True,
             "schema": {"type": "string", "pattern": '^"[0-9a-f]+"$'}},
    "Last-Modified": {"description": "HTTP-date of the newest updated_at in the response", "required": True,
                      "schema": {"type": "string"}},
}


def build(source: str) -> dict[str, Any]:
    """The OpenAPI document served at /openapi.json by one service."""
    svc = SERVICES[source]
    coll, rec = svc["collection"], svc["record"]
    a_param = {"name": "a_number", "in": "path", "required": True, "schema": A_NUMBER,
               "description": "Canonical A-number: 'A' followed by 9 digits"}
    filters = [{"name": k, "in": "query", "required": False, "schema": v, "description": f"Only records with this {k}"}
               for k, v in svc["filters"].items()]
    return {
        "openapi": "3.1.0",
        "info": {"title": svc["title"], "version": "1.0.0",
                 "description": "Synthetic data for testing; times are ISO-8601 UTC, dates YYYY-MM-DD."},
        "paths": {
            "/healthz": {"get": {
                "operationId": "health",
                "summary": "Liveness (503 while the service is switched down)",
                "responses": {"200": _json(_ref("Health"), "Up"), "503": _json(_ref("Health"), "Down")},
            }},
            f"/v1/{coll}/{{a_number}}": {"get": {
                "operationId": f"get{rec}",
                "summary": f"One {rec.lower()} record by A-number",
                "parameters": [a_param, {"name": "If-None-Match", "in": "header", "required": False,
                                         "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(_ref(rec), "The record", FRESHNESS_HEADERS),
                    "304": {"description": "Not modified (If-None-Match matched the ETag)",
                            "headers": FRESHNESS_HEADERS},
                    **_errors(400, 404, 500, 503),
                },
            }},
            f"/v1/{coll}/batch": {"post": {
                "operationId": f"batch{rec}s",
                "summary": "Many records at once; unknown A-numbers are listed in `missing`",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("BatchRequest")}}},
                "responses": {
                    "200": _json(_ref("BatchResponse"), "Records in request order (each A-number once)",
                                 FRESHNESS_HEADERS),
                    **_errors(400, 413, 500, 503),
                },
            }},
            f"/v1/{coll}": {"get": {
                "operationId": f"list{rec}s",
                "summary": "All records in A-number order, paginated with an opaque cursor",
                "parameters": [
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "next_cursor of the previous page"},
                    *filters,
                ],
                "responses": {"200": _json(_ref("ListPage"), "One page"), **_errors(400, 500, 503)},
            }},
            "/v1/changes": {"get": {
                "operationId": "changes",
                "summary": "Change feed: every change to a record, in order",
                "parameters": [
                    {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "A next_cursor from an earlier call, or 'latest' to start from now; "
                                    "omitted = from the beginning"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                ],
                "responses": {"200": _json(_ref("ChangePage"), "Changes after the cursor"),
                              **_errors(400, 410, 500, 503)},
            }},
        },
        "components": {"schemas": {
            rec: svc["schema"],
            "Error": obj({"error": obj({"code": enum(*ERROR_CODES), "message": {"type": "string"}})}),
            "Health": obj({"status": enum("ok", "down"), "service": enum(source), "now": DATETIME}),
            "BatchRequest": obj({"a_numbers": {"type": "array", "items": A_NUMBER, "minItems": 1,
                                               "maxItems": 500}}),
            "BatchResponse": obj({"records": {"type": "array", "items": _ref(rec)},
                                  "missing": {"type": "array", "items": A_NUMBER}}),
            "ListPage": obj({"records": {"type": "array", "items": _ref(rec)},
                             "next_cursor": {"type": ["string", "null"]}}),
            "ChangePage": obj({
                "changes": {"type": "array", "items": obj({
                    "seq": {"type": "integer", "minimum": 1},
                    "a_number": A_NUMBER,
                    "updated_at": DATETIME,
                    "fields": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                })},
                "next_cursor": {"type": "string"},
            }),
        }},
    }
