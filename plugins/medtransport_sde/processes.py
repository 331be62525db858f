"""Named scalar Itô processes, run on the core's SDE engine and audited.

Each is a member of the core's affine-drift, square-root-quadratic-noise family
(:mod:`medtransport.numerics.sde`):

- ``sde.ornstein_uhlenbeck``  dX = θ(m − X)dt + σ dW — a physiological signal (a blood
  pressure, a heart rate) fluctuating around its set point;
- ``sde.geometric_brownian``  dX = λX dt + μX dW — proportional fluctuations (a cell
  population, a drug level);
- ``sde.cox_ingersoll_ross``  dX = κ(θ − X)dt + σ√X dW — a level that cannot go negative
  (Feller's condition 2κθ ≥ σ² reported: below it, zero is reached);
- ``sde.jacobi_mixing``       dX = −ω(X − μ)dt + √(2ωκX(1 − X)) dW — the notional-particle
  mixing model of a tracer's mixture fraction, in [0, 1];
- ``sde.drifted_brownian``    dX = v dt + √(2D) dW — a particle advected and diffusing, between
  optional reflecting or absorbing walls; its histogram is tested against the core's
  finite-volume Fokker–Planck solution.

The five answers: it counts probability (the paths, each 1/N); on histogram cells of the state;
it may leave by absorption at a wall (paths beyond the histogram's cells are alive: stored,
counted apart from the density); it is conserved — alive + absorbed = started, path by path;
it starts with 1.

Methods: ``euler_maruyama``, ``milstein``, ``exact`` (where a transition law exists). Solver
options: ``paths`` (number of paths), ``sample_paths`` (how many paths to return whole),
``bounds`` (what EM/Milstein do at the edge of a bounded state space: ``truncate``,
``reflect``, or ``refuse`` to run), ``bridge`` (the Brownian-bridge test at absorbing walls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import Field

from medtransport.audit.report import AuditContext, AuditResult
from medtransport.audit.stability import StabilityMargin
from medtransport.domain import NotBool
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Progress, Tolerance, Trajectory
from medtransport.numerics import sde as engine
from medtransport.numerics.ensemble import ensemble_statistics, histogram_density
from medtransport.numerics.sde_moments import exact_moments
from medtransport.units import Q_
from medtransport_sde import __version__
from medtransport_sde import audits as sde_audits
from medtransport_sde.bins import Bins
from medtransport_sde.params import (
    CIRParams,
    DriftedBMParams,
    GBMParams,
    JacobiParams,
    OUParams,
)

__all__ = ["CoxIngersollRoss", "DriftedBrownian", "GeometricBrownian", "JacobiMixing",
           "OrnsteinUhlenbeck", "ProcessModel"]

QUANTILES = (0.05, 0.5, 0.95)
#: ``statistics: auto`` computes them in the kernel above this many stored states (80 MB).
IN_KERNEL_ABOVE = 10_000_000
#: Statistical audits: n_sigma standard errors; the path counts are integers, held exactly.
_TOL = Tolerance(rtol=1e-12, n_sigma=5.0)


class ProcessModel(Model):
    """A scalar process of the family; subclasses give :meth:`sde` and the state's unit."""

    version = __version__
    tags = frozenset({"stochastic"})
    methods: ClassVar[dict[str, Tolerance]] = {"euler_maruyama": _TOL, "milstein": _TOL,
                                               "exact": _TOL}
    stochastic_methods = frozenset({"euler_maruyama", "milstein", "exact"})
    # paths beyond the histogram's cells are alive and may come back: stored apart, not a flow
    conserved = (Species("probability", "density", "probability",
                         "the paths, each carrying 1/N of the probability",
                         outside="beyond_histogram"),)
    #: what the state is, for labels
    state_name: ClassVar[str] = "state"

    # -- the process -------------------------------------------------------------------------
    def sde(self) -> engine.AffineSDE:
        raise NotImplementedError

    @property
    def state_units(self) -> str:
        return f"{self.params.initial.units:~C}" or "dimensionless"

    def x0(self) -> float:
        return float(self.params.initial.m_as(self.state_units))

    def walls(self) -> list[tuple[str, float, str, float]] | None:
        return None

    def wall_names(self) -> dict[int, str]:
        return {0: "lower wall", 1: "upper wall"}

    @property
    def has_walls(self) -> bool:
        w = self.walls()
        return w is not None and any(k != "none" for k in (w[0][0], w[0][2]))

    def solver_options(self) -> dict[str, Any]:
        return {"paths": (Annotated[int, Field(ge=2, le=20_000_000), NotBool], 10_000),
                "sample_paths": (Annotated[int, Field(ge=0, le=1000), NotBool], 20),
                "bounds": (Literal["truncate", "reflect", "refuse"], "truncate"),
                "bridge": (bool, True),
                "statistics": (Literal["auto", "paths", "in_kernel"], "auto")}

    def statistics_mode(self) -> str:
        """``in_kernel``: statistics computed while the paths run, no path stored
        (:mod:`medtransport.numerics.sde_ensemble`; no walls, CIR exact needs ν > 1);
        ``paths``: every path kept at the outputs (exact order-statistic quantiles). ``auto``
        takes ``in_kernel`` where it applies and the paths would exceed
        :data:`IN_KERNEL_ABOVE` stored states."""
        from medtransport.numerics.sde_ensemble import supports

        asked = self.options["statistics"]
        why = "walls need stored paths" if self.has_walls else supports(self.sde(), self.method)
        if asked == "in_kernel" and why is not None:
            raise ScenarioError([("solver.statistics", f"in_kernel statistics are not available "
                                  f"for this run: {why}; use statistics: paths")])
        if asked != "auto":
            return str(asked)
        n_out = len(self.scenario.time.output_steps())
        big = n_out * self.options["paths"] > IN_KERNEL_ABOVE
        return "in_kernel" if (big and why is None) else "paths"

    def check_memory(self, arrays: int = 1) -> None:
        """Refuse, before allocating, paths whose saved states would not fit: the engine keeps
        every path at every output (``arrays`` such arrays of float64)."""
        from medtransport.runner import MAX_STATE_BYTES

        n_out = len(self.scenario.time.output_steps())
        size = n_out * self.options["paths"] * 8 * arrays * 2  # + the statistics' copies
        if size > MAX_STATE_BYTES:
            raise ScenarioError([("solver.paths", f"{self.options['paths']} paths at {n_out} "
                                  f"outputs need {size / 2**30:.1f} GiB; the limit is "
                                  f"{MAX_STATE_BYTES / 2**30:.0f} GiB — use fewer paths or "
                                  "output less often (time.output_every)")])

    @property
    def bounds_fix(self) -> str:
        return "none" if self.options["bounds"] == "refuse" else self.options["bounds"]

    # -- the five answers --------------------------------------------------------------------
    def build_domain(self) -> Bins:
        if self.statistics_mode() == "paths":
            self.check_memory()
        if self.method == "exact" and 0 in engine.exact_kinds(self.sde()):
            raise ScenarioError([("solver.method", f"{self.id} has no exact transition; use "
                                                   "euler_maruyama or milstein")])
        h = self.params.histogram
        units = self.state_units
        if h is not None:
            return Bins(float(h.lower.m_as(units)), float(h.upper.m_as(units)), h.cells, units,
                        self.state_name)
        lo, hi = self._default_range()
        return Bins(lo, hi, 60, units, self.state_name)

    def _default_range(self) -> tuple[float, float]:
        sde = self.sde()
        times = self.scenario.time.output_times() - self.scenario.time.start.m_as("s")
        mean, var = exact_moments(sde, [self.x0()], times)
        sd = np.sqrt(np.maximum(var[:, 0], 0.0))
        lo = float(np.min(mean[:, 0] - 6 * sd))
        hi = float(np.max(mean[:, 0] + 6 * sd))
        lo, hi = max(lo, float(sde.lower[0])), min(hi, float(sde.upper[0]))
        w = self.walls()
        if w is not None:
            if w[0][0] != "none":
                lo = w[0][1]
            if w[0][2] != "none":
                hi = w[0][3]
        if not hi > lo:
            hi = lo + max(1e-9, abs(lo) * 1e-6)
        return lo, hi

    @property
    def bins(self) -> Bins:
        assert isinstance(self.domain, Bins)
        return self.domain

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"probability": Q_(1.0, "dimensionless")}

    def ledger_units(self) -> dict[str, str]:
        return {"probability": "dimensionless"}

    def routes(self) -> dict[str, list[str]]:
        out = [f"absorbed at the {name}" for i, name in self.wall_names().items()
               if self.has_walls and self.walls()[0][2 * i] == "absorbing"]  # type: ignore[index]
        return {"probability": out}

    # -- before the run ----------------------------------------------------------------------
    def stability(self) -> list[StabilityMargin]:
        from medtransport.audit.ms_stability import ms_stability_margin

        sde = self.sde()
        out = [ms_stability_margin(sde, self.scenario.time.dt, self.method)]
        if sde.bounded and self.method != "exact" and self.options["bounds"] == "refuse":
            out.append(StabilityMargin(
                "state_space", 1.0, 0.0,
                f"{self.method} can leave the state space [{sde.lower[0]:g}, {sde.upper[0]:g}] "
                f"{self.state_units} of {self.id} and solver.bounds is 'refuse'",
                "set solver.bounds to truncate or reflect, or use the exact method where there "
                "is one"))
        return out

    # -- the run -----------------------------------------------------------------------------
    def simulate(self, progress: Progress | None = None) -> Trajectory:
        tg = self.scenario.time
        sde = self.sde()
        n = self.options["paths"]
        assert self.seed is not None
        if self.statistics_mode() == "in_kernel":
            from medtransport.numerics.sde_ensemble import run_ensemble

            b = self.bins
            run = run_ensemble(sde, self.x0(), tg.dt, tg.n_steps, tg.output_steps(), n_paths=n,
                               seed=self.seed % 2**64, edges=(b.lower, b.upper, b.cells),
                               scheme=self.method, bounds_fix=self.bounds_fix,
                               levels=QUANTILES, keep=min(self.options["sample_paths"], n))
            if progress is not None:
                progress(1.0)
            times = tg.start.m_as("s") + run.times
            ds, ledger = self._dataset_in_kernel(run, times)
            return Trajectory(ds, {"probability": ledger}, notes={"result": run, "sde": sde})
        res = engine.simulate(sde, [self.x0()], tg.dt, tg.n_steps, tg.output_steps(),
                              n_paths=n, seed=self.seed % 2**64, scheme=self.method,  # type: ignore[arg-type]
                              bounds_fix=self.bounds_fix,  # type: ignore[arg-type]
                              walls=self.walls(),  # type: ignore[arg-type]
                              bridge=self.options["bridge"])
        if progress is not None:
            progress(1.0)
        times = tg.start.m_as("s") + res.times
        ds, ledger = self._dataset(res, times)
        notes = {"result": res, "sde": sde}
        return Trajectory(ds, {"probability": ledger}, notes=notes)

    def _dataset_in_kernel(self, run: Any, times: np.ndarray) -> tuple[xr.Dataset, Ledger]:
        """The same variables as :meth:`_dataset`, from statistics computed in the kernel."""
        n = run.n_paths
        w = self.bins.weights
        density = run.counts / (n * w)
        se = np.sqrt(run.counts * (1.0 - run.counts / n)) / (n * w)
        summary = {"alive": run.alive, "mean": run.mean, "mean_se": run.mean_se,
                   "variance": run.variance, "variance_se": run.variance_se,
                   "quantiles": run.quantiles, "quantiles_se": run.quantile_se,
                   "density": density, "density_se": se,
                   "beyond_histogram": (run.below + run.above) / n,
                   "sample_paths": run.samples}
        ds, ledger = self._assemble(summary, times, n, {})
        fine = round((self.bins.upper - self.bins.lower) / run.fine_width)
        ds.attrs["statistics"] = (f"in_kernel (no stored paths; quantiles read off {fine} fine "
                                  f"cells of {run.fine_width:.3g} {self.state_units})")
        ds.attrs["scheme"] = run.scheme
        ds.attrs["bounds_fix"] = run.bounds_fix
        return ds, ledger

    def _dataset(self, res: engine.SDEResult, times: np.ndarray) -> tuple[xr.Dataset, Ledger]:
        n = res.n_paths
        x = res.values[:, :, 0]
        stats = ensemble_statistics(x, QUANTILES)
        hist = histogram_density(x, self.bins.edges, n)
        k = min(self.options["sample_paths"], n)
        summary = {"alive": res.alive(), "mean": stats.mean[:, 0],
                   "mean_se": stats.mean_se[:, 0], "variance": stats.variance[:, 0],
                   "variance_se": stats.variance_se[:, 0],
                   "quantiles": stats.quantiles[:, :, 0],
                   "quantiles_se": stats.quantile_se[:, :, 0], "density": hist.density,
                   "density_se": hist.standard_error, "beyond_histogram": hist.outside,
                   "sample_paths": res.stopped[:, :k, 0]}
        absorbed: dict[int, np.ndarray] = {}
        if self.has_walls:
            for code in self.wall_names():
                if self.walls()[0][2 * code] == "absorbing":  # type: ignore[index]
                    absorbed[code] = res.absorbed(code)
        ds, ledger = self._assemble(summary, times, n, absorbed)
        ds.attrs["statistics"] = "paths (every path stored at the outputs)"
        ds.attrs["scheme"] = res.scheme
        ds.attrs["bounds_fix"] = res.bounds_fix
        return ds, ledger

    def _assemble(self, s: dict[str, np.ndarray], times: np.ndarray, n: int,
                  absorbed: dict[int, np.ndarray]) -> tuple[xr.Dataset, Ledger]:
        units = self.state_units
        bins = self.bins
        k = s["sample_paths"].shape[1]
        long = self.state_name
        inv = f"1/({units})" if units != "dimensionless" else "dimensionless"
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s", "long_name": "time"}),
                                  "quantile": ("quantile", np.asarray(QUANTILES),
                                               {"units": "dimensionless",
                                                "long_name": "quantile level"}),
                                  "path": ("path", np.arange(k), {"units": "dimensionless",
                                                                  "long_name": "path number"})}
        coords.update(bins.coords())
        sq = f"({units})**2" if units != "dimensionless" else "dimensionless"
        data: dict[str, Any] = {
            "density": (("time", "state"), s["density"],
                        {"units": inv, "long_name": f"probability density of the {long}"}),
            "density_se": (("time", "state"), s["density_se"],
                           {"units": inv, "long_name": "standard error of the density"}),
            "beyond_histogram": ("time", s["beyond_histogram"],
                                 {"units": "dimensionless", "long_name": "fraction of paths "
                                  "alive beyond the histogram's cells"}),
            "mean": ("time", s["mean"], {"units": units, "long_name": f"mean {long}"}),
            "mean_se": ("time", s["mean_se"],
                        {"units": units, "long_name": "standard error of the mean"}),
            "variance": ("time", s["variance"],
                         {"units": sq, "long_name": f"variance of the {long}"}),
            "variance_se": ("time", s["variance_se"],
                            {"units": sq, "long_name": "standard error of the variance"}),
            "quantiles": (("time", "quantile"), s["quantiles"],
                          {"units": units, "long_name": f"quantiles of the {long}"}),
            "quantiles_se": (("time", "quantile"), s["quantiles_se"],
                             {"units": units, "long_name": "standard error of the quantiles"}),
            "sample_paths": (("time", "path"), s["sample_paths"],
                             {"units": units, "long_name": f"sample paths of the {long} "
                              "(held at the wall once absorbed)"}),
            "alive": ("time", np.asarray(s["alive"]).astype(float),
                      {"units": "dimensionless", "long_name": "paths alive"}),
        }
        outflow: dict[str, np.ndarray] = {}
        for code, count in absorbed.items():
            name = self.wall_names()[code]
            key = name.replace(" ", "_")
            data[f"absorbed_{key}"] = ("time", count.astype(float),
                                       {"units": "dimensionless",
                                        "long_name": f"paths absorbed at the {name}"})
            outflow[f"absorbed at the {name}"] = count / n
        exact = self.exact_moments(times - times[0])
        if exact is not None:
            data["exact_mean"] = ("time", exact[0], {"units": units,
                                                     "long_name": f"exact mean {long}"})
            data["exact_sd"] = ("time", np.sqrt(np.maximum(exact[1], 0.0)),
                                {"units": units, "long_name": f"exact SD of the {long}"})
        ds = xr.Dataset(data, coords=coords)
        ds.attrs["paths"] = n
        return ds, Ledger.of("probability", "dimensionless", len(times), outflow=outflow)

    def exact_moments(self, elapsed: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact mean and variance (state units) at ``elapsed`` seconds, or None where walls
        change the law."""
        if self.has_walls:
            return None
        mean, var = exact_moments(self.sde(), [self.x0()], elapsed)
        return mean[:, 0], var[:, 0]

    # -- audits ------------------------------------------------------------------------------
    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        out: list[Callable[[AuditContext], list[AuditResult]]] = [
            sde_audits.probability_ledger, sde_audits.moments]
        if self.sde().bounded:
            out.append(sde_audits.state_space)
        return out

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_sde.plots import process_plot

        process_plot(self, dataset, figure)

    # -- conformance -------------------------------------------------------------------------
    @classmethod
    def _example(cls, name: str, parameters: dict[str, Any], method: str, stop: str,
                 step: str, every: str, **solver: Any) -> dict[str, Any]:
        return {"name": name, "model": cls.id, "parameters": parameters,
                "solver": {"method": method, "paths": 4000, "sample_paths": 5, **solver},
                "time": {"stop": stop, "step": step, "output_every": every}, "seed": 11}


class OrnsteinUhlenbeck(ProcessModel):
    id = "sde.ornstein_uhlenbeck"
    title = "Ornstein–Uhlenbeck: a signal reverting to its set point"
    description = ("dX = θ(m − X)dt + σ dW: a physiological signal (a blood pressure, a heart "
                   "rate) fluctuating around its set point m, pulled back at rate θ; Gaussian, "
                   "with an exact transition.")
    Params = OUParams
    params: OUParams
    state_name = "signal"

    def sde(self) -> engine.AffineSDE:
        u = self.state_units
        theta = float(self.params.reversion_rate.m_as("1/s"))
        m = float(self.params.set_point.m_as(u))
        sigma = float(self.params.volatility.m_as(f"({u})/s**0.5"
                                                  if u != "dimensionless" else "1/s**0.5"))
        return engine.AffineSDE.scalar(theta * m, -theta, c0=sigma * sigma)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        p = {"initial": "120 mmHg", "set_point": "95 mmHg", "reversion_rate": "0.5 1/min",
             "volatility": "3 mmHg/min**0.5"}
        return [cls._example("mean arterial pressure, exact", p, "exact", "10 min", "6 s",
                             "1 min"),
                cls._example("mean arterial pressure, Euler–Maruyama", p, "euler_maruyama",
                             "10 min", "3 s", "1 min")]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"initial": "120 mmHg", "set_point": "95 mmHg", "reversion_rate": "0.5 1/min",
              "volatility": "3 mmHg/min**0.5"}
        return [({**ok, "set_point": "95 s"}, "set_point"),
                ({**ok, "volatility": "3 mmHg/min"}, "volatility"),
                ({**ok, "reversion_rate": "-1 1/min"}, "reversion_rate"),
                ({k: v for k, v in ok.items() if k != "initial"}, "initial"),
                ({**ok, "colour": "red"}, "colour")]


class GeometricBrownian(ProcessModel):
    id = "sde.geometric_brownian"
    title = "Geometric Brownian motion: proportional fluctuations"
    description = ("dX = λX dt + μX dW: a quantity whose random fluctuations are proportional "
                   "to itself (a cell population, a drug level); log-normal, with an exact "
                   "transition. Euler–Maruyama is mean-square stable only for "
                   "|1 + hλ|² + hμ² < 1 — checked before the first step.")
    Params = GBMParams
    params: GBMParams
    state_name = "level"

    def sde(self) -> engine.AffineSDE:
        lam = float(self.params.growth_rate.m_as("1/s"))
        mu = float(self.params.volatility.m_as("1/s**0.5"))
        return engine.AffineSDE.scalar(0.0, lam, c2=mu * mu)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        p = {"initial": "1e6 cells", "growth_rate": "-0.1 1/day",
             "volatility": "0.3 1/day**0.5"}
        return [cls._example("tumour cells under therapy, exact", p, "exact", "10 day",
                             "0.1 day", "1 day"),
                cls._example("tumour cells under therapy, Milstein", p, "milstein", "10 day",
                             "0.02 day", "1 day")]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"initial": "1e6 cells", "growth_rate": "-0.1 1/day",
              "volatility": "0.3 1/day**0.5"}
        return [({**ok, "initial": "-5 cells"}, "initial"),
                ({**ok, "growth_rate": "0.1 mg"}, "growth_rate"),
                ({**ok, "volatility": "0.3 1/day"}, "volatility")]


class CoxIngersollRoss(ProcessModel):
    id = "sde.cox_ingersoll_ross"
    title = "Cox–Ingersoll–Ross: a level that cannot go negative"
    description = ("dX = κ(θ − X)dt + σ√X dW: a concentration reverting to θ whose noise "
                   "vanishes at zero, so it cannot go negative; exact transition by the scaled "
                   "non-central χ². Feller's condition 2κθ ≥ σ² (zero unreachable) is "
                   "reported; Euler–Maruyama and Milstein are fixed at zero (full truncation "
                   "or reflection) and their violations counted, or refused.")
    Params = CIRParams
    params: CIRParams
    state_name = "concentration"

    def sde(self) -> engine.AffineSDE:
        u = self.state_units
        kappa = float(self.params.reversion_rate.m_as("1/s"))
        theta = float(self.params.long_term_mean.m_as(u))
        sig = float(self.params.volatility.m_as(f"(({u})/s)**0.5"
                                                if u != "dimensionless" else "1/s**0.5"))
        return engine.AffineSDE.scalar(kappa * theta, -kappa, c1=sig * sig, lower=0.0)

    def feller_ratio(self) -> float:
        sde = self.sde()
        return float(2.0 * sde.drift_constant[0] / sde.noise[0, 1])

    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        return [*super().audits(), sde_audits.feller]

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        p = {"initial": "0.5 mg/L", "reversion_rate": "0.5 1/h", "long_term_mean": "1 mg/L",
             "volatility": "0.6 (mg/L)**0.5/h**0.5"}
        return [cls._example("free drug level, exact", p, "exact", "12 h", "0.1 h", "1 h"),
                cls._example("free drug level, EM with full truncation", p, "euler_maruyama",
                             "12 h", "0.01 h", "1 h")]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"initial": "0.5 mg/L", "reversion_rate": "0.5 1/h", "long_term_mean": "1 mg/L",
              "volatility": "0.6 (mg/L)**0.5/h**0.5"}
        return [({**ok, "initial": "-0.5 mg/L"}, "initial"),
                ({**ok, "long_term_mean": "1 mg"}, "long_term_mean"),
                ({**ok, "volatility": "0.6 mg/L/h**0.5"}, "volatility")]


class JacobiMixing(ProcessModel):
    id = "sde.jacobi_mixing"
    title = "Jacobi mixing: a bounded mixture fraction"
    description = ("dX = −ω(X − μ)dt + √(2ωκX(1 − X)) dW: the notional-particle mixing model "
                   "of a tracer's mixture fraction, whose noise vanishes at 0 and 1; stationary "
                   "law Beta(μ/κ, (1 − μ)/κ). No exact transition: Euler–Maruyama or Milstein "
                   "with full truncation or reflection at 0 and 1, violations counted.")
    Params = JacobiParams
    params: JacobiParams
    state_name = "mixture fraction"

    @property
    def state_units(self) -> str:
        return "dimensionless"

    def sde(self) -> engine.AffineSDE:
        om = float(self.params.mixing_rate.m_as("1/s"))
        mu = float(self.params.mean.m_as(""))
        ka = float(self.params.mixing_intensity.m_as(""))
        return engine.AffineSDE.scalar(om * mu, -om, c1=2 * om * ka, c2=-2 * om * ka,
                                       lower=0.0, upper=1.0)

    def build_domain(self) -> Bins:
        if self.params.histogram is None:
            if self.method == "exact":
                return super().build_domain()  # refused there
            return Bins(0.0, 1.0, 50, "dimensionless", self.state_name)
        return super().build_domain()

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        p = {"initial": "0.9", "mean": "0.3", "mixing_rate": "2 1/s", "mixing_intensity": "0.5"}
        return [cls._example("tracer mixing, EM with full truncation", p, "euler_maruyama",
                             "2 s", "0.002 s", "0.25 s"),
                cls._example("tracer mixing, Milstein reflected", p, "milstein", "2 s",
                             "0.002 s", "0.25 s", bounds="reflect")]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"initial": "0.9", "mean": "0.3", "mixing_rate": "2 1/s", "mixing_intensity": "0.5"}
        return [({**ok, "initial": "1.5"}, "initial"),
                ({**ok, "mean": "1"}, "mean"),
                ({**ok, "mixing_rate": "2 m"}, "mixing_rate")]


class DriftedBrownian(ProcessModel):
    id = "sde.drifted_brownian"
    title = "Brownian motion with drift: a particle advected and diffusing"
    description = ("dX = v dt + √(2D) dW: a particle carried at velocity v and diffusing with "
                   "diffusivity D, between optional reflecting or absorbing walls (absorption "
                   "with the Brownian-bridge test); its histogram density is tested against "
                   "the core's finite-volume Fokker–Planck solution.")
    Params = DriftedBMParams
    params: DriftedBMParams
    state_name = "position"

    @property
    def state_units(self) -> str:
        return "m"

    def sde(self) -> engine.AffineSDE:
        v = float(self.params.velocity.m_as("m/s"))
        d = float(self.params.diffusivity.m_as("m^2/s"))
        return engine.AffineSDE.scalar(v, 0.0, c0=2.0 * d)

    def walls(self) -> list[tuple[str, float, str, float]] | None:
        w = self.params.walls
        if w is None:
            return None
        lo = (w.lower.kind, float(w.lower.position.m_as("m"))) if w.lower else ("none", 0.0)
        hi = (w.upper.kind, float(w.upper.position.m_as("m"))) if w.upper else ("none", 0.0)
        return [(lo[0], lo[1], hi[0], hi[1])]

    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        return [*super().audits(), sde_audits.fokker_planck]

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        free = {"initial": "0 um", "velocity": "1 um/s", "diffusivity": "1 um^2/s",
                "histogram": {"lower": "-10 um", "upper": "25 um", "cells": 70}}
        walled = {"initial": "2 um", "velocity": "1 um/s", "diffusivity": "1 um^2/s",
                  "walls": {"lower": {"kind": "reflecting", "position": "0 um"},
                            "upper": {"kind": "absorbing", "position": "10 um"}},
                  "histogram": {"lower": "0 um", "upper": "10 um", "cells": 50}}
        return [cls._example("particle in free flow, exact", free, "exact", "10 s", "0.1 s",
                             "2 s"),
                cls._example("particle between a wall and a sink", walled, "euler_maruyama",
                             "10 s", "0.01 s", "2 s")]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"initial": "0 um", "velocity": "1 um/s", "diffusivity": "1 um^2/s"}
        return [({**ok, "diffusivity": "1 um/s"}, "diffusivity"),
                ({**ok, "velocity": "1 um"}, "velocity"),
                ({**ok, "walls": {"lower": {"kind": "absorbing", "position": "1 um"}}},
                 "walls")]

