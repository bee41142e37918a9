"""The listener: a uvicorn server speaking through the edge protocol (`gateway/http/edge.py`).

`ucgw serve` runs its public listener through `edge_server`; any other listener of the process (the
operator's admin listener) is built the same way, so that it has the same deadlines and caps.
"""

from __future__ import annotations

import logging
import resource
from typing import Any

import uvicorn

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


def edge_server(app: Any, settings: Settings, host: str, port: int, connections: Connections,
                **options: Any) -> uvicorn.Server:
    """A uvicorn server for `app` on host:port whose connections go through the edge protocol, counted and
    capped by `connections` (the app's, so its counts reach the operators' /readyz); `options` are uvicorn's
    own (log level, graceful shutdown)."""
    _, warning = fd_limit_for(connections.limits.max_connections)
    if warning:
        log.warning(warning)
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, http=edge_protocol(connections), **options))
