"""Trusted-document manifests as partners' build tools write them, read for `ucgw documents add`.

- a `.graphql` file: its text as it is, and graphql-core's printed form of it (what graphql-js's `print`,
  and so Apollo Client and urql, send for the same document), each under its own hash;
- a JSON map of hash to text (Relay's `persistConfig` with `algorithm: "SHA256"`, graphql-codegen's
  `persisted-documents.json`);
- Apollo's persisted query manifest (`{"format": "apollo-persisted-query-manifest", "operations": [...]}`).

Every id in a JSON manifest must be the SHA-256 of its text (the gateway looks documents up by that hash);
a manifest made with another algorithm (Relay's default, MD5) is refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from graphql import GraphQLSyntaxError, OperationDefinitionNode, parse, print_ast

from stores.documents import document_hash


class ManifestError(Exception):
    """A file that holds no usable document; the message says which and why."""


def read_documents(path: str) -> list[tuple[str, str | None]]:
    """(text, operation name) of every document in a .graphql file or JSON manifest."""
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    if path.endswith(".json"):
        return _json_manifest(path, content)
    return _graphql_file(path, content)


def _graphql_file(path: str, text: str) -> list[tuple[str, str | None]]:
    try:
        document = parse(text)
    except GraphQLSyntaxError as exc:
        raise ManifestError(f"{path} is not GraphQL: {exc.message}") from exc
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        raise ManifestError(f"{path} holds no operation")
    name = operations[0].name.value if len(operations) == 1 and operations[0].name else None
    printed = print_ast(document)
    return [(text, name)] + ([(printed, name)] if printed != text else [])


def _json_manifest(path: str, content: str) -> list[tuple[str, str | None]]:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ManifestError(f"{path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("format") == "apollo-persisted-query-manifest":
        operations = data.get("operations")
        if not isinstance(operations, list):
            raise ManifestError(f"{path}: an Apollo manifest needs an `operations` list")
        pairs = [(op.get("id"), op.get("body"), op.get("name")) for op in operations if isinstance(op, dict)]
    elif isinstance(data, dict):
        pairs = [(key, value, None) for key, value in data.items()]
    else:
        raise ManifestError(f"{path}: expected a JSON object of hash to document text, or an Apollo manifest")
    documents: list[tuple[str, str | None]] = []
    for key, text, name in pairs:
        if not isinstance(text, str) or not isinstance(key, str):
            raise ManifestError(f"{path}: entry {key!r} is not a document text under a string id")
        digest = key.removeprefix("sha256:")
        if digest != document_hash(text):
            raise ManifestError(f"{path}: id {key!r} is not the SHA-256 of its document (make the manifest with "
                                "SHA-256 ids, e.g. Relay's persistConfig algorithm SHA256)")
        try:
            names = [d.name.value for d in parse(text).definitions
                     if isinstance(d, OperationDefinitionNode) and d.name]
        except GraphQLSyntaxError as exc:
            raise ManifestError(f"{path}: document {key!r} is not GraphQL: {exc.message}") from exc
        documents.append((text, name if isinstance(name, str) else (names[0] if len(names) == 1 else None)))
    return documents
