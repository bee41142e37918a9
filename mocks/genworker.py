"""Worker process for parallel world generation: reads a pickled chunk on stdin, writes the result."""

from __future__ import annotations

import pickle
import sys

from mocks.world import generate_chunk


def main() -> None:
    """Generate one chunk of children (arguments of generate_chunk, pickled) and pickle the result."""
    args = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(generate_chunk(*args), protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
