"""One-compartment pharmacokinetics with system noise on the elimination flux (SDE-based PK;
Tornøe et al. 2005, Overgaard et al. 2005):

    dA = −k·A dt − σ·A dW,        dE = +k·A dt + σ·A dW,        k = CL/V,

after an intravenous bolus A(0) = dose, E(0) = 0. The noise sits on the *flux* A → E, so the
drug eliminated on each path is exactly what left that path's body: A + E = dose on every path,
at every time — the books balance path by path, not only on average. A is a geometric Brownian
motion (λ = −k, μ = σ): log-normal with an exact transition, E[A] = dose·e^{−kt},
Var A = dose²·e^{−2kt}(e^{σ²t} − 1). Euler–Maruyama can step below zero: the engine reflects
(default) or truncates there and counts the steps, and the eliminated amount is what left the
recorded body amount, so the identity holds either way.

The five answers: it counts the drug; in one well-mixed body compartment (the ensemble mean
amount is the state; the paths' spread is reported as quantiles and sample paths); it leaves
by elimination; it is conserved path by path; it starts with the dose.
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
from medtransport.domain import Compartments, NotBool
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.numerics import sde as engine
from medtransport.numerics.ensemble import ensemble_statistics
from medtransport.numerics.sde_moments import exact_moments
from medtransport.units import Qty
from medtransport_sde import __version__

__all__ = ["PKParams", "StochasticOneCompartment", "audit_path_conservation"]

QUANTILES = (0.05, 0.5, 0.95)
_TOL = Tolerance(rtol=1e-12, n_sigma=5.0)


class PKParams(Params):
    """``dose`` (IV bolus), ``volume`` V, ``clearance`` CL, ``system_noise`` σ (1/√time) on
    the elimination flux."""

    dose: Qty("mg", gt=0)
    volume: Qty("L", gt=0)
    clearance: Qty("L/h", gt=0)
    system_noise: Qty("1/h**0.5", ge=0)


def audit_path_conservation(ctx: AuditContext) -> list[AuditResult]:
    """max over paths and times of |A + E − dose| ≤ rtol·dose (from the paths themselves)."""
    assert ctx.trajectory is not None
    res = ctx.trajectory.notes["result"]
    dose = float(ctx.model.params.dose.m_as("mg"))  # type: ignore[attr-defined]
    amount = res.values[:, :, 0]
    eliminated = res.decrease[:, :, 0]
    gap = np.abs(amount + eliminated - dose)
    # a few roundings per step accumulate, relative to the largest amount a path held
    scale = max(dose, float(np.nanmax(np.abs(amount))) if amount.size else dose)
    tol = ctx.tolerance.rtol * scale * 16
    worst = float(np.max(gap)) if np.all(np.isfinite(gap)) else float("nan")
    passed = bool(np.all(gap <= tol))
    k, p = np.unravel_index(int(np.argmax(np.where(np.isfinite(gap), gap, np.inf))), gap.shape)
    detail = (f"max |amount + eliminated − dose| over {gap.shape[1]} paths and {gap.shape[0]} "
              f"times = {worst:.3g} mg")
    if not passed:
        detail += (f"; path {p} at t = {ctx.times[k]:.6g} s: {amount[k, p]:.9g} + "  # type: ignore[index]
                   f"{eliminated[k, p]:.9g} ≠ {dose:.9g} mg")
    return [AuditResult("path_conservation", passed, worst, tol, "mg", detail,
                        {} if passed else {"path": int(p)})]


class StochasticOneCompartment(Model):
    id = "sde.one_compartment_pk"
    title = "One-compartment PK with system noise on elimination"
    version = __version__
    description = ("An IV bolus eliminated at rate CL/V with multiplicative system noise on the "
                   "elimination flux, dA = −kA dt − σA dW, dE = −dA: amount in body + "
                   "eliminated = dose on every path. Ensemble mean, quantiles and sample paths "
                   "of the concentration; exact log-normal transition or Euler–Maruyama / "
                   "Milstein with a mean-square stability check before the first step.")
    Params = PKParams
    params: PKParams
    #: what a person reads (medtransport.display): doses in mg, levels in mg/L
    display_units: ClassVar[dict[str, str]] = {"drug": "mg", "amount": "mg",
                                               "concentration": "mg/L",
                                               "concentration_mean": "mg/L"}
    conserved = (Species("drug", "amount", "amount of drug",
                         "the ensemble mean amount in the body"),)
    tags = frozenset({"stochastic", "compartments"})
    methods: ClassVar[dict[str, Tolerance]] = {"exact": _TOL, "euler_maruyama": _TOL,
                                               "milstein": _TOL}
    stochastic_methods = frozenset({"exact", "euler_maruyama", "milstein"})

    def solver_options(self) -> dict[str, Any]:
        return {"paths": (Annotated[int, Field(ge=2, le=20_000_000), NotBool], 10_000),
                "sample_paths": (Annotated[int, Field(ge=0, le=1000), NotBool], 20),
                "bounds": (Literal["reflect", "truncate"], "reflect")}

    def build_domain(self) -> Compartments:
        from medtransport_sde.processes import ProcessModel

        ProcessModel.check_memory(self, arrays=2)  # type: ignore[arg-type]
        return Compartments(("body",), None)

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"drug": self.params.dose.to("mg")}

    def ledger_units(self) -> dict[str, str]:
        return {"drug": "mg"}

    def routes(self) -> dict[str, list[str]]:
        return {"drug": [f"elimination, CL = {self.params.clearance:~P} with system noise "
                         f"{self.params.system_noise:~P}"]}

    def sde(self) -> engine.AffineSDE:
        k = float((self.params.clearance / self.params.volume).m_as("1/s"))
        sigma = float(self.params.system_noise.m_as("1/s**0.5"))
        return engine.AffineSDE.scalar(0.0, -k, c2=sigma * sigma, lower=0.0)

    def stability(self) -> list[StabilityMargin]:
        from medtransport.audit.ms_stability import ms_stability_margin

        return [ms_stability_margin(self.sde(), self.scenario.time.dt, self.method)]

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        tg = self.scenario.time
        dose = float(self.params.dose.m_as("mg"))
        volume = float(self.params.volume.m_as("L"))
        n = self.options["paths"]
        assert self.seed is not None
        res = engine.simulate(self.sde(), [dose], tg.dt, tg.n_steps, tg.output_steps(),
                              n_paths=n, seed=self.seed % 2**64, scheme=self.method,  # type: ignore[arg-type]
                              bounds_fix=self.options["bounds"], keep_decrease=True)
        if progress is not None:
            progress(1.0)
        assert res.decrease is not None
        times = tg.start.m_as("s") + res.times
        amount = res.values[:, :, 0]
        eliminated = res.decrease[:, :, 0]
        stats = ensemble_statistics(amount / volume, QUANTILES)
        k = min(self.options["sample_paths"], n)
        mean_e, var_e = exact_moments(self.sde(), [dose], res.times)
        conc = "mg/L"
        ds = xr.Dataset(
            {"amount": (("time", "compartment"), amount.mean(axis=1)[:, None],
                        {"units": "mg", "long_name": "mean amount of drug in the body"}),
             "eliminated": ("time", eliminated.mean(axis=1),
                            {"units": "mg", "long_name": "mean amount eliminated"}),
             "concentration_mean": ("time", stats.mean[:, 0],
                                    {"units": conc, "long_name": "mean concentration"}),
             "concentration_mean_se": ("time", stats.mean_se[:, 0],
                                       {"units": conc, "long_name": "SE of the mean "
                                        "concentration"}),
             "concentration_variance": ("time", stats.variance[:, 0],
                                        {"units": "(mg/L)**2",
                                         "long_name": "variance of the concentration"}),
             "concentration_variance_se": ("time", stats.variance_se[:, 0],
                                           {"units": "(mg/L)**2",
                                            "long_name": "SE of the concentration variance"}),
             "concentration_quantiles": (("time", "quantile"), stats.quantiles[:, :, 0],
                                         {"units": conc,
                                          "long_name": "quantiles of the concentration"}),
             "concentration_quantiles_se": (("time", "quantile"), stats.quantile_se[:, :, 0],
                                            {"units": conc, "long_name": "SE of the quantiles"}),
             "sample_paths": (("time", "path"), amount[:, :k] / volume,
                              {"units": conc, "long_name": "sample concentration paths"}),
             "exact_mean": ("time", mean_e[:, 0] / volume,
                            {"units": conc, "long_name": "exact mean concentration"}),
             "exact_sd": ("time", np.sqrt(np.maximum(var_e[:, 0], 0)) / volume,
                          {"units": conc, "long_name": "exact SD of the concentration"})},
            coords={"time": ("time", times, {"units": "s", "long_name": "time"}),
                    "compartment": ("compartment", ["body"], {"units": "dimensionless",
                                                              "long_name": "compartment"}),
                    "quantile": ("quantile", np.asarray(QUANTILES),
                                 {"units": "dimensionless", "long_name": "quantile level"}),
                    "path": ("path", np.arange(k), {"units": "dimensionless",
                                                     "long_name": "path number"})})
        ds.attrs["scheme"] = res.scheme
        ds.attrs["bounds_fix"] = res.bounds_fix
        ds.attrs["paths"] = n
        ledger = Ledger.of("drug", "mg", len(times), sink={"elimination":
                                                            eliminated.mean(axis=1)})
        return Trajectory(ds, {"drug": ledger}, notes={"result": res, "sde": self.sde()})

    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        return [audit_path_conservation, _moments, _state_space]

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_sde.plots import pk_plot

        pk_plot(self, dataset, figure)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        p = {"dose": "500 mg", "volume": "40 L", "clearance": "5 L/h",
             "system_noise": "0.15 1/h**0.5"}
        base = {"model": cls.id, "parameters": p, "seed": 3,
                "time": {"stop": "24 h", "step": "0.1 h", "output_every": "2 h"}}
        return [{**base, "name": "IV bolus with system noise, exact",
                 "solver": {"method": "exact", "paths": 4000, "sample_paths": 5}},
                {**base, "name": "IV bolus with system noise, Euler–Maruyama",
                 "solver": {"method": "euler_maruyama", "paths": 4000, "sample_paths": 5}}]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        ok = {"dose": "500 mg", "volume": "40 L", "clearance": "5 L/h",
              "system_noise": "0.15 1/h**0.5"}
        return [({**ok, "dose": "500 mL"}, "dose"), ({**ok, "volume": "-1 L"}, "volume"),
                ({**ok, "system_noise": "0.15 1/h"}, "system_noise"),
                ({**ok, "clearance": "5 L"}, "clearance")]


def _moments(ctx: AuditContext) -> list[AuditResult]:
    from medtransport.audit.moments import audit_moment

    model: Any = ctx.model
    assert ctx.times is not None
    volume = float(model.params.volume.m_as("L"))
    mean, var = exact_moments(model.sde(), [float(model.params.dose.m_as("mg"))],
                              ctx.times - ctx.times[0])
    from medtransport_sde.audits import null_standard_errors

    ds = ctx.states
    n = ctx.tolerance.n_sigma
    paths = np.full(len(ctx.times), float(ds.attrs["paths"]))
    se_m, se_v = null_standard_errors(model.sde(), float(model.params.dose.m_as("mg")),
                                      ctx.times - ctx.times[0], paths)
    return [audit_moment("moments[mean]", ctx.times, ds["concentration_mean"].values,
                         se_m / volume, mean[:, 0] / volume, n, "mg/L"),
            audit_moment("moments[variance]", ctx.times, ds["concentration_variance"].values,
                         se_v / volume ** 2, var[:, 0] / volume ** 2, n, "(mg/L)²")]


def _state_space(ctx: AuditContext) -> list[AuditResult]:
    from medtransport.audit.state_space import audit_state_space

    assert ctx.trajectory is not None
    res = ctx.trajectory.notes["result"]
    return [audit_state_space("state_space", res.values[:, :, 0], 0.0, np.inf,
                              scheme=res.scheme, fix=res.bounds_fix,
                              violations=int(res.violations.sum()),
                              path_steps=int(res.steps[-1]) * res.n_paths, units="mg")]
