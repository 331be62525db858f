"""``dwi.maps``: DWI image files in, parameter maps out, through the audited runner.

A scenario names the files (paths relative to the scenario file): the 4-D ``dwi`` NIfTI, its
FSL ``bval``/``bvec`` (``b_unit`` is what the bval file holds) and the ``mask``; ``fits``
chooses among ``adc``, ``dti``, ``ivim``, ``dki``, ``verdict`` and ``axon_radius`` (both read δ and
Δ from the image's sidecar; ``axon_radius`` also needs ``fibre_axis``, the fibre direction in the
bvec frame, every diffusion gradient perpendicular to it), ``rician_sigma`` makes the IVIM
fit Rician-bias-aware (:mod:`medtransport_dwi.imaging`, :mod:`medtransport_dwi.maps`).

The five answers, as for ``dwi.signal``: it counts the water spins of the masked tissue at
b = 0 (spin magnetization in signal units, Σ over voxels); with an IVIM fit split into the
perfusing (f·S0) and the tissue ((1 − f)·S0) compartments; nothing leaves during a measurement;
they are conserved; there are as many as the b = 0 volumes measured (the declared amount is
Σ of each voxel's geometric-mean b = 0 signal). The normalization audit is therefore a check
that the fitted model holds the measured spins: the fitted S0 summed over the mask must match
the measured b = 0 signal within 2 % (the tolerance allows noise); the fit adds its own audits
(``maps_finite``, ``fit_converged``, ``b0_reproduced`` per fit,
:func:`medtransport_dwi.imaging.audit_fit`).

Outputs: every map over the mask's voxels (dimension ``voxel`` with the voxel's i, j, k;
vector maps with ``component``); with ``maps_directory`` the CLI also writes each map as NIfTI +
``Units`` sidecar + audit report, after the audits have passed (:meth:`DWIMaps.export`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import Field

from medtransport.domain import Compartments
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_
from medtransport_dwi import __version__
from medtransport_dwi.maps import B0_MAX

__all__ = ["DWIMaps", "DWIMapsParams"]

Fit = Literal["adc", "dti", "ivim", "dki", "verdict", "axon_radius"]


class DWIMapsParams(Params):
    """Parameters of ``dwi.maps`` (module docstring)."""

    dwi: str = Field(min_length=1)
    bval: str = Field(min_length=1)
    bvec: str = Field(min_length=1)
    mask: str = Field(min_length=1)
    b_unit: Literal["s/mm^2", "s/m^2"] = "s/mm^2"
    fits: list[Fit] = Field(default_factory=lambda: ["dti"], min_length=1)
    rician_sigma: float | None = Field(default=None, gt=0)
    fibre_axis: list[float] | None = Field(default=None, min_length=3, max_length=3)
    maps_directory: str | None = Field(default=None, min_length=1)


class DWIMaps(Model):
    id = "dwi.maps"
    title = "DWI parameter maps from image files"
    version = __version__
    description = ("Reads a 4-D DWI NIfTI with its FSL bval/bvec and a mask; fits ADC per shell, "
                   "DTI (WLS), IVIM, DKI or VERDICT over the mask; the fitted model must hold "
                   "the spins measured at b = 0, and the maps can be exported as NIfTI with "
                   "units.")
    Params = DWIMapsParams
    conserved = (Species("spins", "spins", "spin magnetization at b = 0 (signal units)",
                         "the water spins of the masked tissue"),)
    tags = frozenset({"compartments", "deterministic", "image"})
    #: statistical: the fitted S0 against the measured b = 0 signal, summed over the mask
    methods: ClassVar[dict[str, Tolerance]] = {"fit": Tolerance(rtol=0.02)}
    params: DWIMapsParams

    def build_domain(self) -> Compartments:
        sc = self.scenario
        if sc.domain is not None or sc.boundaries:
            raise ScenarioError([("domain" if sc.domain is not None else "boundaries",
                                  f"{self.id} takes its voxels from the mask")])
        axis = self.params.fibre_axis
        if "axon_radius" in self.params.fits and (axis is None or not np.linalg.norm(axis) > 0):
            raise ScenarioError([("parameters.fibre_axis", "the axon_radius fit needs the fibre "
                                  "direction: three numbers, not all 0, in the bvec frame")])
        _ = self._data  # the files are read and checked before anything runs
        return Compartments(names=self._compartments)

    @property
    def _compartments(self) -> tuple[str, ...]:
        return ("perfusion", "tissue") if "ivim" in self.params.fits else ("tissue",)

    @functools.cached_property
    def _data(self) -> dict[str, Any]:
        from medtransport.images import read_image, read_mask
        from medtransport_dwi.gradients import read_fsl_gradients

        p, base = self.params, self.scenario.source_dir
        image = read_image(p.dwi, base=base, field="parameters.dwi", ndim=(4,))
        table = read_fsl_gradients(p.bval, p.bvec, unit=p.b_unit, frames=image.frames,
                                   base=base, field="parameters")
        inside = read_mask(p.mask, image, base=base, field="parameters.mask")
        if not np.any(table.b_value <= B0_MAX):
            raise ScenarioError([("parameters.bval", f"no b = 0 volume (b ≤ {B0_MAX:g} s/mm²): the "
                                                     "spins at b = 0 cannot be counted")])
        signal = image.data[inside]
        s0 = np.exp(np.log(np.maximum(signal[:, table.b_value <= B0_MAX], 1e-12)).mean(axis=1))
        return {"image": image, "table": table, "mask": inside, "signal": signal, "s0": s0}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"spins": Q_(float(np.sum(self._data["s0"])), "dimensionless")}

    def routes(self) -> dict[str, list[str]]:
        return {"spins": []}

    def _fit(self) -> dict[str, Any]:
        if not hasattr(self, "_fitted"):
            from medtransport_dwi import maps as dwi_maps
            from medtransport_dwi.imaging import _timing, audit_fit

            d, p = self._data, self.params
            b, g, signal = d["table"].b_value, d["table"].direction, d["signal"]
            results, reports = {}, []
            for fit in dict.fromkeys(p.fits):
                if fit == "adc":
                    r = dwi_maps.adc_maps(signal, b)
                elif fit == "dti":
                    r = dwi_maps.dti_maps(signal, b, g)
                elif fit == "ivim":
                    r = dwi_maps.ivim_maps(signal, b, method="full", rician_sigma=p.rician_sigma)
                elif fit == "dki":
                    r = dwi_maps.dki_maps(signal, b, g)
                elif fit == "axon_radius":
                    from medtransport_dwi.axon_radius import axon_radius_maps

                    try:
                        r = axon_radius_maps(signal, b, g, *_timing(d["image"], b.size),
                                             np.asarray(p.fibre_axis, dtype=float))
                    except ValueError as exc:
                        raise ScenarioError([("parameters.bvec", str(exc))]) from None
                else:
                    from medtransport_dwi.microstructure import verdict_maps

                    r = verdict_maps(signal, b, *_timing(d["image"], b.size))
                results[fit] = r
                reports += audit_fit(fit, r, d["s0"]).results
            self._fitted = {"maps": results, "audits": reports}
        return self._fitted

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        fit, d = self._fit(), self._data
        maps = fit["maps"]
        times = self.scenario.time.output_times()
        # the spins the fitted model holds: the first fit with an S0 map (IVIM splits them)
        if "ivim" in maps:
            s0, f = maps["ivim"]["s0"].values, maps["ivim"]["f"].values
            parts = [float(np.sum(f * s0)), float(np.sum((1 - f) * s0))]
        else:
            with_s0 = next((m for m in maps.values() if "s0" in m), None)
            parts = [float(np.sum(with_s0["s0"].values)) if with_s0 is not None
                     else float(np.sum(d["s0"]))]
        idx = np.argwhere(d["mask"])
        ds = xr.Dataset({
            "spins": (("time", "compartment"), np.tile(parts, (times.size, 1)),
                      {"units": "dimensionless", "long_name": "spin magnetization at b = 0 "
                                                              "held by the fitted model"}),
        }, coords={"time": ("time", times, {"units": "s", "long_name": "time"}),
                   "compartment": ("compartment", np.array(self._compartments),
                                   {"units": "1", "long_name": "compartment"}),
                   **{axis: ("voxel", idx[:, k], {"units": "1",
                                                 "long_name": f"voxel index {axis}"})
                      for k, axis in enumerate("ijk")}})
        for name, result in maps.items():
            for key, m in result.items():
                dims = ("voxel",) if np.ndim(m.values) == 1 else ("voxel", "component")
                ds[f"map_{name}_{key}"] = (dims, np.asarray(m.values, dtype=float),
                                           {"units": m.unit, "long_name": m.description})
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"spins": Ledger.of("spins", "dimensionless", times.size)})

    def audits(self) -> list[Any]:
        def fit_audits(ctx: Any) -> list[Any]:
            return list(self._fit()["audits"])

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
        return write_maps(dataset, out, d["image"], d["mask"],
                          extra={"Fit": self.id, "AuditPassed": True})

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        def files(perfused: bool) -> dict[str, str]:
            directory = _example_files(perfused)
            return {"dwi": str(directory / "ex.nii.gz"), "bval": str(directory / "ex.bval"),
                    "bvec": str(directory / "ex.bvec"), "mask": str(directory / "mask.nii.gz")}

        # DTI of perfused tissue would not hold the measured b = 0 spins (its S0 misses the
        # pseudo-diffusion): the normalization audit refuses it, so DTI gets tissue without
        return [{"name": "DTI and ADC maps of a small phantom", "model": cls.id,
                 "parameters": {**files(False), "fits": ["dti", "adc"]},
                 "time": {"stop": "50 ms", "step": "10 ms"}},
                {"name": "IVIM maps of a small perfused phantom", "model": cls.id,
                 "parameters": {**files(True), "fits": ["ivim"]},
                 "time": {"stop": "50 ms", "step": "10 ms"}}]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        good = cls.example_scenarios()[0]["parameters"]
        return [({**good, "fits": []}, "fits"), ({**good, "fits": ["tensor"]}, "fits"),
                ({**good, "rician_sigma": -1}, "rician_sigma")]


@functools.cache
def _example_files(perfused: bool) -> Path:
    """A 4×3×1 noise-free phantom (a tensor per label, with IVIM perfusion if ``perfused``),
    written once per process."""
    import tempfile

    from medtransport.images import read_image, write_image
    from medtransport_dwi.imaging import Tissue, phantom_signal, write_acquisition

    directory = Path(tempfile.mkdtemp(prefix="medtransport-dwi-maps-"))
    axes = np.eye(3)
    n = 6
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
    b, g = [0.0, 0.0], [np.zeros(3), np.zeros(3)]
    for bv in (20, 50, 100, 200, 400, 600, 800):
        b += [bv] * 3
        g += list(axes)
    b += [1000.0] * n
    g += list(dirs)
    b_arr, g_arr = np.array(b), np.array(g)
    labels = np.ones((4, 3, 1), int)
    labels[2:] = 2
    f = (0.1, 0.05) if perfused else (0.0, 0.0)
    tissues = {1: Tissue(1000.0, 1.7e-3, 0.4e-3, (1, 0, 0), perfusion_fraction=f[0]),
               2: Tissue(900.0, 1.0e-3, 0.8e-3, (0, 0, 1), perfusion_fraction=f[1])}
    signal = phantom_signal(labels, tissues, b_arr, g_arr)
    paths = write_acquisition(directory, "ex", signal, b_arr, g_arr, (2.0, 2.0, 3.0),
                              dtype=np.float64)
    write_image(directory / "mask.nii.gz", np.ones((4, 3, 1)), read_image(paths["dwi"]).affine,
                (2.0, 2.0, 3.0))
    return directory
