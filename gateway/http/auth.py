"""Authentication: Bearer JWTs (HS256 shared secrets, by key id during a rotation; RS256 public key or JWKS)
and hashed API keys.

Never logs or echoes a credential. Error messages say what is wrong, not what was sent.
"""

from __future__ import annotations

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
        keys[digest] = ApiKey(client=entry["client"], role=entry["role"], field_offices=offices)
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
                         field_offices=entry.field_offices)

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
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.settings.jwt_audience or None,
                issuer=self.settings.jwt_issuer or None, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub"], "verify_aud": bool(self.settings.jwt_audience)},
            )
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
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError(f"token role must be one of {', '.join(ROLES)}")
        try:
            offices = office_scope(claims.get("field_offices"))
        except ValueError as exc:
            raise AuthError(f"token {exc}") from None
        subject, client, exp = claims["sub"], claims.get("client") or claims.get("azp") or "jwt", claims["exp"]
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
        principal = Principal(subject=subject, role=role, client=client, method="jwt", field_offices=offices)
        return principal, float(exp)


def mint_token(settings: Settings, role: str, *, ttl: float = 3600.0, subject: str | None = None,
               field_offices: list[str] | None = None, client: str = "ucgw-cli") -> str:
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
    if settings.jwt_secret:
        return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    kid, secret = next(iter(listed.items()))  # the first listed key signs: a rotation lists the new one first
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
