"""Loaders of the OSIPI DCE reference data (tests/data/osipi, gzip-compressed copies)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

import numpy as np

OSIPI = Path(__file__).resolve().parents[2] / "data" / "osipi"
CURVES = {"t", "ta", "C", "ca", "C_t", "cp_aif"}


def load_dce(name: str) -> list[dict[str, Any]]:
    """Rows of a DCEmodels file: scalar columns as floats, curve columns as arrays."""
    with gzip.open(OSIPI / f"{name}.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        rec: dict[str, Any] = {}
        for key, value in row.items():
            if key == "label":
                rec[key] = value
            elif key in CURVES:
                rec[key] = np.array(value.split(), dtype=float)
            else:
                rec[key] = float(value)
        out.append(rec)
    return out


def load_aif(name: str) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """label → (time as in the file, Cb in mM, delay in s) of a PopulationAIF file."""
    with gzip.open(OSIPI / f"{name}.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(row["label"], []).append(row)
    return {label: (np.array([float(r["time"]) for r in g]),
                    np.array([float(r["Cb"]) for r in g]),
                    float(g[0].get("delay") or 0.0)) for label, g in groups.items()}


def delayed_variant(row: dict[str, Any], samples: int) -> dict[str, Any]:
    """OSIPI's loader's delay variant: the tissue curve shifted ``samples`` later,
    zero-filled at the start, the AIF unchanged."""
    out = dict(row)
    c = row["C"]
    out["C"] = np.concatenate([np.zeros(samples), c[:-samples]])
    dt = float(row["t"][1] - row["t"][0])
    out["arterialdelay"] = samples * dt
    out["label"] = row["label"] + "_delayed"
    return out
