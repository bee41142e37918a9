"""Gateway settings: defaults, overridden by a TOML file, overridden by `UCGW_*` environment variables."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sources.settings import DEMO_JWT_SECRET, Settings
from stores.audit_trail import SYNC_MODES


class ConfigError(ValueError):
    """A setting is missing or has a value of the wrong form."""


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
