"""Errors and the bounded record of problems met while reading a capture."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgewire.errors import EdgewireError

__all__ = ["K_EXAMPLES", "Problems", "TraceFormatError"]

#: record indices kept per kind of problem; the count keeps going.
K_EXAMPLES = 5


class TraceFormatError(EdgewireError):
    """A file is not something ``edgewire.traces`` can read (not a capture, qlog or log)."""


class Problems:
    """Problems found in one input, by kind: a count and the first record indices.

    A damaged capture can have a problem on every record; only :data:`K_EXAMPLES` record
    indices per kind are kept, so this never grows with the capture.
    """

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, Any]] = {}

    def add(self, kind: str, message: str, records: int | np.ndarray | list[int]) -> None:
        """Count ``records`` (one index or an array of 0-based record indices) as ``kind``."""
        if isinstance(records, int):
            recs = [records]
        else:
            recs = [int(r) for r in np.asarray(records).ravel()[:K_EXAMPLES]]
            if len(np.asarray(records)) == 0:
                return
        count = 1 if isinstance(records, int) else len(np.asarray(records))
        entry = self._kinds.setdefault(kind, {"kind": kind, "message": message, "count": 0,
                                              "records": []})
        entry["count"] += count
        room = K_EXAMPLES - len(entry["records"])
        if room > 0:
            entry["records"].extend(recs[:room])

    def count(self, kind: str) -> int:
        """How many records had problem ``kind``."""
        entry = self._kinds.get(kind)
        return int(entry["count"]) if entry else 0

    def as_list(self) -> list[dict[str, Any]]:
        """``[{kind, message, count, records}]``, records being the first 0-based indices."""
        return [dict(v, records=list(v["records"])) for v in self._kinds.values()]

    def __bool__(self) -> bool:
        return bool(self._kinds)
