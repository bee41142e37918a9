"""`ucgw demo`: the three mocks and the gateway in one process, with a ready sample query."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import socket
import sys
import urllib.parse
import urllib.request

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.http.auth import mint_token
from gateway.http.server import edge_server
from gateway.logs import configure_logging
from mocks.runner import check_arguments, running_mocks
from rules.roles import ROLES
from sources.tracing import current_trace_id

SAMPLE_QUERY = """query Status($a: ID!) {
  child(aNumber: $a) {
    aNumber
    location { status since facility { name city state } provenance { source cacheStatus ageSeconds } }
    sponsor { name relationship category address { city state quality } }
    nta { status issuedOn servedOn filedOn fieldOffice provenance { source sourceUpdatedAt cacheStatus } }
    hearing { caseStatus missedHearingCount nextHearing { startsAt courtName judge }
              provenance { source fetchedAt ageSeconds cacheStatus stale } }
  }
}"""


def _sample_a_numbers(orr_url: str, n: int = 4) -> list[str]:
    """A child with a scheduled hearing first (the richest answer), then others spread over every state."""

    def sample(query: str) -> list[str]:
        with urllib.request.urlopen(f"{orr_url}/_admin/sample?{query}", timeout=10) as resp:
            return list(json.load(resp)["a_numbers"])

    first = sample("n=1&state=hearing_scheduled")
    return list(dict.fromkeys(first + sample(f"n={n}")))


DEMO_TOKEN_TTL = 12 * 3600


def demo_banner(settings: Settings) -> list[str]:
    """Ready tokens for each role, minted with this run's secret."""
    ttl = min(DEMO_TOKEN_TTL, settings.jwt_max_ttl_seconds)
    lines = [f"Demo tokens ({ttl / 3600:g} h, signed with a secret made for this run only; paste one into "
             "GraphiQL's token bar, or send 'Authorization: Bearer <token>'):"]
    for role in ROLES:
        lines.append(f"  {role:<11} {mint_token(settings, role, ttl=ttl, client='ucgw-demo')}")
    return lines


def _free_port(host: str) -> int:
    """A port free on `host` now (the admin listener binds it moments later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def sample_query(a_number: str) -> str:
    """The sample query with an A-number written in (GraphiQL links carry no variables)."""
    return SAMPLE_QUERY.replace("query Status($a: ID!)", "query Status").replace("$a", json.dumps(a_number))


async def _run(args: argparse.Namespace) -> None:
    ports = {"orr": args.orr_port, "ice": args.ice_port, "eoir": args.eoir_port}
    async with running_mocks(host=args.host, ports=ports, seed=args.seed, children=args.children,
                             clock_speed=args.clock_speed) as urls:
        settings = load_settings(
            toml_path=args.config, host=args.host, port=args.port,
            orr_url=urls["orr"], ice_url=urls["ice"], eoir_url=urls["eoir"],
            # a secret of this run's own, never a known one: its tokens die with it
            jwt_secret=secrets.token_urlsafe(32),
        )
        if settings.admin_port is None:  # the operators' listener (/metrics, /readyz) on a free loopback port
            settings = dataclasses.replace(settings, admin_port=_free_port(settings.admin_host))
        configure_logging(settings.log_format, trace_id=current_trace_id)
        app = create_app(settings)
        server = edge_server(app, settings, settings.host, settings.port, app.state.connections,
                             log_level="warning", log_config=None, access_log=False, timeout_graceful_shutdown=10)
        a_numbers = await asyncio.to_thread(_sample_a_numbers, urls["orr"])
        base = f"http://{settings.host}:{settings.port}"
        query = sample_query(a_numbers[0])
        print("\nuc-status-gateway demo", flush=True)
        for name, url in urls.items():
            print(f"  mock {name.upper():<4} {url}")
        print(f"  GraphiQL  {base}/graphql")
        print(f"  sample    {base}/graphql?query={urllib.parse.quote(query)}")
        admin = settings.admin_host if ":" not in settings.admin_host else f"[{settings.admin_host}]"
        print(f"  metrics   http://{admin}:{settings.admin_port}/metrics   (Prometheus; operators' /readyz beside it)")
        print(f"\nSample A-numbers: {', '.join(a_numbers)}\nSample query:\n{query}\n", flush=True)
        for line in demo_banner(settings):
            print(line, flush=True)
        await server.serve()


def run_demo(args: argparse.Namespace) -> int:
    """Run until interrupted; 2 with a message for a bad flag."""
    problem = check_arguments(args)
    if problem is None and not 0 <= args.port <= 65535:
        problem = "--port must be in [0, 65535]"
    if problem:
        print(f"ucgw demo: {problem}", file=sys.stderr)
        return 2
    asyncio.run(_run(args))
    return 0
