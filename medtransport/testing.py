"""The conformance suite that plugin authors run on their own models.

Like scikit-learn's ``check_estimator``: every model — built-in or third-party — must pass the
same checks. Use it from pytest::

    from medtransport.testing import parametrize_with_checks

    @parametrize_with_checks(["oxygen.krogh"])
    def test_conformance(model_check):
        model_check()

or directly: ``check_model("oxygen.krogh")`` runs every check and raises on the first failure.

The checks (chosen by the model's tags; each reported by name):

- ``contract`` — id, title, version, description, Params, conserved species, methods and at
  least one example scenario are declared;
- ``params_schema`` — the parameters produce a JSON Schema;
- ``bad_parameters_rejected`` — each of the model's :meth:`invalid_parameters` is refused with a
  :class:`ScenarioError` naming ``parameters.<field>``;
- ``examples_pass_audits`` — every example scenario runs and passes every audit;
- ``units_on_every_output`` — every variable and coordinate has pint units and a long name;
- ``same_seed_same_output`` — running an example twice with the same seed gives identical
  numbers; for ``stochastic`` models another seed gives different ones;
- ``netcdf_round_trip`` — the result written to NetCDF reads back with the same values/units;
- ``mass_balance_can_fail`` — the same model with 10 % of its states silently removed after
  the start is refused by the mass-balance audit (the audit is wired to this model);
- ``normalization_can_fail`` — the same model declaring 10 % more initial amount than it
  represents is refused by the normalization audit.

Known failures are declared with ``xfail={"check_name": "reason"}``.

This module is also a pytest plugin (entry point ``pytest11``): it adds the
``medtransport_model`` marker's documentation and nothing expensive at import.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelCheck", "build_model", "check_model", "failed_audits", "iter_checks",
           "parametrize_with_checks"]


@dataclass(frozen=True)
class ModelCheck:
    """One named check of one model; call it to run it (raises ``AssertionError``)."""

    model_id: str
    name: str
    function: Callable[[Any], None]
    xfail_reason: str | None = None

    def __call__(self) -> None:
        self.function(_model_class(self.model_id))

    def __repr__(self) -> str:
        return f"{self.model_id}::{self.name}"


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
    raise AssertionError(f"{cls.__name__} passed every audit on {scenario.get('name')!r}")


def _run(scenario: dict[str, Any], cls: Any | None = None) -> Any:
    from medtransport.runner import run

    return run(scenario if cls is None else build_model(cls, scenario))


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
        ds = _run(scenario)
        assert ds.attrs["audit_status"] == "passed", scenario["name"]


def check_units_on_every_output(cls: Any) -> None:
    from medtransport.units import ureg

    ds = _run(_examples(cls)[0])
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
        a, b = _numbers(_run(scenario)), _numbers(_run(scenario))
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), \
                f"{scenario['name']}: {k} differs between two runs with the same seed"
        method = (scenario.get("solver") or {}).get("method")
        if method in cls.stochastic_methods:
            other = dict(scenario, seed=int(scenario["seed"]) + 1)
            c = _numbers(_run(other))
            assert any(not np.array_equal(a[k], c[k]) for k in a), \
                f"{scenario['name']}: another seed gives identical output (is the seed used?)"


def check_netcdf_round_trip(cls: Any) -> None:
    import numpy as np

    from medtransport.results import read_netcdf, write_netcdf

    ds = _run(_examples(cls)[0])
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


CHECKS: dict[str, Callable[[Any], None]] = {
    "contract": check_contract,
    "params_schema": check_params_schema,
    "bad_parameters_rejected": check_bad_parameters_rejected,
    "examples_pass_audits": check_examples_pass_audits,
    "units_on_every_output": check_units_on_every_output,
    "same_seed_same_output": check_same_seed_same_output,
    "netcdf_round_trip": check_netcdf_round_trip,
    "mass_balance_can_fail": check_mass_balance_can_fail,
    "normalization_can_fail": check_normalization_can_fail,
}


def iter_checks(model: Any, xfail: dict[str, str] | None = None) -> Iterator[ModelCheck]:
    """The checks that apply to ``model`` (an id or a class)."""
    xfail = xfail or {}
    unknown = set(xfail) - set(CHECKS)
    if unknown:
        raise ValueError(f"xfail names unknown checks {sorted(unknown)}; known: {sorted(CHECKS)}")
    model_id = model if isinstance(model, str) else model.id
    for name, function in CHECKS.items():
        yield ModelCheck(model_id, name, function, xfail.get(name))


def check_model(model: Any, xfail: dict[str, str] | None = None) -> list[str]:
    """Run every check on ``model``; raise on the first unexpected failure. Returns the names
    of the checks that passed."""
    passed = []
    for check in iter_checks(model, xfail):
        if check.xfail_reason:
            continue
        check()
        passed.append(check.name)
    return passed


def parametrize_with_checks(models: list[Any], xfail: dict[str, dict[str, str]] | None = None
                            ) -> Any:
    """A pytest decorator: one test per (model, check), with ids ``<model>-<check>``; the test
    function takes a ``model_check`` argument and calls it."""
    import pytest

    xfail = xfail or {}
    params = []
    for model in models:
        model_id = model if isinstance(model, str) else model.id
        for check in iter_checks(model, xfail.get(model_id)):
            marks = [pytest.mark.xfail(reason=check.xfail_reason, strict=True)] \
                if check.xfail_reason else []
            params.append(pytest.param(check, id=f"{model_id}-{check.name}", marks=marks))
    return pytest.mark.parametrize("model_check", params)


# ----------------------------------------------------------------------------- pytest plugin

def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "medtransport_model(id): a conformance test of a model")
