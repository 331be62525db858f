"""The conformance suite that plugin authors run on their own models.

Like scikit-learn's ``check_estimator``: every model — built-in or third-party — must pass the
same checks. Use it from pytest::

    from medtransport.testing import parametrize_with_checks

    @parametrize_with_checks(["oxygen.krogh"])
    def test_conformance(model_check):
        model_check()

or directly: ``check_model("oxygen.krogh")`` runs every check and raises on the first failure;
``run_checks("oxygen.krogh")`` runs them all and returns one :class:`CheckResult` per check.

The checks, chosen by the model's declared tags (:attr:`Model.tags`; a check that names tags
runs only on models that have all of them), each reported by name:

- ``contract`` — id, title, version, description, Params, conserved species, methods and at
  least one example scenario are declared;
- ``registration_matches_model`` — the registered :class:`ModelSpec` (version, tags) agrees
  with the class it points to;
- ``params_schema`` — the parameters produce a JSON Schema;
- ``bad_parameters_rejected`` — each of the model's :meth:`invalid_parameters` is refused with a
  :class:`ScenarioError` naming ``parameters.<field>``;
- ``examples_pass_audits`` — every example scenario runs and passes every audit;
- ``units_on_every_output`` — every variable and coordinate has pint units and a long name;
- ``same_seed_same_output`` — running an example twice with the same seed gives identical
  numbers;
- ``another_seed_differs`` (tag ``stochastic``) — an example with a stochastic method gives
  different numbers with another seed (the seed is used);
- ``netcdf_round_trip`` — the result written to NetCDF reads back with the same values/units;
- ``mass_balance_can_fail`` — the same model with 10 % of its states silently removed after
  the start is refused by the mass-balance audit (the audit is wired to this model);
- ``normalization_can_fail`` — the same model declaring 10 % more initial amount than it
  represents is refused by the normalization audit;
- ``outflow_by_face`` (tag ``grid``) — every boundary face that lets anything through has its
  own outflow route in the ledger, named after the face;
- ``truncation_can_fail`` (tag ``series``) — a series that reports a tail bound ten times its
  tolerance is refused by the truncation audit before the run.

Known failures are declared with reasons, either by the model
(``known_failures = {"check_name": "reason"}`` as a class attribute) or by the test
(``xfail={"model.id": {"check_name": "reason"}}``); they run as strict xfails, so a check
that starts passing is reported too.

This module is also a pytest plugin (entry point ``pytest11``, loaded by pytest in any
environment where medtransport is installed). It provides

- fixtures: ``medtransport_registry`` (a fresh plugin registry for the test),
  ``run_scenario`` (:func:`medtransport.run`), ``audit_failures`` (:func:`failed_audits`),
  ``model_class`` and ``example_scenario`` (for a test marked
  ``@pytest.mark.medtransport_model("oxygen.krogh")``) and ``medtransport_cli`` (runs the
  ``medtransport`` command in-process and returns click's result);
- a "medtransport conformance" section at the end of the test session listing every check's
  result by model and by name (``-p no:medtransport`` turns the plugin off).

Importing it is cheap: the checks import medtransport's heavier modules when they run.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHECKS", "Check", "CheckResult", "ModelCheck", "build_model", "check_model",
           "checks_for", "failed_audits", "iter_checks", "ledger_plot",
           "parametrize_with_checks", "run_checks"]


@dataclass(frozen=True)
class ModelCheck:
    """One named check of one model; call it to run it (raises ``AssertionError``)."""

    model_id: str
    name: str
    function: Callable[[Any], None]
    xfail_reason: str | None = None
    #: The model class when the check was made for a class rather than a registered id.
    model: Any = dataclasses.field(default=None, compare=False)

    def __call__(self) -> None:
        self.function(_model_class(self.model if self.model is not None else self.model_id))

    def __repr__(self) -> str:
        return f"{self.model_id}::{self.name}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``passed``, ``failed``, ``xfailed`` (a known failure that
    failed), ``xpassed`` (a known failure that passed — the declaration is stale)."""

    model_id: str
    name: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ("passed", "xfailed")


def _model_class(model: Any) -> Any:
    if isinstance(model, str):
        from medtransport.plugins import get_registry

        return get_registry().model_class(model)
    return model


def _examples(cls: Any) -> list[dict[str, Any]]:
    examples = cls.example_scenarios()
    assert examples, f"{cls.id} declares no example scenarios (Model.example_scenarios)"
    return [copy.deepcopy(e) for e in examples]


def build_model(cls: Any, scenario: Any) -> Any:
    """An instance of model class ``cls`` (a subclass, say a deliberately broken one) set up
    for ``scenario``, bypassing the registry — what mutant tests run."""
    from medtransport.scenario import load_scenario

    sc = load_scenario(scenario)
    return cls(sc, cls.validate_params(sc.parameters))


def failed_audits(cls: Any, scenario: Any) -> list[str]:
    """The names of the audits that refuse ``cls`` on ``scenario``; raises AssertionError if
    the run passes. For tests that show an audit catching a broken model."""
    from medtransport.errors import AuditFailure
    from medtransport.runner import run

    try:
        run(build_model(cls, scenario))
    except AuditFailure as exc:
        return [r.name for r in exc.report.failures]
    name = scenario.get("name") if isinstance(scenario, dict) else scenario
    raise AssertionError(f"{cls.__name__} passed every audit on {name!r}")


def _registered(cls: Any) -> bool:
    from medtransport.plugins import get_registry

    entry = get_registry().models.get(cls.id)
    try:
        return entry is not None and entry.load() is cls
    except Exception:
        return False


def _run(scenario: dict[str, Any], cls: Any | None = None) -> Any:
    """Run ``scenario`` — through the registry, as users do, when ``cls`` is the registered
    class of its id; else on ``cls`` directly (a class under development, a subclass)."""
    from medtransport.runner import run

    if cls is None or _registered(cls):
        return run(scenario)
    return run(build_model(cls, scenario))


# ----------------------------------------------------------------------------- the checks

def check_contract(cls: Any) -> None:
    import re

    from pydantic import BaseModel

    from medtransport.model import Model

    assert issubclass(cls, Model), "a model subclasses medtransport.Model"
    assert re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$", cls.id), f"bad id {cls.id!r}"
    for attr in ("title", "version", "description"):
        assert isinstance(getattr(cls, attr, None), str) and getattr(cls, attr), \
            f"{cls.id} has no {attr}"
    assert issubclass(cls.Params, BaseModel), "Params is a pydantic model"
    assert cls.conserved, "a model declares at least one conserved species"
    assert cls.methods, "a model offers at least one solver method"
    _examples(cls)


def check_params_schema(cls: Any) -> None:
    from medtransport.schema import params_schema

    schema = params_schema(cls)
    assert schema.get("type") == "object" and schema.get("properties"), \
        f"{cls.id}: the parameter schema has no properties"


def check_bad_parameters_rejected(cls: Any) -> None:
    from medtransport.errors import ScenarioError

    cases = cls.invalid_parameters()
    assert cases, f"{cls.id} declares no invalid parameter sets (Model.invalid_parameters)"
    for parameters, field in cases:
        try:
            cls.validate_params(parameters)
        except ScenarioError as exc:
            paths = [p for p, _ in exc.problems]
            assert any(p == f"parameters.{field}" or p.startswith(f"parameters.{field}.")
                       for p in paths), f"error names {paths}, expected parameters.{field}"
        else:
            raise AssertionError(f"{cls.id} accepted invalid parameters {parameters!r}")


def check_examples_pass_audits(cls: Any) -> None:
    for scenario in _examples(cls):
        ds = _run(scenario, cls)
        assert ds.attrs["audit_status"] == "passed", scenario["name"]


def check_units_on_every_output(cls: Any) -> None:
    from medtransport.units import ureg

    ds = _run(_examples(cls)[0], cls)
    for name, var in {**ds.data_vars, **ds.coords}.items():
        if var.dtype.kind in "OUS":
            continue
        assert "units" in var.attrs, f"{name} has no units"
        ureg.parse_units(var.attrs["units"])
        assert "long_name" in var.attrs, f"{name} has no long_name"


def _numbers(ds: Any) -> dict[str, Any]:
    return {k: v.values for k, v in ds.data_vars.items()}


def check_same_seed_same_output(cls: Any) -> None:
    import numpy as np

    for scenario in _examples(cls):
        scenario.setdefault("seed", 12345)
        a, b = _numbers(_run(scenario, cls)), _numbers(_run(scenario, cls))
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), \
                f"{scenario['name']}: {k} differs between two runs with the same seed"


def check_another_seed_differs(cls: Any) -> None:
    import numpy as np

    stochastic = [s for s in _examples(cls)
                  if (s.get("solver") or {}).get("method", next(iter(cls.methods)))
                  in cls.stochastic_methods]
    assert stochastic, (f"{cls.id} is tagged 'stochastic' but none of its example scenarios "
                        f"uses one of its stochastic methods {sorted(cls.stochastic_methods)}")
    for scenario in stochastic:
        scenario.setdefault("seed", 12345)
        a = _numbers(_run(scenario, cls))
        c = _numbers(_run(dict(scenario, seed=int(scenario["seed"]) + 1), cls))
        assert any(not np.array_equal(a[k], c[k]) for k in a), \
            f"{scenario['name']}: another seed gives identical output (is the seed used?)"


def check_registration_matches_model(cls: Any) -> None:
    from medtransport.plugins import get_registry

    entry = get_registry().models.get(cls.id)
    if entry is None:
        return  # a class checked before it is registered (a plugin's own unit tests)
    spec = entry.spec
    assert spec.version == cls.version, \
        f"ModelSpec version {spec.version!r} but {cls.__name__}.version {cls.version!r}"
    assert frozenset(spec.tags) == frozenset(cls.tags), \
        f"ModelSpec tags {sorted(spec.tags)} but {cls.__name__}.tags {sorted(cls.tags)}"


def check_netcdf_round_trip(cls: Any) -> None:
    import numpy as np

    from medtransport.results import read_netcdf, write_netcdf

    ds = _run(_examples(cls)[0], cls)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.nc"
        write_netcdf(ds, path)
        back = read_netcdf(path)
    for name, var in ds.variables.items():
        assert name in back.variables, f"{name} lost in the file"
        if var.dtype.kind in "fiu":
            assert np.array_equal(var.values, back[name].values), f"{name} changed"
        assert back[name].attrs.get("units") == var.attrs.get("units"), f"{name} units changed"
    assert back.attrs["audit_report"] == ds.attrs["audit_report"]


def _mutant(cls: Any, **overrides: Callable[..., Any]) -> Any:
    return type(f"Broken{cls.__name__}", (cls,), overrides)


def check_mass_balance_can_fail(cls: Any) -> None:
    """A leak the model does not report must be caught by the mass-balance audit."""
    def leaky_simulate(self: Any, progress: Any = None) -> Any:
        traj = cls.simulate(self, progress)
        for sp in self.conserved:
            var = traj.states[sp.variable]
            factor = [1.0] + [0.9] * (var.sizes["time"] - 1)
            import xarray as xr

            traj.states[sp.variable] = var * xr.DataArray(factor, dims="time")
            traj.states[sp.variable].attrs.update(var.attrs)
        return traj

    broken = _mutant(cls, simulate=leaky_simulate)
    for scenario in _examples(cls):
        names = failed_audits(broken, scenario)
        assert any(n.startswith("mass_balance") for n in names), names


def check_normalization_can_fail(cls: Any) -> None:
    """Declaring more than is represented must be caught by the normalization audit."""
    def inflated(self: Any) -> Any:
        return {k: v * 1.1 for k, v in cls.initial_amounts(self).items()}

    broken = _mutant(cls, initial_amounts=inflated)
    names = failed_audits(broken, _examples(cls)[0])
    assert any(n.startswith("normalization") for n in names), names


def check_outflow_by_face(cls: Any) -> None:
    """Every face that lets flux through is a route of the ledger's outflow."""
    for scenario in _examples(cls):
        model = build_model(cls, scenario)
        trajectory = model.simulate()
        open_faces = sorted(f for f, bc in model.boundaries.items() if bc.lets_through)
        for species in model.conserved:
            routes = list(trajectory.ledgers[species.name].outflow)
            missing = [f for f in open_faces if not any(f in r for r in routes)]
            assert not missing, (f"{scenario['name']}: faces {missing} let {species.name} "
                                 f"through but the ledger's outflow routes are {routes}")


@dataclass(frozen=True)
class _Untrustworthy:
    """A truncation as reported, but with a tail bound ten times its tolerance."""

    inner: Any

    def __getattr__(self, name: str) -> Any:
        if name == "tail_bound":
            return 10.0 * float(self.inner.tolerance) + 1e-300
        return getattr(self.inner, name)


def check_truncation_can_fail(cls: Any) -> None:
    """A series whose tail bound exceeds its tolerance must be refused before the run."""
    def too_short(self: Any) -> list[Any]:
        return [_Untrustworthy(t) for t in cls.truncations(self)]

    broken = _mutant(cls, truncations=too_short)
    series = [s for s in _examples(cls) if build_model(cls, s).truncations()]
    assert series, f"{cls.id} is tagged 'series' but no example scenario reports a truncation"
    for scenario in series:
        names = failed_audits(broken, scenario)
        assert any(n.startswith("truncation") for n in names), names


@dataclass(frozen=True)
class Check:
    """A conformance check: its function, the tags a model needs for it to apply, and what
    it shows."""

    name: str
    function: Callable[[Any], None]
    requires: frozenset[str] = frozenset()
    description: str = ""

    def applies_to(self, tags: Iterable[str]) -> bool:
        return self.requires <= frozenset(tags)


_CHECKS: tuple[Check, ...] = (
    Check("contract", check_contract, description="the model declares the contract"),
    Check("registration_matches_model", check_registration_matches_model,
          description="the ModelSpec agrees with the class"),
    Check("params_schema", check_params_schema, description="Params give a JSON Schema"),
    Check("bad_parameters_rejected", check_bad_parameters_rejected,
          description="invalid parameters are refused naming the field"),
    Check("examples_pass_audits", check_examples_pass_audits,
          description="every example passes every audit"),
    Check("units_on_every_output", check_units_on_every_output,
          description="units and long names on every output"),
    Check("same_seed_same_output", check_same_seed_same_output,
          description="same seed, same numbers"),
    Check("another_seed_differs", check_another_seed_differs, frozenset({"stochastic"}),
          "another seed, other numbers"),
    Check("netcdf_round_trip", check_netcdf_round_trip,
          description="NetCDF keeps values, units and the audit report"),
    Check("mass_balance_can_fail", check_mass_balance_can_fail,
          description="an unreported leak is refused"),
    Check("normalization_can_fail", check_normalization_can_fail,
          description="an inflated initial amount is refused"),
    Check("outflow_by_face", check_outflow_by_face, frozenset({"grid"}),
          "each open face has an outflow route"),
    Check("truncation_can_fail", check_truncation_can_fail, frozenset({"series"}),
          "a too-short series is refused"),
)

#: Every check by name (name → function), whatever the tags.
CHECKS: dict[str, Callable[[Any], None]] = {c.name: c.function for c in _CHECKS}


def _tags(model: Any) -> frozenset[str]:
    """The model's declared tags: from its registration when given an id (cheap, no import),
    else from the class."""
    if isinstance(model, str):
        from medtransport.plugins import get_registry

        entry = get_registry().models.get(model)
        if entry is not None:
            return frozenset(entry.spec.tags)
        model = _model_class(model)  # raises the registry's "no model ... registered"
    return frozenset(getattr(model, "tags", frozenset()))


def _known_failures(model: Any) -> dict[str, str]:
    """The model's own ``known_failures`` (check → reason); for an id, only once the class is
    importable (a broken import is reported by the ``contract`` check instead)."""
    if isinstance(model, str):
        try:
            model = _model_class(model)
        except Exception:
            return {}
    return dict(getattr(model, "known_failures", None) or {})


def checks_for(model: Any, select: Iterable[str] | None = None) -> list[Check]:
    """The checks that apply to ``model`` (an id or a class) by its tags; ``select`` keeps
    only the named ones."""
    tags = _tags(model)
    chosen = [c for c in _CHECKS if c.applies_to(tags)]
    if select is not None:
        wanted = list(select)
        unknown = sorted(set(wanted) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {sorted(CHECKS)}")
        chosen = [c for c in chosen if c.name in wanted]
    return chosen


def iter_checks(model: Any, xfail: dict[str, str] | None = None,
                select: Iterable[str] | None = None) -> Iterator[ModelCheck]:
    """The checks that apply to ``model`` (an id or a class), with known failures (the
    model's ``known_failures`` and ``xfail``, check name → reason) marked."""
    known = {**_known_failures(model), **(xfail or {})}
    unknown = set(known) - set(CHECKS)
    if unknown:
        raise ValueError(f"known failures name unknown checks {sorted(unknown)}; known: "
                         f"{sorted(CHECKS)}")
    for reason in known.values():
        if not (isinstance(reason, str) and reason.strip()):
            raise ValueError("a known failure needs a reason (a non-empty string)")
    model_id = model if isinstance(model, str) else model.id
    cls = None if isinstance(model, str) else model
    for check in checks_for(model, select):
        yield ModelCheck(model_id, check.name, check.function, known.get(check.name), cls)


def run_checks(model: Any, xfail: dict[str, str] | None = None,
               select: Iterable[str] | None = None) -> list[CheckResult]:
    """Run every applicable check on ``model`` and return each result by name (never
    raises for a failing check)."""
    import time

    results = []
    for check in iter_checks(model, xfail, select):
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            outcome = "xfailed" if check.xfail_reason else "failed"
            if check.xfail_reason:
                detail = f"{check.xfail_reason} ({detail})"
        else:
            outcome, detail = ("xpassed", f"known failure passed: {check.xfail_reason}") \
                if check.xfail_reason else ("passed", "")
        results.append(CheckResult(check.model_id, check.name, outcome, detail,
                                   time.perf_counter() - started))
    return results


def check_model(model: Any, xfail: dict[str, str] | None = None,
                select: Iterable[str] | None = None) -> list[str]:
    """Run every applicable check on ``model``; raise on the first unexpected failure (known
    failures are skipped). Returns the names of the checks that passed."""
    passed = []
    for check in iter_checks(model, xfail, select):
        if check.xfail_reason:
            continue
        check()
        passed.append(check.name)
    return passed


def parametrize_with_checks(models: list[Any], xfail: dict[str, dict[str, str]] | None = None,
                            select: Iterable[str] | None = None) -> Any:
    """A pytest decorator: one test per (model, applicable check), with ids
    ``<model>-<check>``; the test function takes a ``model_check`` argument and calls it.
    Known failures (the model's ``known_failures`` and ``xfail[model_id]``) become strict
    xfails with their reason."""
    import pytest

    xfail = xfail or {}
    select = None if select is None else list(select)
    params = []
    for model in models:
        model_id = model if isinstance(model, str) else model.id
        for check in iter_checks(model, xfail.get(model_id), select):
            marks = [pytest.mark.xfail(reason=check.xfail_reason, strict=True)] \
                if check.xfail_reason else []
            params.append(pytest.param(check, id=f"{model_id}-{check.name}", marks=marks))
    return pytest.mark.parametrize("model_check", params)


# ----------------------------------------------------------------------------- debugging

def _audited_tolerance(dataset: Any, species: str) -> float | None:
    """The mass-balance audit's allowed |residual| for ``species``, from the audit report the
    dataset carries (None if it has none)."""
    import json

    try:
        results = json.loads(dataset.attrs["audit_report"])["results"]
    except (KeyError, TypeError, ValueError):
        return None
    for r in results:
        if r.get("name") == f"mass_balance[{species}]":
            return float(r["tolerance"])
    return None


def ledger_plot(dataset: Any, species: str | None = None, path: str | Path | None = None,
                rtol: float | None = None, atol: float = 0.0) -> Any:
    """Draw the conservation ledger of ``dataset`` (a result, or ``AuditFailure.dataset`` of
    a refused run) for one species: above, the stored amount recomputed from the states
    against what the ledger accounts for and each cumulative term; below, the residual over
    time with the tolerance band: ``±(atol + rtol·scale)`` when ``rtol`` is given, else the one
    the mass-balance audit applied (from the dataset's audit report).
    Returns the matplotlib figure; writes it to ``path`` if given."""
    import numpy as np
    from matplotlib.figure import Figure

    names = [str(v)[: -len("_residual")] for v in dataset.data_vars
             if str(v).endswith("_residual")]
    if not names:
        raise ValueError("the dataset has no ledger variables (<species>_residual); it was "
                         "not produced by medtransport.run")
    species = species or names[0]
    if species not in names:
        raise ValueError(f"no ledger for {species!r}; the dataset has {', '.join(names)}")
    t = np.asarray(dataset["time"].values, dtype=float)
    units = dataset[f"{species}_stored"].attrs.get("units", "")
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t, dataset[f"{species}_stored"].values, label="stored (recomputed)")
    top.plot(t, dataset[f"{species}_expected"].values, "--", label="ledger expects")
    scale = float(np.max(np.abs(dataset[f"{species}_stored"].values)))
    for term in ("inflow", "outflow", "sink", "source"):
        var = dataset.get(f"{species}_{term}")
        if var is not None:
            top.plot(t, var.values, ":", label=f"{term} ({var.attrs.get('routes', '')})")
            scale = max(scale, float(np.max(np.abs(var.values))))
    top.set_ylabel(f"{species} [{units}]")
    top.set_title("conservation ledger")
    top.legend(fontsize="small")
    residual = np.asarray(dataset[f"{species}_residual"].values, dtype=float)
    bottom.plot(t, residual, "o-", ms=3, label="residual = stored − expected")
    band = atol + rtol * scale if rtol is not None else _audited_tolerance(dataset, species)
    if band is not None:
        bottom.axhspan(-band, band, alpha=0.2, label=f"tolerance ±{band:.3g}")
    bottom.axhline(0.0, color="grey", lw=0.5)
    bottom.set_xlabel("time [s]")
    bottom.set_ylabel(f"residual [{units}]")
    bottom.legend(fontsize="small")
    fig.suptitle(str(dataset.attrs.get("title", "")))
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig


# ----------------------------------------------------------------------------- pytest plugin

_RESULTS_KEY = "medtransport_check"
#: Per pytest session (innermost last: a session may run another in-process, as pytester
#: does), nodeid → CheckResult of its conformance tests, for the summary.
_SESSIONS: list[dict[str, CheckResult]] = []


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "medtransport_model(id): the model a test is about "
                                       "(for the model_class and example_scenario fixtures)")
    _SESSIONS.append({})


def pytest_unconfigure(config: Any) -> None:
    if _SESSIONS:
        _SESSIONS.pop()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        check = getattr(getattr(item, "callspec", None), "params", {}).get("model_check")
        if isinstance(check, ModelCheck):
            item.user_properties.append((_RESULTS_KEY, (check.model_id, check.name,
                                                        check.xfail_reason or "")))


def pytest_runtest_logreport(report: Any) -> None:
    props = dict(report.user_properties)
    if _RESULTS_KEY not in props:
        return
    model_id, name, reason = props[_RESULTS_KEY]
    if not _SESSIONS:
        return
    results = _SESSIONS[-1]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
            outcome = "xpassed"  # a known failure that passed fails a strict xfail
        elif report.skipped:
            outcome = "skipped"
        else:
            outcome = report.outcome
        detail = reason if outcome in ("xfailed", "xpassed") else ""
        if outcome == "failed":
            crash = getattr(report.longrepr, "reprcrash", None)
            detail = str(crash.message) if crash is not None else ""
        results[report.nodeid] = CheckResult(model_id, name, outcome, detail.splitlines()[0]
                                             if detail else "", report.duration)
    elif report.when == "teardown" and report.failed:
        results[report.nodeid] = CheckResult(model_id, name, "failed", "error in teardown",
                                             report.duration)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    results = _SESSIONS[-1] if _SESSIONS else {}
    if not results:
        return
    tr = terminalreporter
    tr.write_sep("=", "medtransport conformance")
    by_model: dict[str, list[CheckResult]] = {}
    for r in results.values():
        by_model.setdefault(r.model_id, []).append(r)
    for model_id in sorted(by_model):
        rs = by_model[model_id]
        counts: dict[str, int] = {}
        for r in rs:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        tr.write_line(f"{model_id}: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
        # Passed checks by name on wrapped lines; every other outcome on its own, with why.
        passed = [r.name for r in rs if r.outcome == "passed"]
        if passed:
            lines = textwrap.wrap(", ".join(passed), width=96, initial_indent="    passed: ",
                                  subsequent_indent=" " * 12, break_on_hyphens=False)
            for line in lines:
                tr.write_line(line)
        for r in rs:
            if r.outcome != "passed":
                tr.write_line(f"    {r.outcome}: {r.name}" + (f" — {r.detail}" if r.detail
                                                               else ""),
                              red=r.outcome in ("failed", "xpassed"))


# Fixtures are defined lazily so that importing this module does not import pytest.
try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - the plugin only matters under pytest
    _pytest = None  # type: ignore[assignment]

if _pytest is not None:

    @_pytest.fixture
    def medtransport_registry() -> Iterator[Any]:
        """A fresh plugin registry (entry points loaded anew), reset again afterwards; register
        extra plugins by hand with :func:`medtransport.plugins.register_plugin`."""
        from medtransport.plugins import get_registry, reset_registry

        reset_registry()
        yield get_registry()
        reset_registry()

    @_pytest.fixture
    def run_scenario() -> Callable[..., Any]:
        """:func:`medtransport.run`: scenario (path, mapping or model) → audited Dataset."""
        from medtransport.runner import run

        return run

    @_pytest.fixture
    def audit_failures() -> Callable[[Any, Any], list[str]]:
        """:func:`failed_audits`: (model class, scenario) → names of the audits that refuse
        it; fails the test if the run passes."""
        return failed_audits

    def _marked_model(request: Any) -> str:
        marker = request.node.get_closest_marker("medtransport_model")
        if marker is None or not marker.args:
            raise _pytest.UsageError(f"{request.node.nodeid}: mark the test with "
                                     "@pytest.mark.medtransport_model('<model id>') to use "
                                     f"the {request.fixturename} fixture")
        return str(marker.args[0])

    @_pytest.fixture
    def model_class(request: Any) -> Any:
        """The class of the model named by the test's ``medtransport_model`` marker."""
        return _model_class(_marked_model(request))

    @_pytest.fixture
    def example_scenario(model_class: Any) -> dict[str, Any]:
        """A fresh copy of the first example scenario of the marked model."""
        return _examples(model_class)[0]

    @_pytest.fixture
    def medtransport_cli() -> Callable[..., Any]:
        """Run ``medtransport ARGS...`` in-process; returns click's ``Result`` (``exit_code``,
        ``output``)."""
        from click.testing import CliRunner

        from medtransport.cli import main

        def invoke(*args: str) -> Any:
            return CliRunner().invoke(main, [str(a) for a in args])

        return invoke
