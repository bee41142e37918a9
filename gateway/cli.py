"""The `ucgw` command: mocks, serve, demo, export-schema, token, audit."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.config import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None), **extra}
    return load_settings(toml_path=getattr(args, "config", None), **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway alone, configured by environment and/or a TOML file."""
    import uvicorn

    from gateway.app import create_app

    settings = _settings(args)
    print(f"ucgw gateway on http://{settings.host}:{settings.port}/graphql", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=10, access_log=False)
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    """Print the SDL the gateway serves."""
    from resolvers.schema import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the three mocks and the gateway together; print GraphiQL's URL and a sample query."""
    from gateway.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with one sub-parser per command."""
    from mocks import runner as mocks_runner

    parser = argparse.ArgumentParser(prog="ucgw", description="Unaccompanied-child status gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    mocks_p = sub.add_parser("mocks", help="run the ORR, ICE and EOIR mock services")
    mocks_runner.add_arguments(mocks_p)
    mocks_p.set_defaults(func=mocks_runner.main)

    serve_p = sub.add_parser("serve", help="run the gateway (configured by UCGW_* variables or --config)")
    serve_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    serve_p.add_argument("--host", help="listen address (default 127.0.0.1; UCGW_HOST)")
    serve_p.add_argument("--port", type=int, help="listen port (default 8000; UCGW_PORT)")
    serve_p.set_defaults(func=cmd_serve)

    demo_p = sub.add_parser("demo", help="run the mocks and the gateway together, print a sample query")
    demo_p.add_argument("--config", help="TOML settings file (also UCGW_CONFIG)")
    demo_p.add_argument("--host", default="127.0.0.1", help="listen address of every service")
    demo_p.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    demo_p.add_argument("--orr-port", type=int, default=8101)
    demo_p.add_argument("--ice-port", type=int, default=8102)
    demo_p.add_argument("--eoir-port", type=int, default=8103)
    demo_p.add_argument("--seed", type=int, default=7, help="world seed (same seed, same data)")
    demo_p.add_argument("--children", type=int, default=5000, help="children in the synthetic world")
    demo_p.add_argument("--clock-speed", type=float, default=0.0,
                        help="simulated seconds per real second (0 = clock moves only on demand)")
    demo_p.set_defaults(func=cmd_demo)

    schema_p = sub.add_parser("export-schema", help="print the GraphQL SDL the gateway serves")
    schema_p.set_defaults(func=cmd_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ucgw` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ucgw: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
