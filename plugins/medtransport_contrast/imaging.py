"""DCE files in both directions: simulate an acquisition of a digital phantom into NIfTI + BIDS
sidecars + an AIF table, and fit such files into parameter maps with units and audits.

Files of an acquisition ``<name>``:

- ``<name>_vfa.nii.gz`` (X, Y, Z, A) + ``<name>_vfa.json`` (``RepetitionTime`` s,
  ``FlipAngle``: the A angles in degrees) — the variable-flip-angle series for T1;
- ``<name>_dce.nii.gz`` (X, Y, Z, T; the frame interval in the header, seconds) +
  ``<name>_dce.json`` (``RepetitionTime``, ``FlipAngle``) — the dynamic series;
- ``<name>_aif.csv`` (``time [s],plasma [mM]``, :mod:`medtransport_contrast.aif_files`).

Phantom: a label image and, per label, a tissue (native T1, M0, and the kinetic model's
parameters); signal S = spgr(1/T1 + r1·C(t)) with C(t) from :mod:`medtransport_contrast.
kinetics` (extended Tofts: Ktrans, ve, vp), optional Rician noise at an SNR of M0.

Fit (:func:`fit_dce_files`): T1 by VFA (:mod:`medtransport_contrast.t1_mapping`), signal →
concentration with the plugin's relaxivity (``agent`` at ``field_strength``, or
``relaxivity``), the AIF from the CSV or from a vessel mask, then the kinetic model over the
mask (:mod:`medtransport_contrast.maps`); every map written with its ``Units`` sidecar and the
audit report: ``maps_finite``, ``fit_converged`` (≥ 95 % of voxels) and
``concentration_valid`` (every voxel's signal invertible at every frame).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.images import (
    Image,
    ImageError,
    read_image,
    read_mask,
    read_sidecar,
    sidecar_quantity,
    write_image,
    write_map,
)
from medtransport_contrast import kinetics as kin
from medtransport_contrast.aif import plasma_from_blood
from medtransport_contrast.aif_files import aif_from_vessel, read_aif_csv
from medtransport_contrast.maps import Map, fit_maps
from medtransport_contrast.signal import r1_of, spgr
from medtransport_contrast.t1_mapping import concentration_maps, vfa_t1

__all__ = ["MIN_CONVERGED", "DCETissue", "audit_fit", "fit_dce_files", "phantom_signals",
           "write_dce_acquisition"]

MIN_CONVERGED = 0.95


@dataclass
class DCETissue:
    """One label: native T1 (s), M0, Ktrans (1/min), ve, vp."""

    t1: float
    m0: float
    ktrans: float = 0.0
    ve: float = 0.2
    vp: float = 0.0


def phantom_signals(labels: np.ndarray, tissues: Mapping[int, DCETissue], times: np.ndarray,
                    plasma: np.ndarray, *, tr: float, flip: float, vfa_angles: np.ndarray,
                    relaxivity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(VFA signal (X, Y, Z, A), DCE signal (X, Y, Z, T), true concentration (X, Y, Z, T))."""
    shape = labels.shape
    vfa = np.zeros((*shape, vfa_angles.size))
    dce = np.zeros((*shape, times.size))
    conc = np.zeros((*shape, times.size))
    for label, t in tissues.items():
        sel = labels == label
        c = kin.extended_tofts(times, plasma, t.ktrans / 60.0, t.ve, t.vp)
        vfa[sel] = spgr(np.full(vfa_angles.size, 1 / t.t1), tr, vfa_angles, t.m0)
        dce[sel] = spgr(1 / t.t1 + relaxivity * c, tr, flip, t.m0)
        conc[sel] = c
    return vfa, dce, conc


def write_dce_acquisition(directory: Path, name: str, vfa: np.ndarray, dce: np.ndarray,
                          times: np.ndarray, plasma: np.ndarray, *, tr: float, flip: float,
                          vfa_angles: np.ndarray, voxel_size_mm: tuple[float, float, float]
                          ) -> dict[str, Path]:
    """The files of the module docstring, each written atomically."""
    from medtransport.results import write_atomically

    affine = np.diag([*voxel_size_mm, 1.0])
    affine[:3, 3] = -0.5 * np.asarray(dce.shape[:3]) * np.asarray(voxel_size_mm)
    dt = float(times[1] - times[0])
    paths = {"vfa": write_image(directory / f"{name}_vfa.nii.gz", vfa, affine, voxel_size_mm),
             "dce": write_image(directory / f"{name}_dce.nii.gz", dce, affine, voxel_size_mm,
                                frame_interval_s=dt)}
    sidecars = {"vfa_json": {"RepetitionTime": tr,
                             "FlipAngle": [round(float(np.degrees(a)), 6) for a in vfa_angles]},
                "dce_json": {"RepetitionTime": tr, "FlipAngle": float(np.degrees(flip))}}
    for key, content in sidecars.items():
        path = directory / f"{name}_{key.split('_')[0]}.json"
        with write_atomically(path, ".json.tmp") as tmp:
            tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        paths[key] = path
    path = directory / f"{name}_aif.csv"
    with write_atomically(path, ".csv.tmp") as tmp:
        tmp.write_text("time [s],plasma [mM]\n" + "".join(
            f"{t:.6g},{c:.9g}\n" for t, c in zip(times, plasma, strict=True)), encoding="utf-8")
    paths["aif"] = path
    return paths


def audit_fit(model: str, result: Mapping[str, Map], valid_fraction: float) -> AuditReport:
    """The audits of one DCE fit (module docstring)."""
    bad = [k for k, m in result.items() if not np.all(np.isfinite(m.values))]
    frac = float(np.mean(result["converged"].values)) if "converged" in result else 1.0
    src = f"contrast.{model}"
    return AuditReport([
        AuditResult("concentration_valid", valid_fraction == 1.0, valid_fraction, 1.0,
                    "fraction", f"signal invertible to a concentration in "
                                f"{100 * valid_fraction:.2f} % of voxel-frames", source=src),
        AuditResult("maps_finite", not bad, float(len(bad)), 0.0, "maps",
                    "every map finite over the mask" if not bad else
                    f"non-finite values in {', '.join(bad)}", source=src),
        AuditResult("fit_converged", frac >= MIN_CONVERGED, frac, MIN_CONVERGED, "fraction",
                    f"the optimiser converged in {100 * frac:.1f} % of voxels", source=src),
    ])


def _relaxivity(agent: str | None, field_strength: float | None,
                relaxivity: float | None) -> float:
    if relaxivity is not None:
        return float(relaxivity)
    if agent is None or field_strength is None:
        raise ValueError("give 'agent' and 'field_strength' (the tabulated r1), or "
                         "'relaxivity' (1/(s·mM))")
    return r1_of(agent, field_strength)


def fit_dce_files(dce: str | Path, vfa: str | Path, mask: str | Path, out_dir: str | Path, *,
                  model: str = "extended_tofts", aif_csv: str | Path | None = None,
                  vessel_mask: str | Path | None = None, hematocrit: float = 0.42,
                  agent: str | None = None, field_strength: float | None = None,
                  relaxivity: float | None = None, baseline: int = 1,
                  base: Path | None = None, prefix: str = "") -> dict[str, Path]:
    """Fit DCE files (module docstring); sidecars are ``<image stem>.json``. Writes T1 and
    the kinetic maps; returns map name → path."""
    dce_img = read_image(dce, base=base, field="dce", ndim=(4,))
    vfa_img = read_image(vfa, base=base, field="vfa", ndim=(4,))
    dce_side = read_sidecar(_sidecar_of(dce_img), field="dce sidecar")
    vfa_side = read_sidecar(_sidecar_of(vfa_img), field="vfa sidecar")
    tr = float(sidecar_quantity(dce_side, "RepetitionTime", source="dce sidecar").m_as("s"))
    flip = float(sidecar_quantity(dce_side, "FlipAngle", source="dce sidecar").m_as("rad"))
    angles = np.atleast_1d(sidecar_quantity(vfa_side, "FlipAngle",
                                            source="vfa sidecar").m_as("rad"))
    tr_vfa = float(sidecar_quantity(vfa_side, "RepetitionTime",
                                    source="vfa sidecar").m_as("s"))
    if angles.size != vfa_img.frames:
        raise ImageError([("vfa sidecar.FlipAngle", f"{angles.size} flip angles for "
                                                    f"{vfa_img.frames} volumes of "
                                                    f"{vfa_img.path.name}")])
    if vfa_img.shape != dce_img.shape:
        raise ImageError([("vfa", f"{vfa_img.path.name} has shape {vfa_img.shape} but "
                                  f"{dce_img.path.name} has {dce_img.shape}")])
    interval = dce_img.frame_interval
    if interval is None:
        raise ImageError([("dce", f"{dce_img.path.name} states no frame interval in seconds "
                                  "(pixdim[4] with a time unit)")])
    times = np.arange(dce_img.frames) * float(interval.m_as("s"))
    inside = read_mask(mask, dce_img, base=base)
    r1 = _relaxivity(agent, field_strength, relaxivity)
    t1_fit = vfa_t1(vfa_img.data[inside], angles, tr_vfa)
    conc = concentration_maps(dce_img.data[inside], t1_fit["t1"], r1, tr, flip,
                              baseline=baseline)
    valid = float(np.mean(np.isfinite(conc)))
    if aif_csv is not None:
        aif = read_aif_csv(aif_csv, base=base)
        cp = aif.curve(times)
        if aif.medium == "blood":
            cp = plasma_from_blood(cp, hematocrit)
    elif vessel_mask is not None:
        vessel = read_mask(vessel_mask, dce_img, base=base, field="vessel_mask")
        t1_v = vfa_t1(vfa_img.data[vessel], angles, tr_vfa)["t1"]
        cv = concentration_maps(dce_img.data[vessel], t1_v, r1, tr, flip, baseline=baseline)
        full = np.full((*dce_img.shape, times.size), np.nan)
        full[vessel] = cv
        cp = aif_from_vessel(full, vessel, hematocrit)
    else:
        raise ValueError("give 'aif_csv' or 'vessel_mask'")
    conc = np.where(np.isfinite(conc), conc, 0.0)
    result = fit_maps(model, times, conc, cp)
    t1_maps = {"t1": Map(t1_fit["t1"], "s", "native T1 (variable flip angle, nonlinear)"),
               "t1_se": Map(t1_fit["t1_se"], "s", "standard error of T1")}
    report = audit_fit(model, {**result, **t1_maps}, valid)
    out = Path(out_dir)
    written = {}
    for name, m in {**t1_maps, **result}.items():
        full = np.zeros(dce_img.shape)
        full[inside] = m.values
        written[name] = write_map(out / f"{prefix}{name}.nii.gz", full, dce_img, m.unit,
                                  description=m.description, audit=report.to_json(),
                                  extra={"Fit": f"contrast.{model}",
                                         "AuditPassed": report.passed})
    return written


def _sidecar_of(image: Image) -> Path:
    name = image.path.name
    stem = name[:-7] if name.endswith(".nii.gz") else name[:-4]
    return image.path.with_name(stem + ".json")
