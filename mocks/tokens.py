"""A mock agency's own OAuth2 token endpoint and the Bearer check of its data routes (`--require-token`), as an
agency that lets the gateway in by client credentials would run them.

- `POST /oauth/token` (form `grant_type=client_credentials`, optional `scope`; the client authenticates with
  HTTP Basic, RFC 6749 2.3.1) answers `{"access_token", "token_type": "Bearer", "expires_in"}`, or 401
  `invalid_client` / 400 `unsupported_grant_type`;
- every `/v1/` request then needs `Authorization: Bearer <a token it issued, not expired>`, else 401;
- tester controls: `GET /_admin/tokens` (issued, refused counts), `POST /_admin/tokens` with
  `{"revoke_all": true}` (every token issued so far stops working), `{"refuse_all": true|false}` (no token
  is accepted, fresh ones neither) or `{"ttl_seconds": N}`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CLIENT_ID_ENV = "UCGW_MOCK_CLIENT_ID"  # the client id the token endpoint accepts (default `ucgw-gateway`)
CLIENT_SECRET_ENV = "UCGW_MOCK_CLIENT_SECRET"  # and its secret (required with --require-token)
DEFAULT_CLIENT_ID = "ucgw-gateway"


class TokenIssuer:
    """The tokens one mock service issued and accepts."""

    def __init__(self, client_id: str, client_secret: str, ttl_seconds: float) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.ttl_seconds = ttl_seconds
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued = 0
        self.refused = 0  # data requests refused for a missing, unknown or expired token
        self.refuse_all = False

    def check_client(self, authorization: str) -> bool:
        """The Basic credentials of a token request are ours."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(client_id, self.client_id) and hmac.compare_digest(secret, self._secret)

    def issue(self) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}  # forget the expired ones
        self.tokens[token] = now + self.ttl_seconds
        self.issued += 1
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl_seconds}

    def accepts(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if self.refuse_all:
            return False
        expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and time.monotonic() < expiry

    def facts(self) -> dict[str, Any]:
        return {"issued": self.issued, "refused": self.refused, "ttl_seconds": self.ttl_seconds,
                "refuse_all": self.refuse_all}


async def token_endpoint(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.tokens
    if not issuer.check_client(request.headers.get("authorization", "")):
        return JSONResponse({"error": "invalid_client"}, status_code=401,
                            headers={"www-authenticate": 'Basic realm="token"'})
    form = parse_qs((await request.body()).decode("latin-1"))
    if form.get("grant_type") != ["client_credentials"]:
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    return JSONResponse(issuer.issue(), headers={"cache-control": "no-store"})


async def tokens_admin(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.tokens
    if request.method == "POST":
        body = await request.json()
        if body.get("revoke_all"):
            issuer.tokens.clear()
        if isinstance(body.get("refuse_all"), bool):
            issuer.refuse_all = body["refuse_all"]
        ttl = body.get("ttl_seconds")
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            issuer.ttl_seconds = float(ttl)
    return JSONResponse(issuer.facts())


class TokenGate:
    """ASGI middleware: a `/v1/` request without a valid token of ours gets 401."""

    def __init__(self, app: ASGIApp, issuer: TokenIssuer) -> None:
        self.app = app
        self.issuer = issuer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
            if not self.issuer.accepts(authorization):
                self.issuer.refused += 1
                body = b'{"error": {"code": "UNAUTHORIZED", "message": "a valid access token is required"}}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"www-authenticate", b'Bearer error="invalid_token"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
