"""``fit(scenario)``: a scenario and its data in, an audited estimate out.

The model's plugin turns the scenario and its records into an estimation problem (its class's
``estimation_problem(scenario) -> (Problem, layout)``; the layout has the records' ``table``
with ID, TIME, EVID, MDV, DV, and ``subject_index``/``obs_position`` placing each record in
the problem's arrays). Then, by ``method``:

- ``map``: each subject's conditional mode at the scenario's population values (POSTHOC);
- ``foce_i``: θ, Ω and σ estimated by FOCE-I (``estimate`` section), then the modes.

The result is an :class:`xarray.Dataset` — ``eta`` (ID × eta), the individual parameters with
units and their posterior SEs, PRED/IPRED/IWRES/CWRES over ``record``, ``ofv``, shrinkage, and
for FOCE-I the estimates with SE, RSE and correlation — whose ``audit_report`` joins the audits
of the prediction runs (books closed at every record of every pass) and of the fit
(:mod:`medtransport.estimation.audits`). A failed audit raises :class:`AuditFailure` with the
report and the dataset.
"""

from __future__ import annotations

import json
import time as _time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.errors import AuditFailure, ScenarioError
from medtransport.estimation.audits import audit_likelihood, audit_map
from medtransport.estimation.diagnostics import diagnostics
from medtransport.estimation.foce import FoceResult, audit_fit, estimate_foce, foce_objective
from medtransport.estimation.map import MapResult, estimate_map, shrinkage
from medtransport.estimation.problem import Problem
from medtransport.estimation.spec import METHODS, EstimateSpec

__all__ = ["EstimateSpec", "fit"]

def _problem(scenario: Any) -> tuple[Problem, Any]:
    from medtransport.plugins import get_registry

    cls = get_registry().model_class(scenario.model)
    make = getattr(cls, "estimation_problem", None)
    if make is None:
        raise ScenarioError([("model", f"{scenario.model} cannot be fitted (its plugin gives no "
                                       "estimation problem)")])
    return make(scenario)


def fit(scenario: Any, *, method: str | None = None,
        data: str | Path | None = None) -> xr.Dataset:
    """Fit ``scenario`` (a path, mapping or Scenario) to its data; see the module docstring.

    ``method`` overrides ``estimate.method``; ``data`` replaces the data section's path."""
    return fit_with_layout(scenario, method=method, data=data)[0]


def fit_with_layout(scenario: Any, *, method: str | None = None,
                    data: str | Path | None = None) -> tuple[xr.Dataset, Any, Problem]:
    """:func:`fit`, also returning the records' layout (the plugin's, with its grid
    prediction for plots) and the final problem. On a failed audit the AuditFailure carries
    the dataset."""
    from medtransport.scenario import load_scenario

    sc = load_scenario(scenario)
    if data is not None:
        if sc.data is None:
            raise ScenarioError([("data", "a data file needs the scenario's data section (its "
                                          "format and units, e.g. data: {path: levels.csv, "
                                          "units: {TIME: h, DV: mg/L}})")])
        section = json.loads(sc.data.model_dump_json(exclude_none=True, round_trip=True))
        sc = sc.with_changes(data={**section, "path": str(Path(data).resolve())})
    spec = sc.estimate if sc.estimate is not None else EstimateSpec()
    method = method or spec.method
    if method not in METHODS:
        raise ScenarioError([("estimate.method", f"expected one of {', '.join(METHODS)}, got "
                                                 f"{method!r}")])
    started = _time.perf_counter()
    problem, layout = _problem(sc)
    report = AuditReport()
    foce: FoceResult | None = None
    first = estimate_map(problem)
    _check_finite(problem, first)
    if method == "foce_i":
        foce = estimate_foce(problem, theta=spec.parameters,
                             omega=spec.variability, sigma=spec.residual_error,
                             evaluate_only=spec.evaluate_only, max_iter=spec.max_iterations,
                             covariance=spec.covariance)
        problem, modes = foce.problem, foce.modes
        report.extend(audit_fit(foce))
        ofv = foce.ofv
    else:
        modes = first
        report.extend(audit_map(problem, modes))
        report.extend(audit_likelihood(problem.residual, _positive_quantiles(modes.ipred)))
        ofv = float(foce_objective(problem, modes).sum())
    report.extend(_books(layout))
    ds = _dataset(sc, problem, modes, layout, ofv, method, foce)
    _grid_predictions(ds, sc, problem, modes, layout)
    ds.attrs.update({
        "title": sc.name, "model_id": sc.model, "method": method,
        "scenario": sc.to_json(), "audit_report": report.to_json(),
        "audit_status": "passed" if report.passed else "failed",
        "fit_seconds": _time.perf_counter() - started,
        "created": _dt_now(), "Conventions": "CF-1.10 (units are pint-parseable)",
    })
    if not report.passed:
        raise AuditFailure(f"{sc.model} fit ({method}): {report.summary()}: "
                           + "; ".join(f"{r.name}: {r.detail}" for r in report.failures),
                           report=report, dataset=ds)
    return ds, layout, problem


def _check_finite(problem: Problem, modes: MapResult) -> None:
    """Refuse, with the reason, a subject whose likelihood is infinite wherever η is."""
    bad = np.flatnonzero(~np.isfinite(modes.objective))
    if bad.size:
        i = int(bad[0])
        zero = problem.counted[i] & ~(np.abs(modes.ipred[i]) > 0)
        why = (f" (it predicts 0 at {int(zero.sum())} of its levels, which a "
               f"{problem.residual.kind} error model cannot explain: add an additive part)"
               if zero.any() and problem.residual.additive == 0 else "")
        raise ScenarioError(f"subject ID {problem.ids[i]}: the likelihood of its levels is not "
                            f"finite at any η the optimiser tried{why}")


def _grid_predictions(ds: xr.Dataset, sc: Any, problem: Problem, modes: MapResult,
                      layout: Any) -> None:
    """IPRED and PRED of every subject on the scenario's time grid, when the plugin's layout
    can predict on a grid (its passes audited like every other)."""
    grid = getattr(layout, "grid", None)
    if grid is None:
        return
    times = np.asarray(sc.time.output_times(), dtype=float) / 3600.0
    if times.size > 5000:
        return
    n = problem.n_subjects
    ipred = grid(problem.individual(modes.eta), times)
    pred = grid(problem.individual(np.zeros((n, len(problem.eta_names)))), times)
    unit = layout.dv_unit
    ds.coords["time"] = ("time", times, {"units": "h", "long_name": "time"})
    ds["ipred_grid"] = (("ID", "time"), ipred, {
        "units": unit, "long_name": "individual prediction on the time grid"})
    ds["pred_grid"] = (("ID", "time"), pred, {
        "units": unit, "long_name": "population prediction on the time grid"})


def _dt_now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _positive_quantiles(pred: np.ndarray) -> np.ndarray:
    pos = pred[np.isfinite(pred) & (pred > 0)]
    return np.quantile(pos, [0.05, 0.5, 0.95]) if pos.size else np.array([1.0])


def _books(layout: Any) -> list[AuditResult]:
    """The prediction passes' books (what the plugin's prediction function measured)."""
    books = getattr(layout, "books", None)
    if books is None:
        return []
    return [AuditResult("runs.mass_balance", bool(books.worst <= 1e-9), float(books.worst),
                        1e-9, "1", f"{books.passes} batched prediction passes "
                        f"({books.subject_runs} subject runs): largest books residual "
                        f"{books.worst:.3g} of the largest amount given", source="estimation")]


def _dataset(sc: Any, problem: Problem, modes: MapResult, layout: Any, ofv: float, method: str,
             foce: FoceResult | None) -> xr.Dataset:
    ids = problem.ids
    table = layout.table
    diag = diagnostics(problem, modes)
    phi = problem.individual(modes.eta)
    se_eta = modes.posterior_se
    eta_names = list(problem.eta_names)
    ds = xr.Dataset(coords={"ID": ("ID", ids), "eta": ("eta", eta_names),
                            "record": ("record", np.arange(len(table)))})
    ds["eta_hat"] = (("ID", "eta"), modes.eta, {
        "units": "1", "long_name": "conditional mode η̂ (MAP, log scale)"})
    ds["eta_se"] = (("ID", "eta"), se_eta, {
        "units": "1", "long_name": "posterior SE of η (Laplace approximation)"})
    ds["eta_covariance"] = (("ID", "eta", "eta_2"), modes.posterior_covariance, {
        "units": "1", "long_name": "posterior covariance of η (Laplace approximation)"})
    ds["eta_shrinkage"] = ("eta", shrinkage(modes.eta, problem.omega), {
        "units": "1", "long_name": "η-shrinkage 1 − SD(η̂)/ω"})
    ds["omega"] = (("eta", "eta_2"), problem.omega, {
        "units": "1", "long_name": "Ω, covariance of η"})
    ds = ds.assign_coords(eta_2=("eta_2", eta_names))
    for j, name in enumerate(problem.parameter_names):
        unit = problem.parameter_units.get(name, "1")
        ds[name] = ("ID", phi[:, j], {"units": unit,
                                      "long_name": f"individual {name.replace('_', ' ')}"})
        if name in eta_names:
            q = eta_names.index(name)
            ds[f"{name}_se"] = ("ID", phi[:, j] * se_eta[:, q], {
                "units": unit, "long_name": f"posterior SE of the individual "
                                            f"{name.replace('_', ' ')} (delta method)"})
        ds[f"typical_{name}"] = ((), float(problem.theta[j]), {
            "units": unit, "long_name": f"typical value of {name.replace('_', ' ')} (θ)"})
    factor = (problem.covariate_factor if problem.covariate_factor is not None
              else np.ones((problem.n_subjects, len(problem.parameter_names))))
    ds.coords["parameter"] = ("parameter", list(problem.parameter_names))
    ds["covariate_factor"] = (("ID", "parameter"), factor, {
        "units": "1", "long_name": "covariate factor on the typical value"})
    ds["objective"] = ("ID", modes.objective, {
        "units": "1", "long_name": "−2 log posterior at the mode (without constants)"})
    ds["ofv"] = ((), ofv, {"units": "1", "long_name": "FOCE-I objective function value "
                                                      "(−2 log L without N·log 2π)"})
    # per record, in the data set's order
    rec_subject = layout.subject_index
    pos = layout.obs_position
    has = pos >= 0
    dv_unit = layout.dv_unit
    ds["ID_record"] = ("record", table.id, {"units": "1",
                                            "long_name": "subject ID of each record"})
    ds["TIME"] = ("record", table.time, {"units": "h", "long_name": "time of the record"})
    ds["EVID"] = ("record", table.evid, {"units": "1", "long_name": "event identifier"})
    ds["MDV"] = ("record", table.mdv, {"units": "1", "long_name": "missing DV"})
    ds["DV"] = ("record", table.dv, {"units": dv_unit, "long_name": "observation"})
    for name, arr, long in (("PRED", diag.pred, "population prediction (η = 0)"),
                            ("IPRED", diag.ipred, "individual prediction (η = η̂)"),
                            ("IWRES", diag.iwres, "individual weighted residual"),
                            ("CWRES", diag.cwres, "conditional weighted residual")):
        values = np.full(len(table), np.nan)
        values[has] = arr[rec_subject[has], pos[has]]
        unit = dv_unit if name in ("PRED", "IPRED") else "1"
        ds[name] = ("record", values, {"units": unit, "long_name": long})
    ds.attrs["residual_error"] = json.dumps(problem.residual.to_spec())
    ds.attrs["residual_error_text"] = problem.residual.describe()
    ds.attrs["n_subjects"] = int(problem.n_subjects)
    ds.attrs["n_observations"] = int(problem.n_observations)
    if foce is not None:
        _foce_tables(ds, foce)
    return ds


def _foce_tables(ds: xr.Dataset, foce: FoceResult) -> None:
    names = foce.parametrisation.names
    ds.attrs["optimiser"] = json.dumps({k: v for k, v in foce.optimiser.items()
                                        if k != "gradient"}, default=float)
    ds.attrs["initial_ofv"] = foce.initial_ofv
    cov = foce.covariance
    if not names:
        return
    ds.coords["estimate"] = ("estimate", names)
    units = []
    problem = foce.problem
    for n in names:
        kind, item = n.split(":", 1)
        units.append(problem.parameter_units.get(item, "1") if kind == "theta"
                     else (problem.residual.unit or "1") if item == "additive" else "1")
    ds["estimate_unit"] = ("estimate", np.array(units, dtype=object))
    if cov is not None:
        ds["estimate_value"] = ("estimate", cov.estimates, {
            "long_name": "estimate: θ, ω² (variance of η), σ (residual SD)"})
        ds.attrs["covariance_step"] = cov.message
        ds.attrs["covariance_method"] = cov.method
        if cov.se is not None:
            ds["estimate_se"] = ("estimate", cov.se, {"long_name": "standard error"})
            ds["estimate_rse"] = ("estimate", cov.rse, {"units": "1",
                                                        "long_name": "relative SE"})
            ds.coords["estimate_2"] = ("estimate_2", names)
            ds["correlation"] = (("estimate", "estimate_2"), cov.correlation, {
                "units": "1", "long_name": "correlation of the estimates"})


def summary_rows(ds: xr.Dataset) -> list[list[str]]:
    """Rows (ID, parameter = value ± SE unit …) for a printed table."""
    rows = []
    params = [str(v) for v in ds.data_vars if f"typical_{v}" in ds]
    for i, sid in enumerate(ds["ID"].values):
        cells = [str(sid)]
        for p in params:
            value = float(ds[p].values[i])
            se = f" ± {float(ds[f'{p}_se'].values[i]):.3g}" if f"{p}_se" in ds else ""
            cells.append(f"{value:.4g}{se} {ds[p].attrs['units']}")
        rows.append(cells)
    return rows
