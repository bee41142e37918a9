"""A corpus of malformed requests, each with the status and `extensions.code` the gateway must answer.

Variables nested 64 deep are still served (`deeper_than` counts from `variables` itself). `{auth}` in a
request stands for the caller's Authorization header line (the body-level cases must get
past authentication to reach the body's checks). Protocol cases (RFC 9112 §6.3 smuggling vectors, bad
chunking) are refused by the edge (gateway/http/edge.py) with 400 and a close; body cases by the GraphQL
view (gateway/http/bodies.py and gateway/app.py)."""

from __future__ import annotations

HEAD = b"POST /graphql HTTP/1.1\r\nHost: gw\r\n{auth}"
JSON = b"Content-Type: application/json\r\n"
CHILD_BY_AGE = b'query($n: Int) { child(aNumber: \\"A000000001\\", maxAgeSeconds: $n) { aNumber } }'


def post(body: bytes, content_type: bytes | None = JSON) -> bytes:
    """A well-framed POST of `body` to /graphql."""
    return HEAD + (content_type or b"") + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _deep(n: int) -> bytes:
    return post(b'{"query": "query($v: String) { __typename }", "variables": {"v": ' + b"[" * n + b"]" * n + b"}}")


# (name, raw request, status, code)
CORPUS: list[tuple[str, bytes, int, str]] = [
    ("content-length and transfer-encoding", HEAD + JSON + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\nG", 400, "BAD_REQUEST"),
    ("transfer-encoding and content-length", HEAD + JSON + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
     b"0\r\n\r\nG", 400, "BAD_REQUEST"),
    ("two different content-lengths", HEAD + JSON + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
     400, "BAD_REQUEST"),
    ("two equal content-lengths", HEAD + JSON + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
     400, "BAD_REQUEST"),
    ("content-length list", HEAD + JSON + b"Content-Length: 2, 2\r\n\r\n{}", 400, "BAD_REQUEST"),
    ("signed content-length", HEAD + JSON + b"Content-Length: +2\r\n\r\n{}", 400, "BAD_REQUEST"),
    ("obs-folded header", HEAD + JSON + b"X-Purpose: review\r\n  continued\r\nContent-Length: 2\r\n\r\n{}",
     400, "BAD_REQUEST"),
    ("space before colon", HEAD + JSON + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "BAD_REQUEST"),
    ("transfer-encoding not chunked", HEAD + JSON + b"Transfer-Encoding: gzip\r\n\r\nxx", 400, "BAD_REQUEST"),
    ("transfer-encoding chunked twice", HEAD + JSON + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n0\r\n\r\n", 400, "BAD_REQUEST"),
    ("invalid chunk size", HEAD + JSON + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
     400, "BAD_REQUEST"),
    ("chunk size overflow", HEAD + JSON + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n{}\r\n",
     400, "BAD_REQUEST"),
    ("bare LF line ends", b"POST /graphql HTTP/1.1\nHost: gw\nContent-Length: 2\n\n{}", 400, "BAD_REQUEST"),
    ("NUL in a header value", HEAD + JSON + b"X-Purpose: a\x00b\r\nContent-Length: 2\r\n\r\n{}", 400, "BAD_REQUEST"),
    ("invalid UTF-8", post(b'{"query": "{ __typename \xff\xfe }"}'), 400, "BAD_REQUEST"),
    ("NUL byte in the body", post(b'{"query": "{ __typename }\x00"}'), 400, "BAD_REQUEST"),
    ("variables nested 65 deep", _deep(65), 400, "BAD_REQUEST"),
    ("extensions nested 65 deep", post(b'{"query": "{ __typename }", "extensions": {"x": ' + b"[" * 65 + b"]" * 65
                                       + b"}}"), 400, "BAD_REQUEST"),
    # out of range for its GraphQL type: refused with the variable's code before any resolver runs (400, as
    # for every variable that does not coerce)
    ("Int beyond 32 bits", post(b'{"query": "' + CHILD_BY_AGE + b'", "variables": {"n": 4294967296}}'),
     400, "BAD_USER_INPUT"),
    ("integer beyond 64 bits", post(b'{"query": "' + CHILD_BY_AGE + b'", "variables": {"n": ' + b"9" * 30 + b"}}"),
     400, "BAD_USER_INPUT"),
    ("body not an object", post(b'"{ __typename }"'), 400, "BAD_REQUEST"),
    ("body a number", post(b"5"), 400, "BAD_REQUEST"),
    ("wrong content type", post(b'{"query": "{ __typename }"}', b"Content-Type: text/plain\r\n"),
     415, "UNSUPPORTED_MEDIA_TYPE"),
    ("form content type", post(b"query=%7B__typename%7D", b"Content-Type: application/x-www-form-urlencoded\r\n"),
     415, "UNSUPPORTED_MEDIA_TYPE"),
    ("no content type", post(b'{"query": "{ __typename }"}', None), 415, "UNSUPPORTED_MEDIA_TYPE"),
]
