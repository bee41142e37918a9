"""Issue 30 in the browser: caseworkers in GraphiQL (headless Debian Chromium, every outside host blocked).

One gateway (with an OIDC provider, oidc-provider-mock, in a subprocess) in front of the mock agencies; the
page is driven by clicks and by keyboard alone; axe-core (from graphiql_src's npm lock) checks WCAG 2.1 A/AA;
screenshots of the status card go to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.access import gateway_env
from testing.gateway import ROOT, GatewayProcess, free_port, http, mint
from testing.mockproc import MockProcess
from testing.oidc_provider import OidcProvider

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "gateway" / "http" / "graphiql_src" / "node_modules" / "axe-core" / "axe.min.js"
# where the card's screenshots go: a temporary directory, unless E2E_SCREENSHOT_DIR names one
# (`E2E_SCREENSHOT_DIR=docs/screenshots make e2e` refreshes the committed ones)
SHOTS = Path(os.environ.get("E2E_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="ucgw-e2e-shots-"))
CLIENT_ID = "ucgw-graphiql"
ICE_TTL = 3  # seconds: short, so a record from ICE expires and is served STALE once ICE is down
RESULT_JS = ("() => { const el = document.querySelector('.graphiql-response .CodeMirror');"
             " return el && el.CodeMirror ? el.CodeMirror.getValue() : ''; }")
QUERY_JS = "() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
VARS_JS = "() => document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror.getValue()"


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, Any]]:
    """Mocks, an OIDC provider allowing the page's origin, and a gateway trusting both HS256 test tokens and
    the provider."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with MockProcess(seed=7, children=300) as mocks, OidcProvider(cors_origin=origin) as provider:
        gateway = GatewayProcess(gateway_env(
            mocks, UCGW_OIDC_ISSUER=provider.issuer, UCGW_OIDC_CLIENT_ID=CLIENT_ID,
            UCGW_CACHE_TTL_SECONDS="300", UCGW_ICE_TTL_SECONDS=str(ICE_TTL), UCGW_CHANGE_FEED_POLL_SECONDS="0.2",
            UCGW_RETRY_ATTEMPTS="0"), port=port)
        try:
            yield {"mocks": mocks, "provider": provider, "gateway": gateway, "url": f"{origin}/graphql"}
        finally:
            gateway.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """One browser page on the gateway, recording every request to another host."""

    def __init__(self, browser: Any, world: dict[str, Any]) -> None:
        self.context = browser.new_context(viewport={"width": 1500, "height": 950})
        self.page = self.context.new_page()
        self.outside: list[str] = []
        gateway, provider = world["url"].rsplit("/", 1)[0], world["provider"].issuer

        def seen(r: Any) -> None:
            # the gateway's page may reach the gateway and the provider only; the provider's own sign-in page
            # (not ours) links a stylesheet on a CDN, which the browser cannot reach either
            if not r.url.startswith((gateway, provider)) and not r.frame.url.startswith(provider):
                self.outside.append(r.url)

        self.page.on("request", seen)
        self.world = world

    def open(self, token: str | None = None) -> Page:
        self.page.goto(self.world["url"], wait_until="networkidle")
        self.page.wait_for_selector(".graphiql-execute-button", timeout=30_000)
        if token is not None:
            self.page.fill("#ucgw-token", token)
            self.page.click("#ucgw-token-save")
            self.page.wait_for_function(
                "() => /token saved: /.test(document.getElementById('ucgw-token-status').textContent)")
        return self

    def operation(self, op_id: str, a_number: str = "", office: str = "") -> None:
        if a_number:
            self.page.fill("#ucgw-op-anumber", a_number)
        if office:
            self.page.fill("#ucgw-op-office", office)
        self.page.click(f"button[data-operation={op_id}]")
        self.page.wait_for_function(f"() => ({QUERY_JS})().includes('{_operation_name(op_id)}')")

    def run(self, previous: str = "") -> dict[str, Any]:
        """Run the editor's operation; the answer as JSON (waits for a new one)."""
        self.page.click(".graphiql-execute-button")
        return self.result(previous)

    def result(self, previous: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = self.page.evaluate(RESULT_JS)
            if text and text != previous and ('"data"' in text or '"errors"' in text):
                return dict(json.loads(text))
            time.sleep(0.1)
        raise AssertionError(f"no answer: {text!r}")

    def badges(self) -> dict[str, list[list[str]]]:
        """The card's freshness badges: section -> [(source, cache status)]."""
        return self.page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll(
            '#ucgw-card [data-section]')).map(s => [s.dataset.section, Array.from(s.querySelectorAll(
            '[data-cache-status]')).map(b => [b.dataset.source, b.dataset.cacheStatus])]))""")

    def close(self) -> None:
        self.context.close()
        assert self.outside == [], f"the page tried to reach outside hosts: {self.outside}"


def _operation_name(op_id: str) -> str:
    return {"child_status": "ChildStatus", "office_caseload": "OfficeCaseload", "office_court_alerts":
            "OfficeCourtAlerts", "office_nta_backlog": "OfficeNtaBacklog", "report_safety_concern":
            "ReportSafetyConcern", "child_changes": "ChildChanges"}[op_id]


def _expected_badges(child: dict[str, Any]) -> dict[str, list[list[str]]]:
    def prov(section: str) -> list[list[str]]:
        value = child.get(section)
        return [[p["source"], p["cacheStatus"]] for p in value["provenance"]] if value else []

    return {"location": prov("location"), "sponsor": prov("sponsor"), "nta": prov("nta"),
            "hearing": prov("hearing"), "hearing:missed": prov("hearing"), "discrepancies": []}


def _office_of(world: dict[str, Any], a: str) -> str:
    status, _, body = http("GET", f"{world['mocks'].ice}/v1/subjects/{a}")
    assert status == 200
    return str(json.loads(body)["field_office"])


def _child(world: dict[str, Any], index: int) -> str:
    """A different released child with a hearing set for each test (every section of the card has a value)."""
    return str(world["mocks"].sample(8, state="hearing_scheduled")[index])


def test_each_ready_made_operation_runs_for_a_caseworker_and_the_card_follows_provenance(
        browser: Any, world: dict[str, Any]) -> None:
    a = _child(world, 1)
    office = _office_of(world, a)
    page = Page(browser, world).open(mint("caseworker", subject="cw-e2e"))
    try:
        offered = page.page.eval_on_selector_all("[aria-label='Ready-made operations'] button[data-operation]",
                                                 "els => els.map(e => e.dataset.operation)")
        assert sorted(offered) == ["child_changes", "child_status", "office_caseload", "office_court_alerts",
                                   "office_nta_backlog", "report_safety_concern"]
        page.operation("child_status", a_number=a, office=office)
        assert json.loads(page.page.evaluate(VARS_JS)) == {"a": a}
        first = page.run()
        assert "errors" not in first, first
        child = first["data"]["child"]
        assert {p["cacheStatus"] for s in ("location", "sponsor", "nta", "hearing") for p in child[s]["provenance"]} \
            == {"MISS"}
        assert page.badges() == _expected_badges(child)
        page.page.screenshot(path=str(SHOTS / "card-fresh.png"))
        second = page.run(json.dumps(first, indent=2))
        child2 = second["data"]["child"]
        assert [p["cacheStatus"] for p in child2["hearing"]["provenance"]] == ["HIT"]
        assert [p["cacheStatus"] for p in child2["sponsor"]["provenance"]] == ["HIT"]
        page.page.wait_for_function("() => document.querySelector('#ucgw-card [data-section=hearing] "
                                    "[data-cache-status]').dataset.cacheStatus === 'HIT'")
        assert page.badges() == _expected_badges(child2)
        assert "fetched" in page.page.inner_text("#ucgw-card [data-section=hearing]")

        for op_id, root in (("office_caseload", "caseload"), ("office_court_alerts", "courtAlerts"),
                            ("office_nta_backlog", "ntaBacklog")):
            page.operation(op_id)
            assert json.loads(page.page.evaluate(VARS_JS)) == {"office": office}
            answer = page.run(page.page.evaluate(RESULT_JS))
            assert "errors" not in answer and answer["data"][root] is not None, (op_id, answer)
        caseload = page.page.evaluate(RESULT_JS)  # the last answer (backlog) for the next comparison
        page.operation("report_safety_concern")
        answer = page.run(caseload)
        assert "errors" not in answer, answer
        concern = answer["data"]["reportSafetyConcern"]
        assert concern["status"] == "OPEN" and concern["reportedBy"] == "cw-e2e" and concern["fieldOffice"]

        previous = page.page.evaluate(RESULT_JS)
        page.operation("child_changes")
        page.page.click(".graphiql-execute-button")
        time.sleep(1.0)  # the subscription is open once its socket has sent `subscribe`; then a record changes
        world["mocks"].advance(3600)  # the change gets a newer updated_at than the record's last one
        current = world["mocks"].admin_ok("orr", "GET", f"/_admin/records/{a}")["background_check"]
        world["mocks"].admin_ok("orr", "PATCH", f"/_admin/records/{a}",
                                {"background_check": "pending" if current == "cleared" else "cleared"})
        event = page.result(previous)
        assert "data" in event, event
        assert event["data"]["childStatusChanged"]["aNumber"] == a
        assert event["data"]["childStatusChanged"]["source"] == "ORR"
    finally:
        page.close()


def test_a_source_down_with_stale_serving_shows_stale_badges_in_words(
        browser: Any, world: dict[str, Any]) -> None:
    a = _child(world, 2)
    page = Page(browser, world).open(mint("caseworker"))
    try:
        page.operation("child_status", a_number=a)
        first = page.run()
        assert [p["cacheStatus"] for p in first["data"]["child"]["nta"]["provenance"]] == ["MISS"]
        world["mocks"].admin_ok("ice", "PUT", "/_admin/faults", {"down": True})
        try:
            time.sleep(ICE_TTL + 0.5)  # the ICE record expires (its TTL), so the next answer must ask ICE
            answer = page.run(json.dumps(first, indent=2))
            nta = answer["data"]["child"]["nta"]
            assert [(p["source"], p["cacheStatus"], p["stale"]) for p in nta["provenance"]] == [("ICE", "STALE", True)]
            assert answer["extensions"]["warnings"][0]["source"] == "ICE"
            page.page.wait_for_selector("#ucgw-card [data-section=nta] [data-cache-status=STALE]")
            assert page.badges() == _expected_badges(answer["data"]["child"])
            card = page.page.inner_text("#ucgw-card")
            assert "Some of this answer is stale." in card and "could not be reached" in card
            page.page.screenshot(path=str(SHOTS / "card-stale.png"))
        finally:
            world["mocks"].admin_ok("ice", "PUT", "/_admin/faults", {"down": False})
    finally:
        page.close()


def test_a_partner_sees_forbidden_sections_as_such(browser: Any, world: dict[str, Any]) -> None:
    a = _child(world, 3)
    page = Page(browser, world).open(mint("partner", subject="lsp-e2e", client="lsp-app"))
    try:
        offered = page.page.eval_on_selector_all("button[data-operation]", "els => els.map(e => e.dataset.operation)")
        assert "report_safety_concern" not in offered and "child_status" in offered
        page.operation("child_status", a_number=a)
        answer = page.run()
        codes = {tuple(e["path"]): e["extensions"]["code"] for e in answer["errors"]}
        assert codes[("child", "identity", "firstName")] == codes[("child", "sponsor", "name")] == "FORBIDDEN"
        page.page.wait_for_selector("#ucgw-card [data-error-code=FORBIDDEN]")
        assert "Withheld: your role may not read this" in page.page.inner_text("#ucgw-card [data-section=sponsor]")
        page.page.screenshot(path=str(SHOTS / "card-partner.png"))
    finally:
        page.close()


def test_the_explorer_builds_a_query_by_clicking(browser: Any, world: dict[str, Any]) -> None:
    page = Page(browser, world).open(mint("caseworker", subject="cw-explorer"))
    try:
        page.page.click("button[aria-label='Add tab']")
        page.page.wait_for_function(f"() => ({QUERY_JS})().includes('__typename')")  # a new tab: the default
        page.page.click("button[aria-label='Show GraphiQL Explorer']")
        explorer = page.page.locator(".graphiql-explorer-root")
        explorer.locator("[data-field-name=viewer]").click()
        explorer.locator("[data-field-name=subject]").click()
        explorer.locator("[data-field-name=role]").click()
        page.page.wait_for_function(f"() => /viewer\\s*{{\\s*subject\\s+role/.test(({QUERY_JS})())")
        answer = page.run()
        assert answer["data"]["viewer"] == {"subject": "cw-explorer", "role": "caseworker"}
    finally:
        page.close()


def test_sign_in_through_the_provider_keeps_the_token_in_memory(browser: Any, world: dict[str, Any]) -> None:
    world["provider"].set_user("maria", {"role": "caseworker", "field_offices": ["Washington"]})
    page = Page(browser, world).open()
    try:
        page.page.get_by_role("button", name="Sign in with your organisation").click()
        page.page.wait_for_url(f"{world['provider'].issuer}/**")
        page.page.fill("input[name=sub]", "maria")
        page.page.get_by_role("button", name="Authorize").click()
        page.page.wait_for_function(
            "() => /signed in: maria \\(caseworker\\)/.test(document.getElementById('ucgw-token-status')"
            ".textContent)", timeout=30_000)
        assert page.page.url == world["url"]  # the code is off the address bar
        stored = page.page.evaluate("() => [document.cookie, JSON.stringify(localStorage), "
                                    "JSON.stringify(sessionStorage)]")
        assert stored[0] == "" and not any("eyJ" in s for s in stored), stored  # no token kept anywhere
        assert page.context.cookies(world["url"]) == []
        page.operation("office_caseload")
        assert json.loads(page.page.evaluate(VARS_JS)) == {"office": "washington"}
        answer = page.run()
        assert "errors" not in answer, answer
        assert answer["data"]["caseload"]["edges"], answer  # Washington's children, as the provider's claim says
    finally:
        page.close()


AXE_RUN = """async () => {
    const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
    return r.violations.map(v => ({id: v.id, impact: v.impact,
                                   nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
}"""


def test_axe_finds_no_wcag_a_or_aa_violation(browser: Any, world: dict[str, Any]) -> None:
    """The whole page, no rule disabled, no region excluded: before sign-in, with a child's card, with the
    explorer open and with the documentation explorer open."""
    page = Page(browser, world).open()
    try:
        page.page.evaluate(AXE.read_text())  # through the debugger protocol: the page's policy allows no inline script
        found = {"no token": page.page.evaluate(AXE_RUN)}
        page.page.fill("#ucgw-token", mint("caseworker"))
        page.page.click("#ucgw-token-save")
        page.operation("child_status", a_number=_child(world, 4))
        page.run()
        page.page.wait_for_selector("#ucgw-card [data-section=location] [data-cache-status]")
        found["card"] = page.page.evaluate(AXE_RUN)
        page.page.click("button[aria-label='Show GraphiQL Explorer']")
        page.page.wait_for_selector(".graphiql-explorer-root [data-field-name=child]")
        found["explorer"] = page.page.evaluate(AXE_RUN)
        page.page.click("button[aria-label='Show Documentation Explorer']")
        page.page.wait_for_selector(".graphiql-doc-explorer-section-content a")
        found["docs"] = page.page.evaluate(AXE_RUN)
        assert found == {"no token": [], "card": [], "explorer": [], "docs": []}, json.dumps(found, indent=1)
    finally:
        page.close()


def _focus_by_tab(page: Any, name: str, limit: int = 80) -> None:
    """Press Tab until the focused element's accessible name (label, aria-label or text) is `name`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement; if (!e) return '';
            const label = e.labels && e.labels.length ? e.labels[0].textContent : '';
            return (e.getAttribute('aria-label') || label || e.textContent || '').trim(); }""")
        if focused == name:
            return
    raise AssertionError(f"no element named {name!r} within {limit} Tab presses")


def test_a_keyboard_alone_runs_a_ready_made_operation(browser: Any, world: dict[str, Any]) -> None:
    a = _child(world, 5)
    page = Page(browser, world).open()
    p = page.page
    try:
        p.evaluate("() => document.activeElement && document.activeElement.blur()")
        _focus_by_tab(p, "Bearer token")
        p.keyboard.type(mint("caseworker", subject="cw-keys"))
        p.keyboard.press("Enter")
        p.wait_for_function("() => /token saved: cw-keys/.test(document.getElementById('ucgw-token-status')"
                            ".textContent)")
        _focus_by_tab(p, "A-number")
        p.keyboard.type(a)
        _focus_by_tab(p, "One child's full status")
        p.keyboard.press("Enter")
        p.wait_for_function(f"() => ({QUERY_JS})().includes('ChildStatus')")
        _focus_by_tab(p, "Execute query (Ctrl-Enter)")
        p.keyboard.press("Enter")
        answer = page.result()
        assert answer["data"]["child"]["aNumber"] == a
        p.wait_for_selector("#ucgw-card [data-section=location] [data-cache-status]")
    finally:
        page.close()
