"""The `ucgw` command: mocks, serve, demo, export-schema (later: token, audit)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="ucgw", description="Unaccompanied-child status gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    from mocks import runner as mocks_runner

    mocks_p = sub.add_parser("mocks", help="run the ORR, ICE and EOIR mock services")
    mocks_runner.add_arguments(mocks_p)
    mocks_p.set_defaults(func=mocks_runner.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ucgw` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
