"""Schemathesis (4.x) against each mock service's OpenAPI document: no server errors, every answer as documented.

The documents are the ones `mocks.openapi.build()` produces, which is byte for byte what each service serves
at /openapi.json (checked below); loading them in-process lets pytest collect one test per operation
before the services start. Requests go to the session's real mock services over HTTP.

`positive_data_acceptance` is left out on purpose: cursors are opaque tokens that are only valid when the
service issued them, so a random string that fits `type: string` is rightly refused with 400.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mocks.openapi import build
from mocks.util import dumps
from testing.mockproc import request

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# Oversized batches are refused with the documented 413, which schemathesis does not expect by default.
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [400, 404, 405, 413, 422]}}})
orr = schemathesis.openapi.from_dict(build("orr"), config=CONFIG)
ice = schemathesis.openapi.from_dict(build("ice"), config=CONFIG)
eoir = schemathesis.openapi.from_dict(build("eoir"), config=CONFIG)


def test_served_documents_are_the_fuzzed_ones(mock_services: Any) -> None:
    for source in ("orr", "ice", "eoir"):
        r = request("GET", f"{mock_services.urls[source]}/openapi.json")
        assert r.status == 200 and r.headers["content-type"] == "application/json"
        assert r.body == dumps(build(source))
        assert r.json()["openapi"] == "3.1.0"


@orr.parametrize()
@SETTINGS
def test_orr_conforms_to_its_openapi(case: Any, mock_services: Any) -> None:
    case.call_and_validate(base_url=mock_services.orr, checks=CHECKS)


@ice.parametrize()
@SETTINGS
def test_ice_conforms_to_its_openapi(case: Any, mock_services: Any) -> None:
    case.call_and_validate(base_url=mock_services.ice, checks=CHECKS)


@eoir.parametrize()
@SETTINGS
def test_eoir_conforms_to_its_openapi(case: Any, mock_services: Any) -> None:
    case.call_and_validate(base_url=mock_services.eoir, checks=CHECKS)
