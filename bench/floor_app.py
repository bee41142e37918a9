"""The floor of the warm-cache benchmark: a bare Starlette endpoint serving fixed response bytes.

The benchmark writes the body of one real warm answer of the gateway to a file and starts

    UCGW_FLOOR_BODY=/path/to/body.json python bench/floor_app.py --port N

which runs this app under uvicorn with the same settings as `ucgw serve` (one worker, same loop and HTTP
implementation, no access log). `POST /graphql` reads the request body and answers those bytes: no
authentication, no GraphQL, no cache, no audit. The gateway's req/s divided by this one's is the ratio
the benchmark reports.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BODY = Path(os.environ["UCGW_FLOOR_BODY"]).read_bytes() if os.environ.get("UCGW_FLOOR_BODY") else b"{}"


async def graphql(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    """Serve `app` exactly as gateway/cli.py `cmd_serve` serves the gateway."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=10,
                access_log=False)


if __name__ == "__main__":
    main()
