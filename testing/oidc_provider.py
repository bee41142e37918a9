"""A real OpenID Connect provider for the sign-in tests: the `oidc-provider-mock` package (Flask/werkzeug) in a
subprocess on a loopback port, with its users' claims set over its own HTTP API (`PUT /users/<sub>`).

Run as a module it is that subprocess: `python -m testing.oidc_provider PORT [CORS_ORIGIN]`. The one thing
added around the package's app is CORS for the page's origin (`Access-Control-Allow-Origin` on every answer),
which every provider a browser client signs in with sends for its discovery document and token endpoint.
Each start makes a new signing key (a new `kid`): stopping it and starting another on the same port is a
key rotation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from testing.gateway import free_port
from testing.mockproc import request

ROOT = Path(__file__).resolve().parents[1]


class OidcProvider:
    """`oidc-provider-mock` on 127.0.0.1:`port` (a free one unless given); `issuer` is its URL."""

    def __init__(self, port: int | None = None, cors_origin: str = "") -> None:
        self.port = port or free_port()
        self.cors_origin = cors_origin
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="oidc-provider-")) / "provider.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OidcProvider:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "testing.oidc_provider", str(self.port),
                                      self.cors_origin], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            try:
                if request("GET", f"{self.issuer}/.well-known/openid-configuration", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"OIDC provider did not start: {self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """The claims the provider puts in `sub`'s tokens (PUT /users/<sub>)."""
        resp = request("PUT", f"{self.issuer}/users/{sub}", json_body=claims)
        assert resp.status == 204, resp.body

    def jwks_reads(self) -> int:
        """How many times the key set was read (the provider logs each request)."""
        return self.log_path.read_text(errors="replace").count("GET /jwks")

    def id_token(self, sub: str, client_id: str, redirect_uri: str = "http://127.0.0.1/cb") -> str:
        """An ID token for `sub` through the provider's own authorization-code flow, as a browser would get it:
        the authorization form posted, the code read from the redirect, the code exchanged (PKCE sent)."""
        import base64
        import hashlib
        import secrets
        from urllib.parse import parse_qs, urlencode, urlsplit

        verifier = secrets.token_urlsafe(32)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                           "scope": "openid profile", "state": "s", "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        form = urllib.request.Request(f"{self.issuer}/oauth2/authorize?{query}", method="POST",
                                      data=urlencode({"sub": sub}).encode(),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:  # the provider answers with a redirect to `redirect_uri`, which is not followed
            urllib.request.build_opener(_NoRedirect).open(form, timeout=15)
            raise AssertionError("the provider did not redirect back with a code")
        except urllib.error.HTTPError as exc:
            assert exc.code in (302, 303), exc.read()
            location = exc.headers["Location"]
        code = parse_qs(urlsplit(location).query)["code"][0]
        body = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                          "client_id": client_id, "code_verifier": verifier}).encode()
        resp = request("POST", f"{self.issuer}/oauth2/token", data=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 200, resp.body
        return str(json.loads(resp.body)["id_token"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _serve(port: int, cors_origin: str) -> None:
    import werkzeug.serving
    from oidc_provider_mock import _app as provider_module
    from oidc_provider_mock import app as provider_app

    # GraphiQL is a public client (a page holds no secret): like any provider that serves browser apps, this one
    # must let a client authenticate at the token endpoint with its id alone ("none"); 0.3.x registers only the
    # secret-based methods. (It also stores no PKCE challenge, so it cannot check the verifier the page sends.)
    grant = provider_module.AuthorizationCodeGrant
    grant.TOKEN_ENDPOINT_AUTH_METHODS = [*grant.TOKEN_ENDPOINT_AUTH_METHODS, "none"]
    app = provider_app()
    app.debug = False

    @app.after_request
    def cors(response: Any) -> Any:
        if cors_origin:
            response.headers["Access-Control-Allow-Origin"] = cors_origin
        return response

    werkzeug.serving.run_simple("127.0.0.1", port, app, threaded=True)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
