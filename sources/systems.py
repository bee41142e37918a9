"""The three agency systems of record and where their APIs keep each record kind."""

from __future__ import annotations

import enum


class Source(enum.Enum):
    """A backend system of record."""

    ORR = "ORR"
    ICE = "ICE"
    EOIR = "EOIR"

    # Members are singletons compared by identity, so the identity hash (C) serves; Enum's own __hash__
    # is a Python call, and sources are in the keys the request context looks up per section.
    __hash__ = object.__hash__

    @property
    def collection(self) -> str:
        """Path segment of this source's record collection (`/v1/<collection>`)."""
        return {"ORR": "children", "ICE": "subjects", "EOIR": "cases"}[self.value]
