"""What a GraphQL request body must be before any GraphQL work: JSON (by its Content-Type) and shallow.

A body refused here gets the gateway's JSON error with a code, never a 5xx: 415 UNSUPPORTED_MEDIA_TYPE for
a POST that does not say it is JSON, 400 BAD_REQUEST for JSON nested deeper than `MAX_JSON_DEPTH` (a
`variables` or `extensions` value that deep is no GraphQL input, and walking it costs every later step).
"""

from __future__ import annotations

MAX_JSON_DEPTH = 64  # levels of objects and lists inside `variables` or `extensions`
JSON_TYPES = ("application/json", "application/graphql-response+json")


def is_json_type(content_type: str | None) -> bool:
    """True when a Content-Type header names JSON (parameters such as charset aside)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return media in JSON_TYPES


def deeper_than(value: object, limit: int) -> bool:
    """True when `value` nests objects and lists more than `limit` levels below itself."""
    level: list[object] = [value]
    for _ in range(limit + 1):
        below: list[object] = []
        for node in level:
            if isinstance(node, dict):
                below.extend(v for v in node.values() if isinstance(v, dict | list))
            elif isinstance(node, list):
                below.extend(v for v in node if isinstance(v, dict | list))
        if not below:
            return False
        level = below
    return True


def too_deep(request: object) -> str | None:
    """Why a parsed request body is refused for its depth, or None."""
    if not isinstance(request, dict):
        return None
    for member in ("variables", "extensions"):
        if deeper_than(request.get(member), MAX_JSON_DEPTH):
            return f"`{member}` is nested deeper than {MAX_JSON_DEPTH} levels"
    return None


# The GraphQL-over-HTTP spec's response media types (https://graphql.github.io/graphql-over-http/draft/)
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
LEGACY_JSON = "application/json"


def response_media_type(accept: str | None) -> str | None:
    """The media type an answer is sent as, from the request's Accept header; None: nothing the gateway can
    send is acceptable (HTTP 406).

    The spec's rules: `application/graphql-response+json` when the client accepts it at least as much as
    `application/json` (its q-value, ties to the spec's own type); `application/json` when only that is
    accepted; and, as its "legacy watershed" asks of servers that answered older clients, `application/json`
    for a missing Accept, `*/*` or `application/*` (those clients sent that and read JSON)."""
    if accept is None:
        return LEGACY_JSON
    known = COMMON_ACCEPTS.get(accept)
    if known is not None:
        return known
    if not accept.strip():
        return LEGACY_JSON
    best: tuple[float, int, str] | None = None
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if media == GRAPHQL_RESPONSE_JSON:
            choice = (q, 2, GRAPHQL_RESPONSE_JSON)
        elif media == LEGACY_JSON:
            choice = (q, 1, LEGACY_JSON)
        elif media in ("*/*", "application/*"):
            choice = (q, 0, LEGACY_JSON)
        else:
            continue
        if best is None or choice[:2] > best[:2]:
            best = choice
    return best[2] if best is not None else None


# What the clients partners use send, answered without parsing (each is what the rules above give it)
COMMON_ACCEPTS = {
    "application/json": LEGACY_JSON,
    "*/*": LEGACY_JSON,
    GRAPHQL_RESPONSE_JSON: GRAPHQL_RESPONSE_JSON,
    "application/graphql-response+json,application/json;q=0.9": GRAPHQL_RESPONSE_JSON,  # Apollo Client 4
    "application/graphql-response+json, application/json": GRAPHQL_RESPONSE_JSON,  # graphql-http
    "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, "
    "multipart/mixed": GRAPHQL_RESPONSE_JSON,  # urql
}
