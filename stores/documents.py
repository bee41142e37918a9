"""Persisted GraphQL documents: the texts clients registered by hash, and the trusted manifests of partners.

Two kinds, both keyed by the SHA-256 (lowercase hex) of the document's text:
- `DocumentStore` (`get`, `put`): automatic persisted queries (APQ) as Apollo clients register them, any
  caller, any document the limits let run. In memory (per process, bounded) or SQLite (survives a restart,
  shared by the processes of one host); a shared store for many hosts implements the same two methods.
- `TrustedDocuments`: per client, the operations its manifest lists (`ucgw documents add`), in SQLite only,
  written by the CLI and read by the gateway. A credential marked `trusted_documents_only` runs only these.

The hash is always checked against the text before a `put` (gateway/http/persisted.py); a store trusts it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from cachetools import LRUCache

MEMORY_DOCUMENTS = 10_000  # documents the memory store keeps (least recently used go first)
PERSISTED_QUERY_STORES = ("sqlite", "memory", "off")  # values of the `persisted_queries` setting


def document_hash(text: str) -> str:
    """The lowercase hex SHA-256 of a document's UTF-8 text (Apollo APQ's `sha256Hash`)."""
    return hashlib.sha256(text.encode()).hexdigest()


def is_hash(value: object) -> bool:
    """True for 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class DocumentStore(Protocol):
    """Registered documents by hash."""

    async def get(self, digest: str) -> str | None: ...

    async def put(self, digest: str, text: str) -> None: ...


class MemoryDocumentStore:
    """Documents in this process, the `MEMORY_DOCUMENTS` most recently used."""

    def __init__(self, max_documents: int = MEMORY_DOCUMENTS) -> None:
        self._texts: LRUCache[str, str] = LRUCache(maxsize=max_documents)

    async def get(self, digest: str) -> str | None:
        return self._texts.get(digest)

    async def put(self, digest: str, text: str) -> None:
        self._texts[digest] = text


_SCHEMA = """
CREATE TABLE IF NOT EXISTS document (hash TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trusted (client TEXT NOT NULL, hash TEXT NOT NULL, name TEXT,
                                    PRIMARY KEY (client, hash));
"""


class _SQLiteFile:
    """One SQLite file holding both tables (WAL: the CLI writes while the gateway reads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()


class SQLiteDocumentStore:
    """APQ documents in SQLite; texts read once are kept in memory (a hash names one text forever)."""

    def __init__(self, path: str | Path) -> None:
        self._file = _SQLiteFile(path)
        self._known: LRUCache[str, str] = LRUCache(maxsize=MEMORY_DOCUMENTS)

    async def get(self, digest: str) -> str | None:
        text = self._known.get(digest)
        if text is None:
            with self._file.lock:
                row = self._file.db.execute("SELECT text FROM document WHERE hash = ?", (digest,)).fetchone()
            if row is None:
                return None
            text = self._known[digest] = row[0]
        return text

    async def put(self, digest: str, text: str) -> None:
        with self._file.lock:
            self._file.db.execute("INSERT OR IGNORE INTO document (hash, text) VALUES (?, ?)", (digest, text))
        self._known[digest] = text

    def close(self) -> None:
        self._file.close()


class TrustedDocuments:
    """Each client's manifest: the operations a `trusted_documents_only` credential of that client may run.

    Read on each lookup that memory does not answer, so a manifest the CLI extends applies to the running
    gateway at once; an entry found is remembered (manifests only grow: a removal needs a restart)."""

    def __init__(self, path: str | Path) -> None:
        self._file = _SQLiteFile(path)
        self._allowed: LRUCache[tuple[str, str], str] = LRUCache(maxsize=MEMORY_DOCUMENTS)

    def add(self, client: str, text: str, name: str | None = None) -> str:
        """Put `text` in `client`'s manifest; its hash."""
        digest = document_hash(text)
        with self._file.lock, self._file.db:
            self._file.db.execute("BEGIN")
            self._file.db.execute("INSERT OR IGNORE INTO document (hash, text) VALUES (?, ?)", (digest, text))
            self._file.db.execute("INSERT OR REPLACE INTO trusted (client, hash, name) VALUES (?, ?, ?)",
                                  (client, digest, name))
        return digest

    def text(self, digest: str, client: str | None = None) -> str | None:
        """The text of a document in `client`'s manifest (any client's when None), or None."""
        key = (client if client is not None else "", digest)  # "" (no client's name): any client's manifest
        known = self._allowed.get(key)
        if known is not None:
            return known
        with self._file.lock:
            if client is None:
                row = self._file.db.execute(
                    "SELECT d.text FROM trusted t JOIN document d ON d.hash = t.hash WHERE t.hash = ? LIMIT 1",
                    (digest,)).fetchone()
            else:
                row = self._file.db.execute(
                    "SELECT d.text FROM trusted t JOIN document d ON d.hash = t.hash WHERE t.client = ? AND t.hash = ?",
                    (client, digest)).fetchone()
        if row is None:
            return None
        self._allowed[key] = str(row[0])
        return str(row[0])

    def manifest(self, client: str) -> list[tuple[str, str | None]]:
        """(hash, operation name) of every document in `client`'s manifest."""
        with self._file.lock:
            return [(h, n) for h, n in self._file.db.execute(
                "SELECT hash, name FROM trusted WHERE client = ? ORDER BY name, hash", (client,))]

    def close(self) -> None:
        self._file.close()
