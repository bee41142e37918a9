"""The places where the gateway reaches into strawberry's or graphql-core's internals, one module per internal,
each checked against the upstream signature it copies (tests/unit/test_upstream.py)."""
