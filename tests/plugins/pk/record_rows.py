"""Build a :class:`RecordTable` from a few dict rows, as the engine tests write their cases."""

from __future__ import annotations

from typing import Any

import numpy as np

from medtransport_pk.records import RecordTable

INTS = ("id", "evid", "cmt", "addl", "ss", "mdv")


def table(rows: list[dict[str, Any]], sort: bool = True) -> RecordTable:
    """Records of the rows, each subject's in time order (rows at one time as written)."""
    first = {r.get("id", 1): i for i, r in reversed(list(enumerate(rows)))}
    if sort:
        rows = sorted(rows, key=lambda r: (first[r.get("id", 1)], r.get("time", 0.0)))
    defaults = dict(id=1, time=0.0, evid=0, amt=0.0, cmt=0, rate=0.0, ii=0.0, addl=0, ss=0,
                    mdv=0, dv=np.nan)
    col = {k: np.array([r.get(k, d) for r in rows]) for k, d in defaults.items()}
    return RecordTable(**{k: v.astype(np.int64 if k in INTS else float) for k, v in col.items()},
                       row=np.arange(1, len(rows) + 1))
