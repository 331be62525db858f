"""DWI files in both directions: simulate an acquisition of a digital phantom into NIfTI +
``bval``/``bvec``, and fit such files into parameter maps with their units and audits.

Phantom: a label image (integers; 0 = background) and, per label, a tissue — S0, the tensor's
axial and radial diffusivities and orientation, and optionally an IVIM perfusion fraction f and
pseudo-diffusivity D*. Its signal is the plugin's tensor compartment
(:mod:`medtransport_dwi.compartments`: E = e^{−b·ĝᵀDĝ}, D = D⊥I + (D∥ − D⊥)aaᵀ) plus the
pseudo-diffusion compartment, S = S0·(f·e^{−b·D*} + (1 − f)·e^{−b·ĝᵀDĝ}), with Rician or
non-central χ noise (:mod:`medtransport_noise.magnitude`) at a stated SNR of S0.

Fit: :func:`fit_dwi_files` reads the image, gradient table and mask, fits the requested models
over the mask (:mod:`medtransport_dwi.maps`) and writes each map as NIfTI with its ``Units``
sidecar and the fit's audit report beside it (:func:`medtransport.images.write_map`).

Audits of a fit (each can fail; tests hold their mutants): ``maps_finite`` — every map is
finite in every voxel of the mask; ``fit_converged`` — the optimiser converged in at least
:data:`MIN_CONVERGED` of the voxels (iterative fits); ``b0_reproduced`` — the fitted S0
reproduces the measured b = 0 signal, median |S0_fit/S0_meas − 1| ≤ :data:`S0_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.images import Image, read_image, read_mask, write_image, write_map
from medtransport_dwi import maps as dwi_maps
from medtransport_dwi.gradients import BUnit, read_fsl_gradients

__all__ = ["MIN_CONVERGED", "S0_TOLERANCE", "Tissue", "audit_fit", "fit_dwi_files",
           "phantom_signal", "write_acquisition"]

MIN_CONVERGED = 0.95
S0_TOLERANCE = 0.05
FITS = ("adc", "dti", "ivim", "dki", "verdict")


@dataclass
class Tissue:
    """One label's tissue: diffusivities in mm²/s, orientation a unit vector."""

    s0: float
    axial: float
    radial: float
    orientation: tuple[float, float, float] = (0.0, 0.0, 1.0)
    perfusion_fraction: float = 0.0
    pseudo_diffusivity: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)

    def tensor(self) -> np.ndarray:
        a = np.asarray(self.orientation, dtype=float)
        a = a / np.linalg.norm(a)
        return self.radial * np.eye(3) + (self.axial - self.radial) * np.outer(a, a)


def phantom_signal(labels: np.ndarray, tissues: Mapping[int, Tissue], b: np.ndarray,
                   g: np.ndarray) -> np.ndarray:
    """The noise-free signal (X, Y, Z, N) of the phantom (module docstring)."""
    out = np.zeros((*labels.shape, b.size))
    for label, t in tissues.items():
        sel = labels == label
        e = np.exp(-b * np.einsum("ni,ij,nj->n", g, t.tensor(), g))
        f = t.perfusion_fraction
        out[sel] = t.s0 * (f * np.exp(-b * t.pseudo_diffusivity) + (1 - f) * e)
    return out


def write_acquisition(directory: Path, name: str, signal: np.ndarray, b: np.ndarray,
                      g: np.ndarray, voxel_size_mm: tuple[float, float, float], *,
                      dtype: type = np.float32) -> dict[str, Path]:
    """``<name>.nii.gz`` (float32, affine = voxel sizes, centred), ``<name>.bval`` (s/mm²) and
    ``<name>.bvec`` (FSL: 3 rows), each written atomically."""
    from medtransport.results import write_atomically

    affine = np.diag([*voxel_size_mm, 1.0])
    affine[:3, 3] = -0.5 * np.asarray(signal.shape[:3]) * np.asarray(voxel_size_mm)
    paths = {"dwi": write_image(directory / f"{name}.nii.gz", signal, affine, voxel_size_mm,
                                dtype=dtype)}
    for ext, text in (("bval", " ".join(f"{v:g}" for v in b) + "\n"),
                      ("bvec", "\n".join(" ".join(f"{v:.6f}" for v in row) for row in g.T)
                       + "\n")):
        path = directory / f"{name}.{ext}"
        with write_atomically(path, f".{ext}.tmp") as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths[ext] = path
    return paths


def audit_fit(fit: str, result: Mapping[str, dwi_maps.Map], s0_measured: np.ndarray
              ) -> AuditReport:
    """The audits of one fit (module docstring)."""
    results = []
    bad = [k for k, m in result.items() if not np.all(np.isfinite(m.values))]
    worst = max((float(np.mean(~np.isfinite(result[k].values))) for k in bad), default=0.0)
    results.append(AuditResult("maps_finite", not bad, worst, 0.0, "fraction",
                               "every map finite over the mask" if not bad else
                               f"non-finite values in {', '.join(bad)}", source=f"dwi.{fit}"))
    if "converged" in result:
        frac = float(np.mean(result["converged"].values))
        results.append(AuditResult("fit_converged", frac >= MIN_CONVERGED, frac,
                                   MIN_CONVERGED, "fraction",
                                   f"the optimiser converged in {100 * frac:.1f} % of voxels",
                                   source=f"dwi.{fit}"))
    if "s0" in result:
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = float(np.nanmedian(np.abs(result["s0"].values / s0_measured - 1.0)))
        results.append(AuditResult("b0_reproduced", bool(dev <= S0_TOLERANCE), dev,
                                   S0_TOLERANCE, "fraction",
                                   f"median |S0_fit/S0_measured − 1| = {dev:.3g}",
                                   source=f"dwi.{fit}"))
    return AuditReport(results)


def fit_dwi_files(dwi: str | Path, bval: str | Path, bvec: str | Path, mask: str | Path,
                  out_dir: str | Path, *, fits: Iterable[str] = ("dti", "adc"),
                  b_unit: BUnit = "s/mm^2", base: Path | None = None,
                  rician_sigma: float | None = None,
                  prefix: str = "") -> dict[str, Path]:
    """Fit the requested models (``adc``, ``dti``, ``ivim``, ``dki``, ``verdict``) over the mask
    and write every map to ``out_dir`` as ``<prefix><fit>_<map>.nii.gz`` (+ sidecar, + audit).
    ``verdict`` needs the diffusion timing: ``SmallDelta`` and ``LargeDelta`` (s; one value, or
    one per volume) in the image's sidecar ``<stem>.json``. Returns map name → path."""
    image = read_image(dwi, base=base, field="dwi", ndim=(4,))
    table = read_fsl_gradients(bval, bvec, unit=b_unit, frames=image.frames, base=base)
    inside = read_mask(mask, image, base=base)
    signal = image.data[inside]
    b, g = table.b_value, table.direction
    s0_meas = np.exp(np.log(np.maximum(signal[:, b <= dwi_maps.B0_MAX], 1e-12)).mean(axis=1))
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for fit in fits:
        if fit not in FITS:
            raise ValueError(f"unknown DWI fit {fit!r}; choose from {', '.join(FITS)}")
        if fit == "adc":
            result = dwi_maps.adc_maps(signal, b)
        elif fit == "dti":
            result = dwi_maps.dti_maps(signal, b, g)
        elif fit == "ivim":
            result = dwi_maps.ivim_maps(signal, b, method="full", rician_sigma=rician_sigma)
        elif fit == "dki":
            result = dwi_maps.dki_maps(signal, b, g)
        else:
            from medtransport_dwi.microstructure import verdict_maps

            delta, separation = _timing(image, b.size)
            result = verdict_maps(signal, b, delta, separation)
        report = audit_fit(fit, result, s0_meas)
        for name, m in result.items():
            written[f"{fit}_{name}"] = _write(out / f"{prefix}{fit}_{name}.nii.gz", m, inside,
                                              image, report, fit)
    return written


def _timing(image: Image, volumes: int) -> tuple[np.ndarray, np.ndarray]:
    """(δ, Δ) per volume from the image's BIDS sidecar (SmallDelta, LargeDelta, seconds)."""
    from medtransport.images import ImageError, read_sidecar, sidecar_quantity

    name = image.path.name
    stem = name[:-7] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    side_path = image.path.with_name(stem + ".json")
    if not side_path.is_file():
        raise ImageError([("dwi", f"the VERDICT fit needs the diffusion timing: no sidecar "
                                  f"{side_path.name} beside {name}")])
    side = read_sidecar(side_path, field="dwi sidecar")
    out = []
    for key in ("SmallDelta", "LargeDelta"):
        q = sidecar_quantity(side, key, source=side_path.name)
        v = np.broadcast_to(np.atleast_1d(q.m_as("s")), (volumes,)) if np.size(q.m) in (
            1, volumes) else None
        if v is None:
            raise ImageError([(f"{side_path.name}.{key}", f"{np.size(q.m)} values for "
                                                          f"{volumes} volumes; give one or one "
                                                          "per volume")])
        out.append(np.asarray(v, dtype=float))
    if np.any(out[1] <= out[0]):
        raise ImageError([(f"{side_path.name}.LargeDelta", "Δ must exceed δ on every volume")])
    return out[0], out[1]


def _write(path: Path, m: dwi_maps.Map, inside: np.ndarray, image: Image, report: AuditReport,
           fit: str) -> Path:
    values = m.values
    shape = image.shape + ((values.shape[1],) if values.ndim == 2 else ())
    full = np.zeros(shape)  # 0 outside the mask, as BIDS derivatives and FSL expect
    full[inside] = values
    return write_map(path, full, image, m.unit, description=m.description,
                     audit=report.to_json(), extra={"Fit": f"dwi.{fit}",
                                                    "AuditPassed": report.passed})
