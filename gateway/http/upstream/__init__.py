"""Where the HTTP layer overrides strawberry internals, one module per internal, each checked against the
upstream signature it was written for (tests/unit/test_upstream.py)."""
