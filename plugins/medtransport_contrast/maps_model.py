"""``contrast.maps``: DCE image files in, parameter maps out, through the audited runner.

A scenario names the files (paths relative to the scenario file): the dynamic SPGR series
``dce`` and the variable-flip-angle series ``vfa`` (NIfTI, each with its BIDS sidecar
``<stem>.json``: RepetitionTime, FlipAngle), the ``mask``, and the AIF (``aif: {csv: …}`` with
units in its header, or ``aif: {vessel_mask: …}``). The run fits T1 by VFA, converts signal to
concentration with the plugin's relaxivity, and fits ``kinetic_model`` over the mask
(:func:`medtransport_contrast.imaging` / :mod:`medtransport_contrast.maps`). The scenario's
``time`` grid must be the image's frames (start 0, step = the frame interval).

The five answers: it counts the agent in the masked tissue (µmol: Σ over voxels of the fitted
concentration × voxel volume), split into plasma and EES; no space beyond the mask; it enters
and leaves with the blood by the fitted model's routes (:mod:`medtransport_contrast.tissue`,
per voxel, summed); conserved up to those flows; it starts with vp·C_p(0) in the plasma. The
mass balance is therefore a check that the fitted parameters describe a tracer-kinetic
system whose books close; the fit adds its own audits (``maps_finite``, ``fit_converged``,
``concentration_valid``: :func:`medtransport_contrast.imaging.audit_fit`).

Outputs: every map over the mask's voxels (dimension ``voxel``, with the voxel's i, j, k), the
measured and fitted mean tissue curves, the agent's amount by compartment; with
``maps_directory`` the CLI also writes every map as NIfTI + ``Units`` sidecar + audit report,
after the audits have passed (:meth:`ContrastMaps.export`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.domain import Compartments
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty
from medtransport_contrast import __version__
from medtransport_contrast.quantities import Fraction
from medtransport_contrast.signal import Agent

__all__ = ["ContrastMaps", "ContrastMapsParams"]

_RATES = {"ktrans": "ktrans", "permeability_surface": "ps", "plasma_flow": "fp"}


class AIFFile(BaseModel):
    """The AIF: a CSV table with units (``csv``) or a vessel mask (``vessel_mask``)."""

    model_config = ConfigDict(extra="forbid")

    csv: str | None = Field(default=None, min_length=1)
    vessel_mask: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> AIFFile:
        if (self.csv is None) == (self.vessel_mask is None):
            raise ValueError("give exactly one of 'csv' and 'vessel_mask'")
        return self


class ContrastMapsParams(Params):
    """Parameters of ``contrast.maps`` (module docstring)."""

    dce: str = Field(min_length=1)
    vfa: str = Field(min_length=1)
    mask: str = Field(min_length=1)
    aif: AIFFile
    kinetic_model: Literal["tofts", "extended_tofts", "patlak",
                           "two_compartment_exchange"] = "extended_tofts"
    agent: Agent | None = None
    field_strength: Qty("T", gt=0) | None = None
    relaxivity: Qty("1/s/mM", gt=0) | None = None
    baseline: Annotated[int, Field(ge=1)] = 1
    hematocrit: Annotated[Fraction, Field(lt=1)] = 0.42
    maps_directory: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _relaxivity(self) -> ContrastMapsParams:
        if self.relaxivity is None and (self.agent is None or self.field_strength is None):
            raise ValueError("give 'agent' and 'field_strength' (the tabulated r1), or "
                             "'relaxivity'")
        return self


class ContrastMaps(Model):
    id = "contrast.maps"
    title = "DCE parameter maps from image files"
    version = __version__
    description = ("Reads a DCE and a variable-flip-angle NIfTI series with their BIDS sidecars, "
                   "a mask and an AIF (CSV with units, or a vessel mask); fits T1, converts "
                   "signal to concentration with tabulated relaxivities and fits Tofts, "
                   "extended Tofts, Patlak or 2CXM over the mask; the fitted system's agent "
                   "account is audited, and the maps can be exported as NIfTI with units.")
    Params = ContrastMapsParams
    conserved = (Species("agent", "amount", "amount of contrast agent in the masked tissue",
                         "the agent in the mask's plasma and EES, by the fitted model"),)
    tags = frozenset({"compartments", "deterministic", "image"})
    methods: ClassVar[dict[str, Tolerance]] = {"fit": Tolerance(rtol=1e-9)}
    params: ContrastMapsParams
    known_failures: ClassVar[dict[str, str]] = {
        "normalization_can_fail": "a DCE series starts before the bolus: the declared initial "
                                  "amount is 0, and 1.1 × 0 is still what the states hold",
    }

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Compartments:
        sc = self.scenario
        if sc.domain is not None or sc.boundaries:
            raise ScenarioError([("domain" if sc.domain is not None else "boundaries",
                                  f"{self.id} takes its voxels from the mask")])
        frames = self._data["times"]
        grid = sc.time.output_times()
        if grid.size != frames.size or not np.allclose(grid, frames, atol=1e-6):
            dt = frames[1] - frames[0]
            raise ScenarioError([("time", f"the time grid must be the DCE image's "
                                          f"{frames.size} frames: start 0 s, step {dt:g} s, "
                                          f"stop {frames[-1]:g} s (got {grid.size} outputs from "
                                          f"{grid[0]:g} s to {grid[-1]:g} s)")])
        return Compartments(names=("plasma", "ees"))

    @functools.cached_property
    def _data(self) -> dict[str, Any]:
        """The files, read and checked (before anything runs)."""
        from medtransport.images import (
            ImageError,
            read_image,
            read_mask,
            read_sidecar,
            sidecar_quantity,
        )

        p, base = self.params, self.scenario.source_dir
        dce = read_image(p.dce, base=base, field="parameters.dce", ndim=(4,))
        vfa = read_image(p.vfa, base=base, field="parameters.vfa", ndim=(4,))
        side = {}
        for key, img in (("dce", dce), ("vfa", vfa)):
            name = img.path.name
            stem = name[:-7] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
            side[key] = read_sidecar(img.path.with_name(stem + ".json"),
                                     field=f"parameters.{key}")
        q = sidecar_quantity
        angles = np.atleast_1d(q(side["vfa"], "FlipAngle", source=f"{vfa.path.stem} "
                                                                 "sidecar").m_as("rad"))
        if angles.size != vfa.frames:
            raise ImageError([("parameters.vfa", f"{angles.size} flip angles in the sidecar for "
                                                 f"{vfa.frames} volumes of {vfa.path.name}")])
        if vfa.shape != dce.shape:
            raise ImageError([("parameters.vfa", f"{vfa.path.name} has shape {vfa.shape} but "
                                                 f"{dce.path.name} has {dce.shape}")])
        interval = dce.frame_interval
        if interval is None:
            raise ImageError([("parameters.dce", f"{dce.path.name} states no frame interval "
                                                 "in seconds (pixdim[4] with a time unit)")])
        mask = read_mask(p.mask, dce, base=base, field="parameters.mask")
        return {"dce": dce, "vfa": vfa, "mask": mask, "angles": angles,
                "tr": float(q(side["dce"], "RepetitionTime", source="dce sidecar").m_as("s")),
                "tr_vfa": float(q(side["vfa"], "RepetitionTime",
                                  source="vfa sidecar").m_as("s")),
                "flip": float(q(side["dce"], "FlipAngle", source="dce sidecar").m_as("rad")),
                "times": np.arange(dce.frames) * float(interval.m_as("s"))}

    def ledger_units(self) -> dict[str, str]:
        return {"agent": "umol"}

    def routes(self) -> dict[str, list[str]]:
        return {"agent": ["washout from the EES back to the blood (fitted kep)",
                          "the plasma leaving with the blood (vp·C_p)"]}

    @property
    def _voxel_ml(self) -> float:
        return float(np.prod(self._data["dce"].voxel_size.m_as("cm")))

    def _fit(self) -> dict[str, Any]:
        if not hasattr(self, "_fitted"):
            self._fitted = self._do_fit()
        return self._fitted

    def _do_fit(self) -> dict[str, Any]:
        from medtransport_contrast.aif import plasma_from_blood
        from medtransport_contrast.aif_files import aif_from_vessel, read_aif_csv
        from medtransport_contrast.imaging import _relaxivity, audit_fit
        from medtransport_contrast.maps import Map, fit_maps
        from medtransport_contrast.t1_mapping import concentration_maps, vfa_t1

        d, p = self._data, self.params
        r1 = _relaxivity(p.agent, None if p.field_strength is None else
                         float(p.field_strength.m_as("T")),
                         None if p.relaxivity is None else float(p.relaxivity.m_as("1/s/mM")))
        inside, t = d["mask"], d["times"]
        t1 = vfa_t1(d["vfa"].data[inside], d["angles"], d["tr_vfa"])
        conc = concentration_maps(d["dce"].data[inside], t1["t1"], r1, d["tr"], d["flip"],
                                  baseline=p.baseline)
        valid = float(np.mean(np.isfinite(conc)))
        base = self.scenario.source_dir
        if p.aif.csv is not None:
            aif = read_aif_csv(p.aif.csv, base=base, field="parameters.aif.csv")
            cp = aif.curve(t)
            if aif.medium == "blood":
                cp = plasma_from_blood(cp, p.hematocrit)
        else:
            from medtransport.images import read_mask

            vessel = read_mask(p.aif.vessel_mask, d["dce"], base=base,
                               field="parameters.aif.vessel_mask")
            tv = vfa_t1(d["vfa"].data[vessel], d["angles"], d["tr_vfa"])["t1"]
            full = np.full((*d["dce"].shape, t.size), np.nan)
            full[vessel] = concentration_maps(d["dce"].data[vessel], tv, r1, d["tr"],
                                              d["flip"], baseline=p.baseline)
            cp = aif_from_vessel(full, vessel, p.hematocrit)
        conc = np.where(np.isfinite(conc), conc, 0.0)
        maps = fit_maps(p.kinetic_model, t, conc, cp)
        maps["t1"] = Map(t1["t1"], "s", "native T1 (variable flip angle, nonlinear)")
        maps["t1_se"] = Map(t1["t1_se"], "s", "standard error of T1")
        return {"maps": maps, "conc": conc, "cp": cp,
                "report": audit_fit(p.kinetic_model, maps, valid)}

    def _parameters(self, maps: dict[str, Any], i: int) -> dict[str, float]:
        per_s = 1.0 / 60.0
        out = {"ve": 0.0, "vp": 0.0, "ktrans": 0.0, "fp": 0.0, "ps": 0.0}
        for name, m in maps.items():
            if name in ("ve", "vp"):
                out[name] = float(m.values[i])
            elif name in _RATES:
                # 1/min (Fp in mL/min/100 mL) → 1/s
                scale = per_s / 100.0 if name == "plasma_flow" else per_s
                out[_RATES[name]] = float(m.values[i]) * scale
        return out

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        fit = self._fit()
        vp = fit["maps"].get("vp")
        total = 0.0 if vp is None else float(np.sum(vp.values)) * float(fit["cp"][0])
        return {"agent": Q_(total * self._voxel_ml, "umol")}  # mM × mL = µmol

    # -- the run ---------------------------------------------------------------------------
    def simulate(self, progress: Progress | None = None) -> Trajectory:
        from medtransport_contrast.tissue import solve_tissue

        fit, d = self._fit(), self._data
        t, cp, maps = d["times"], fit["cp"], fit["maps"]
        n = fit["conc"].shape[0]
        plasma = np.zeros(t.size)
        ees = np.zeros(t.size)
        inflow: dict[str, np.ndarray] = {}
        outflow: dict[str, np.ndarray] = {}
        fitted = np.zeros(t.size)
        for i in range(n):
            sol = solve_tissue(self.params.kinetic_model, t, cp, **self._parameters(maps, i))
            plasma += sol.plasma
            ees += sol.ees
            fitted += sol.plasma + sol.ees
            for src, dst in ((sol.inflow, inflow), (sol.outflow, outflow)):
                for k, v in src.items():
                    dst[k] = dst.get(k, 0.0) + v
        ml = self._voxel_ml  # mM × mL = µmol
        idx = np.argwhere(d["mask"])
        ds = xr.Dataset({
            "amount": (("time", "compartment"), np.stack([plasma, ees], axis=1) * ml,
                       {"units": "umol", "long_name": "agent in the masked tissue (fitted)"}),
            "measured_mean_concentration": ("time", fit["conc"].mean(axis=0),
                                            {"units": "mM", "long_name": "measured tissue "
                                                                         "concentration, mask "
                                                                         "mean"}),
            "fitted_mean_concentration": ("time", fitted / n,
                                          {"units": "mM", "long_name": "fitted tissue "
                                                                       "concentration, mask "
                                                                       "mean"}),
            "aif_plasma": ("time", cp, {"units": "mM", "long_name": "arterial plasma "
                                                                    "concentration"}),
        }, coords={"time": ("time", t, {"units": "s", "long_name": "time"}),
                   "compartment": ("compartment", np.array(["plasma", "ees"]),
                                   {"units": "1", "long_name": "compartment"}),
                   **{axis: ("voxel", idx[:, k], {"units": "1", "long_name": f"voxel index {axis}"})
                      for k, axis in enumerate("ijk")}})
        for name, m in maps.items():
            ds[f"map_{name}"] = ("voxel", np.asarray(m.values, dtype=float),
                                 {"units": m.unit, "long_name": m.description})
        ledger = Ledger.of("agent", "umol", t.size,
                           inflow={k: v * ml for k, v in inflow.items()} or None,
                           outflow={k: v * ml for k, v in outflow.items()} or None)
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"agent": ledger})

    def audits(self) -> list[Any]:
        def fit_audits(ctx: Any) -> list[Any]:
            return list(self._fit()["report"].results)

        return [fit_audits]

    def export(self, dataset: xr.Dataset) -> list[Path]:
        """After the audits passed: every map as NIfTI + sidecar + audit report in
        ``maps_directory`` (relative to the scenario, and confined to its directory or the
        working directory, like ``output.path``); [] without one."""
        from medtransport.images import write_maps
        from medtransport.trust import output_directory

        if self.params.maps_directory is None:
            return []
        out = output_directory(self.params.maps_directory, field="parameters.maps_directory",
                               scenario_dir=self.scenario.source_dir)
        d = self._data
        return write_maps(dataset, out, d["dce"], d["mask"],
                          extra={"Fit": f"{self.id} {self.params.kinetic_model}",
                                 "AuditPassed": True})

    # -- conformance -----------------------------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        directory = _example_files()
        return [{"name": "extended Tofts maps of a small phantom", "model": cls.id,
                 "parameters": {"dce": str(directory / "ex_dce.nii.gz"),
                                "vfa": str(directory / "ex_vfa.nii.gz"),
                                "mask": str(directory / "mask.nii.gz"),
                                "aif": {"csv": str(directory / "ex_aif.csv")},
                                "kinetic_model": "extended_tofts", "agent": "gadobutrol",
                                "field_strength": "3 T", "baseline": 5},
                 "time": {"stop": "118 s", "step": "2 s"}}]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        good = cls.example_scenarios()[0]["parameters"]
        return [({**good, "baseline": 0}, "baseline"),
                ({**good, "aif": {}}, "aif"),
                ({**good, "kinetic_model": "tofts_plus"}, "kinetic_model")]


@functools.cache
def _example_files() -> Path:
    """A 4×3×1 noise-free phantom written once per process into a temporary directory."""
    import math
    import tempfile

    from medtransport.images import read_image, write_image
    from medtransport_contrast.aif import parker_blood, plasma_from_blood
    from medtransport_contrast.imaging import (
        DCETissue,
        phantom_signals,
        write_dce_acquisition,
    )
    from medtransport_contrast.signal import r1_of

    directory = Path(tempfile.mkdtemp(prefix="medtransport-contrast-maps-"))
    times = np.arange(0, 120.0, 2.0)
    cp = plasma_from_blood(np.where(times >= 10, parker_blood(times - 10), 0.0), 0.42)
    labels = np.ones((4, 3, 1), int)
    labels[2:, :, 0] = 2
    tissues = {1: DCETissue(1.2, 1000.0, 0.1, 0.2, 0.03), 2: DCETissue(1.5, 1000.0, 0.3, 0.4,
                                                                       0.06)}
    angles = np.radians([2.0, 5.0, 10.0, 15.0])
    vfa, dce, _ = phantom_signals(labels, tissues, times, cp, tr=0.005, flip=math.radians(15),
                                  vfa_angles=angles, relaxivity=r1_of("gadobutrol", 3.0))
    paths = write_dce_acquisition(directory, "ex", vfa, dce, times, cp, tr=0.005,
                                  flip=math.radians(15), vfa_angles=angles,
                                  voxel_size_mm=(2.0, 2.0, 4.0))
    write_image(directory / "mask.nii.gz", np.ones((4, 3, 1)), read_image(paths["dce"]).affine,
                (2.0, 2.0, 4.0))
    return directory
