"""No log line of the run holds the mocks' personal data (issue 28): names, birth dates, street addresses and
phone numbers, read from the mocks' own records.

Every gateway and mock process the harness ran so far has left its output in the run's log directory
(testing/logs.py); this test (named to run after the others) drives one more gateway through reads that
return those values, with JSON logs, then looks for every value in every kept output. The run's
`pytest_sessionfinish` (tests/conftest.py) looks again once the session's own mocks have stopped.
"""

from __future__ import annotations

import json
from typing import Any

from testing.access import gateway_env
from testing.gateway import GatewayProcess, mint
from testing.logs import collected
from testing.personal_data import find, personal_values, save_list

READ = """query($a: ID!) { child(aNumber: $a) { aNumber
  location { status address { street city zip } } sponsor { name phone category }
  nta { status } hearing { caseStatus } } }"""


def test_no_log_line_of_the_run_holds_personal_data(mock_services: Any, tmp_path: Any) -> None:
    children = mock_services.sample(60)
    values = personal_values(mock_services, children)
    kinds = {kind for kind, _ in values}
    assert kinds == {"name", "birth date", "address", "phone"}, kinds
    save_list(values)
    planted = {"planted.log": f'{{"message": "x {values[0][1]} y"}}\n{values[-1][1]}\n'}
    assert [v for _, _, v in find(values, planted)] == [values[0][1], values[-1][1]]  # the search finds them
    gw = GatewayProcess(gateway_env(mock_services, UCGW_DATA_DIR=str(tmp_path), UCGW_LOG_FORMAT="json"))
    try:
        shown = 0
        for a in children:
            status, body = gw.query(READ, {"a": a})
            assert status == 200
            sponsor = ((body.get("data") or {}).get("child") or {}).get("sponsor") or {}
            shown += bool(sponsor.get("name"))
        assert shown > 0  # the gateway did handle personal data while it logged
        assert gw.query(READ, {"a": children[0]}, token=mint("caseworker", secret="wrong-secret-" * 3))[0] == 401
        assert gw.query("query { child(aNumber: 12) { aNumber } }")[0] in (200, 400)
    finally:
        own = gw.stop()
    assert own.strip() and all(json.loads(line)["level"] for line in own.splitlines() if line.strip())
    logs = collected()
    assert any(text == own or own in text for text in logs.values())  # this gateway's own output was kept
    assert find(values, logs) == []
