"""`python -m mocks`: the same as `ucgw mocks`."""

from __future__ import annotations

import argparse
import sys

from mocks import runner


def main(argv: list[str] | None = None) -> int:
    """Parse the mock flags and run the services until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m mocks", description="ORR, ICE and EOIR mock services.")
    runner.add_arguments(parser)
    return runner.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
