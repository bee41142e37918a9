"""Settings from defaults, TOML and environment; bad values are clear errors, never tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, describe_settings, load_settings
from gateway.http.auth import Authenticator
from sources.systems import Source
from testing.gateway import ROOT


def test_environment_overrides_toml_which_overrides_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "ucgw.toml"
    toml.write_text('[gateway]\ncache_ttl_seconds = 30\neoir_ttl_seconds = 5\norr_url = "http://10.0.0.1:1"\n')
    settings = load_settings({"UCGW_CACHE_TTL_SECONDS": "12", "UCGW_CONFIG": str(toml)})
    assert settings.cache_ttl_seconds == 12.0
    assert settings.ttl(Source.ORR) == 12.0 and settings.ttl(Source.EOIR) == 5.0
    assert settings.orr_url == "http://10.0.0.1:1"
    assert load_settings({}).ttl(Source.ICE) == 60.0


@pytest.mark.parametrize("env, message", [
    ({"UCGW_CACHE_TTL_SECONDS": "soon"}, "not a valid float"),
    ({"UCGW_SOURCE_TIMEOUT_SECONDS": "nan"}, "'source_timeout_seconds': 'nan' is not a valid float"),
    ({"UCGW_SOURCE_KEEPALIVE_SECONDS": "inf"}, "not a valid float"),
    ({"UCGW_PORT": "-1"}, "must not be negative"),
    ({"UCGW_PORT": "99999"}, r"'port' must be in \[0, 65535\] \(got 99999\)"),
    ({"UCGW_AUTH_REQUIRED": "maybe"}, "not a valid bool"),
    ({"UCGW_ENV": "staging"}, "development, production or test"),
    ({"UCGW_REQUEST_DEADLINE_SECONDS": "0"}, "must be positive"),
    ({"UCGW_AUDIT_SYNC": "off"}, "'audit_sync' must be one of: full, normal"),
    ({"UCGW_REDIS_URL": "http://127.0.0.1:6379"}, "UCGW_REDIS_URL must be a redis://, rediss:// or unix:// URL"),
    ({"UCGW_REDIS_PREFIX": "ucgw prod:"}, "'redis_prefix' must be 1 to 64 printable characters without spaces"),
    ({"UCGW_TLS_KEY_FILE": "/k.pem"}, "set both UCGW_TLS_CERT_FILE and UCGW_TLS_KEY_FILE"),
    ({"UCGW_ICE_CLIENT_CERT_FILE": "/c.pem"}, "set both UCGW_ICE_CLIENT_CERT_FILE and UCGW_ICE_CLIENT_KEY_FILE"),
    ({"UCGW_EOIR_TOKEN_URL": "https://t/token", "UCGW_EOIR_CLIENT_ID": "gw"},
     "need all of UCGW_EOIR_TOKEN_URL, UCGW_EOIR_CLIENT_ID and UCGW_EOIR_CLIENT_SECRET"),
    ({"UCGW_ORR_TOKEN_URL": "ftp://t", "UCGW_ORR_CLIENT_ID": "gw", "UCGW_ORR_CLIENT_SECRET": "s"},
     "UCGW_ORR_TOKEN_URL must be an http"),
    ({"UCGW_JWT_SECRETS": "k1"}, "UCGW_JWT_SECRETS must read 'id=secret,id=secret'"),
    ({"UCGW_JWT_SECRETS": "k1=short"}, "UCGW_JWT_SECRETS, key 'k1': UCGW_JWT_SECRET must be at least 32 bytes"),
    ({"UCGW_JWT_SECRETS": f"k1={'a' * 32},k1={'b' * 32}"}, "names key id 'k1' twice"),
    ({"UCGW_CURSOR_SECRET_PREVIOUS": "x"}, "UCGW_CURSOR_SECRET_PREVIOUS is honoured beside UCGW_CURSOR_SECRET only"),
    ({"UCGW_WEBHOOK_SECRET_PREVIOUS": "p" * 32}, "beside UCGW_WEBHOOK_SECRET only"),
    ({"UCGW_WEBHOOK_SECRET": "w" * 32, "UCGW_WEBHOOK_SECRET_PREVIOUS": "short"}, "_PREVIOUS must be at least 32"),
    ({"UCGW_AUDIT_HMAC_KEYS_PREVIOUS": "short"}, "each key must be at least 32 bytes"),
])
def test_bad_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("cache_ttl = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'cache_ttl'"):
        load_settings({}, toml_path=toml)


@pytest.mark.parametrize("text, message", [
    ("port = inf\n", "setting 'port': inf is not a valid int"),  # was an OverflowError
    ("port = 18520.9\n", "setting 'port': 18520.9 is not a valid int"),  # was truncated to 18520
    ("rate_limit_burst = 0.9\n", "setting 'rate_limit_burst': 0.9 is not a valid int"),
    ('port = "8000"\n', "setting 'port': '8000' is not a valid int"),
    ("auth_required = 1\n", "setting 'auth_required': 1 is not a valid bool"),
    ('orr_url = ["a", "b"]\n', r"setting 'orr_url': \['a', 'b'\] is not a valid str"),
    ("jwt_secret = 12345\n", "setting 'jwt_secret': 12345 is not a valid str"),
    ("cache_ttl_seconds = true\n", "setting 'cache_ttl_seconds': True is not a valid float"),
    ('gateway = "x"\n', r"'gateway' in .* must be a table \(\[gateway\]\), not str"),  # was an AttributeError
    ('port = 1\n[gateway]\nport = 2\n', "'port' set both at top level and under \\[gateway\\]"),
])
def test_toml_values_of_the_wrong_type_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings({}, toml_path=toml)


def test_top_level_keys_and_the_gateway_table_both_count(tmp_path: Path) -> None:
    toml = tmp_path / "ucgw.toml"
    toml.write_text('host = "127.0.0.2"\ncache_ttl_seconds = 7\n[gateway]\nport = 18521\n')
    settings = load_settings({}, toml_path=toml)
    assert (settings.host, settings.port, settings.cache_ttl_seconds) == ("127.0.0.2", 18521, 7.0)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    toml = tmp_path / "utf16.toml"
    toml.write_bytes(b"\xff\xfep\x00o\x00r\x00t\x00")
    with pytest.raises(ConfigError, match="cannot read config file .*utf16.toml: 'utf-8' codec can't decode"):
        load_settings({}, toml_path=toml)


def test_serve_with_a_bad_setting_exits_2_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "serve"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "UCGW_SOURCE_TIMEOUT_SECONDS": "fast"}, timeout=60)
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and "source_timeout_seconds" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("flags, message", [
    (["--children", "0"], "--children must be in [1, 208333333] (the A-number ranges hold no more)"),
    (["--clock-speed", "-5"], "--clock-speed must be a number in [0, 10000000]"),
    (["--clock-speed", "nan"], "--clock-speed must be a number in [0, 10000000]"),
    (["--port", "70000"], "--port must be in [0, 65535]"),
    (["--eoir-port", "-1"], "--eoir-port must be in [0, 65535]"),
])
def test_demo_with_a_bad_flag_exits_2_without_traceback(flags: list[str], message: str) -> None:
    """The demo checks its flags before it builds a world or binds a port (as `ucgw mocks` does)."""
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"ucgw demo: {message}"
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("ttl, message", [
    ("-5", "must be a finite number of seconds above 0, not -5"),
    ("0", "must be a finite number of seconds above 0, not 0"),
    ("nan", "must be a finite number of seconds above 0, not nan"),
    ("inf", "must be a finite number of seconds above 0, not inf"),
    ("soon", "'soon' is not a number of seconds"),
    ("1e300", "must be at most 31622400 seconds (366 days), not 1e300"),  # was a token that never expires
])
def test_token_with_a_bad_ttl_exits_2_without_traceback(ttl: str, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "--role", "caseworker", "--ttl", ttl],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == f"ucgw token: error: argument --ttl: {message}"
    assert "Traceback" not in proc.stderr


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _, _ in describe_settings() if f"`{env}`" not in readme]
    assert missing == []


@pytest.mark.parametrize("command", ["serve", "demo", "cluster", "mocks", "export-schema", "token", "audit", "migrate"])
def test_every_command_has_help(command: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", command, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: ucgw " + command)


@pytest.mark.parametrize("args, message", [
    (["apikey", "--client", ""], "ucgw apikey: error: argument --client: must be a non-blank name of at most 256 "
                                 "printable characters"),  # was printed, then refused by `serve`
    (["apikey", "--client", "   "], "ucgw apikey: error: argument --client: must be a non-blank name of at most "
                                    "256 printable characters"),
    (["token", "--role", "partner", "--client", "a\tb"], "ucgw token: error: argument --client: must be a "
                                                          "non-blank name of at most 256 printable characters"),
    (["audit", "--limit", "-5"], "ucgw audit: error: argument --limit: must be 0 or more, not -5"),
])
def test_cli_flags_out_of_range_exit_2(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr.strip().splitlines()[-1]) == (2, "", message)


_ENTRY = {"sha256": "ab" * 32, "client": "legal-aid", "role": "partner"}


@pytest.mark.parametrize("name, text, message", [
    ("k.json", '{"api_key": 5}', r"API keys file .*k.json: expected \[\[api_key\]\] tables"),  # was a TypeError
    ("k.json", "[1, 2]", r"API keys file .*k.json: expected \[\[api_key\]\] tables"),  # was an AttributeError
    ("k.json", '{"api_key": [7]}', "entry 1: expected a table with sha256, client and role"),
    ("k.json", json.dumps({"api_key": [_ENTRY, {**_ENTRY, "client": "other", "role": "caseworker"}]}),
     "entry 2: the same key \\(sha256\\) as an earlier entry"),  # the last one used to win
    ("k.json", json.dumps({"api_key": [{**_ENTRY, "client": {"x": 1}}]}), "entry 1: 'client' .* is required"),
])
def test_malformed_api_keys_files_are_config_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Authenticator(load_settings({"UCGW_API_KEYS_FILE": str(path)}))


@pytest.mark.parametrize("text", ["[]", "5", '{"keys": 5}'])
def test_a_jwks_file_that_is_no_key_set_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="cannot read JWKS file .*jwks.json"):
        Authenticator(load_settings({"UCGW_JWT_JWKS_FILE": str(path)}))
