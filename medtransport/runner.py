"""One run: validate → pre-run audits → simulate → post-run audits → Dataset or AuditFailure.

A result is returned only when every audit passes; otherwise :class:`AuditFailure` is raised,
carrying the report and the raw dataset marked ``audit_status = "failed"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from medtransport.audit import AuditContext, AuditReport
from medtransport.audit.finiteness import audit_finiteness
from medtransport.audit.mass_balance import audit_mass_balance
from medtransport.audit.nonnegativity import audit_nonnegativity
from medtransport.audit.normalization import audit_normalization
from medtransport.audit.stability import audit_stability
from medtransport.audit.truncation import audit_truncation
from medtransport.audit.units import audit_units
from medtransport.errors import AuditFailure, MedtransportError, ModelError
from medtransport.isolation import plugin_boundary
from medtransport.model import Model
from medtransport.plugins import get_registry
from medtransport.results import attach_ledger, stamp
from medtransport.scenario import Scenario, load_scenario

__all__ = ["CORE_POST_AUDITS", "CORE_PRE_AUDITS", "MAX_STATE_BYTES", "prepare", "run",
           "run_audited"]

#: The most memory one run may plan to use (saved states and solver working memory together;
#: see :mod:`medtransport.limits`, which also takes the machine's memory into account).
MAX_STATE_BYTES = 6 * 2**30

CORE_PRE_AUDITS = (audit_stability, audit_truncation)
CORE_POST_AUDITS = (audit_units, audit_finiteness, audit_normalization, audit_mass_balance,
                    audit_nonnegativity)


def prepare(scenario: str | Path | Mapping[str, Any] | Scenario, *,
            patients: tuple[int, int] | None = None,
            model_class: type[Model] | None = None) -> Model:
    """Load the scenario, find its model, validate the parameters and build the model (its
    domain and boundaries) without running it. ``patients`` = [start, stop) builds one chunk
    of a population; ``model_class`` replaces the registered class (tests of broken models)."""
    sc = load_scenario(scenario)
    registry = get_registry()
    cls = model_class or registry.model_class(sc.model)
    plugin, version = _plugin_of(sc.model, getattr(cls, "version", "?"))
    from medtransport.limits import precheck

    precheck(sc, patients)
    with plugin_boundary(plugin, version, f"model {sc.model}'s parameter validation"):
        params = cls.validate_params(sc.parameters)
    try:
        model = cls(sc, params) if patients is None else cls(sc, params, patients=patients)
    except (KeyboardInterrupt, MedtransportError):
        raise
    except BaseException as exc:  # the isolation promise: SystemExit too
        raise ModelError(f"model {sc.model} (plugin {plugin} {version}) failed while being "
                         f"set up: {_what(exc)}") from exc
    _check_memory(model)
    return model


def _plugin_of(model_id: str, fallback_version: str) -> tuple[str, str]:
    registry = get_registry()
    if model_id in registry.models:
        return registry.plugin_of(model_id)
    return "unregistered", str(fallback_version)


def _what(exc: BaseException) -> str:
    from medtransport.isolation import describe

    return describe(exc)


def attach_covariates(ds: xr.Dataset, covariates: Any) -> None:
    """A population's sampled covariates, one value per patient, as data variables."""
    added = {name: xr.Variable("patient", values, {
        "units": unit, "long_name": f"{name.replace('_', ' ')} of each patient (sampled)"})
        for name, (values, unit) in covariates.variables().items() if name not in ds}
    # in one merge: each assignment to a Dataset is a merge of its own (alignment, copies)
    ds.update(added)


def _check_memory(model: Model) -> None:
    """Refuse, before allocating, a run that would not fit in memory or would take too long
    (:mod:`medtransport.limits`)."""
    from medtransport.limits import check_resources

    check_resources(model)


def _check_trajectory(model: Model, trajectory: Any, plugin: tuple[str, str]) -> None:
    """What ``simulate`` returned must be a :class:`Trajectory` of a Dataset and ledgers."""
    from medtransport.model import Trajectory

    problem = None
    if not isinstance(trajectory, Trajectory):
        problem = f"returned {type(trajectory).__name__}, expected a Trajectory"
    elif not isinstance(trajectory.states, xr.Dataset):
        problem = (f"returned a Trajectory whose states are "
                   f"{type(trajectory.states).__name__}, expected an xarray.Dataset")
    elif not isinstance(trajectory.ledgers, Mapping):
        problem = (f"returned a Trajectory whose ledgers are "
                   f"{type(trajectory.ledgers).__name__}, expected a mapping")
    if problem:
        raise ModelError(f"model {model.id} (plugin {plugin[0]} {plugin[1]}): simulate "
                         f"{problem}")


def _audit_results(results: Any, what: str, plugin: tuple[str, str]) -> list[Any]:
    """An audit must return a list of AuditResult."""
    from medtransport.audit import AuditResult

    if not isinstance(results, list | tuple) or \
            not all(isinstance(r, AuditResult) for r in results):
        raise ModelError(f"plugin {plugin[0]} {plugin[1]}: {what} returned "
                         f"{type(results).__name__}, expected a list of AuditResult")
    return list(results)


def run(scenario: str | Path | Mapping[str, Any] | Scenario | Model, *,
        progress: Callable[[float], None] | None = None) -> xr.Dataset:
    """Run a scenario and return its audited dataset, or raise :class:`AuditFailure`."""
    return run_audited(scenario, progress=progress)[0]


def run_audited(scenario: str | Path | Mapping[str, Any] | Scenario | Model, *,
                progress: Callable[[float], None] | None = None, provenance: bool = True
                ) -> tuple[xr.Dataset, AuditContext]:
    """:func:`run`, and the context its audits read (what they computed on the way: a
    population chunk keeps the mass balance's sums over patients instead of summing again).
    ``provenance=False``: of the attributes, only the audit report and the timings (a
    population batch; see :func:`medtransport.results.stamp`)."""
    model = scenario if isinstance(scenario, Model) else prepare(scenario)
    registry = get_registry()
    plugin = registry.plugin_of(model.id) if model.id in registry.models else ("unregistered",
                                                                               model.version)
    tolerance = model.tolerance
    report = AuditReport()
    pre = AuditContext(model, tolerance)
    for audit in CORE_PRE_AUDITS:
        report.extend(audit(pre))
    if not report.passed:
        raise AuditFailure(f"{model.id}: refused before running — {report.summary()}: "
                           + "; ".join(r.detail for r in report.failures), report=report)
    started = time.perf_counter()
    name, version = plugin
    try:
        trajectory = model.simulate(progress)
    except (KeyboardInterrupt, MedtransportError, MemoryError):
        raise  # running out of memory is the input's size, not the plugin's fault
    except BaseException as exc:  # the isolation promise: SystemExit too
        raise ModelError(f"model {model.id} (plugin {name} {version}) failed while "
                         f"simulating: {_what(exc)}") from exc
    _check_trajectory(model, trajectory, plugin)

    simulated = time.perf_counter()
    with plugin_boundary(name, version, f"auditing the result of model {model.id}"):
        ctx = AuditContext.after_run(model, tolerance, trajectory)
        for audit in CORE_POST_AUDITS:
            report.extend(audit(ctx))
    with plugin_boundary(name, version, f"model {model.id}'s own audits"):
        for audit in model.audits():
            results = _audit_results(audit(ctx), f"model {model.id}'s audit", plugin)
            for result in results:
                result.source = model.id
                report.results.append(result)
    for source, audit in registry.extra_audits(model):
        source_version = registry.versions.get(source, "unknown")
        label = f"audit {getattr(audit, '__name__', audit)!r}"
        with plugin_boundary(source, source_version, label):
            results = _audit_results(audit(ctx), label, (source, source_version))
        for result in results:
            result.source = source
            report.results.append(result)

    audited = time.perf_counter()
    ds = trajectory.states.copy()
    attach_ledger(ds, model, ctx)
    if model.covariates is not None and "patient" in ds.dims:
        attach_covariates(ds, model.covariates)
    stamp(ds, model, report, plugin, provenance)
    # What the audits cost, next to what the simulation cost (the promise is a few percent).
    ds.attrs["simulate_seconds"] = simulated - started
    ds.attrs["audit_seconds"] = audited - simulated
    variables = model.scenario.output.variables
    if report.passed and variables:
        missing = [v for v in variables if v not in ds]
        if missing:
            raise MedtransportError(f"output.variables: {', '.join(missing)} not produced by "
                                    f"{model.id} (it has {', '.join(map(str, ds.data_vars))})")
        keep = set(variables) | {v for v in ds.data_vars if "_" in str(v) and
                                 str(v).split("_")[-1] in ("stored", "expected", "residual")}
        ds = ds[[v for v in ds.data_vars if v in keep]]
    if not report.passed:
        raise AuditFailure(f"{model.id}: the books do not balance — {report.summary()}: "
                           + "; ".join(f"{r.name}: {r.detail}" for r in report.failures),
                           report=report, dataset=ds)
    return ds, ctx
