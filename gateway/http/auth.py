"""Authentication: Bearer JWTs (HS256 shared secrets, by key id during a rotation; RS256 public key or JWKS;
or an OpenID Connect provider's tokens) and hashed API keys.

Never logs or echoes a credential. Error messages say what is wrong, not what was sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cachetools import LRUCache

from gateway.config import ConfigError, jwt_secrets, require_credentials
from rules.roles import ANONYMOUS, ROLES, Principal, office_scope
from sources.settings import Settings

log = logging.getLogger("ucgw.auth")
LEEWAY_SECONDS = 30
VERIFIED_TOKENS = 4096  # tokens whose verification is remembered until they expire
API_KEY_PREFIX = "ucgw_"


class AuthError(Exception):
    """Missing or invalid credentials; the message is safe to return to the caller."""


@dataclass(frozen=True)
class ApiKey:
    """One partner application's key, as configured (only its SHA-256 is stored)."""

    client: str
    role: str
    field_offices: frozenset[str] | None
    trusted_documents_only: bool = False  # runs only the operations of its client's trusted-document manifest


MAX_NAME = 256  # longest `sub` or `client` a token may name (they go to every audit event)


def is_name(value: object) -> bool:
    """A token's `sub` or `client`, a keys file's `client`: a printable string of at most MAX_NAME characters
    with something visible in it."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable() and not value.isspace()


def hash_api_key(key: str) -> str:
    """The hex SHA-256 under which an API key is stored in the keys file."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (256 bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def load_api_keys(path: str) -> dict[str, ApiKey]:
    """Keys file (TOML `[[api_key]]` tables, or JSON `{"api_key": [...]}`) as {sha256: ApiKey}."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc}") from exc
    entries = data.get("api_key", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"API keys file {path}: expected [[api_key]] tables (JSON: {{\"api_key\": [...]}})")
    keys: dict[str, ApiKey] = {}
    for i, entry in enumerate(entries):
        where = f"API keys file {path}, entry {i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with sha256, client and role")
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}: 'sha256' must be 64 hex digits (see `ucgw apikey`)")
        if entry.get("role") not in ROLES:
            raise ConfigError(f"{where}: 'role' must be one of {', '.join(ROLES)}")
        if not is_name(entry.get("client")):
            raise ConfigError(f"{where}: 'client' (the application's name) is required: a non-blank string of at "
                              f"most {MAX_NAME} printable characters")
        if digest in keys:
            raise ConfigError(f"{where}: the same key (sha256) as an earlier entry; each key names one client")
        try:
            offices = office_scope(entry.get("field_offices"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        trusted_only = entry.get("trusted_documents_only", False)
        if not isinstance(trusted_only, bool):
            raise ConfigError(f"{where}: 'trusted_documents_only' must be true or false")
        keys[digest] = ApiKey(client=entry["client"], role=entry["role"], field_offices=offices,
                              trusted_documents_only=trusted_only)
    return keys


def _load_public_keys(settings: Settings) -> dict[str | None, Any]:
    """RS256 verification keys by key id (None: the single key that applies when a token names none)."""
    keys: dict[str | None, Any] = {}
    if settings.jwt_public_key_file:
        try:
            keys[None] = _pem_key(Path(settings.jwt_public_key_file).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read JWT public key {settings.jwt_public_key_file}: {exc}") from exc
    if settings.jwt_jwks_file:
        try:
            jwks = jwt.PyJWKSet.from_json(Path(settings.jwt_jwks_file).read_text(encoding="utf-8"))
        except (OSError, ValueError, AttributeError, TypeError, jwt.PyJWTError) as exc:  # e.g. `[]`: not a key set
            raise ConfigError(f"cannot read JWKS file {settings.jwt_jwks_file}: {exc or type(exc).__name__}") from exc
        for jwk in jwks.keys:
            if jwk.algorithm_name not in (None, "RS256") or jwk.key_type != "RSA":
                continue
            keys[jwk.key_id] = jwk.key
        if len(jwks.keys) == 1 and None not in keys:
            keys[None] = jwks.keys[0].key
    return keys


def _pem_key(pem: bytes) -> Any:
    """An RSA public key from PEM."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(pem)
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def _file_stamp(path: str) -> tuple[int, int] | None:
    """A file's modification time (ns) and size, None when it cannot be read."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st is not None else None


OIDC_ALGORITHMS = ("RS256", "PS256", "ES256")  # what providers sign ID and access tokens with; never HS256 or none
OIDC_REFETCH_SECONDS = 5.0  # least time between two reads of the provider's keys (a token naming an unknown kid)
OIDC_FETCH_TIMEOUT_SECONDS = 5.0


class OidcKeys:
    """An OpenID Connect provider's signing keys, by key id: read from the `jwks_uri` of its discovery document
    (`<issuer>/.well-known/openid-configuration`) when a token names a key id not yet known (or, naming none, fits
    no known key), at most once per
    `OIDC_REFETCH_SECONDS` (so a flood of tokens with made-up key ids costs the provider one call each
    interval), which is how a rotated key is picked up. Reads are single-flight; a failed read keeps the keys
    already known."""

    def __init__(self, issuer: str, refetch_seconds: float = OIDC_REFETCH_SECONDS) -> None:
        self.issuer = issuer.rstrip("/")
        self.refetch_seconds = refetch_seconds
        self.keys: dict[str, Any] = {}
        self.fetches = 0  # reads of the key set attempted (tests and the log)
        self._last = -float("inf")
        self._lock = asyncio.Lock()

    def key(self, token: str, kid: str | None, alg: str) -> Any:
        """The key that signed `token`: the one with id `kid`, or, for a token naming no key id (some providers
        send none), the known key its signature verifies with; None when no known key fits."""
        if kid is not None:
            return self.keys.get(kid)
        for key in self.keys.values():
            try:
                jwt.PyJWS().decode(token, key=key, algorithms=[alg])
            except jwt.PyJWTError:
                continue
            return key
        return None

    async def ensure(self, token: str, kid: str | None, alg: str) -> None:
        """Read the key set again when no known key fits `token` and the last read is older than the refetch
        interval."""
        if self.key(token, kid, alg) is not None:
            return
        async with self._lock:
            if self.key(token, kid, alg) is not None or time.monotonic() - self._last < self.refetch_seconds:
                return
            self._last = time.monotonic()
            self.fetches += 1
            try:
                self.keys = await self._read()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
                log.warning("cannot read the OIDC provider's keys (%s); keeping %d known", type(exc).__name__,
                            len(self.keys))
                return
            log.info("OIDC provider keys read: %d", len(self.keys))

    async def _read(self) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=OIDC_FETCH_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{self.issuer}/.well-known/openid-configuration") as resp:
                resp.raise_for_status()
                discovery = await resp.json(content_type=None)
            if discovery.get("issuer", "").rstrip("/") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            async with session.get(discovery["jwks_uri"]) as resp:
                resp.raise_for_status()
                jwks = await resp.json(content_type=None)
        keys: dict[str, Any] = {}
        for entry in jwks.get("keys", []):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry.get("kid") or len(keys))] = jwt.PyJWK.from_dict(entry).key
            except jwt.PyJWTError:
                continue  # a key type this gateway does not verify with
        return keys


_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
# Longest Authorization or X-API-Key value read: an 8 MB token took 0.17 s to be refused, and each valid
# token is remembered (VERIFIED_TOKENS of them), so their size bounds that memory too.
MAX_CREDENTIAL = 8192
ONE_CREDENTIAL = "send one credential: a single Authorization header or a single X-API-Key header"
class Authenticator:
    """Turns request headers into a `Principal` or raises `AuthError`."""

    def __init__(self, settings: Settings) -> None:
        require_credentials(settings)  # no way to verify callers is a configuration error, never a default key
        self.settings = settings
        self.max_ttl = settings.jwt_max_ttl_seconds
        self.secret = settings.jwt_secret or None
        self.secrets = jwt_secrets(settings)  # HS256 secrets by key id (`jwt_secrets`): several during a rotation
        self.public_keys = _load_public_keys(settings)
        self.api_keys = load_api_keys(settings.api_keys_file) if settings.api_keys_file else {}
        self.oidc = OidcKeys(settings.oidc_issuer) if settings.oidc_issuer else None
        self.oidc_audience = settings.oidc_audience or settings.oidc_client_id
        self._keys_stamp = _file_stamp(settings.api_keys_file)
        self._keys_checked = time.monotonic()
        # token → (its principal, when it stops being valid): the keys are fixed at start, so a token that
        # verified once stays valid until its `exp` (plus the leeway), and its claims cannot change
        self._verified: LRUCache[str, tuple[Principal, float]] = LRUCache(maxsize=VERIFIED_TOKENS)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller named by `Authorization` (Bearer JWT, Bearer/ApiKey API key) or `X-API-Key`.

        Exactly one credential: a key and a token together, or a header given twice (starlette `Headers`
        keep every copy in `raw`), are refused rather than resolved by which comes first, so a proxy in
        front and the gateway cannot take the caller for two different principals.
        """
        api_key = headers.get("x-api-key")
        auth = headers.get("authorization", "").strip()
        if len(auth) > MAX_CREDENTIAL or (api_key is not None and len(api_key) > MAX_CREDENTIAL):
            raise AuthError(f"credential longer than {MAX_CREDENTIAL} characters")
        raw = getattr(headers, "raw", None)
        if (api_key is not None and auth) or (raw is not None and sum(name in _CREDENTIAL_HEADERS
                                                                       for name, _ in raw) > 1):
            raise AuthError(ONE_CREDENTIAL)
        if api_key is not None:
            return self.api_key(api_key.strip())
        if not auth:
            if not self.settings.auth_required:
                # a role that grants nothing: /healthz and the public /readyz are all an anonymous caller reaches
                return Principal(subject="anonymous", role=ANONYMOUS, client="anonymous", method="anonymous")
            raise AuthError("missing credentials: send 'Authorization: Bearer <token>' or an 'X-API-Key' header")
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() == "apikey" and value:
            return self.api_key(value)
        if scheme.lower() != "bearer" or not value:
            raise AuthError("unsupported Authorization scheme: use 'Bearer <token>' or 'ApiKey <key>'")
        if value.count(".") != 2:  # not a JWT: an API key pasted into a Bearer-only client (GraphiQL)
            return self.api_key(value)
        return self.jwt(value)

    async def prepare(self, headers: Mapping[str, str]) -> None:
        """Before `authenticate`: when the credential is a token from the OIDC provider naming a key id not yet
        known, read the provider's keys (rate-limited), so a rotated key works. Costs nothing otherwise."""
        if self.oidc is None:
            return
        scheme, _, value = headers.get("authorization", "").strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or value.count(".") != 2 or len(value) > MAX_CREDENTIAL \
                or value in self._verified:
            return
        try:
            header = jwt.get_unverified_header(value)
            issuer = jwt.decode(value, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return
        alg = header.get("alg")
        if isinstance(issuer, str) and issuer.rstrip("/") == self.oidc.issuer and alg in OIDC_ALGORITHMS:
            kid = header.get("kid")
            await self.oidc.ensure(value, kid if isinstance(kid, str) else None, alg)

    async def authenticate_async(self, headers: Mapping[str, str]) -> Principal:
        """`prepare`, then `authenticate`."""
        await self.prepare(headers)
        return self.authenticate(headers)

    def refresh_api_keys(self) -> None:
        """Re-read the API-key file when it changed (mtime, size), looking at most once per
        `api_keys_recheck_seconds`: a key removed from the file stops working for requests and sockets alike.
        A file that no longer reads keeps the keys last read (and says so in the log)."""
        path = self.settings.api_keys_file
        now = time.monotonic()
        if not path or now - self._keys_checked < self.settings.api_keys_recheck_seconds:
            return
        self._keys_checked = now
        stamp = _file_stamp(path)
        if stamp == self._keys_stamp:
            return
        try:
            self.api_keys = load_api_keys(path)
        except ConfigError as exc:
            log.warning("API keys file changed but cannot be read; keeping the keys read before: %s", exc)
            return
        self._keys_stamp = stamp
        log.info("API keys file re-read: %d keys", len(self.api_keys))

    def api_key(self, key: str) -> Principal:
        """The partner application owning `key` (in the key file as last re-read)."""
        self.refresh_api_keys()
        entry = self.api_keys.get(hash_api_key(key)) if key else None
        if entry is None:
            raise AuthError("unknown API key")
        return Principal(subject=entry.client, role=entry.role, client=entry.client, method="api_key",
                         field_offices=entry.field_offices, trusted_documents_only=entry.trusted_documents_only)

    def jwt(self, token: str) -> Principal:
        """The subject of a valid token (signature, exp, aud, iss, role checked; remembered until it expires)."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        principal, expires = self._verify(token)
        self._verified[token] = (principal, expires + LEEWAY_SECONDS)
        return principal

    def _hs256_key(self, kid: Any, token: str) -> str:
        """The HS256 secret of a token: the one its `kid` names in `jwt_secrets`; without a kid, `jwt_secret`,
        or else whichever listed secret its signature verifies under (tokens minted before ids were used)."""
        if kid is not None and self.secrets:
            if not isinstance(kid, str) or kid not in self.secrets:
                raise AuthError("token signed with an unknown key id")
            return self.secrets[kid]
        if self.secret:
            return self.secret
        for secret in self.secrets.values():
            try:
                jwt.api_jws.decode(token, secret, algorithms=["HS256"])  # the signature alone
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise AuthError("malformed token") from None
            return secret
        raise AuthError("token signature is invalid")

    def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal of a token and its `exp`, or AuthError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if self.oidc is not None and self._from_oidc(token):
            return self._verify_oidc(token, header)
        if alg == "HS256" and (self.secret or self.secrets):
            key: Any = self._hs256_key(header.get("kid"), token)
        elif alg == "RS256" and self.public_keys:
            kid = header.get("kid")
            key = self.public_keys.get(kid) if kid is not None else self.public_keys.get(None)
            if key is None and not self.settings.jwt_jwks_file:
                key = self.public_keys.get(None)  # a single PEM key: the token's kid does not matter
            if key is None:
                raise AuthError("token signed with an unknown key id")
        else:
            raise AuthError("token algorithm is not accepted")
        claims = _decode(token, key, alg, self.settings.jwt_audience, self.settings.jwt_issuer or None)
        return self._principal(claims, claims.get("role"), claims.get("field_offices"),
                               claims.get("client") or claims.get("azp") or "jwt")

    def _from_oidc(self, token: str) -> bool:
        """Whether a token names the OIDC provider as its issuer (unverified: the signature is checked next)."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return False
        return self.oidc is not None and isinstance(issuer, str) and issuer.rstrip("/") == self.oidc.issuer

    def _verify_oidc(self, token: str, header: Mapping[str, Any]) -> tuple[Principal, float]:
        """A token of the OIDC provider: signed by one of its keys (`OidcKeys`), for our audience, with the role
        and offices in the configured claims."""
        assert self.oidc is not None
        alg = header.get("alg")
        if alg not in OIDC_ALGORITHMS:
            raise AuthError("token algorithm is not accepted")
        kid = header.get("kid")
        key = self.oidc.key(token, kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise AuthError("token signed with a key the provider does not publish (unknown key id)")
        claims = _decode(token, key, alg, self.oidc_audience, [self.oidc.issuer, self.oidc.issuer + "/"])
        settings = self.settings
        role = claims.get(settings.oidc_role_claim)
        if isinstance(role, list):  # providers often carry roles as a list: exactly one must be a gateway role
            known = [r for r in role if r in ROLES]
            role = known[0] if len(known) == 1 else None
        client = claims.get("azp") or settings.oidc_client_id or "oidc"
        return self._principal(claims, role, claims.get(settings.oidc_offices_claim), client)

    def _principal(self, claims: Mapping[str, Any], role: object, offices_claim: object,
                   client: object) -> tuple[Principal, float]:
        """The principal of verified `claims` and their `exp` (role, offices, names and lifetime checked)."""
        if role not in ROLES:
            raise AuthError(f"token role must be one of {', '.join(ROLES)}")
        try:
            offices = office_scope(offices_claim)
        except ValueError as exc:
            raise AuthError(f"token {exc}") from None
        subject, exp = claims["sub"], claims["exp"]
        for name, value in (("sub", subject), ("client", client)):
            if not is_name(value):
                raise AuthError(f"token '{name}' must be a non-blank string of at most {MAX_NAME} printable "
                                "characters")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise AuthError("token 'exp' must be a number (seconds since the epoch)")
        iat = claims["iat"]  # PyJWT checked that it is not in the future (but takes "123" for a number)
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise AuthError("token 'iat' must be a number (seconds since the epoch)")
        if exp - iat > self.max_ttl:  # a stolen long-lived token would stay good for that long
            raise AuthError(f"token lifetime (exp - iat) exceeds {self.max_ttl} seconds (UCGW_JWT_MAX_TTL_SECONDS)")
        trusted_only = claims.get("trusted_documents_only", False)
        if not isinstance(trusted_only, bool):
            raise AuthError("token 'trusted_documents_only' must be true or false")
        principal = Principal(subject=subject, role=str(role), client=str(client), method="jwt", field_offices=offices,
                              trusted_documents_only=trusted_only)
        return principal, float(exp)


def _decode(token: str, key: Any, alg: str, audience: str, issuer: str | list[str] | None) -> dict[str, Any]:
    """A JWT's claims once its signature, expiry, audience and issuer hold; else an `AuthError` saying which
    failed (our own tokens and the OIDC provider's alike)."""
    try:
        return jwt.decode(token, key, algorithms=[alg], audience=audience or None, issuer=issuer,
                          leeway=LEEWAY_SECONDS,
                          options={"require": ["exp", "iat", "sub"], "verify_aud": bool(audience)})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.InvalidAudienceError:
        raise AuthError("token audience is not accepted") from None
    except jwt.InvalidIssuerError:
        raise AuthError("token issuer is not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the '{exc.claim}' claim") from None
    except jwt.PyJWTError:
        raise AuthError("invalid token") from None


def mint_token(settings: Settings, role: str, *, ttl: float = 3600.0, subject: str | None = None,
               field_offices: list[str] | None = None, client: str = "ucgw-cli",
               trusted_documents_only: bool = False) -> str:
    """An HS256 token signed with the configured secret, or else the first of `jwt_secrets` (with its `kid`),
    for demo and operator use."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    listed = jwt_secrets(settings)
    if not (settings.jwt_secret or listed):
        raise ConfigError("no JWT secret configured (UCGW_JWT_SECRET or UCGW_JWT_SECRETS); tokens cannot be "
                          "minted here")
    if ttl > settings.jwt_max_ttl_seconds:  # the gateway would refuse it
        raise ConfigError(f"a token may live at most {settings.jwt_max_ttl_seconds} seconds "
                          f"(UCGW_JWT_MAX_TTL_SECONDS), not {ttl:g}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject or f"{role}-demo", "role": role, "client": client,
                              "iat": now, "exp": now + int(ttl)}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if field_offices:
        claims["field_offices"] = field_offices
    if trusted_documents_only:
        claims["trusted_documents_only"] = True
    if settings.jwt_secret:
        return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    kid, secret = next(iter(listed.items()))  # the first listed key signs: a rotation lists the new one first
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
