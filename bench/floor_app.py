"""The floors of the benchmark: bare Starlette endpoints under the same uvicorn settings as the gateway.

Warm floor (scenario 2): the benchmark writes the body of one real warm answer of the gateway to a file and
starts

    UCGW_FLOOR_BODY=/path/to/body.json python bench/floor_app.py --port N

`POST /graphql` reads the request body and answers those bytes: no authentication, no GraphQL, no cache, no
audit. The gateway's req/s divided by this one's is the ratio the benchmark reports.

Cold floor (scenario 8, issue 29): with `--sources orr=URL,ice=URL,eoir=URL` instead, `POST /graphql` reads
the A-numbers from the request's variables (`a`, or the list `as`), makes the gateway's three backend calls
(`POST /v1/<collection>/batch`, concurrently, one aiohttp session with keep-alive) and answers the three
answers' bytes side by side: the least work a gateway that must call its sources can do per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BODY = Path(os.environ["UCGW_FLOOR_BODY"]).read_bytes() if os.environ.get("UCGW_FLOOR_BODY") else b"{}"
COLLECTIONS = {"orr": "children", "ice": "subjects", "eoir": "cases"}  # as bench/harness.py


async def graphql(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def cold_app(sources: dict[str, str]) -> Starlette:
    """The cold floor: the three backend batch calls per request, their bytes as the answer."""
    urls = [f"{sources[s].rstrip('/')}/v1/{c}/batch" for s, c in COLLECTIONS.items()]
    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                cookie_jar=aiohttp.DummyCookieJar())
        yield
        await state["client"].close()

    async def call(url: str, payload: bytes) -> bytes:
        async with state["client"].post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
            return await resp.read()

    async def cold(request: Request) -> Response:
        variables = orjson.loads(await request.body()).get("variables") or {}
        a_numbers = variables["as"] if "as" in variables else [variables["a"]]
        payload = orjson.dumps({"a_numbers": a_numbers})
        answers = await asyncio.gather(*(call(url, payload) for url in urls))
        return Response(b"[" + b",".join(answers) + b"]", media_type="application/json")

    return Starlette(routes=[Route("/graphql", cold, methods=["POST"]), Route("/healthz", healthz)],
                     lifespan=lifespan)


app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    """Serve the warm floor (or with `--sources` the cold one) exactly as gateway/cli.py `cmd_serve` serves
    the gateway."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sources", help="orr=URL,ice=URL,eoir=URL: serve the cold floor against these")
    args = parser.parse_args()
    served = app
    if args.sources:
        served = cold_app(dict(pair.split("=", 1) for pair in args.sources.split(",")))
    uvicorn.run(served, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=10,
                access_log=False)


if __name__ == "__main__":
    main()
