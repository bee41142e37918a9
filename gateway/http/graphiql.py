"""The GraphiQL page caseworkers use: GraphiQL 3 with the explorer plugin, the ready-made operations
(`gateway/http/operations/*.graphql`), a status card with freshness badges, and sign-in through the
deployment's OpenID Connect provider. Every asset is served by the gateway itself; nothing comes from a CDN.

The page's script and styles are one esbuild bundle built from `graphiql_src/` (npm, locked) into
`static/graphiql/` by `make assets` (byte-for-byte reproducible; the built files are committed). The HTML holds
no inline script: the page's settings travel as JSON in `<script type="application/json" id="ucgw-config">`.

Selectors for browser tests (docs/graphiql.md has the whole list):

* token bar: ``#ucgw-token`` (label "Bearer token"), ``#ucgw-token-save`` ("Save"), ``#ucgw-signin``
  ("Sign in with your organisation", only when OIDC is configured), ``#ucgw-token-status`` (a status region)
* ready-made operations: the list ``[aria-label="Ready-made operations"]``, one button per operation
* run: ``.graphiql-execute-button``; result JSON:
  ``document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()``
* status card: ``#ucgw-card`` (a `complementary` landmark "Status card"); each section
  ``[data-section=location]`` etc. with ``[data-cache-status]`` on its badge
* set a query without typing: open the page at ``<graphql_path>?query=<urlencoded query>``
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rules.roles import Capability
from sources.settings import Settings

STATIC_DIR: Path = Path(__file__).resolve().parent / "static" / "graphiql"
"""The built page assets (`make assets` writes them from `graphiql_src/`)."""
OPERATIONS_DIR: Path = Path(__file__).resolve().parent / "operations"
"""The ready-made operations, one `.graphql` file each with a `# key: value` header."""

TOKEN_STORAGE_KEY: str = "ucgw.token"
"""localStorage key under which the token bar keeps a pasted token (OIDC tokens stay in page memory only)."""

DEFAULT_QUERY: str = """# Welcome to the UC status gateway.
# Set your bearer token (or sign in) above, pick a ready-made operation on the left,
# or write a query, then press Ctrl-Enter.
{
  __typename
}
"""


@dataclass(frozen=True)
class Operation:
    """One ready-made operation as the page lists it."""

    id: str  # the file's stem
    title: str
    description: str
    requires: tuple[str, ...]  # capabilities the caller's role must hold (`viewer.capabilities`)
    variables: dict[str, object]  # "$A_NUMBER" and "$FIELD_OFFICE" are filled in by the page
    query: str  # the whole file, header comments included


_HEADER = re.compile(r"^#\s*(title|description|requires|variables):\s*(.*)$")


def parse_operation(path: Path) -> Operation:
    """An operation file: `# title:`, `# description:`, `# requires:` (capabilities, space-separated) and
    `# variables:` (JSON) header lines, then the GraphQL document."""
    text = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    for line in text.splitlines():
        match = _HEADER.match(line)
        if not match:
            break
        meta[match.group(1)] = match.group(2).strip()
    missing = {"title", "description", "requires", "variables"} - set(meta)
    if missing:
        raise ValueError(f"{path.name}: header lacks {', '.join(sorted(missing))}")
    requires = tuple(meta["requires"].split())
    known = {c.value for c in Capability}
    if not requires or not set(requires) <= known:
        raise ValueError(f"{path.name}: 'requires' must name capabilities among {sorted(known)}")
    variables = json.loads(meta["variables"])
    if not isinstance(variables, dict):
        raise ValueError(f"{path.name}: 'variables' must be a JSON object")
    return Operation(path.stem, meta["title"], meta["description"], requires, variables, text)


@cache
def ready_made_operations() -> tuple[Operation, ...]:
    """Every ready-made operation, in file-name order (read once per process: the files ship with the code)."""
    return tuple(parse_operation(p) for p in sorted(OPERATIONS_DIR.glob("*.graphql")))


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>UC status gateway - GraphiQL</title>
<link rel="stylesheet" href="{static}/ucgw-graphiql.css">
</head>
<body>
<div id="ucgw-app">
<header class="ucgw-header">
  <h1 class="ucgw-title">UC status gateway</h1>
  <form id="ucgw-token-bar" autocomplete="off" aria-label="Credentials">
    <label for="ucgw-token">Bearer token</label>
    <input id="ucgw-token" type="password" autocomplete="off" spellcheck="false" aria-describedby="ucgw-token-status">
    <button id="ucgw-token-save" type="submit">Save</button>
    {signin}
    <span id="ucgw-token-status" role="status"></span>
  </form>
</header>
<div class="ucgw-layout">
  <main id="graphiql" aria-label="GraphiQL">Loading GraphiQL&hellip;</main>
  <aside id="ucgw-card" aria-label="Status card"></aside>
</div>
</div>
<script type="application/json" id="ucgw-config">{config}</script>
<script src="{static}/ucgw-graphiql.js"></script>
</body>
</html>
"""

_SIGNIN = '<button id="ucgw-signin" type="button">Sign in with your organisation</button>'


def _json_in_html(value: object) -> str:
    """JSON that is safe inside a `<script type="application/json">` element."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def graphiql_page(settings: Settings | None = None, graphql_path: str = "/graphql",
                  static_prefix: str = "/static/graphiql") -> str:
    """The HTML of the page. `graphql_path` is where it sends queries (and opens subscriptions);
    with `settings.oidc_issuer` set it offers "Sign in" through that provider."""
    settings = settings or Settings()
    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id:
        oidc = {"issuer": settings.oidc_issuer.rstrip("/"), "clientId": settings.oidc_client_id,
                "scope": "openid profile"}
    config = {"url": graphql_path, "tokenKey": TOKEN_STORAGE_KEY, "defaultQuery": DEFAULT_QUERY,
              "operations": [asdict(op) for op in ready_made_operations()], "oidc": oidc}
    return _PAGE.format(static=html.escape(static_prefix.rstrip("/"), quote=True),
                        signin=_SIGNIN if oidc else "", config=_json_in_html(config))


def page_headers(settings: Settings | None = None) -> dict[str, str]:
    """The page's headers: a script policy of 'self' only (no inline script), connections to the gateway (and
    the OIDC provider, for its discovery document and token endpoint), and never framed by another site (a
    framed page holding a token could be clicked into a mutation)."""
    connect = "'self' ws: wss:"
    issuer = (settings.oidc_issuer if settings else "") or ""
    if issuer:
        parts = urlsplit(issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    policy = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              f"font-src 'self' data:; connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; "
              "form-action 'self'")
    return {"x-frame-options": "DENY", "content-security-policy": policy, "x-content-type-options": "nosniff",
            "cache-control": "no-store"}


def graphiql_response(settings: Settings | None = None, graphql_path: str = "/graphql") -> HTMLResponse:
    """The page as a response, with `page_headers`."""
    return HTMLResponse(graphiql_page(settings, graphql_path), headers=page_headers(settings))


def wants_graphiql_page(method: str, accept: str) -> bool:
    """Tell whether a request is a browser navigation that should get the page, not a GraphQL result.

    True for a GET whose ``Accept`` header names ``text/html`` (what browsers send), whether or
    not it carries ``?query=`` (or an OIDC provider's ``?code=``); API clients still get GET queries run.
    """
    return method.upper() == "GET" and "text/html" in accept.lower()


def static_mount() -> Mount:
    """Return a Starlette ``Mount`` serving the built page assets at ``/static/graphiql``."""
    return Mount("/static/graphiql", app=StaticFiles(directory=STATIC_DIR), name="graphiql-static")
