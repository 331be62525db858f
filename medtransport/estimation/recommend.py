"""Dose recommendation for one patient: the regimen whose exposure meets the target, with the
probability of target attainment (PTA) under the patient's posterior.

1. MAP fit of the patient's levels (:func:`medtransport.estimation.fit.fit`): η̂ and the Laplace
   posterior η | y ~ N(η̂, (H/2)⁻¹).
2. ``n_samples`` draws of η from it (seeded); each gives individual parameters.
3. For each candidate interval τ, the plugin's ``exposure(phi, τ)`` gives the steady-state
   exposure per unit dose (AUC24, trough, peak); for linear kinetics exposure is proportional
   to the dose, so every dose D = k·``round_to`` is evaluated at once.
4. PTA(D, τ) = the fraction of draws meeting every target; the recommendation is the
   (D, τ) with the highest PTA, ties broken by the smaller daily dose, then the longer
   interval. The MAP patient's own predicted exposure is reported beside it.
5. The recommended regimen is run for the MAP patient as an ordinary scenario through the
   core runner (every core audit), and its audit table is part of the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pint
import xarray as xr

from medtransport.audit.report import AuditReport
from medtransport.errors import ScenarioError
from medtransport.units import ureg

__all__ = ["Recommendation", "recommend", "save_recommendation_plot"]

#: the largest dose considered, in multiples of the rounding step
MAX_STEPS = 200


@dataclass
class Recommendation:
    dose: float
    dose_unit: str
    interval: float
    pta: float
    predicted: dict[str, float]             # MAP patient's exposure at the recommended regimen
    targets: list[tuple[str, float, float, str]]
    candidates: list[dict[str, Any]]        # best per interval
    report: AuditReport
    run: xr.Dataset
    fit: xr.Dataset
    course_times: np.ndarray
    course_map: np.ndarray
    course_band: np.ndarray                 # (2, T): 5 and 95 % over the draws
    history: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    posterior: str = "laplace"
    effective_samples: float = 0.0

    def sentence(self) -> str:
        parts = ", ".join(f"{m} {self.predicted[m]:.3g} {self.units[m]}"
                          for m in ("auc24", "trough", "peak"))
        how = ("Laplace approximation" if self.posterior == "laplace" else
               f"importance resampling, effective sample size {self.effective_samples:.0f}")
        return (f"recommended: {self.dose:g} {self.dose_unit} every {self.interval:g} h — "
                f"probability of target attainment {100 * self.pta:.0f} % under the posterior "
                f"({how}); predicted for this patient: {parts}")

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title="best dose per interval (steady state)", title_justify="left")
        for col in ("interval", "dose", "PTA", "AUC24", "trough", "peak"):
            table.add_column(col)
        for c in self.candidates:
            table.add_row(f"{c['interval']:g} h", f"{c['dose']:g} {self.dose_unit}",
                          f"{100 * c['pta']:.0f} %",
                          *(f"{c['predicted'][m]:.3g} {self.units[m]}"
                            for m in ("auc24", "trough", "peak")))
        return table

    def dataset(self) -> xr.Dataset:
        ds = xr.Dataset(coords={"time": ("time", self.course_times, {"units": "h"})})
        ds["concentration"] = ("time", self.course_map, {
            "units": self.units["trough"], "long_name": "predicted steady-state course (MAP)"})
        ds["concentration_p05"] = ("time", self.course_band[0], {"units": self.units["trough"]})
        ds["concentration_p95"] = ("time", self.course_band[1], {"units": self.units["trough"]})
        ds["dose"] = ((), self.dose, {"units": self.dose_unit})
        ds["interval"] = ((), self.interval, {"units": "h"})
        ds["pta"] = ((), self.pta, {"units": "1",
                                    "long_name": "probability of target attainment"})
        ds.attrs["recommendation"] = self.sentence()
        ds.attrs["audit_report"] = self.report.to_json()
        ds.attrs["audit_status"] = "passed" if self.report.passed else "failed"
        return ds


def recommend(scenario: Any, *, data: str | None, targets: list[tuple[str, float, float, str]],
              intervals: list[float], round_to: pint.Quantity, n_samples: int = 1000,
              seed: int = 1, posterior: str = "laplace") -> Recommendation:
    """See the module docstring. ``targets`` are (metric, low, high, unit) with metric one of
    auc24, trough, peak."""
    from medtransport.estimation.fit import fit_with_layout
    from medtransport.runner import run

    ds, layout, problem = fit_with_layout(scenario, method="map", data=data)
    if problem.n_subjects != 1:
        raise ScenarioError([("data", f"a recommendation is for one patient; the data have "
                                      f"{problem.n_subjects} subjects (IDs "
                                      f"{', '.join(map(str, problem.ids[:5]))}…)")])
    if not hasattr(layout, "exposure"):
        raise ScenarioError([("model", "this model's plugin gives no dose exposure")])
    dose_unit = layout.table.amount_unit
    try:
        step = float(round_to.to(dose_unit).magnitude)
    except pint.DimensionalityError:
        raise ScenarioError([("--round", f"expected a dose such as '250 {dose_unit}', got "
                                         f"{round_to:~P}")]) from None
    if not step > 0:
        raise ScenarioError([("--round", "must be > 0")])
    dv_unit = layout.dv_unit
    units = {"auc24": f"{dv_unit}·h" if "/" not in dv_unit else
             dv_unit.replace("/", "·h/", 1), "trough": dv_unit, "peak": dv_unit}
    limits = []
    for metric, lo, hi, unit in targets:
        factor = float(ureg.Quantity(1.0, unit).to(
            ureg.parse_units(units[metric].replace("·", "*"))).magnitude)
        limits.append((metric, lo * factor, hi * factor))
    eta_hat = ds["eta_hat"].values[0]
    cov = ds["eta_covariance"].values[0]
    rng = np.random.default_rng(seed)
    draws = rng.multivariate_normal(eta_hat, cov, size=n_samples)
    ess = float(n_samples)
    if posterior == "sir":
        draws, ess = importance_resample(problem, draws, eta_hat, cov, rng)
    elif posterior != "laplace":
        raise ScenarioError([("--posterior", f"expected laplace or sir, got {posterior!r}")])
    zeros = np.zeros(n_samples, dtype=np.int64)
    phi = problem.individual(draws, subjects=zeros)
    phi_hat = problem.individual(eta_hat[None], subjects=zeros[:1])
    doses = step * np.arange(1, MAX_STEPS + 1)
    best: dict[str, Any] | None = None
    candidates = []
    courses = {}
    for tau in intervals:
        per_unit = layout.exposure(phi, tau)
        point = layout.exposure(phi_hat, tau)
        ok = np.ones((doses.size, n_samples), bool)
        ok_map = np.ones(doses.size, bool)
        for metric, lo, hi in limits:
            values = doses[:, None] * per_unit[metric][None, :]
            ok &= (values >= lo) & (values <= hi)
            v_map = doses * point[metric][0]
            ok_map &= (v_map >= lo) & (v_map <= hi)
        pta = ok.mean(axis=1)
        # best for this interval: highest PTA, then smallest dose
        k = int(np.lexsort((doses, -pta))[0])
        cand = {"interval": tau, "dose": float(doses[k]), "pta": float(pta[k]),
                "daily": float(doses[k] * 24.0 / tau), "map_in_target": bool(ok_map[k]),
                "predicted": {m: float(doses[k] * point[m][0])
                              for m in ("auc24", "trough", "peak")}}
        candidates.append(cand)
        courses[tau] = (per_unit["times"], doses[k] * point["course"][0],
                        doses[k] * np.percentile(per_unit["course"], [5, 95], axis=0))
        key = (-round(cand["pta"], 3), cand["daily"], -tau)
        if best is None or key < best["key"]:
            best = {**cand, "key": key}
    assert best is not None
    if best["pta"] == 0:
        raise ScenarioError([("--target", f"no dose in {step:g}–{doses[-1]:g} {dose_unit} at "
                                          f"any interval meets the targets for this patient")])
    tau, dose = best["interval"], best["dose"]
    # the recommended regimen, run for the MAP patient through the core runner
    sc = problem_scenario(scenario, ds, problem, layout, dose, tau)
    run_ds = run(sc)
    report = AuditReport.from_json(run_ds.attrs["audit_report"])
    t, c_map, band = courses[tau]
    return Recommendation(dose=dose, dose_unit=dose_unit, interval=tau, pta=best["pta"],
                          predicted=best["predicted"], targets=targets, candidates=candidates,
                          report=report, run=run_ds, fit=ds, course_times=t, course_map=c_map,
                          course_band=band, units=units,
                          history=_history(ds, layout, problem, draws),
                          posterior=posterior, effective_samples=ess)


def importance_resample(problem: Any, draws: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                        rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Sampling–importance resampling (Rubin 1988): draws from the Laplace approximation
    q = N(η̂, Σ) are weighted by p(η | y)/q(η) ∝ exp(−O(η)/2)/q(η), with O the −2 log
    posterior of :func:`~medtransport.estimation.map.map_objective` (one batched prediction
    of every draw), and resampled with replacement. Returns the resampled draws and the
    effective sample size (Σw)²/Σw² of the weights."""
    from medtransport.estimation.map import map_objective

    n = draws.shape[0]
    zeros = np.zeros(n, dtype=np.int64)
    f = problem.predict(problem.individual(draws, subjects=zeros), zeros)
    sub = problem.subset(zeros)
    objective = map_objective(sub, draws, f)
    diff = draws - mean
    log_q = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    log_w = -0.5 * objective - log_q
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = float(1.0 / np.sum(w ** 2))
    return draws[rng.choice(n, size=n, replace=True, p=w)], ess


def problem_scenario(scenario: Any, ds: xr.Dataset, problem: Any, layout: Any, dose: float,
                     tau: float) -> Any:
    """The scenario of the recommended regimen for the MAP patient: the individual
    parameters replace the typical ones (covariate models already applied, with the patient's
    latest covariates where the layout says they changed), doses for 4 days."""
    from medtransport.scenario import load_scenario

    sc = load_scenario(scenario)
    params = {k: v for k, v in sc.parameters.items()
              if k not in ("allometric", "renal_function", "covariate_effects",
                           "covariate_interpolation") and k not in problem.parameter_names}
    latest = getattr(layout, "latest", None)
    for j, name in enumerate(problem.parameter_names):
        value = float(ds[name].values[0]) * (1.0 if latest is None else float(latest[0][j]))
        params[name] = f"{value:.10g} {problem.parameter_units[name]}"
    count = max(2, math.ceil(96.0 / tau))
    stop = count * tau
    raw = sc.model_dump(mode="json", exclude_none=True)
    for key in ("population", "residual_error", "estimate", "data", "output"):
        raw.pop(key, None)
    raw.update(parameters=params, events=layout.regimen_events(dose, tau, count),
               time={"stop": f"{stop:g} h", "step": "6 min"},
               name=f"{sc.name}: recommended {dose:g} {layout.table.amount_unit} every "
                    f"{tau:g} h")
    return load_scenario(raw, base_dir=sc.source_dir)


def _history(ds: xr.Dataset, layout: Any, problem: Any, draws: np.ndarray) -> dict[str, Any]:
    """The fitted course over the measured period with a 90 % band, for the plot."""
    grid = getattr(layout, "grid", None)
    if grid is None:
        return {}
    t_end = float(np.nanmax(ds["TIME"].values)) * 1.05 + 1.0
    times = np.linspace(0.0, t_end, 300)
    zeros = np.zeros(min(200, draws.shape[0]), dtype=np.int64)
    phi_hat = problem.individual(ds["eta_hat"].values[:1], subjects=zeros[:1])
    courses = np.stack([grid(problem.individual(d[None], subjects=zeros[:1]), times)[0]
                        for d in draws[:zeros.size]])
    obs = np.isfinite(ds["DV"].values) & np.isfinite(ds["IPRED"].values)
    return {"times": times, "map": grid(phi_hat, times)[0],
            "band": np.percentile(courses, [5, 95], axis=0),
            "level_times": ds["TIME"].values[obs], "levels": ds["DV"].values[obs]}


def save_recommendation_plot(rec: Recommendation, path: str) -> None:
    """Left: the levels and the fitted course with its 90 % band; right: the recommended
    regimen's steady-state interval (MAP course, 90 % band, trough and peak targets)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    unit = rec.units["trough"]
    h = rec.history
    if h:
        left.fill_between(h["times"], h["band"][0], h["band"][1], color="C1", alpha=0.25,
                          label="90 % posterior band")
        left.plot(h["times"], h["map"], color="C1", label="fitted course (MAP)")
        left.scatter(h["level_times"], h["levels"], color="C0", zorder=3, label="levels")
    left.set_xlabel("time [h]")
    left.set_ylabel(f"concentration [{unit}]")
    left.set_title("measured levels and the patient's fitted course")
    left.legend(fontsize=8)
    right.fill_between(rec.course_times, rec.course_band[0], rec.course_band[1], color="C2",
                       alpha=0.25, label="90 % posterior band")
    right.plot(rec.course_times, rec.course_map, color="C2", label="predicted (MAP)")
    for metric, lo, hi, tunit in rec.targets:
        if metric in ("trough", "peak"):
            f = float(ureg.Quantity(1.0, tunit).to(unit).magnitude)
            x = rec.course_times[-1] if metric == "trough" else rec.course_times[0]
            right.errorbar([x], [(lo + hi) / 2 * f], yerr=[[(hi - lo) / 2 * f]], fmt="none",
                           ecolor="k", capsize=6, lw=2, label=f"{metric} target")
    right.set_xlabel("time after a dose at steady state [h]")
    right.set_ylabel(f"concentration [{unit}]")
    right.set_title(f"{rec.dose:g} {rec.dose_unit} every {rec.interval:g} h: AUC24 "
                    f"{rec.predicted['auc24']:.0f} {rec.units['auc24']}, PTA "
                    f"{100 * rec.pta:.0f} %")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
