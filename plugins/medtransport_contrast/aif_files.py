"""Arterial input functions from files: a CSV table with units, or the mean curve of a vessel
mask in a concentration image.

CSV: a header row naming the time column and the concentration column with their units in
brackets or parentheses — ``time [s],plasma [mM]`` or ``time (min),blood (mmol/L)`` — the
concentration column's name saying whether the curve was measured in ``plasma`` or in ``blood``
(a blood curve becomes plasma as C_p = C_b/(1 − Hct), :func:`medtransport_contrast.aif.
plasma_from_blood`); then one row per sample. It becomes a
:class:`medtransport_contrast.aif.MeasuredAIF` (linear interpolation, 0 before the first
sample, the last value after the last).

Vessel mask: C_b(t) = mean over the mask's voxels of the concentration (the vessel's blood),
then C_p as above.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from medtransport.errors import UnitError
from medtransport.images import ImageError
from medtransport.units import to_canonical
from medtransport_contrast.aif import MeasuredAIF, plasma_from_blood

__all__ = ["aif_from_vessel", "read_aif_csv"]

_HEADER = re.compile(r"^\s*([A-Za-z_ ]+?)\s*[\[(]\s*([^\])]+?)\s*[\])]\s*$")


def _column(cell: str, path: Path, field: str, what: str, target: str) -> tuple[str, str]:
    m = _HEADER.match(cell)
    if m is None:
        raise ImageError([(field, f"{path.name}: header cell {cell!r} should name the {what} "
                                  f"column and its unit, e.g. '{what} [{target}]'")])
    name, unit = m.group(1).strip().lower(), m.group(2).strip()
    try:
        to_canonical(f"1 {unit}", target, field=field)
    except UnitError:
        raise ImageError([(field, f"{path.name}: the unit {unit!r} of column {cell!r} is not a "
                                  f"{what} unit (expected one convertible to {target})")]
                         ) from None
    return name, unit


def read_aif_csv(path: str | Path, *, base: Path | None = None, field: str = "aif",
                 delay_s: float = 0.0) -> MeasuredAIF:
    """Read a two-column AIF table (module docstring)."""
    p = Path(path) if base is None or Path(path).is_absolute() else base / path
    if not p.is_file():
        raise ImageError([(field, f"no such file: {path}")])
    with p.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if len(rows) < 3 or len(rows[0]) != 2:
        raise ImageError([(field, f"{p.name}: expected a header of two columns (time, "
                                  "concentration) and at least two rows of samples")])
    _, t_unit = _column(rows[0][0], p, field, "time", "s")
    medium, c_unit = _column(rows[0][1], p, field, "concentration", "mM")
    if medium not in ("plasma", "blood"):
        raise ImageError([(field, f"{p.name}: the concentration column is called {medium!r}; "
                                  "name it 'plasma' or 'blood' (where the curve was measured)")])
    values = []
    for i, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != 2:
                raise ValueError(f"{len(row)} cells")
            values.append((float(row[0]), float(row[1])))
        except ValueError as exc:
            raise ImageError([(field, f"{p.name} row {i}: expected two numbers, got {row!r} "
                                      f"({exc})")]) from None
    t, c = np.array(values).T
    try:
        return MeasuredAIF(kind="measured", medium=medium, time_units=t_unit,
                           concentration_units=c_unit, times=list(t), concentrations=list(c),
                           delay=f"{delay_s} s")
    except ValueError as exc:
        raise ImageError([(field, f"{p.name}: {exc}")]) from None


def aif_from_vessel(concentration: np.ndarray, vessel: np.ndarray,
                    hematocrit: float) -> np.ndarray:
    """The plasma AIF (T,) from a concentration image (X, Y, Z, T; mM of blood in a vessel)
    and a boolean vessel mask (X, Y, Z)."""
    vessel = np.asarray(vessel, dtype=bool)
    if vessel.shape != concentration.shape[:3]:
        raise ValueError(f"the vessel mask's shape {vessel.shape} is not the image's "
                         f"{concentration.shape[:3]}")
    if not vessel.any():
        raise ValueError("the vessel mask is empty")
    return plasma_from_blood(np.nanmean(concentration[vessel], axis=0), hematocrit)
