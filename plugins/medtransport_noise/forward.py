"""The DDPM forward process on a data array, with its variance budget as the ledger
(REFERENCES §5):

    q(x_k | x_{k−1}) = N(√(1 − β_k)·x_{k−1}, β_k·I),    q(x_k | x_0) = N(√ᾱ_k·x_0, (1 − ᾱ_k)·I).

Solvers (``solver.method``):

- ``closed_form`` (default): x_k = √ᾱ_k·x_0 + √(1 − ᾱ_k)·ε at each output step, independent ε
  per step (the marginals, as diffusers' ``add_noise``); coefficients in float64, cast last;
- ``markov_chain``: x_k = √(1 − β_k)·x_{k−1} + √β_k·ε_k step by step from k = 1 (one path; the
  Euler–Maruyama discretisation of the VP-SDE dx = −½β(t)x dt + √β(t) dW). Its marginals are the
  closed form's exactly; the two agree in distribution, not sample by sample.

The scenario's time grid is the VP-SDE's clock: ``stop − start`` must be T steps of Δt
(``stop: 1 s, step: 1 ms`` gives Song et al.'s t ∈ [0, 1] for T = 1000, β(t) = β_k/Δt).

The input x_0 is standardized by default (zero mean, unit variance, so the budget is exactly
ᾱ + (1 − ᾱ) = 1); ``normalize: minmax`` maps it to [−1, 1] as diffusers' image pipelines do,
``none`` keeps a dimensionless input as it is. Offset and scale are kept with their units.

The five answers: it counts the variance — the mean square m₂(x) = (1/N)·Σ x_i² of the noised
array (``intensity_squared``, averaged over the N samples); in the array; nothing leaves it, but
the signal's share decays and noise is injected: per the ledger

    m₂(x_k) = m₂(x_0) − (1 − ᾱ_k)·m₂(x_0) [sink: signal decay] + (1 − ᾱ_k) [source: noise],

which is conserved (= m₂(x_0) = 1) for standardized data; it starts with m₂(x_0). The sampling
error of m₂(x_k) is √((4ᾱ_k(1 − ᾱ_k)·m₂(x_0) + 2(1 − ᾱ_k)²)/N), the standard error the audits
allow (n_sigma of them). Further audits: the variance budget a² + b² = 1 of the coefficients
applied; the residual noise x_k − √ᾱ_k·x_0, with ᾱ recomputed in float64 from the returned β, is
N(0, 1 − ᾱ_k) (moments and a Kolmogorov–Smirnov test); ᾱ_0 = 1 and ᾱ decreasing.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import Field

from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_
from medtransport_noise import __version__
from medtransport_noise.domains import Samples
from medtransport_noise.inputs import Input, load_input
from medtransport_noise.spec import ScheduleSpec, check_clock, output_steps

__all__ = ["ForwardDiffusion", "ForwardParams"]

NOISE_STREAM = 1
#: The most memory the returned states may take (the core's own check counts the time grid's
#: outputs, not ``output_steps``).
MAX_STATE_BYTES = 4 * 2**30


class ForwardParams(Params):
    """Parameters of ``noise.forward``."""

    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    input: Input
    normalize: Literal["standardize", "minmax", "none"] = "standardize"
    output_steps: list[int] | None = None
    dtype: Literal["float32", "float64"] = "float32"


class ForwardDiffusion(Model):
    id = "noise.forward"
    title = "DDPM forward diffusion of a data array"
    version = __version__
    description = ("The DDPM forward (noising) process on an image or field — a Shepp–Logan "
                   "phantom, a NetCDF array, another scenario's result or an image file — with "
                   "diffusers' schedules (linear, scaled_linear, squaredcos_cap_v2, sigmoid, "
                   "user betas, zero-terminal-SNR rescaling), by its closed-form marginal or "
                   "the step-by-step Markov chain, audited by its variance budget.")
    Params = ForwardParams
    conserved = (Species("variance", "intensity_squared",
                         "mean-square intensity (variance budget)",
                         "the mean of x² over the array: the signal's share plus the noise's"),)
    tags = frozenset({"stochastic", "image"})
    methods: ClassVar[dict[str, Tolerance]] = {
        # The states are float32; the budget itself is statistical (n_sigma standard errors).
        "closed_form": Tolerance(rtol=1e-6, n_sigma=5.0),
        "markov_chain": Tolerance(rtol=1e-6, n_sigma=5.0),
    }
    stochastic_methods = frozenset({"closed_form", "markov_chain"})
    params: ForwardParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Samples:
        p = self.params
        if self.scenario.domain is not None:
            raise ScenarioError([("domain", f"{self.id} takes its domain from "
                                            "parameters.input; remove the domain section")])
        if self.scenario.boundaries:
            raise ScenarioError([("boundaries", f"{self.id} has no boundaries: nothing "
                                                "leaves the array")])
        self.schedule = p.schedule.build()
        self.dt = check_clock(self, self.schedule.timesteps)
        self.steps = output_steps(self, p.output_steps, self.schedule.timesteps)
        raw = load_input(p.input, self.scenario.source_dir)
        self.raw_units = str(raw.attrs.get("units", "dimensionless"))
        values = np.asarray(raw.values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ScenarioError([("parameters.input", "the input array has non-finite values")])
        if values.size < 2:
            raise ScenarioError([("parameters.input", "the input array needs at least 2 values")])
        if p.normalize == "standardize":
            offset, scale = float(values.mean()), float(values.std())
        elif p.normalize == "minmax":
            lo, hi = float(values.min()), float(values.max())
            offset, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            if not Q_(1.0, self.raw_units).dimensionless:
                raise ScenarioError([("parameters.normalize",
                                      f"the input is in {self.raw_units}; noise is added to "
                                      "dimensionless data — use standardize or minmax")])
            offset, scale = 0.0, 1.0 / float(Q_(1.0, self.raw_units).m_as(""))
        if scale <= 0:
            raise ScenarioError([("parameters.input", "the input is constant: it has no "
                                                      "variance to keep a budget of")])
        need = len(self.steps) * values.size * (np.dtype(p.dtype).itemsize + 8)
        if need > MAX_STATE_BYTES:
            raise ScenarioError([("parameters.output_steps",
                                  f"{len(self.steps)} outputs of {values.size} values need "
                                  f"{need / 2**30:.1f} GiB (the noised data and their squares); "
                                  f"the limit is {MAX_STATE_BYTES / 2**30:.0f} GiB — ask for "
                                  "fewer output steps")])
        self.offset, self.scale = offset, scale
        self.clean64 = (values - offset) / scale
        self.clean = self.clean64.astype(p.dtype)
        self.m2_declared = 1.0 if p.normalize == "standardize" else \
            float(np.mean(self.clean64 ** 2))
        coords = {str(d): (str(d), np.asarray(raw[d].values), dict(raw[d].attrs))
                  for d in raw.dims}
        label = {"phantom": "Shepp–Logan phantom", "netcdf": "NetCDF array",
                 "scenario": "another scenario's result", "image": "image"}[p.input.kind]
        return Samples(tuple(map(str, raw.dims)), tuple(values.shape), coords, label)

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"variance": Q_(self.m2_declared, "dimensionless")}

    def ledger_units(self) -> dict[str, str]:
        return {"variance": "dimensionless"}

    def routes(self) -> dict[str, list[str]]:
        return {"variance": ["nothing leaves the array; the signal's share (1 − ᾱ)·m₂(x₀) "
                             "decays (sink) and noise of variance 1 − ᾱ is injected (source)"]}

    # -- the run ---------------------------------------------------------------------------
    def coefficients(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """√ᾱ_k and √(1 − ᾱ_k) at ``steps``, float64 (cast to the data's dtype last)."""
        s = self.schedule
        return s.signal_coefficient[steps], s.noise_coefficient[steps]

    def chain_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """√(1 − β_k) and √β_k for k = 1 … T."""
        b = self.schedule.betas
        return np.sqrt(1.0 - b), np.sqrt(b)

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        steps = np.asarray(self.steps, dtype=int)
        ss = np.random.SeedSequence(self.seed).spawn(2)[NOISE_STREAM]
        dtype = np.dtype(self.params.dtype)
        if self.method == "closed_form":
            from medtransport_noise.normal import add_noise

            a, b = self.coefficients(steps)
            batch = np.broadcast_to(self.clean, (len(steps), *self.clean.shape))
            images = add_noise(batch, a, b, ss)
            images[steps == 0] = self.clean  # k = 0 is the data itself, exactly
            applied_a = a.astype(dtype).astype(float)
            applied_b = b.astype(dtype).astype(float)
        else:
            images, applied_a, applied_b = self._chain(steps, ss, dtype, progress)
        return self._trajectory(steps, images, applied_a, applied_b)

    def _chain(self, steps: np.ndarray, ss: np.random.SeedSequence, dtype: np.dtype,
               progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.Generator(np.random.SFC64(ss))
        keep, noise = self.chain_factors()
        x = self.clean.astype(np.float64)
        out = np.empty((len(steps), *x.shape), dtype=dtype)
        # The signal and noise coefficients the chain applied, carried along in float64.
        sig, var = 1.0, 0.0
        a_out, b_out = np.empty(len(steps)), np.empty(len(steps))
        where = {int(k): i for i, k in enumerate(steps)}
        if 0 in where:
            out[where[0]], a_out[where[0]], b_out[where[0]] = self.clean, 1.0, 0.0
        last = int(steps.max())
        for k in range(1, last + 1):
            x *= keep[k - 1]
            x += noise[k - 1] * rng.standard_normal(x.shape)
            sig *= keep[k - 1]
            var = keep[k - 1] ** 2 * var + noise[k - 1] ** 2
            if k in where:
                out[where[k]], a_out[where[k]], b_out[where[k]] = x, sig, np.sqrt(var)
            if progress is not None and k % 100 == 0:
                progress(k / last)
        return out, a_out, b_out

    def _trajectory(self, steps: np.ndarray, images: np.ndarray, a: np.ndarray,
                    b: np.ndarray) -> Trajectory:
        s = self.schedule
        dims = self.domain.dims
        start = self.scenario.time.start.m_as("s")
        n = int(np.prod(self.domain.shape))
        m2 = self.m2_declared
        one_minus = s.one_minus_alpha_bar[steps]
        ab = s.alpha_bar[steps]
        k_all = np.arange(1, s.timesteps + 1)
        ds = xr.Dataset(
            {
                "image": (("time", *dims), images, {
                    "units": "dimensionless", "long_name": "noised data x_t (normalized)"}),
                "intensity_squared": (("time", *dims), images.astype(np.float64) ** 2, {
                    "units": "dimensionless", "long_name": "x_t² (its mean is the variance "
                                                          "budget)"}),
                "clean": (dims, self.clean, {"units": "dimensionless",
                                             "long_name": "data x_0 (normalized)"}),
                "signal_coefficient": ("time", a, {"units": "dimensionless",
                                                   "long_name": "√ᾱ_t applied"}),
                "noise_coefficient": ("time", b, {"units": "dimensionless",
                                                  "long_name": "√(1 − ᾱ_t) applied"}),
                "signal_fraction": ("time", ab, {"units": "dimensionless",
                                                 "long_name": "signal fraction ᾱ_t"}),
                "noise_fraction": ("time", one_minus, {"units": "dimensionless",
                                                       "long_name": "noise fraction 1 − ᾱ_t"}),
                "beta": ("diffusion_step", s.betas, {"units": "dimensionless",
                                                     "long_name": "β_k"}),
                "alpha_bar": ("diffusion_step", s.alphas_cumprod, {
                    "units": "dimensionless", "long_name": "ᾱ_k (diffusers' alphas_cumprod)"}),
                "snr": ("diffusion_step", s.snr[1:], {"units": "dimensionless",
                                                      "long_name": "SNR_k = ᾱ_k/(1 − ᾱ_k)"}),
                "noise_level": ("diffusion_step", s.noise_coefficient[1:], {
                    "units": "dimensionless", "long_name": "noise level √(1 − ᾱ_k)"}),
                "beta_rate": ("diffusion_step", s.betas / self.dt, {
                    "units": "1/s", "long_name": "VP-SDE β(t) = β_k/Δt"}),
                "alpha_bar_sde": ("diffusion_step", s.alpha_bar_continuous(k_all * self.dt,
                                                                           self.dt), {
                    "units": "dimensionless", "long_name": "VP-SDE exp(−∫β dt)"}),
                "data_offset": ((), self.offset, {"units": self.raw_units,
                                                  "long_name": "offset removed from the input"}),
                "data_scale": ((), self.scale, {"units": self.raw_units,
                                                "long_name": "scale the input was divided by"}),
            },
            coords={
                "time": ("time", start + steps * self.dt, {"units": "s",
                                                           "long_name": "diffusion time"}),
                "step": ("time", steps, {"units": "dimensionless",
                                         "long_name": "DDPM step k (diffusers' t = k − 1)"}),
                "diffusion_step": ("diffusion_step", k_all, {"units": "dimensionless",
                                                             "long_name": "DDPM step k"}),
                **self.domain.coords(),
            },
        )
        ds.attrs["terminal_snr"] = float(s.snr[-1])
        ds.attrs["schedule"] = s.kind + (" rescaled to zero terminal SNR" if s.rescaled else "")
        ledger = Ledger.of("variance", "dimensionless", len(steps),
                           sink={"signal decay": one_minus * m2},
                           source={"injected noise": one_minus})
        se = np.sqrt((4.0 * ab * one_minus * m2 + 2.0 * one_minus ** 2) / n)
        return Trajectory(ds, {"variance": ledger}, standard_errors={"variance": se})

    # -- audits ----------------------------------------------------------------------------
    def audits(self) -> list[Any]:
        from medtransport.audit.variance_budget import audit_variance_budget
        from medtransport_noise import audits

        return [lambda ctx: audit_variance_budget(ctx, "signal_coefficient",
                                                  "noise_coefficient", rtol=1e-6),
                audits.audit_schedule, audits.audit_noise_level]

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_noise.plots import plot_forward

        plot_forward(self, dataset, figure)

    # -- examples --------------------------------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        base = {
            "model": cls.id,
            "parameters": {"input": {"kind": "phantom", "size": [96, 96]},
                           "output_steps": [1, 2, 10, 100, 500, 1000]},
            "time": {"stop": "1 s", "step": "1 ms"},
            "seed": 11,
        }
        out = [{**base, "name": "phantom, linear, closed form"},
               {**base, "name": "phantom, cosine, Markov chain",
                "parameters": {**base["parameters"],
                               "schedule": {"kind": "squaredcos_cap_v2"}},
                "solver": {"method": "markov_chain"}}]
        return out

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        phantom = {"kind": "phantom"}
        return [
            ({}, "input"),
            ({"input": {"kind": "photo"}}, "input"),
            ({"input": phantom, "schedule": {"kind": "linear", "beta_end": 1.5}}, "schedule"),
            ({"input": phantom, "schedule": {"kind": "user"}}, "schedule"),
            ({"input": phantom, "schedule": {"kind": "linear", "betas": [0.1, 0.2]}},
             "schedule"),
            ({"input": phantom, "normalize": "zscore"}, "normalize"),
            ({"input": {"kind": "phantom", "field_of_view": "3 kg"}}, "input"),
            ({"input": phantom, "colour": "blue"}, "colour"),
        ]
