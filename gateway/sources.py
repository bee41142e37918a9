"""The three agency systems of record and where their APIs keep each record kind."""

from __future__ import annotations

import enum


class Source(enum.Enum):
    """A backend system of record."""

    ORR = "ORR"
    ICE = "ICE"
    EOIR = "EOIR"

    @property
    def collection(self) -> str:
        """Path segment of this source's record collection (`/v1/<collection>`)."""
        return {"ORR": "children", "ICE": "subjects", "EOIR": "cases"}[self.value]
