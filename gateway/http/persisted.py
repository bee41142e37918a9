"""Persisted operations: a request that names its document by hash gets the document's text put in.

Three ways to name a document, each the lowercase hex SHA-256 of its text:
- Apollo's automatic persisted queries: `extensions.persistedQuery = {"version": 1, "sha256Hash": H}`, GET or
  POST. Without `query`: the registered text, or `PERSISTED_QUERY_NOT_FOUND` (the client then sends the
  query with the hash); with it: the hash must be the query's (`PERSISTED_QUERY_HASH_MISMATCH`), and the
  text is registered (`DocumentStore.put`) once it has parsed and validated, before the answer leaves.
- The GraphQL-over-HTTP persisted-documents form: `documentId: "sha256:H"`.
- Relay's persisted queries: `doc_id: "H"` (or `"sha256:H"`).

A credential marked `trusted_documents_only` runs only the documents in its client's manifest
(`ucgw documents add`); any other request of its, a plain `query` included, is `PERSISTED_QUERY_NOT_ALLOWED`.

Runs in the guard after authentication and the body read, before the stored answers and early fetches: a
POST comes out as a plain `{"query", "variables", "operationName"}` body (the same bytes for the same
request, so a hash-only status query is answered from stored answers as its full form would be); a GET
gets `query=` in its query string in place of the hash.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from gateway.http.asgi import send_error
from gateway.http.bodies import LEGACY_JSON, is_json_type
from gateway.http.request_state import RequestState
from stores.documents import DocumentStore, TrustedDocuments, document_hash, is_hash

log = logging.getLogger("ucgw.persisted")

NOT_FOUND, HASH_MISMATCH = "PERSISTED_QUERY_NOT_FOUND", "PERSISTED_QUERY_HASH_MISMATCH"
NOT_ALLOWED, NOT_SUPPORTED = "PERSISTED_QUERY_NOT_ALLOWED", "PERSISTED_QUERY_NOT_SUPPORTED"
BAD_REQUEST = "BAD_REQUEST"
# messages Apollo clients match on besides the code
NOT_FOUND_MESSAGE, NOT_SUPPORTED_MESSAGE = "PersistedQueryNotFound", "PersistedQueryNotSupported"
_MARKERS = (b"persistedQuery", b"documentId", b"doc_id")
_SHA256 = "sha256:"

# Rewrites an admitted request that names a persisted document; None when it answered (refused) it.
Documents = Callable[[Scope, RequestState, Headers, bytes, Send], Awaitable[bytes | None]]


class Refusal(Exception):
    """A persisted-document request the gateway refuses; `status` by response media type."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class PersistedDocuments:
    """The guard's document hook (`gateway.http.admission`): APQ, `documentId`, `doc_id`, trusted manifests."""

    def __init__(self, registered: DocumentStore | None, trusted: TrustedDocuments) -> None:
        self.registered = registered  # None: automatic persisted queries are off (trusted documents still work)
        self.trusted = trusted
        self.served = 0  # requests whose text came from a store
        self.registrations = 0  # documents registered by APQ

    def facts(self) -> dict[str, int]:
        """Counters, for /readyz."""
        shared = getattr(self.registered, "shared_hits", None)  # with Redis: hashes another replica registered
        return {"served": self.served, "registered": self.registrations,
                **({} if shared is None else {"sharedHits": shared})}

    async def __call__(self, scope: Scope, state: RequestState, headers: Headers, body: bytes,
                       send: Send) -> bytes | None:
        principal = state.principal
        trusted_only = principal is not None and principal.trusted_documents_only
        get = scope.get("method") == "GET"
        raw = scope.get("query_string", b"") if get else body
        if not trusted_only and not any(marker in raw for marker in _MARKERS):
            return body  # the common request: nothing to look up
        try:
            if get:
                params = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
                request: dict[str, Any] | None = _get_request(params)
            else:
                request = _post_request(headers, body)
            if request is None:  # not a JSON object: strawberry refuses it as malformed, nothing runs
                return body
            client = principal.client if trusted_only and principal is not None else None
            resolved = await self._resolve(request, state, client, trusted_only)
        except Refusal as refusal:
            status = refusal.status if refusal.status != 200 or state.media_type == LEGACY_JSON else 400
            state.status = status
            log.info("persisted document refused: %s", refusal.code)
            await send_error(send, status, refusal.code, refusal.message, media_type=state.media_type)
            return None
        if resolved is None:
            return body
        if get:
            params = {k: v for k, v in params.items() if k not in ("documentId", "doc_id", "extensions")}
            rest = resolved.get("extensions")
            params["query"] = resolved["query"]
            if rest:
                params["extensions"] = orjson.dumps(rest).decode()
            scope["query_string"] = urlencode(params).encode()
            return body
        return orjson.dumps(resolved)

    def _registration(self, digest: str, text: str) -> Callable[[], Awaitable[None]]:
        """Registers a document once it has passed parsing and validation (the GraphQL view calls it before
        it answers, so the client's next hash-only request finds it): text that is no valid operation is
        never stored."""

        async def register() -> None:
            assert self.registered is not None
            await self.registered.put(digest, text)
            self.registrations += 1

        return register

    async def _resolve(self, request: dict[str, Any], state: RequestState, client: str | None,
                       trusted_only: bool) -> dict[str, Any] | None:
        """The request with its document's text as `query` (and the id taken out); None when it names none
        (a plain query from a caller that may send one)."""
        query = request.get("query")
        extensions = request.get("extensions")
        extensions = dict(extensions) if isinstance(extensions, dict) else None
        digest, apq = _named_hash(request, extensions)
        if digest is None:
            if trusted_only:
                raise Refusal(NOT_ALLOWED, "this credential may run only its client's trusted documents: send a "
                                           "documentId (sha256:<hash>) from its manifest", 403)
            return None
        if query is not None and not isinstance(query, str):
            return None  # strawberry refuses a `query` that is not a string
        if isinstance(query, str) and query:
            if document_hash(query) != digest:
                raise Refusal(HASH_MISMATCH, "provided sha does not match query", 400)
            if trusted_only and self.trusted.text(digest, client) is None:
                raise Refusal(NOT_ALLOWED, "this operation is not in this client's trusted documents", 403)
            if self.registered is not None and await self.registered.get(digest) is None:
                state.registration = self._registration(digest, query)
            text = query
        else:
            if trusted_only:
                text = self.trusted.text(digest, client)
                if text is None:
                    raise Refusal(NOT_ALLOWED, "this operation is not in this client's trusted documents", 403)
            else:  # registered documents first: an APQ client's every request, from memory
                text = await self.registered.get(digest) if self.registered is not None else None
                if text is None:
                    text = self.trusted.text(digest)
            if text is None:
                if self.registered is None and apq:
                    raise Refusal(NOT_SUPPORTED, NOT_SUPPORTED_MESSAGE, 400)
                raise Refusal(NOT_FOUND, NOT_FOUND_MESSAGE, 200)
            self.served += 1
        resolved: dict[str, Any] = {"query": text}
        for name in ("variables", "operationName"):
            if request.get(name) is not None:
                resolved[name] = request[name]
        if extensions:
            extensions.pop("persistedQuery", None)
            if extensions:
                resolved["extensions"] = extensions
        return resolved


def _named_hash(request: dict[str, Any], extensions: dict[str, Any] | None) -> tuple[str | None, bool]:
    """(the hash a request names, whether it came as an APQ extension); a malformed one is a Refusal."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is not None:
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise Refusal(NOT_SUPPORTED, "persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<hex>\"}", 400)
        digest = persisted.get("sha256Hash")
        if not is_hash(digest):
            raise Refusal(BAD_REQUEST, "persistedQuery.sha256Hash must be 64 lowercase hex digits", 400)
        return digest, True
    for name in ("documentId", "doc_id"):
        value = request.get(name)
        if value is None:
            continue
        digest = value[len(_SHA256):] if isinstance(value, str) and value.startswith(_SHA256) else value
        if name == "documentId" and not (isinstance(value, str) and value.startswith(_SHA256)):
            raise Refusal(BAD_REQUEST, "documentId must be sha256:<64 lowercase hex digits>", 400)
        if not is_hash(digest):
            raise Refusal(BAD_REQUEST, f"{name} must be the document's SHA-256: 64 lowercase hex digits", 400)
        return str(digest), False
    return None, False


def _post_request(headers: Headers, body: bytes) -> dict[str, Any] | None:
    """A POSTed JSON object, or None (anything else is strawberry's to refuse)."""
    if not is_json_type(headers.get("content-type")):
        return None
    try:
        parsed = orjson.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _get_request(params: dict[str, str]) -> dict[str, Any] | None:
    """A GET request's parameters with `extensions` and `variables` decoded; None when one is not JSON."""
    request: dict[str, Any] = dict(params)
    for name in ("extensions", "variables"):
        if name in params:
            try:
                request[name] = orjson.loads(params[name])
            except ValueError:
                return None
    return request
