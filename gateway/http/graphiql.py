"""Offline GraphiQL page for the gateway: every asset is served locally, nothing comes from a CDN.

The vendored assets live in ``gateway/http/static/graphiql`` (versions and licenses in its
``VERSIONS.txt``); :func:`static_mount` serves them and :func:`graphiql_page` renders the HTML.

Selectors for a browser end-to-end test (GraphiQL 3.9.0 class names as shipped):

* page ready / editor rendered: ``.graphiql-container`` and ``.graphiql-query-editor .CodeMirror``
* token bar: ``#ucgw-token`` (password input), ``#ucgw-token-save`` (button, Enter also saves),
  ``#ucgw-token-status`` (text "token saved" / "no token")
* run the query: click ``.graphiql-execute-button`` (or press Ctrl-Enter in the query editor)
* read the result text: the full JSON is
  ``document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()``;
  the visible text is the inner text of ``.graphiql-response .result-window``
  (CodeMirror only renders lines near the viewport, so prefer ``getValue()`` for long results)
* set a query without typing: open the page at ``<graphql_path>?query=<urlencoded query>``

Serving the page from strawberry's view: strawberry only renders its IDE for a GET *without*
``?query=`` (with one it executes the query), so the view needs both overrides::

    class GatewayGraphQL(strawberry.asgi.GraphQL):
        def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
            return super().should_render_graphql_ide(request) or wants_graphiql_page(
                request.method, request.headers.get("accept", "")
            )

        async def render_graphql_ide(self, request: Request) -> Response:
            return graphiql_response()
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

STATIC_DIR: Path = Path(__file__).resolve().parent / "static" / "graphiql"
"""Directory holding the vendored GraphiQL/React browser builds."""

TOKEN_STORAGE_KEY: str = "ucgw.token"
"""localStorage key under which the token bar stores the bearer token."""

DEFAULT_QUERY: str = """# Welcome to the UC status gateway.
# Set your bearer token in the bar above, write a query, then press Ctrl-Enter.
{
  __typename
}
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' 'unsafe-inline'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'">
<meta name="referrer" content="no-referrer">
<title>UC status gateway - GraphiQL</title>
<link rel="stylesheet" href="{static}/graphiql.min.css">
<style>
  html, body {{ height: 100%; margin: 0; }}
  body {{ display: flex; flex-direction: column; font-family: system-ui, sans-serif; }}
  #ucgw-token-bar {{ display: flex; align-items: center; gap: 0.5rem; padding: 0.4rem 0.75rem;
    border-bottom: 1px solid #ccc; background: #f4f6f8; font-size: 0.9rem; }}
  #ucgw-token {{ width: 28rem; max-width: 60vw; padding: 0.2rem 0.4rem; }}
  #ucgw-token-status {{ color: #555; }}
  #graphiql {{ flex: 1; min-height: 0; }}
</style>
</head>
<body>
<form id="ucgw-token-bar" autocomplete="off">
  <label for="ucgw-token">Bearer token</label>
  <input id="ucgw-token" type="password" placeholder="paste your token" autocomplete="off" spellcheck="false">
  <button id="ucgw-token-save" type="submit">Save</button>
  <span id="ucgw-token-status" aria-live="polite"></span>
</form>
<div id="graphiql">Loading GraphiQL&hellip;</div>
<script src="{static}/react.production.min.js"></script>
<script src="{static}/react-dom.production.min.js"></script>
<script src="{static}/graphiql.min.js"></script>
<script>
(function () {{
  "use strict";
  var CONFIG = {config};
  var input = document.getElementById("ucgw-token");
  var status = document.getElementById("ucgw-token-status");

  function readToken() {{
    try {{ return window.localStorage.getItem(CONFIG.tokenKey) || ""; }} catch (e) {{ return ""; }}
  }}
  function showStatus() {{ status.textContent = readToken() ? "token saved" : "no token"; }}

  input.value = readToken();
  showStatus();
  document.getElementById("ucgw-token-bar").addEventListener("submit", function (event) {{
    event.preventDefault();
    var token = input.value.trim().replace(/^Bearer\\s+/i, "");
    try {{
      if (token) {{ window.localStorage.setItem(CONFIG.tokenKey, token); }}
      else {{ window.localStorage.removeItem(CONFIG.tokenKey); }}
    }} catch (e) {{ status.textContent = "cannot store token: " + e; return; }}
    input.value = token;
    showStatus();
  }});

  var baseFetcher = GraphiQL.createFetcher({{ url: CONFIG.url, enableIncrementalDelivery: false }});
  // Adds the saved token; an Authorization header set in GraphiQL's headers editor wins.
  function fetcher(params, opts) {{
    var headers = Object.assign({{}}, (opts && opts.headers) || {{}});
    var token = readToken();
    var hasAuth = Object.keys(headers).some(function (k) {{ return k.toLowerCase() === "authorization"; }});
    if (token && !hasAuth) {{ headers.Authorization = "Bearer " + token; }}
    return baseFetcher(params, Object.assign({{}}, opts || {{}}, {{ headers: headers }}));
  }}

  var props = {{
    fetcher: fetcher,
    defaultQuery: CONFIG.defaultQuery,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false
  }};
  var initialQuery = new URLSearchParams(window.location.search).get("query");
  if (initialQuery) {{ props.query = initialQuery; }}

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(GraphiQL, props));
}})();
</script>
</body>
</html>
"""


def _js_literal(value: object) -> str:
    """Serialize ``value`` as JSON that is safe to embed inside an inline ``<script>``."""
    return (
        json.dumps(value)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def graphiql_page(graphql_path: str = "/graphql", static_prefix: str = "/static/graphiql") -> str:
    """Return the HTML of the offline GraphiQL page.

    ``graphql_path`` is the endpoint the page POSTs queries to; ``static_prefix`` is where
    :func:`static_mount` (or an equivalent mount) serves the vendored assets. The page reads
    an initial query from ``?query=`` and sends ``Authorization: Bearer <token>`` when a token
    was saved in the token bar (localStorage key ``ucgw.token``).
    """
    config = {"url": graphql_path, "tokenKey": TOKEN_STORAGE_KEY, "defaultQuery": DEFAULT_QUERY}
    return _PAGE.format(
        static=html.escape(static_prefix.rstrip("/"), quote=True),
        config=_js_literal(config),
    )


# The page must not be framed by another site (a framed page with a saved token could be clicked into a
# mutation); the <meta> policy above cannot say this, only a header can.
PAGE_HEADERS = {"x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'",
                "x-content-type-options": "nosniff"}


def graphiql_response(graphql_path: str = "/graphql") -> HTMLResponse:
    """The GraphiQL page as a response, with `PAGE_HEADERS`."""
    return HTMLResponse(graphiql_page(graphql_path), headers=PAGE_HEADERS)


def wants_graphiql_page(method: str, accept: str) -> bool:
    """Tell whether a request is a browser navigation that should get the page, not a GraphQL result.

    True for a GET whose ``Accept`` header names ``text/html`` (what browsers send), whether or
    not it carries ``?query=``; API clients (``*/*``, ``application/json``) still get GET queries run.
    """
    return method.upper() == "GET" and "text/html" in accept.lower()


def static_mount() -> Mount:
    """Return a Starlette ``Mount`` serving the vendored GraphiQL assets at ``/static/graphiql``."""
    return Mount("/static/graphiql", app=StaticFiles(directory=STATIC_DIR), name="graphiql-static")
