"""The gradient table of a DWI series: FSL ``bval``/``bvec`` files, checked against the image.

FSL format (FDT user guide): ``bval`` is one row of N b-values, conventionally in s/mm²;
``bvec`` is three rows (x, y, z) of N unit vectors, in the image's voxel axes (N columns; a
file of N rows of three is accepted too). A b = 0 volume may have a zero vector.

Refused, naming the file and what was expected: a count that differs from the image's frames
or from the other file; a non-unit vector on a diffusion-weighted volume (|‖g‖ − 1| > 0.01);
b-values that cannot be in the declared unit — in s/mm² a clinical or preclinical b is at most
~10⁵ (so values ~10⁹ are s/m²), and in s/m² every non-zero b is at least 10⁶ (1 s/mm², so
values ~10³ are s/mm²).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pint

from medtransport.images import ImageError
from medtransport.units import Q_

__all__ = ["GradientTable", "read_fsl_gradients", "shells"]

BUnit = Literal["s/mm^2", "s/m^2"]
_MAX_S_PER_MM2 = 1e5
_MIN_S_PER_M2 = 1e6
UNIT_TOLERANCE = 1e-2


@dataclass(frozen=True)
class GradientTable:
    """b-values (N,) in s/mm² and unit directions (N, 3) (zero rows at b = 0)."""

    b_value: np.ndarray
    direction: np.ndarray

    def quantity(self) -> pint.Quantity:
        return Q_(self.b_value, "s/mm^2")


def _numbers(path: Path, field: str) -> np.ndarray:
    try:
        rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        return np.array(rows, dtype=float)
    except (OSError, ValueError) as exc:
        raise ImageError([(field, f"cannot read {path.name} as rows of numbers: {exc}")]
                         ) from None


def read_fsl_gradients(bval: str | Path, bvec: str | Path, *, unit: BUnit = "s/mm^2",
                       frames: int | None = None, base: Path | None = None,
                       field: str = "gradients") -> GradientTable:
    """Read and check an FSL pair; ``unit`` is what the bval file is declared to hold."""
    bp = Path(bval) if base is None or Path(bval).is_absolute() else base / bval
    vp = Path(bvec) if base is None or Path(bvec).is_absolute() else base / bvec
    for p, f in ((bp, f"{field}.bval"), (vp, f"{field}.bvec")):
        if not p.is_file():
            raise ImageError([(f, f"no such file: {p.name}")])
    b = _numbers(bp, f"{field}.bval")
    if b.ndim == 2 and 1 in b.shape:
        b = b.ravel()
    if b.ndim != 1:
        raise ImageError([(f"{field}.bval", f"{bp.name} has shape {b.shape}; expected one "
                                            "row (or column) of b-values")])
    g = _numbers(vp, f"{field}.bvec")
    if g.ndim != 2 or 3 not in g.shape:
        raise ImageError([(f"{field}.bvec", f"{vp.name} has shape {g.shape}; expected 3 rows "
                                            "of N values (FSL) or N rows of 3")])
    if g.shape[0] == 3 and g.shape[1] != 3:
        g = g.T
    elif g.shape == (3, 3):
        g = g.T  # FSL orientation: rows are x, y, z
    if g.shape[0] != b.size:
        raise ImageError([(f"{field}.bvec", f"{vp.name} has {g.shape[0]} directions but "
                                            f"{bp.name} has {b.size} b-values")])
    if frames is not None and b.size != frames:
        raise ImageError([(f"{field}.bval", f"{bp.name} has {b.size} b-values but the image "
                                            f"has {frames} volumes")])
    if np.any(~np.isfinite(b)) or np.any(b < 0):
        raise ImageError([(f"{field}.bval", f"{bp.name}: b-values must be finite and ≥ 0")])
    nz = b > 0
    if unit == "s/mm^2" and b.max() > _MAX_S_PER_MM2:
        raise ImageError([(f"{field}.bval", f"{bp.name} holds b up to {b.max():.4g}, declared "
                                            f"in s/mm²; values this large are s/m² — declare "
                                            "the unit s/m^2 or convert the file")])
    if unit == "s/m^2" and nz.any() and b[nz].min() < _MIN_S_PER_M2:
        raise ImageError([(f"{field}.bval", f"{bp.name} holds b as small as {b[nz].min():.4g}, "
                                            "declared in s/m²; that is below 1 s/mm² — the "
                                            "file is in s/mm² (the FSL convention)")])
    norm = np.linalg.norm(g, axis=1)
    bad = nz & (np.abs(norm - 1.0) > UNIT_TOLERANCE)
    if bad.any():
        i = int(np.argmax(bad))
        raise ImageError([(f"{field}.bvec", f"{vp.name}: direction {i} (b = {b[i]:g}) has norm "
                                            f"{norm[i]:.4g}; expected unit vectors "
                                            f"(|‖g‖ − 1| ≤ {UNIT_TOLERANCE:g}) on every "
                                            f"diffusion-weighted volume ({int(bad.sum())} are "
                                            "not)")])
    b_mm = b if unit == "s/mm^2" else b * 1e-6
    g = np.where(nz[:, None], g / np.where(norm > 0, norm, 1.0)[:, None], 0.0)
    return GradientTable(b_mm, g)


def shells(b_value: np.ndarray, tolerance: float = 5.0, relative: float = 0.05) -> np.ndarray:
    """Shell index of each volume: b-values (s/mm²) within max(``tolerance``, ``relative``·b)
    of a shell's first (smallest) member share it (scanners write a nominal b = 1000 as 995 …
    1005, while IVIM shells can be 10 s/mm² apart); shell 0 is the lowest."""
    b = np.asarray(b_value, dtype=float)
    order = np.argsort(b, kind="stable")
    index = np.empty(b.size, dtype=int)
    shell, first = -1, -np.inf
    for i in order:
        if b[i] - first > max(tolerance, relative * first):
            shell += 1
            first = b[i]
        index[i] = shell
    return index
