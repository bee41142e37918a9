"""Gateway settings: defaults, overridden by a TOML file, overridden by `UCGW_*` environment variables."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.logs import LOG_FORMATS
from sources.settings import Settings
from stores.audit_trail import MIN_HMAC_KEY_BYTES, SYNC_MODES, hmac_key_problem
from stores.documents import PERSISTED_QUERY_STORES

DEMO_JWT_SECRET = "demo-only-secret-not-for-production"  # the old default, once printed in the README: refused
MIN_JWT_SECRET_BYTES = 32


class ConfigError(ValueError):
    """A setting is missing or has a value of the wrong form."""


MIN_WEBHOOK_SECRET_BYTES = 32
MAX_SCAN_PAGES_AHEAD = 16  # each page a walk joins ahead is one more batch call per source in flight


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "extra"}


_TYPED = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _coerce(name: str, raw: object, typed: bool = False) -> object:
    """Convert an environment value (text) to the type of setting `name`; a `typed` one (TOML, flags) must
    already be of that type (an int for a float setting too), so 8000.9 or "x" for a port is an error
    rather than a truncation or a string."""
    kind = str(_FIELDS[name].type)
    if typed and raw is not None:
        wanted = _TYPED[kind.split(" ")[0]]
        if not isinstance(raw, wanted) or (isinstance(raw, bool) and bool not in wanted):
            raise ConfigError(f"setting {name!r}: {raw!r} is not a valid {kind}")
    try:
        if raw is None or (isinstance(raw, str) and raw == "" and "None" in kind):
            return None
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)  # type: ignore[arg-type]  # text of a whole number ("8000.9" is a ValueError)
        if kind.startswith("float"):
            if isinstance(raw, bool):
                raise ValueError(raw)
            number = float(raw)  # type: ignore[arg-type]
            if not math.isfinite(number):  # "nan" and "inf" parse, but no setting means them
                raise ValueError(raw)
            return number
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: {raw!r} is not a valid {kind}") from exc


def _validate(settings: Settings) -> Settings:
    for name in _FIELDS:
        value = getattr(settings, name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"setting {name!r} must not be negative (got {value})")
    if settings.env not in {"development", "production", "test"}:
        raise ConfigError("setting 'env' must be development, production or test")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"setting 'log_format' must be one of: {', '.join(LOG_FORMATS)} "
                          f"(got {settings.log_format!r})")
    if settings.request_deadline_seconds <= 0 or settings.source_timeout_seconds <= 0:
        raise ConfigError("timeouts and deadlines must be positive")
    if settings.port > 65535:
        raise ConfigError(f"setting 'port' must be in [0, 65535] (got {settings.port})")
    if settings.cache_max_entries < 1:
        raise ConfigError("setting 'cache_max_entries' must be at least 1")
    if settings.max_concurrent_scans < 1:
        raise ConfigError("setting 'max_concurrent_scans' must be at least 1")
    if settings.scan_pages_ahead > MAX_SCAN_PAGES_AHEAD:
        raise ConfigError(f"setting 'scan_pages_ahead' must be at most {MAX_SCAN_PAGES_AHEAD} "
                          f"(got {settings.scan_pages_ahead})")
    if not 0 < settings.api_keys_recheck_seconds <= 60:
        raise ConfigError("setting 'api_keys_recheck_seconds' must be in (0, 60]: a revoked key must stop "
                          "working within a minute")
    if settings.ws_init_timeout_seconds <= 0:
        raise ConfigError("setting 'ws_init_timeout_seconds' must be above 0")
    if settings.webhook_secret and len(settings.webhook_secret.encode()) < MIN_WEBHOOK_SECRET_BYTES:
        raise ConfigError(f"UCGW_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes (it signs "
                          "POST /hooks/changes); leave it empty to turn the webhook off")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("set both UCGW_TLS_CERT_FILE and UCGW_TLS_KEY_FILE for HTTPS, or neither for plain HTTP")
    _validate_source_access(settings)
    if settings.webhook_secret_previous and len(settings.webhook_secret_previous.encode()) < MIN_WEBHOOK_SECRET_BYTES:
        raise ConfigError(f"UCGW_WEBHOOK_SECRET_PREVIOUS must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes")
    if settings.webhook_secret_previous and not settings.webhook_secret:
        raise ConfigError("UCGW_WEBHOOK_SECRET_PREVIOUS is accepted beside UCGW_WEBHOOK_SECRET only (a rotation "
                          "moves the old secret there and sets the new one)")
    if settings.cursor_secret_previous and not settings.cursor_secret:
        raise ConfigError("UCGW_CURSOR_SECRET_PREVIOUS is honoured beside UCGW_CURSOR_SECRET only")
    jwt_secrets(settings)  # its form, and each secret's length
    if any(len(key.encode()) < MIN_HMAC_KEY_BYTES for key in previous_audit_keys(settings)):
        raise ConfigError(f"UCGW_AUDIT_HMAC_KEYS_PREVIOUS: each key must be at least {MIN_HMAC_KEY_BYTES} bytes")
    if settings.admin_port is not None and not 0 < settings.admin_port <= 65535:
        raise ConfigError(f"setting 'admin_port' must be in [1, 65535] (got {settings.admin_port})")
    if len(settings.replica_id) > 128 or not all(c.isprintable() and not c.isspace() for c in settings.replica_id):
        raise ConfigError("setting 'replica_id' must be at most 128 printable characters without spaces")
    if settings.redis_url and settings.redis_url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ConfigError("UCGW_REDIS_URL must be a redis://, rediss:// or unix:// URL (empty: no shared Redis)")
    if not 0 < len(settings.redis_prefix) <= 64 or not all(c.isprintable() and not c.isspace()
                                                          for c in settings.redis_prefix):
        raise ConfigError("setting 'redis_prefix' must be 1 to 64 printable characters without spaces")
    if settings.jwt_max_ttl_seconds < 1:
        raise ConfigError("setting 'jwt_max_ttl_seconds' must be at least 1")
    _validate_secret(settings.jwt_secret)
    if settings.persisted_queries not in PERSISTED_QUERY_STORES:
        raise ConfigError(f"setting 'persisted_queries' must be one of: {', '.join(PERSISTED_QUERY_STORES)}")
    _validate_oidc(settings)
    if settings.audit_sync not in SYNC_MODES:
        raise ConfigError(f"setting 'audit_sync' must be one of: {', '.join(SYNC_MODES)}")
    if settings.audit_hmac_key and (problem := hmac_key_problem(settings.audit_hmac_key)):
        raise ConfigError(problem)
    if settings.production:
        _validate_production(settings)
    return settings


def _validate_oidc(settings: Settings) -> None:
    """An OIDC issuer is an https URL (plain http only on a loopback address, for tests and a local
    provider), and its tokens need an audience to be checked against: the audience or the client id."""
    if not settings.oidc_issuer:
        return
    url = urlsplit(settings.oidc_issuer)
    loopback = url.hostname in {"127.0.0.1", "localhost", "::1"}
    if url.scheme != "https" and not (url.scheme == "http" and loopback) or not url.hostname:
        raise ConfigError("UCGW_OIDC_ISSUER must be the provider's https URL (plain http only on a loopback "
                          f"address), got {settings.oidc_issuer!r}")
    if not (settings.oidc_audience or settings.oidc_client_id):
        raise ConfigError("UCGW_OIDC_ISSUER needs UCGW_OIDC_CLIENT_ID (GraphiQL's client) or UCGW_OIDC_AUDIENCE "
                          "(the `aud` its tokens must carry)")
    if not settings.oidc_role_claim:
        raise ConfigError("UCGW_OIDC_ROLE_CLAIM must name the claim holding the gateway role")


def _validate_secret(secret: str) -> None:
    """In every environment: the demo secret (published, so anyone could sign with it) and short secrets are
    refused; an empty one means no HS256 at all."""
    if secret == DEMO_JWT_SECRET:
        raise ConfigError(
            "refusing the demo JWT secret (it is published): set UCGW_JWT_SECRET to a random secret of your own "
            f"({MIN_JWT_SECRET_BYTES}+ bytes), or leave it empty and use UCGW_JWT_PUBLIC_KEY_FILE, "
            "UCGW_JWT_JWKS_FILE or UCGW_API_KEYS_FILE"
        )
    if secret and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(f"UCGW_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")


def previous_audit_keys(settings: Settings) -> list[str]:
    """The audit HMAC keys of earlier chains (`audit_hmac_keys_previous`, comma-separated)."""
    return [key.strip() for key in settings.audit_hmac_keys_previous.split(",") if key.strip()]


def jwt_secrets(settings: Settings) -> dict[str, str]:
    """The HS256 secrets of `jwt_secrets` ("id=secret,id=secret") by key id; ConfigError for a bad list."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in settings.jwt_secrets.split(","))):
        kid, sep, secret = item.partition("=")
        kid = kid.strip()
        if not sep or not kid or not secret:
            raise ConfigError("UCGW_JWT_SECRETS must read 'id=secret,id=secret' (a key id, '=', the secret)")
        if kid in out:
            raise ConfigError(f"UCGW_JWT_SECRETS names key id {kid!r} twice")
        try:
            _validate_secret(secret)
        except ConfigError as exc:
            raise ConfigError(f"UCGW_JWT_SECRETS, key {kid!r}: {exc}") from None
        out[kid] = secret
    return out


SOURCE_NAMES = ("orr", "ice", "eoir")


def _validate_source_access(settings: Settings) -> None:
    """Each source's client certificate comes with its key, and OAuth2 client credentials come whole."""
    for name in SOURCE_NAMES:
        env = f"UCGW_{name.upper()}"
        cert, key = (getattr(settings, f"{name}_client_{part}_file") for part in ("cert", "key"))
        if bool(cert) != bool(key):
            raise ConfigError(f"set both {env}_CLIENT_CERT_FILE and {env}_CLIENT_KEY_FILE (mTLS), or neither")
        token_url, client_id, secret = (getattr(settings, f"{name}_{part}")
                                        for part in ("token_url", "client_id", "client_secret"))
        if (token_url or client_id or secret) and not (token_url and client_id and secret):
            raise ConfigError(f"OAuth2 client credentials need all of {env}_TOKEN_URL, {env}_CLIENT_ID and "
                              f"{env}_CLIENT_SECRET")
        if token_url and not token_url.startswith(("https://", "http://")):
            raise ConfigError(f"{env}_TOKEN_URL must be an http(s) URL")


def require_credentials(settings: Settings) -> None:
    """A gateway that serves must have a way to verify callers, whatever the environment: without one it
    used to fall back to a published secret."""
    if not (settings.jwt_secret or settings.jwt_secrets or settings.jwt_public_key_file or settings.jwt_jwks_file
            or settings.api_keys_file or settings.oidc_issuer):
        raise ConfigError(
            "no credentials configured: set UCGW_JWT_SECRET (a random secret of at least "
            f"{MIN_JWT_SECRET_BYTES} bytes), UCGW_JWT_PUBLIC_KEY_FILE, UCGW_JWT_JWKS_FILE, UCGW_API_KEYS_FILE "
            "or UCGW_OIDC_ISSUER (`ucgw demo` makes its own secret)"
        )


def _validate_production(settings: Settings) -> None:
    """Production refuses unauthenticated access."""
    if not settings.auth_required:
        raise ConfigError("UCGW_AUTH_REQUIRED cannot be false in production")


def load_settings(
    environ: Mapping[str, str] | None = None, toml_path: str | os.PathLike[str] | None = None, **overrides: Any
) -> Settings:
    """Build settings from defaults, the TOML file (`UCGW_CONFIG` or `toml_path`), env, then `overrides`."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    path = toml_path or environ.get("UCGW_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        for key, raw in _settings_table(data, str(path)).items():
            if key not in _FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, raw, typed=True)
    for name in _FIELDS:
        env_name = f"UCGW_{name.upper()}"
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name])
    for name, raw in overrides.items():
        if raw is not None:
            values[name] = _coerce(name, raw, typed=True)
    return _validate(Settings(**values))  # type: ignore[arg-type]


def _settings_table(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The settings of a config file: its top-level keys and those of its `[gateway]` table together (a key
    set in both is an error, as is a `gateway` key that is not a table)."""
    section = data.get("gateway", {})
    if not isinstance(section, dict):
        raise ConfigError(f"'gateway' in {path} must be a table ([gateway]), not {type(section).__name__}")
    top = {k: v for k, v in data.items() if k != "gateway"}
    both = sorted(set(top) & set(section))
    if both:
        raise ConfigError(f"{', '.join(repr(k) for k in both)} set both at top level and under [gateway] in {path}")
    return {**top, **section}


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, type) for every setting; feeds the README table."""
    rows = []
    for name, f in _FIELDS.items():
        rows.append((f"UCGW_{name.upper()}", repr(f.default), str(f.type)))
    return rows
