"""The listener: a uvicorn server speaking through the edge protocol (`gateway/http/edge.py`).

`ucgw serve` runs its public listener through `edge_server`; any other listener of the process (the
operator's admin listener) is built the same way, so that it has the same deadlines and caps.
"""

from __future__ import annotations

import logging
import resource
import ssl
from typing import Any

import uvicorn

from gateway.config import ConfigError
from gateway.http.edge import Connections, edge_protocol
from sources.settings import Settings

log = logging.getLogger("ucgw.edge")

RESERVED_FDS = 256  # descriptors kept for what is not a client connection: backend pools, databases, logs


def fd_limit_for(connections: int) -> tuple[int, str | None]:
    """Raise the soft file-descriptor limit towards what `connections` client connections need (up to the
    hard limit); returns the limit now in force and a warning when it is still too low for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = connections + RESERVED_FDS
    if not connections or soft == resource.RLIM_INFINITY or soft >= need:
        return soft, None
    wanted = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft >= need:
        return soft, None
    return soft, (f"the file-descriptor limit ({soft}) is too low for UCGW_MAX_CONNECTIONS={connections} plus "
                  f"{RESERVED_FDS} for the gateway itself: raise it (ulimit -n) or lower UCGW_MAX_CONNECTIONS, "
                  "or the gateway stops accepting anyone when it runs out")


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the public listener's TLS (none without `tls_cert_file`): the certificate and key,
    TLS 1.2 at least, and HSTS on every answer the app gives (`hsts_max_age_seconds`; 0: no header).
    The files are read here, so that a missing or mismatched one stops the start with a clear error rather
    than at the first connection."""
    if not settings.tls_cert_file:
        return {}
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use UCGW_TLS_CERT_FILE / UCGW_TLS_KEY_FILE ({settings.tls_cert_file}, "
                          f"{settings.tls_key_file}): {exc}") from exc
    options: dict[str, Any] = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    if settings.hsts_max_age_seconds:
        options["headers"] = [("strict-transport-security", f"max-age={settings.hsts_max_age_seconds}")]
    return options


def edge_server(app: Any, settings: Settings, host: str, port: int, connections: Connections,
                tls: bool = False, **options: Any) -> uvicorn.Server:
    """A uvicorn server for `app` on host:port whose connections go through the edge protocol, counted and
    capped by `connections` (the app's, so its counts reach the operators' /readyz); `options` are uvicorn's
    own (log level, graceful shutdown). `tls`: serve HTTPS as `tls_options` says (the public listener).

    Over TLS the edge protocol sits above asyncio's TLS layer: its deadlines start once the handshake is done
    (asyncio bounds the handshake itself, 60 s), and a client that speaks plain HTTP to the port fails the
    handshake and is closed without an answer (there is no TLS to answer it in)."""
    _, warning = fd_limit_for(connections.limits.max_connections)
    if warning:
        log.warning(warning)
    if tls:
        options = {**tls_options(settings), **options}
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, http=edge_protocol(connections), **options))
