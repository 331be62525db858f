"""Diffusion-weighted MRI signals of tissue microstructure (REFERENCES §4).

    S_m = S0 · Σ_c f_c E_c(g_m, shape_m)

for a protocol of measurements m (PGSE or general waveforms, b-values and directions) and
compartments c (free, tensor, planes, cylinders, spheres, lattices of permeable pores) with
volume fractions f_c. Solvers (``solver.method``): ``matrix`` (exact matrix formalism,
default), ``gaussian_phase``, ``narrow_pulse`` (exact series for δ → 0) and ``monte_carlo``
(walkers with exact reflection; option ``walkers``).

How it maps onto the ledger — the five answers: it counts the **spins** whose magnetization
makes the b = 0 signal S0 (the species ``spins``, state ``spins`` per compartment over the
sequence's time, in units of S0); they live in the compartments (a lattice contributes its
inside and outside); nothing may leave (no relaxation is modelled: the b = 0 signal is S0 at
every time); they are conserved; there are S0 of them at the start, shared by the volume
fractions. For Monte Carlo each walker carries S0/N and the states are walkers counted in each
compartment at each output time, so the core mass balance is the walker count: a dropped walker
is a residual, never a silent loss.

The diffusion-weighted outputs (per measurement: ``signal``, its imaginary part and standard
errors, ``attenuation``, ``adc`` per shell, a DTI fit) are audited by this plugin
(:mod:`medtransport_dwi.audits`): S(b = 0) = S0, 0 ≤ |E| ≤ 1, Im E ≈ 0, walker count, E → 1 as
q → 0, b-value from the waveform; series truncations are audited before the run through the
sum rules (:mod:`medtransport_dwi.eigenbasis`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
import pint
import xarray as xr
from pydantic import Field, field_validator

from medtransport.domain import Compartments, NotBool
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_
from medtransport_dwi import __version__
from medtransport_dwi.compartments import Compartment, Lattice, size_of
from medtransport_dwi.sequence import Measurement, Protocol, build_measurements

EXACT_METHODS = ("matrix", "gaussian_phase", "narrow_pulse")


class MagnitudeNoiseParams(Params):
    """``noise``: the magnitude images a scanner would give — Rician for one receive coil,
    non-central χ for ``coils`` > 1 (root-sum-of-squares), σ = S0/``snr`` per real channel
    (SNR of the b = 0 image), ``repetitions`` independent acquisitions of the protocol."""

    snr: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
    coils: Annotated[int, Field(ge=1, le=64), NotBool] = 1
    repetitions: Annotated[int, Field(ge=1, le=100_000), NotBool] = 1


class DWIParams(Params):
    """Parameters of ``dwi.signal``."""

    s0: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    protocol: Protocol
    compartments: Annotated[list[Compartment], Field(min_length=1, max_length=64)]
    noise: MagnitudeNoiseParams | None = None

    @field_validator("compartments")
    @classmethod
    def _fractions(cls, value: list[Any]) -> list[Any]:
        total = sum(c.volume_fraction for c in value)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"the volume fractions must add up to 1, got {total:.12g}")
        names = [c.name for c in value if c.name]
        if len(set(names)) != len(names):
            raise ValueError("compartment names must be unique")
        return value


class DWISignal(Model):
    #: what a person reads (medtransport.display): s/mm² and µm²/ms, µm for radii
    display_units: ClassVar[dict[str, str]] = {"b_value": "s/mm^2", "adc": "um^2/ms",
                                               "diffusivity": "um^2/ms", "radius": "um"}
    id = "dwi.signal"
    title = "Diffusion-weighted MRI signal of tissue compartments"
    version = __version__
    description = ("The diffusion-weighted signal S = S0·Σ f_c E_c of free, tensor and "
                   "restricted (planes, cylinders, spheres) compartments under PGSE or general "
                   "gradient waveforms, by the exact matrix formalism, the Gaussian-phase "
                   "approximation, narrow-pulse series or Monte Carlo walkers with exact "
                   "reflection and permeable membranes; with ADC and DTI outputs.")
    Params = DWIParams
    conserved = (Species("spins", "spins", "spin magnetization at b = 0 (in units of S0)",
                         "the water spins of each compartment, S0 in all"),)
    tags = frozenset({"compartments", "deterministic", "stochastic", "series"})
    methods: ClassVar[dict[str, Tolerance]] = {
        "matrix": Tolerance(rtol=1e-9),
        "gaussian_phase": Tolerance(rtol=1e-9),
        "narrow_pulse": Tolerance(rtol=1e-9),
        # Walkers are counted: the books balance exactly; signals within n_sigma SEs.
        "monte_carlo": Tolerance(rtol=1e-12, n_sigma=5.0),
    }
    stochastic_methods = frozenset({"monte_carlo"})
    params: DWIParams

    @property
    def stochastic(self) -> bool:
        """Monte Carlo walkers or magnitude noise draw random numbers (seeded)."""
        return super().stochastic or self.params.noise is not None

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Compartments:
        sc = self.scenario
        problems = []
        if sc.domain is not None:
            problems.append(("domain", "dwi.signal builds its compartments from "
                                       "parameters.compartments; remove the domain section"))
        if sc.boundaries:
            problems.append(("boundaries", "dwi.signal has no boundaries: pore walls are part "
                                           "of each compartment"))
        lattices = [i for i, c in enumerate(self.params.compartments) if isinstance(c, Lattice)]
        if lattices and self.method != "monte_carlo":
            problems.append((f"parameters.compartments.{lattices[0]}.kind",
                             "lattices of permeable pores have no exact signal; use "
                             "solver.method: monte_carlo"))
        if self.method == "narrow_pulse" and self.params.protocol.kind != "pgse":
            problems.append(("solver.method", "the narrow-pulse series needs a pgse protocol"))
        self.measurements = self.build_measurements()
        te = self.params.protocol.echo_time
        if te is not None and te.m_as("s") < self.measurements.duration * (1 - 1e-12):
            problems.append(("parameters.protocol.echo_time",
                             f"the echo time ({te:~P}) must be at least the encoding's length "
                             f"({self.measurements.duration * 1e3:.6g} ms)"))
        span = (sc.time.stop - sc.time.start).m_as("s")
        if span < self.measurements.duration * (1 - 1e-12):
            problems.append(("time.stop", f"the sequence lasts "
                                          f"{self.measurements.duration * 1e3:.6g} ms; the time "
                                          f"grid must cover it (it spans {span * 1e3:.6g} ms)"))
        if problems:
            raise ScenarioError(problems)
        return Compartments(tuple(self.compartment_names()))

    def build_measurements(self) -> Measurement:
        return build_measurements(self.params.protocol)

    def base_names(self) -> list[str]:
        return [c.name or f"{i}_{c.kind}" for i, c in enumerate(self.params.compartments)]

    def compartment_names(self) -> list[str]:
        out = []
        for name, c in zip(self.base_names(), self.params.compartments, strict=True):
            out += [f"{name}.inside", f"{name}.outside"] if isinstance(c, Lattice) else [name]
        return out

    def solver_options(self) -> dict[str, Any]:
        if self.method == "monte_carlo":
            return {"walkers": (Annotated[int, Field(ge=2, le=50_000_000), NotBool], 10_000)}
        return {}

    def ledger_units(self) -> dict[str, str]:
        return {"spins": "dimensionless"}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"spins": Q_(self.params.s0, "dimensionless")}

    def routes(self) -> dict[str, list[str]]:
        return {"spins": []}

    # -- before the run --------------------------------------------------------------------
    def stability(self) -> list[Any]:
        """Monte Carlo: the r.m.s. step √(2DΔt) must stay below the smallest pore size (radius
        or half-separation) — larger steps jump over the geometry the walk is meant to see."""
        from medtransport.audit.stability import StabilityMargin

        if self.method != "monte_carlo":
            return []
        dt = self.scenario.time.dt
        worst, where = 0.0, ""
        for name, c in zip(self.base_names(), self.params.compartments, strict=True):
            if c.kind in ("free", "tensor"):
                continue
            size = 0.5 * size_of(c) if c.kind == "planes" else float(c.radius.m_as("m"))
            d = max(float(getattr(c, f).m_as("m^2/s")) for f in ("diffusivity",
                                                                "diffusivity_outside")
                    if getattr(c, f, None) is not None)
            ratio = math.sqrt(2 * d * dt) / size
            if ratio > worst:
                worst, where = ratio, name
                largest = size ** 2 / (2 * d)
        if not where:
            return []
        return [StabilityMargin("walker_step", worst, 1.0,
                                f"r.m.s. step / pore size = {worst:.3g} in {where} (limit 1)",
                                f"use a time step of at most {largest:.6g} s")]

    def truncations(self) -> list[Any]:
        from medtransport_dwi import audits

        if self.method == "monte_carlo":
            return []
        return audits.series_truncations(self)

    # -- the run ---------------------------------------------------------------------------
    def fractions(self) -> list[float]:
        return [c.volume_fraction for c in self.params.compartments]

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        tg = self.scenario.time
        times = tg.output_times()
        meas = self.measurements
        s0 = self.params.s0
        extra: dict[str, Any] = {}
        if self.method == "monte_carlo":
            e, se_re, se_im, spins, exact = self._monte_carlo()
            extra["walks"] = self._walks
            if exact is not None:
                extra["exact"] = exact
        else:
            from medtransport_dwi.compartments import exact_attenuation

            per = [exact_attenuation(c, meas, self.method) for c in self.params.compartments]
            e = np.sum([f * p for f, p in zip(self.fractions(), per, strict=True)], axis=0)
            se_re = se_im = np.zeros(meas.count)
            spins = np.tile([f * s0 for f in self.fractions()], (len(times), 1))
        if progress is not None:
            progress(1.0)
        ds = self._dataset(times, spins, e, se_re, se_im, extra.get("exact"))
        if self.params.noise is not None:
            ds["signal_magnitude"] = self._magnitude(np.abs(e) * s0)
        return Trajectory(ds, {"spins": Ledger.of("spins", "dimensionless", len(times))},
                          notes=extra)

    def _magnitude(self, clean: np.ndarray) -> xr.DataArray:
        """``repetitions`` magnitude acquisitions of the clean |S| (module docstring of
        :mod:`medtransport.numerics.magnitude_noise`), from a stream of their own."""
        from medtransport.numerics.magnitude_noise import magnitude_noise

        noise = self.params.noise
        assert noise is not None and self.seed is not None
        sigma = self.params.s0 / noise.snr
        # its own stream: the walkers' streams (seed_for) and the noise never overlap
        rng = np.random.default_rng(np.random.SeedSequence([int(self.seed), 2 ** 32]))
        values = magnitude_noise(np.broadcast_to(clean, (noise.repetitions, clean.size)),
                                 sigma, rng, noise.coils)
        kind = "Rician" if noise.coils == 1 else f"non-central χ, {noise.coils} coils"
        return xr.DataArray(values, dims=("repetition", "measurement"), attrs={
            "units": "dimensionless", "long_name": f"magnitude signal ({kind} noise)",
            "noise_sigma": sigma, "snr": noise.snr, "coils": noise.coils})

    def seed_for(self, index: int) -> int:
        """An independent 64-bit seed per compartment, from the scenario's seed."""
        assert self.seed is not None
        ss = np.random.SeedSequence([int(self.seed), index])
        return int(ss.generate_state(1, np.uint64)[0])

    def _walk_compartment(self, index: int, c: Compartment, n: int) -> Any:
        from medtransport_dwi.montecarlo import simulate_compartment

        tg = self.scenario.time
        return simulate_compartment(c, self.measurements, n, self.seed_for(index), tg.dt,
                                    tg.n_steps, tg.output_steps())

    def _monte_carlo(self) -> tuple[Any, ...]:
        from medtransport_dwi.compartments import exact_attenuation
        from medtransport_dwi.montecarlo import allocate

        n_total = int(self.options["walkers"])
        counts = allocate(self.fractions(), n_total)
        if min(counts) < 2:
            raise ScenarioError([("solver.walkers", f"{n_total} walkers leave a compartment "
                                                    "with fewer than 2; use more walkers")])
        per_walker = self.params.s0 / n_total
        self._walks = []
        e = np.zeros(self.measurements.count, complex)
        var_re = np.zeros(self.measurements.count)
        var_im = np.zeros(self.measurements.count)
        columns = []
        exact = np.zeros(self.measurements.count, complex)
        have_exact = True
        for i, (c, n) in enumerate(zip(self.params.compartments, counts, strict=True)):
            cw = self._walk_compartment(i, c, n)
            self._walks.append(cw)
            f = c.volume_fraction
            e += f * cw.signal
            var_re += (f * cw.se_real) ** 2
            var_im += (f * cw.se_imag) ** 2
            comp = cw.walk.compartment  # (outputs, walkers)
            if isinstance(c, Lattice):
                columns.append((comp == 0).sum(axis=1) * per_walker)
                columns.append((comp == 1).sum(axis=1) * per_walker)
            else:
                columns.append(np.full(comp.shape[0], comp.shape[1] * per_walker))
            if isinstance(c, Lattice):
                have_exact = False
            elif have_exact:
                exact += f * exact_attenuation(c, self.measurements, "matrix")
        spins = np.stack(columns, axis=1)
        return e, np.sqrt(var_re), np.sqrt(var_im), spins, exact if have_exact else None

    # -- outputs ---------------------------------------------------------------------------
    def _dataset(self, times: np.ndarray, spins: np.ndarray, e: np.ndarray, se_re: np.ndarray,
                 se_im: np.ndarray, exact: np.ndarray | None) -> xr.Dataset:
        from medtransport_dwi.dti import adc_by_shell, fit_tensor

        meas = self.measurements
        s0 = self.params.s0
        shapes = [meas.shapes[k] for k in meas.shape_index]
        m = np.arange(meas.count)
        ds = xr.Dataset(
            {
                "spins": (("time", "compartment"), spins,
                          {"units": "dimensionless", "long_name": "spin magnetization at "
                                                                  "b = 0 per compartment"}),
                "signal": ("measurement", s0 * e.real,
                           {"units": "dimensionless", "long_name": "diffusion-weighted signal"}),
                "signal_imaginary": ("measurement", s0 * e.imag,
                                     {"units": "dimensionless",
                                      "long_name": "imaginary part of the signal"}),
                "signal_standard_error": ("measurement", s0 * se_re,
                                          {"units": "dimensionless",
                                           "long_name": "standard error of the signal"}),
                "signal_imaginary_standard_error": (
                    "measurement", s0 * se_im,
                    {"units": "dimensionless",
                     "long_name": "standard error of the imaginary part"}),
                "attenuation": ("measurement", np.abs(e),
                                {"units": "dimensionless", "long_name": "|E| = |S|/S0"}),
                "gradient_direction": (("measurement", "axis"), meas.direction,
                                       {"units": "dimensionless",
                                        "long_name": "gradient direction"}),
            },
            coords={
                "time": ("time", times, {"units": "s", "long_name": "time in the sequence"}),
                "measurement": ("measurement", m, {"units": "dimensionless",
                                                   "long_name": "measurement"}),
                # labels carry "dimensionless" so that every coordinate has a unit
                "axis": ("axis", np.array(["x", "y", "z"]), {"units": "dimensionless",
                                                             "long_name": "axis"}),
                "b_value": ("measurement", meas.b_value * 1e-6,
                            {"units": "s/mm**2", "long_name": "b-value"}),
                "gradient_strength": ("measurement", meas.strength * 1e3,
                                      {"units": "mT/m", "long_name": "gradient strength"}),
                "pulse_duration": ("measurement", [s.delta * 1e3 if s.is_pgse else
                                                   s.duration * 1e3 for s in shapes],
                                   {"units": "ms", "long_name": "pulse duration δ (waveform: "
                                                                "its length)"}),
                "pulse_separation": ("measurement", [s.separation * 1e3 if s.is_pgse else
                                                     s.duration * 1e3 for s in shapes],
                                     {"units": "ms", "long_name": "pulse separation Δ"}),
                "shell": ("measurement", meas.shell, {"units": "dimensionless",
                                                      "long_name": "shell index"}),
            },
        )
        ds.coords.update(self.domain.coords())
        ds["compartment"].attrs["units"] = "dimensionless"
        if exact is not None:
            ds["signal_exact"] = ("measurement", s0 * exact.real,
                                  {"units": "dimensionless",
                                   "long_name": "signal by the matrix formalism"})
        shells = adc_by_shell(meas, np.abs(e))
        if shells is not None:
            b, sep, adc = shells
            ds = ds.assign_coords(shell_b_value=("shell", b * 1e-6, {"units": "s/mm**2",
                                                                     "long_name": "shell b"}),
                                  shell_pulse_separation=("shell", sep * 1e3,
                                                          {"units": "ms",
                                                           "long_name": "shell Δ"}))
            ds["adc"] = ("shell", adc * 1e9, {"units": "um**2/ms",
                                              "long_name": "apparent diffusion coefficient"})
        tensor = fit_tensor(meas, np.abs(e))
        if tensor is not None:
            d, fa, md = tensor
            ds = ds.assign_coords(axis2=("axis2", np.array(["x", "y", "z"]),
                                         {"units": "dimensionless", "long_name": "axis"}))
            ds["diffusion_tensor"] = (("axis", "axis2"), d * 1e9,
                                      {"units": "um**2/ms", "long_name": "diffusion tensor"})
            ds["fractional_anisotropy"] = ((), fa, {"units": "dimensionless",
                                                    "long_name": "fractional anisotropy"})
            ds["mean_diffusivity"] = ((), md * 1e9, {"units": "um**2/ms",
                                                     "long_name": "mean diffusivity"})
        return ds

    def audits(self) -> list[Any]:
        from medtransport_dwi import audits

        return audits.ALL

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_dwi.plot import plot

        plot(self, dataset, figure)

    # -- examples for the conformance suite ------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        protocol = {"kind": "pgse", "pulse_duration": "10 ms", "pulse_separation": "30 ms",
                    "shells": [{"b_value": "0 s/mm^2"},
                               {"b_value": "1000 s/mm^2", "directions": 3},
                               {"b_value": "3000 s/mm^2", "directions": 3}]}
        tissue = [{"kind": "cylinder", "name": "axons", "radius": "2 um",
                   "diffusivity": "2 um^2/ms", "volume_fraction": 0.6},
                  {"kind": "sphere", "name": "cells", "radius": "5 um",
                   "diffusivity": "2 um^2/ms", "volume_fraction": 0.2},
                  {"kind": "free", "name": "water", "diffusivity": "3 um^2/ms",
                   "volume_fraction": 0.2}]
        base = {"model": cls.id, "parameters": {"protocol": protocol, "compartments": tissue},
                "time": {"stop": "40 ms", "step": "0.2 ms", "output_every": "10 ms"}}
        out = [{**base, "name": f"three compartments, {m}", "solver": {"method": m}}
               for m in EXACT_METHODS]
        out.append({**base, "name": "three compartments, Rician magnitude images",
                    "parameters": {**base["parameters"], "s0": 100.0,
                                   "noise": {"snr": 20, "repetitions": 50}},
                    "solver": {"method": "matrix"}, "seed": 6})
        out.append({**base, "name": "three compartments, monte carlo",
                    "solver": {"method": "monte_carlo", "walkers": 600}, "seed": 3})
        out.append({**base, "name": "permeable sphere lattice, monte carlo",
                    "parameters": {"protocol": protocol, "compartments": [
                        {"kind": "sphere_lattice", "radius": "4 um", "spacing": "10 um",
                         "diffusivity": "1.5 um^2/ms", "diffusivity_outside": "2 um^2/ms",
                         "permeability": "0.02 um/ms"}]},
                    "solver": {"method": "monte_carlo", "walkers": 400}, "seed": 4})
        return out

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        protocol = {"pulse_duration": "10 ms", "pulse_separation": "30 ms",
                    "shells": [{"b_value": "1000 s/mm^2"}]}
        free = {"kind": "free", "diffusivity": "2 um^2/ms"}
        return [
            ({"protocol": protocol, "compartments": [{**free, "diffusivity": "2 mL"}]},
             "compartments"),
            ({"protocol": {**protocol, "pulse_duration": "10 m"}, "compartments": [free]},
             "protocol"),
            ({"protocol": protocol}, "compartments"),
            ({"protocol": protocol, "compartments": [{**free, "volume_fraction": 0.5}]},
             "compartments"),
            ({"protocol": protocol, "compartments": [free], "s0": -1}, "s0"),
            ({"protocol": {**protocol, "shells": [{"b_value": "1 T"}]}, "compartments": [free]},
             "protocol"),
        ]

