"""How the gateway reaches one source: TLS (the CA its certificate is verified by, our client certificate for
mTLS) and our OAuth2 access token there (client credentials grant), shared by the source's client and its
change-feed reader.

Each is optional and per source (`UCGW_<SOURCE>_CA_FILE`, `_CLIENT_CERT_FILE` / `_KEY_FILE`, `_TOKEN_URL`,
`_CLIENT_ID`, `_CLIENT_SECRET`, `_SCOPE`). A token is fetched on first use, kept until shortly before it
expires (`refresh_margin`), then fetched afresh by the first call that needs it while the others wait for
that one fetch; a 401 from the source drops it, and the client asks for a new one and retries once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from typing import Any

import aiohttp

from sources.settings import Settings
from sources.systems import Source

log = logging.getLogger("ucgw.client")

DEFAULT_TOKEN_SECONDS = 300.0  # a token answer without `expires_in` is taken to live this long
MAX_REFRESH_MARGIN = 60.0  # a token is replaced this long before it expires (or a quarter of its life, if less)


class TokenError(Exception):
    """Our token could not be had; the message says why (never the secret or the token)."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


def tls_context(settings: Settings, source: Source) -> ssl.SSLContext | None:
    """The TLS client context of calls to `source` (None: aiohttp's default, the system's CAs): verifying its
    certificate by `<source>_ca_file` and presenting `<source>_client_cert_file` for mTLS. Raises ValueError
    naming the setting when a file cannot be used."""
    ca, cert, key = (settings.source_option(source, name) for name in ("ca_file", "client_cert_file",
                                                                      "client_key_file"))
    if not (ca or cert):
        return None
    env = f"UCGW_{source.value}"
    try:
        context = ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use {env}_CA_FILE ({ca}): {exc}") from exc
    if cert:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use {env}_CLIENT_CERT_FILE / {env}_CLIENT_KEY_FILE ({cert}, {key}): {exc}"
                             ) from exc
    return context


def connection_problem(exc: BaseException, client_cert_hint: str = "") -> tuple[str, bool]:
    """What went wrong on a failed connection, in words an operator can act on, and whether trying again may
    help: TLS failures (an untrusted certificate, a client certificate the source wants or refuses) will not
    mend by themselves. `client_cert_hint`: the setting to name when an HTTPS source we present no client
    certificate to drops the connection unanswered (an asyncio or uvloop server demanding mTLS closes
    without a TLS alert after a TLS 1.3 handshake, so the client cannot tell that apart from a reset)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None) or cert_error
        return f"TLS: the source's certificate is not trusted ({reason}; check its CA file)", False
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            reason = seen.reason or str(seen)
            if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
                return f"TLS: the source wants a client certificate ({reason}; check its client cert file)", False
            if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
                return f"TLS: the source refused our client certificate ({reason})", False
            return f"TLS: {reason}", False
        seen = seen.__cause__ or seen.__context__
    dropped = isinstance(exc, aiohttp.ServerDisconnectedError) or (
        isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET)
    if dropped and client_cert_hint:
        return (f"connection closed without an answer ({type(exc).__name__}); we present no client certificate: "
                f"if the source requires mTLS, set {client_cert_hint}"), True
    return f"connection failed ({type(exc).__name__})", True


class TokenSource:
    """Our OAuth2 access token at one source (client credentials grant), cached until near its expiry."""

    def __init__(self, source: Source, settings: Settings, context: ssl.SSLContext | None) -> None:
        self.source = source
        self.url = settings.source_option(source, "token_url")
        self.client_id = settings.source_option(source, "client_id")
        self._secret = settings.source_option(source, "client_secret")
        self.scope = settings.source_option(source, "scope")
        self.timeout = settings.source_timeout_seconds
        self._ssl: Any = context if context is not None else True
        self._token: str | None = None
        self._refresh_at = 0.0  # monotonic time after which the token is replaced before use
        self._fetching: asyncio.Future[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetched = 0  # tokens received (for the log)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def token(self) -> str:
        """A current token: the cached one, or one fetch shared by every caller that finds none."""
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
            self._fetching.add_done_callback(self._fetched)
        # shielded: a caller that gives up (its deadline) does not cancel the fetch the others wait for
        return await asyncio.shield(self._fetching)

    def _fetched(self, _: asyncio.Future[str]) -> None:
        self._fetching = None

    def invalidate(self, token: str) -> None:
        """The source refused `token` (401): the next call fetches another (unless one was fetched meanwhile)."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  cookie_jar=aiohttp.DummyCookieJar())
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        auth = aiohttp.BasicAuth(self.client_id, self._secret)  # RFC 6749 2.3.1: the client authenticates so
        try:
            async with self._session.post(self.url, data=form, auth=auth, ssl=self._ssl) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                status = resp.status
        except TimeoutError as exc:
            raise TokenError(f"token endpoint gave no answer within {self.timeout:g} s", True) from exc
        except aiohttp.ClientError as exc:
            problem, retryable = connection_problem(exc)
            raise TokenError(f"token endpoint: {problem}", retryable) from exc
        if status != 200:
            error = body.get("error") if isinstance(body, dict) else None
            said = f" {error}" if isinstance(error, str) and error.isidentifier() else ""
            raise TokenError(f"token endpoint refused our client credentials (HTTP {status}{said})", status >= 500)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access_token", False)
        lifetime = body.get("expires_in", DEFAULT_TOKEN_SECONDS)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_SECONDS
        self._token = token
        self._refresh_at = time.monotonic() + lifetime - min(MAX_REFRESH_MARGIN, lifetime / 4)
        self.fetched += 1
        log.info("source %s: new access token (%d so far), valid %.0f s", self.source.value, self.fetched, lifetime)
        return token


class SourceAccess:
    """TLS context and token source of one backend, built once per process and shared by its callers."""

    def __init__(self, source: Source, settings: Settings) -> None:
        self.source = source
        self.ssl = tls_context(settings, source)
        self.tokens = TokenSource(source, settings, self.ssl) if settings.source_option(source, "token_url") else None
        # named when an HTTPS source drops our connections unanswered and we present no client certificate
        https = settings.source_url(source).startswith("https:")
        no_cert = not settings.source_option(source, "client_cert_file")
        self.client_cert_hint = f"UCGW_{source.value}_CLIENT_CERT_FILE" if https and no_cert else ""

    async def close(self) -> None:
        if self.tokens is not None:
            await self.tokens.close()
