"""`ucgw demo` driven as a caseworker would: GraphiQL in headless Chromium, offline (issue 3, `make e2e`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.gateway import ROOT, free_port, http

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
RESULT_JS = ("() => { const el = document.querySelector('.graphiql-response .CodeMirror');"
             " return el && el.CodeMirror ? el.CodeMirror.getValue() : ''; }")


def _healthy(url: str) -> bool:
    """Whether the gateway answers yet (the demo prints its banner just before it starts listening)."""
    try:
        return http("GET", url, timeout=1)[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`ucgw demo` on free ports; yields its GraphiQL URL, sample link and printed tokens."""
    port = free_port()
    log_path = Path(tmp_path_factory.mktemp("demo")) / "demo.log"
    env = {**os.environ, "UCGW_DATA_DIR": str(log_path.parent / "var")}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--orr-port", "0",
             "--ice-port", "0", "--eoir-port", "0", "--children", "500"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        try:
            text = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = log_path.read_text()
                if "sample " in text and _healthy(f"http://127.0.0.1:{port}/healthz"):
                    break
                assert proc.poll() is None, text
                time.sleep(0.2)
            sample = re.search(r"sample\s+(http://\S+)", text)
            assert sample, text
            tokens = dict(re.findall(r"(caseworker|partner|auditor)\S*\s*[:=]?\s*(eyJ[\w.-]+)", text))
            yield {"base": f"http://127.0.0.1:{port}", "sample_url": sample.group(1), "tokens": tokens,
                   "output": text}
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_printed_sample_query_works_over_http(demo: dict[str, Any]) -> None:
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(demo["sample_url"]).query)["query"][0]
    headers = {"Authorization": f"Bearer {demo['tokens']['caseworker']}"} if demo["tokens"] else {}
    status, _, body = http("POST", f"{demo['base']}/graphql", {"query": query}, headers=headers)
    data = json.loads(body)
    assert status == 200 and "errors" not in data, data
    child = data["data"]["child"]
    assert re.fullmatch(r"A\d{9}", child["aNumber"])
    assert child["hearing"]["provenance"][0]["source"] == "EOIR"


def test_graphiql_runs_the_sample_query_offline(demo: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.on("request", lambda r: None if r.url.startswith(demo["base"]) else outside.append(r.url))
            page.goto(demo["sample_url"], wait_until="networkidle")
            page.wait_for_selector(".graphiql-execute-button", timeout=20_000)
            if demo["tokens"]:
                page.fill("#ucgw-token", demo["tokens"]["caseworker"])
                page.click("#ucgw-token-save")
            page.click(".graphiql-execute-button")
            result = ""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                result = page.evaluate(RESULT_JS)
                if '"data"' in result or '"errors"' in result:
                    break
                time.sleep(0.2)
            page.screenshot(path=str(tmp_path / "graphiql.png"))
        finally:
            browser.close()
    assert outside == [], f"page tried to reach outside hosts: {outside}"
    data = json.loads(result)
    assert "errors" not in data, data
    prov = data["data"]["child"]["hearing"]["provenance"][0]
    assert prov["source"] == "EOIR" and prov["cacheStatus"] in ("MISS", "HIT")
    assert data["data"]["child"]["nta"]["provenance"][0]["source"] == "ICE"
