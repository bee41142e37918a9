"""Gateway settings: defaults, overridden by a TOML file, overridden by `UCGW_*` environment variables."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit import SYNC_MODES
from gateway.sources import Source

DEMO_JWT_SECRET = "demo-only-secret-not-for-production"  # clearly-marked demo value


class ConfigError(ValueError):
    """A setting is missing or has a value of the wrong form."""


MAX_SCAN_PAGES_AHEAD = 16  # each page a walk joins ahead is one more batch call per source in flight


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads at start. Field `x` is env `UCGW_X` and TOML key `x`."""

    orr_url: str = "http://127.0.0.1:8101"
    ice_url: str = "http://127.0.0.1:8102"
    eoir_url: str = "http://127.0.0.1:8103"
    host: str = "127.0.0.1"
    port: int = 8000
    env: str = "development"
    data_dir: str = "./var"
    # cache
    cache_ttl_seconds: float = 60.0
    orr_ttl_seconds: float | None = None
    ice_ttl_seconds: float | None = None
    eoir_ttl_seconds: float | None = None
    cache_max_entries: int = 300_000
    answer_cache_bytes: int = 32 * 1024 * 1024  # rendered answers of repeated status queries; 0 disables
    inline_plain_fields: bool = True  # complete plain attribute fields without graphql-core's per-field steps
    max_stale_seconds: float = 86_400.0
    stale_while_revalidate_seconds: float = 0.0
    # backends
    source_timeout_seconds: float = 2.0
    request_deadline_seconds: float = 5.0
    scan_deadline_seconds: float = 60.0  # oversight lists and counts that walk every child
    max_concurrent_scans: int = 2  # different walks of every child at once; requests for the same one share it
    scan_pages_ahead: int = 3  # listing pages a walk of every child joins ahead of the one it counts (0: none)
    retry_attempts: int = 2
    retry_backoff_seconds: float = 0.05
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 10.0
    source_connection_limit: int = 64
    # a pooled connection idle this long is closed rather than reused; keep it below the backends' own
    # keep-alive timeout (uvicorn's and the mocks': 5 s), or a call may go out on a connection they are closing
    source_keepalive_seconds: float = 4.0
    # access control and abuse limits
    jwt_secret: str = DEMO_JWT_SECRET
    jwt_public_key_file: str = ""
    jwt_jwks_file: str = ""
    jwt_audience: str = "uc-status-gateway"
    jwt_issuer: str = "ucgw-demo"
    api_keys_file: str = ""
    auth_required: bool = True
    rate_limit_rps: float = 20.0
    rate_limit_burst: int = 40
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2_000
    max_query_cost: int = 5_000
    max_body_bytes: int = 100_000
    # the edge (gateway/http/edge.py): deadlines for receiving a request, header sizes, connection caps
    header_timeout_seconds: float = 10.0  # request line and headers, from the first byte; 0: none
    body_timeout_seconds: float = 30.0  # the body, from the end of the headers; 0: none
    max_url_bytes: int = 16_384  # request target (414 beyond); 0: no cap
    max_header_bytes: int = 32_768  # all header fields together (431 beyond); 0: no cap
    max_connections: int = 10_000  # open client connections per listener (503 and close beyond); 0: no cap
    max_connections_per_client: int = 100  # open connections from one source address; 0: no cap
    max_children: int = 100
    audit_db: str = ""  # SQLite file of the audit trail; empty: <data_dir>/audit.sqlite3
    audit_sync: str = "full"  # full: each commit flushed to the disk before the answer; normal: not flushed
    # safety concerns and push
    concerns_db: str = ""  # SQLite file of safety concerns; empty: <data_dir>/concerns.sqlite3
    change_feed_poll_seconds: float = 1.0  # 0 disables following the sources' change feeds
    change_feed_batch_limit: int = 500
    webhook_secret: str = ""  # shared secret of POST /hooks/changes; empty disables the webhook
    cursor_secret: str = ""  # signs pagination cursors; empty: a random key per process (give replicas one)
    subscription_queue_size: int = 1000
    websockets_per_client: int = 20  # open graphql-transport-ws connections one caller may hold; 0: no cap
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def production(self) -> bool:
        """True when running with production hardening."""
        return self.env == "production"

    @property
    def audit_path(self) -> Path:
        """Where the audit trail lives."""
        return Path(self.audit_db) if self.audit_db else Path(self.data_dir) / "audit.sqlite3"

    @property
    def concerns_path(self) -> Path:
        """Where the safety-concern database lives."""
        return Path(self.concerns_db) if self.concerns_db else Path(self.data_dir) / "concerns.sqlite3"

    def source_url(self, source: Source) -> str:
        """Base URL of one backend."""
        return {Source.ORR: self.orr_url, Source.ICE: self.ice_url, Source.EOIR: self.eoir_url}[source]

    def ttl(self, source: Source) -> float:
        """Cache TTL of one backend: its own setting, else the common one."""
        own = getattr(self, f"{source.value.lower()}_ttl_seconds")
        return self.cache_ttl_seconds if own is None else own


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
    if settings.audit_sync not in SYNC_MODES:
        raise ConfigError(f"setting 'audit_sync' must be one of: {', '.join(SYNC_MODES)}")
    if settings.production:
        _validate_production(settings)
    return settings


def _validate_production(settings: Settings) -> None:
    """Production refuses the demo secret, weak secrets and unauthenticated access."""
    if settings.jwt_secret == DEMO_JWT_SECRET:
        raise ConfigError(
            "refusing to start in production with the demo JWT secret: set UCGW_JWT_SECRET to a secret of "
            "your own (32+ characters), or set it empty and use UCGW_JWT_PUBLIC_KEY_FILE or UCGW_JWT_JWKS_FILE"
        )
    if settings.jwt_secret and len(settings.jwt_secret) < 32:
        raise ConfigError("UCGW_JWT_SECRET must be at least 32 characters in production")
    if not settings.auth_required:
        raise ConfigError("UCGW_AUTH_REQUIRED cannot be false in production")
    if not (settings.jwt_secret or settings.jwt_public_key_file or settings.jwt_jwks_file
            or settings.api_keys_file):
        raise ConfigError("production needs a way to verify callers: a JWT secret, public key, JWKS or API keys")


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
