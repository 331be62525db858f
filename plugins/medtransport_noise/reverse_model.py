"""The reverse (generative) process for Gaussian-mixture data, sampled with the exact score —
DDPM ancestral (fixed_small, fixed_large, exact variance), DDIM (η) and the probability-flow
ODE (formulas in :mod:`medtransport_noise.reverse`, REFERENCES §5).

Samples start at step k₀ (T, or DDIM's first step) from N(0, I) (``start: standard_normal``, the
practice) or from the exact marginal q(x_{k₀}) (``start: marginal``), and are carried down to
k = 0. The samples are 2-D; their histogram on a square window is the state.

The five answers: it counts probability — each of n samples carries 1/n, binned to a density on
the window (``density``); in the window; a sample beyond the window is still held
(``outside_window``: the fraction outside, counted — stored with the density, not a flow, since
samples come back), so the books balance by counting; it starts with probability 1.

Audit ``reverse_moments``: the samples' mean and variance along each axis at every output step
against an exact reference, within n_σ standard errors (SE of the mean √(v/n), of the variance
√((m₄ − m₂²)/n) from the samples' fourth moment): for one Gaussian, the exact affine recursion of
the sampler used (:func:`medtransport_noise.reverse.affine_moments`, per eigen-direction of S);
for a mixture with an exact sampler (DDPM ``exact``, probability flow) started from the exact
marginal (or with ᾱ_T = 0), the forward marginal's moments u·m and u²·C + (1 − u²)·I. Other
combinations have no closed-form reference; the result says so (``moment_reference``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medtransport.audit.report import AuditContext, AuditResult
from medtransport.domain import NotBool
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_
from medtransport_noise import __version__
from medtransport_noise.domains import Plane
from medtransport_noise.reverse import GaussianMixture, affine_moments, ddim_steps, sample_reverse
from medtransport_noise.spec import ScheduleSpec, check_clock, output_steps

__all__ = ["ReverseDiffusion", "ReverseParams"]

# Data in the units the noise is added in: beyond ±1e150 squares overflow float64.
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e150, le=1e150)]
#: The most memory the returned samples and densities may take.
MAX_STATE_BYTES = 4 * 2**30


class Component(BaseModel):
    """One Gaussian N(mean, covariance) of the data, with its weight (weights are
    normalized). ``covariance``: a 2 × 2 matrix, its diagonal, or one variance."""

    model_config = ConfigDict(extra="forbid")

    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    mean: tuple[Finite, Finite]
    covariance: (tuple[tuple[Finite, Finite], tuple[Finite, Finite]] | tuple[Finite, Finite]
                 | Annotated[float, Field(gt=0, le=1e150, allow_inf_nan=False)]) = 1.0

    @field_validator("covariance")
    @classmethod
    def _positive_definite(cls, v: Any) -> Any:
        m = _matrix(v)
        if not np.allclose(m, m.T) or np.linalg.eigvalsh(m).min() <= 0:
            raise ValueError("must be symmetric and positive definite")
        if np.abs(m).max() > 1e12 or np.linalg.cond(m) > 1e12:
            raise ValueError("entries must be at most 1e12, and the matrix well conditioned "
                             "(condition number at most 1e12), for the score to be computed")
        return v

    @property
    def matrix(self) -> np.ndarray:
        return _matrix(self.covariance)


def _matrix(v: Any) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a * np.eye(2) if a.ndim == 0 else np.diag(a) if a.ndim == 1 else a


class ReverseParams(Params):
    """Parameters of ``noise.reverse``."""

    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    data: list[Component] = Field(min_length=1, max_length=16)
    samples: Annotated[int, Field(ge=100, le=2_000_000), NotBool] = 10_000
    start: Literal["standard_normal", "marginal"] = "standard_normal"
    output_steps: list[int] | None = None
    bins: Annotated[int, Field(ge=4, le=512), NotBool] = 48
    #: Half-width of the square window; widened if a starting sample lies outside it.
    window: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class ReverseDiffusion(Model):
    id = "noise.reverse"
    title = "Analytic reverse diffusion of Gaussian-mixture data"
    version = __version__
    description = ("Generates samples of a 2-D Gaussian mixture by the reverse diffusion "
                   "process with the exact (closed-form) score: DDPM ancestral sampling with "
                   "fixed_small, fixed_large or the exact reverse variance, DDIM (η) and the "
                   "probability-flow ODE; sample moments audited against the exact affine "
                   "recursion or the exact marginals.")
    Params = ReverseParams
    conserved = (Species("probability", "density", "probability",
                         "each sample carries 1/n; binned on the window",
                         outside="outside_window"),)
    tags = frozenset({"stochastic", "samples"})
    # Samples are counted, so the books balance to round-off.
    methods: ClassVar[dict[str, Tolerance]] = {
        "ddpm": Tolerance(rtol=1e-12, n_sigma=5.0),
        "ddim": Tolerance(rtol=1e-12, n_sigma=5.0),
        "probability_flow": Tolerance(rtol=1e-12, n_sigma=5.0),
    }
    stochastic_methods = frozenset({"ddpm", "ddim", "probability_flow"})
    params: ReverseParams

    def solver_options(self) -> dict[str, Any]:
        if self.method == "ddpm":
            return {"variance": (Literal["fixed_small", "fixed_large", "exact"], "fixed_small")}
        if self.method == "ddim":
            return {"eta": (Annotated[float, Field(ge=0, le=1)], 0.0),
                    "inference_steps": (Annotated[int, Field(ge=1, le=100_000), NotBool], 50),
                    "spacing": (Literal["leading", "trailing"], "leading")}
        return {"rtol": (Annotated[float, Field(ge=1e-12, le=1e-3)], 1e-8)}

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Plane:
        p = self.params
        if self.scenario.domain is not None or self.scenario.boundaries:
            raise ScenarioError([("domain", f"{self.id} builds its own window of the data "
                                            "plane; remove domain and boundaries")])
        self.schedule = p.schedule.build()
        n_steps = self.schedule.timesteps
        self.dt = check_clock(self, n_steps)
        w = np.array([c.weight for c in p.data])
        self.mixture = GaussianMixture(w / w.sum(), np.array([c.mean for c in p.data], float),
                                       np.array([c.matrix for c in p.data]))
        if self.method == "ddim":
            n_inf = self.options["inference_steps"]
            if n_inf > n_steps:
                raise ScenarioError([("solver.inference_steps", f"at most the schedule's "
                                                                f"{n_steps} steps")])
            self.visit = ddim_steps(n_steps, n_inf, self.options["spacing"])
        else:
            self.visit = list(range(n_steps, -1, -1))
        wanted = output_steps(self, p.output_steps, n_steps)
        visited = set(self.visit)
        self.steps = sorted({k for k in wanted if k in visited} | {self.visit[0], 0},
                            reverse=True)
        need = len(self.steps) * (p.samples * 2 + p.bins ** 2) * 8
        if need > MAX_STATE_BYTES:
            raise ScenarioError([("parameters.output_steps",
                                  f"{len(self.steps)} outputs of {p.samples} samples need "
                                  f"{need / 2**30:.1f} GiB; the limit is "
                                  f"{MAX_STATE_BYTES / 2**30:.0f} GiB — ask for fewer output "
                                  "steps or samples")])
        if p.window is not None:
            half = p.window
        else:
            spread = np.sqrt(np.linalg.eigvalsh(self.mixture.covariances).max())
            half = float(max(6.0, np.abs(self.mixture.means).max() + 6.0 * spread))
        # The starting samples are drawn now, so that the window holds every one of them and
        # the represented probability at the start is exactly 1.
        self.start_ss, self.run_ss = np.random.SeedSequence(self.seed).spawn(2)
        self.x_start = self._start(np.random.default_rng(self.start_ss))
        reach = float(np.abs(self.x_start).max())
        if reach >= half:
            half = float(np.ceil(reach * 1.01 * 10) / 10)
        return Plane(half, p.bins)

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"probability": Q_(1.0, "dimensionless")}

    def ledger_units(self) -> dict[str, str]:
        return {"probability": "dimensionless"}

    def routes(self) -> dict[str, list[str]]:
        return {"probability": []}  # samples outside the window are stored, not gone

    # -- the run ---------------------------------------------------------------------------
    def _start(self, rng: np.random.Generator) -> np.ndarray:
        n = self.params.samples
        k0 = self.visit[0]
        if self.params.start == "marginal":
            return self.mixture.marginal(float(self.schedule.alpha_bar[k0])).sample(n, rng)
        return rng.standard_normal((n, 2))

    def _sample(self, x: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
        o = self.options
        return sample_reverse(self.mixture, self.schedule, x, self.method, self.steps, rng,
                              variance=o.get("variance", "fixed_small"), eta=o.get("eta", 0.0),
                              steps=self.visit, rtol=o.get("rtol", 1e-8))

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        out = self._sample(self.x_start, np.random.default_rng(self.run_ss))
        steps = self.steps
        samples = np.stack([out[k] for k in steps])
        plane: Plane = self.domain  # type: ignore[assignment]
        n = samples.shape[1]
        edges = plane.edges
        density = np.empty((len(steps), plane.bins, plane.bins))
        outside = np.empty(len(steps))
        for i in range(len(steps)):
            counts, _, _ = np.histogram2d(samples[i, :, 1], samples[i, :, 0],
                                          bins=(edges, edges))
            density[i] = counts / (n * plane.weights[0, 0])
            outside[i] = (n - counts.sum()) / n
        mean = samples.mean(axis=1)
        var = samples.var(axis=1)
        comp_means = self.mixture.means
        ds = xr.Dataset(
            {
                "density": (("time", "y", "x"), density, {
                    "units": "dimensionless", "long_name": "sample density"}),
                "outside_window": ("time", outside, {
                    "units": "dimensionless", "long_name": "fraction of samples outside the "
                    "window"}),
                "samples": (("time", "sample", "axis"), samples, {
                    "units": "dimensionless", "long_name": "samples x_k"}),
                "sample_mean": (("time", "axis"), mean, {"units": "dimensionless",
                                                          "long_name": "sample mean"}),
                "sample_variance": (("time", "axis"), var, {"units": "dimensionless",
                                                             "long_name": "sample variance"}),
                "component_mean": (("component", "axis"), comp_means, {
                    "units": "dimensionless", "long_name": "data component means"}),
                "alpha_bar": ("time", self.schedule.alpha_bar[steps], {
                    "units": "dimensionless", "long_name": "ᾱ_k"}),
            },
            coords={
                "time": ("time", self.scenario.time.start.m_as("s") + np.asarray(steps) *
                         self.dt, {"units": "s", "long_name": "diffusion time"}),
                "step": ("time", np.asarray(steps), {"units": "dimensionless",
                                                     "long_name": "DDPM step k"}),
                "axis": ("axis", np.array(["x", "y"]), {"units": "dimensionless",
                                                        "long_name": "data axis"}),
                **plane.coords(),
            },
        )
        ref = self.reference_moments()
        if ref is not None:
            ds["reference_mean"] = (("time", "axis"), ref[0], {
                "units": "dimensionless", "long_name": "exact mean"})
            ds["reference_variance"] = (("time", "axis"), ref[1], {
                "units": "dimensionless", "long_name": "exact variance"})
        ds.attrs["moment_reference"] = self.reference_kind() or "none (no closed form)"
        ledger = Ledger.of("probability", "dimensionless", len(steps))
        return Trajectory(ds, {"probability": ledger})

    # -- exact references ------------------------------------------------------------------
    def _exact_sampler(self) -> bool:
        return self.method == "probability_flow" or (
            self.method == "ddpm" and self.options["variance"] == "exact")

    def reference_kind(self) -> str | None:
        if len(self.mixture.weights) == 1:
            return "exact affine recursion of the sampler (one Gaussian)"
        terminal_zero = self.schedule.alpha_bar[self.visit[0]] == 0.0
        if self._exact_sampler() and (self.params.start == "marginal" or terminal_zero):
            return "exact marginals q(x_k) (exact sampler on mixture data)"
        return None

    def reference_moments(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact mean and variance per axis at each output step, when known."""
        kind = self.reference_kind()
        if kind is None:
            return None
        ab = self.schedule.alpha_bar
        if len(self.mixture.weights) > 1:
            mean, cov = self.mixture.moments()
            m = np.array([np.sqrt(ab[k]) * mean for k in self.steps])
            v = np.array([ab[k] * np.diag(cov) + (1.0 - ab[k]) for k in self.steps])
            return m, v
        mu, s = self.mixture.means[0], self.mixture.covariances[0]
        lam, q = np.linalg.eigh(s)
        mu_e = q.T @ mu
        k0 = self.visit[0]
        o = self.options
        per_dir = []
        for i in range(2):
            if self.params.start == "marginal":
                start = (np.sqrt(ab[k0]) * mu_e[i], ab[k0] * lam[i] + 1.0 - ab[k0])
            else:
                start = (0.0, 1.0)
            per_dir.append(affine_moments(mu_e[i], lam[i], self.schedule, self.method, start,
                                          variance=o.get("variance", "fixed_small"),
                                          eta=o.get("eta", 0.0), steps=self.visit))
        means, variances = [], []
        for k in self.steps:
            m_e = np.array([per_dir[i][k][0] for i in range(2)])
            v_e = np.array([per_dir[i][k][1] for i in range(2)])
            means.append(q @ m_e)
            variances.append(np.diag(q @ np.diag(v_e) @ q.T))
        return np.array(means), np.array(variances)

    def audits(self) -> list[Any]:
        return [audit_reverse_moments]

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_noise.plots import plot_reverse

        plot_reverse(self, dataset, figure)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        mixture = [{"weight": 0.4, "mean": [-2.0, 0.0], "covariance": [0.3, 0.5]},
                   {"weight": 0.6, "mean": [1.5, 1.0],
                    "covariance": [[0.4, 0.15], [0.15, 0.3]]}]
        base = {"model": cls.id, "time": {"stop": "1 s", "step": "10 ms"},
                "parameters": {"schedule": {"timesteps": 100, "beta_end": 0.2},
                               "data": mixture, "samples": 2000, "start": "marginal",
                               "output_steps": [100, 50, 10, 0]}, "seed": 5}
        return [
            {**base, "name": "mixture, DDPM exact variance",
             "solver": {"method": "ddpm", "variance": "exact"}},
            {**base, "name": "Gaussian, DDIM eta 0.5", "solver": {"method": "ddim", "eta": 0.5,
                                                                  "inference_steps": 20},
             "parameters": {**base["parameters"], "data": [mixture[1]],
                            "start": "standard_normal"}},
            {**base, "name": "mixture, probability flow", "solver": {"method":
                                                                      "probability_flow"}},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        good = {"mean": [0.0, 0.0]}
        return [
            ({}, "data"),
            ({"data": []}, "data"),
            ({"data": [{"mean": [0.0]}]}, "data"),
            ({"data": [{"mean": [0.0, 0.0], "covariance": [[1, 2], [2, 1]]}]}, "data"),
            ({"data": [{"mean": [0.0, 0.0], "weight": -1}]}, "data"),
            ({"data": [good], "samples": 5}, "samples"),
            ({"data": [good], "start": "uniform"}, "start"),
        ]


def audit_reverse_moments(ctx: AuditContext) -> list[AuditResult]:
    ds = ctx.states
    if "reference_mean" not in ds:
        return [AuditResult("reverse_moments", True, 0.0, 0.0, "", "not checked: "
                            + str(ds.attrs.get("moment_reference", "no reference")))]
    x = np.asarray(ds["samples"].values, dtype=float)
    n = x.shape[1]
    ref_m = np.asarray(ds["reference_mean"].values)
    ref_v = np.asarray(ds["reference_variance"].values)
    dev = x - x.mean(axis=1, keepdims=True)
    m2 = (dev ** 2).mean(axis=1)
    m4 = (dev ** 4).mean(axis=1)
    z_mean = np.abs(x.mean(axis=1) - ref_m) / np.sqrt(np.maximum(ref_v, 1e-300) / n)
    se_var = np.sqrt(np.maximum(m4 - m2 ** 2, 1e-300) / n)
    z_var = np.abs(m2 - ref_v) / se_var
    z = np.maximum(z_mean, z_var)
    worst = float(np.max(z))
    passed = bool(np.all(np.isfinite(z)) and worst <= ctx.tolerance.n_sigma)
    i, a = np.unravel_index(int(np.argmax(z)), z.shape)
    step = int(ds["step"].values[i])
    detail = (f"sample mean and variance vs {ds.attrs['moment_reference']}: worst "
              f"{worst:.3g} SE at step {step}, axis {a} (mean {x[i, :, a].mean():.6g} vs "
              f"{ref_m[i, a]:.6g}, variance {m2[i, a]:.6g} vs {ref_v[i, a]:.6g}; n = {n})")
    where = {} if passed else {"step": step, "time_s": float(ds["time"].values[i])}
    return [AuditResult("reverse_moments", passed, worst, ctx.tolerance.n_sigma, "SE", detail,
                        where)]
