"""Relay-style connections and the opaque cursors of the oversight lists.

A cursor encodes a scan position: the ICE listing's own (opaque) cursor of the listing page being read,
the A-number last reached on it (listings are in a_number order) and, for lists with several items per
child, the index of the last item of that child already returned. Resuming re-reads that listing page
and skips what was already returned. Cursors name the list and the arguments that shape it (see
`list_kind`), so another list's cursor, or one from another filter, is refused.

A cursor is sealed with AES-GCM (security #2): its content is encrypted, so it reveals nothing the caller
could not read (the A-number a scoped scan stopped at may be outside the caller's scope, and the source's
listing cursor may name one), and authenticated with the list kind as associated data, so a cursor the
gateway did not issue, an edited one or another list's is refused before any backend call. The key comes
from the `cursor_secret` setting (`CursorCodec`, built at start): replicas given the same one accept each
other's cursors, and cursors survive a restart. Without one, each process makes a random key, and its
cursors hold only within it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import strawberry
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from resolvers.errors import bad_input
from rules.anumber import CANONICAL

T = TypeVar("T")
MAX_FIRST = 100
_VERSION = 3
_NONCE_BYTES = 12
BAD_CURSOR = ("'after' is not a cursor of this list and filter; pass an endCursor or edge cursor it returned, "
              "or omit it to start from the beginning")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a list stopped: after item `index` of child `a_number` (index -1: after the whole child),
    on the listing page that the source's cursor `listing` returns (None: the first page)."""

    a_number: str
    index: int = -1
    listing: str | None = None

    def passed(self, a_number: str, index: int | None = None) -> bool:
        """True when item `index` of child `a_number` (None: the whole child) was returned before."""
        if a_number != self.a_number:
            return a_number < self.a_number
        return self.index < 0 or (index is not None and index <= self.index)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Seals and opens the cursors of the oversight lists with one key: the `cursor_secret` setting's, so that
    replicas given the same secret accept each other's cursors; without one, a random key of this process.
    Built once by `create_app` and handed to each request's context.

    During a rotation `previous` (`cursor_secret_previous`) opens the cursors sealed before it, so that a
    client paging through a list goes on while the replicas restart one by one; new cursors are sealed under
    `secret` only."""

    def __init__(self, secret: str = "", previous: str = "") -> None:
        key = (hashlib.sha256(b"ucgw-cursor-key:" + secret.encode()).digest() if secret
               else secrets.token_bytes(32))
        self._aead = AESGCM(key)
        self._openers = [self._aead]
        if previous:
            self._openers.append(AESGCM(hashlib.sha256(b"ucgw-cursor-key:" + previous.encode()).digest()))

    def encode(self, kind: str, pos: Position) -> str:
        """The opaque cursor of a scan position in list `kind`: encrypted and authenticated under the cursor
        key, bound to `kind` (a fresh random nonce each time, so equal positions give unrelated cursors)."""
        raw = json.dumps([_VERSION, pos.a_number, pos.index, pos.listing], separators=(",", ":")).encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _b64(nonce + self._aead.encrypt(nonce, raw, kind.encode()))

    def decode(self, kind: str, cursor: str | None) -> Position | None:
        """The scan position of a cursor sealed under the cursor key for list `kind`; BAD_USER_INPUT otherwise."""
        if cursor is None:
            return None
        try:
            raw = self._open(_unb64(cursor), kind.encode())
            version, a_number, index, listing = json.loads(raw)
            ok = (version == _VERSION and isinstance(a_number, str)
                  and CANONICAL.fullmatch(a_number) is not None and isinstance(index, int) and index >= -1
                  and (listing is None or isinstance(listing, str)))
        except (InvalidTag, ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
            ok = False  # not sealed under this key for this list, or not a position (nested too deep: not ours)
        if not ok:
            raise bad_input(BAD_CURSOR)
        return Position(a_number, index, listing)


    def _open(self, sealed: bytes, kind: bytes) -> bytes:
        """The plain text of a cursor sealed under the current key, or else the previous one; InvalidTag."""
        for aead in self._openers:
            try:
                return aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], kind)
            except InvalidTag:
                continue
        raise InvalidTag


def list_kind(name: str, *parts: object) -> str:
    """A list's cursor kind: its name and a digest of the arguments that shape it (its filter in a
    canonical form, and time or window arguments as given), so a cursor is refused under other ones."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    return f"{name}:{digest}"


def check_first(first: int) -> int:
    """`first` within 1..MAX_FIRST, else BAD_USER_INPUT."""
    if not 1 <= first <= MAX_FIRST:
        raise bad_input(f"'first' must be between 1 and {MAX_FIRST} (got {first})")
    return first


@strawberry.type(description="Where a page ends and whether another follows.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Scan position to pass as `after` for the next page; may lie past the last edge when "
                    "filters dropped the children scanned after it."
    )


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="One page of a list, Relay style.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    count_all: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field(description="How many items the whole list holds (costs a full scan of the sources).")
    async def total_count(self) -> int | None:
        return await self.count_all() if self.count_all is not None else None
