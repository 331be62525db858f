"""Every built-in model passes the conformance suite that third parties run — and the suite
itself: checks chosen by tags, known failures with reasons, results reported by name, the
pytest plugin's fixtures and summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

import medtransport
from medtransport.plugins import get_registry
from medtransport.testing import (
    check_model,
    checks_for,
    iter_checks,
    ledger_plot,
    parametrize_with_checks,
    run_checks,
)

# pytester runs a small suite in-process to check what the plugin reports.
pytest_plugins = ["pytester"]

BUILTIN = sorted(medtransport.models())


def test_there_are_builtin_models() -> None:
    assert "diffusion.fick" in BUILTIN


@parametrize_with_checks(BUILTIN)
def test_conformance(model_check) -> None:  # type: ignore[no-untyped-def]
    model_check()


# ----------------------------------------------------------------------------- the suite

TAGGED = {"another_seed_differs": "stochastic", "outflow_by_face": "grid",
          "truncation_can_fail": "series"}


@pytest.mark.parametrize("model_id", BUILTIN)
def test_checks_are_chosen_by_the_declared_tags(model_id: str) -> None:
    tags = set(medtransport.models()[model_id]["tags"])
    names = {c.name for c in checks_for(model_id)}
    assert {"contract", "examples_pass_audits", "mass_balance_can_fail"} <= names
    for check, tag in TAGGED.items():
        assert (check in names) == (tag in tags), (model_id, check, tags)


def test_a_model_with_every_tag_gets_every_check_and_one_with_none_the_common_ones() -> None:
    fick = {c.name for c in checks_for("diffusion.fick")}  # grid, series, stochastic
    assert set(TAGGED) <= fick
    pk = {c.name for c in checks_for("pk.one_compartment")}  # compartments, deterministic
    assert not set(TAGGED) & pk and len(fick) == len(pk) + 3


def _fick() -> Any:
    return get_registry().model_class("diffusion.fick")


def _accepts_anything() -> Any:
    """A diffusion model whose 'invalid' parameters are valid: bad_parameters_rejected fails."""
    fick = _fick()

    class AcceptsAnything(fick):  # type: ignore[misc, valid-type]
        id = "test.accepts_anything"

        @classmethod
        def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
            return [({"diffusivity": "1e-9 m^2/s",
                      "initial": {"kind": "uniform", "amount": "1 umol/cm^2"}}, "diffusivity")]

    return AcceptsAnything


def test_each_result_is_reported_by_name() -> None:
    results = {r.name: r for r in run_checks(_accepts_anything(),
                                             select=["contract", "bad_parameters_rejected"])}
    assert list(results) == ["contract", "bad_parameters_rejected"]
    assert results["contract"].outcome == "passed" and results["contract"].ok
    failed = results["bad_parameters_rejected"]
    assert failed.outcome == "failed" and not failed.ok
    assert "accepted invalid parameters" in failed.detail


def test_a_known_failure_declared_by_the_model_is_an_xfail_with_its_reason() -> None:
    class Declared(_accepts_anything()):  # type: ignore[misc]
        known_failures: ClassVar[dict[str, str]] = {
            "bad_parameters_rejected": "its invalid set is valid, on purpose"}

    (result,) = run_checks(Declared, select=["bad_parameters_rejected"])
    assert result.outcome == "xfailed" and result.ok
    assert result.detail.startswith("its invalid set is valid, on purpose")
    assert check_model(Declared, select=["contract", "bad_parameters_rejected"]) == ["contract"]


def test_a_known_failure_that_passes_is_reported() -> None:
    (result,) = run_checks(_fick(), xfail={"contract": "not really"}, select=["contract"])
    assert result.outcome == "xpassed" and not result.ok and "not really" in result.detail


def test_an_unexpected_failure_raises_from_check_model() -> None:
    with pytest.raises(AssertionError, match="accepted invalid parameters"):
        check_model(_accepts_anything(), select=["bad_parameters_rejected"])


@pytest.mark.parametrize(("xfail", "fragment"), [
    ({"no_such_check": "why"}, "unknown checks"),
    ({"contract": ""}, "needs a reason"),
])
def test_known_failures_must_name_a_check_and_give_a_reason(xfail: dict[str, str],
                                                            fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        list(iter_checks("diffusion.fick", xfail))


def test_parametrize_marks_known_failures_as_strict_xfails_with_ids_by_name() -> None:
    mark = parametrize_with_checks(["pk.one_compartment"],
                                   xfail={"pk.one_compartment": {"params_schema": "reason"}})
    params = {p.id: p for p in mark.args[1]}
    assert "pk.one_compartment-contract" in params
    (xfail,) = params["pk.one_compartment-params_schema"].marks
    assert xfail.name == "xfail" and xfail.kwargs == {"reason": "reason", "strict": True}


@pytest.mark.medtransport_model("diffusion.fick")
def test_the_plugin_fixtures(model_class: Any, example_scenario: dict[str, Any],
                             run_scenario: Callable[..., Any],
                             audit_failures: Callable[..., list[str]],
                             medtransport_cli: Callable[..., Any], tmp_path: Path) -> None:
    assert model_class.id == "diffusion.fick" and example_scenario["model"] == "diffusion.fick"
    example_scenario["seed"] = 1
    assert run_scenario(example_scenario).attrs["audit_status"] == "passed"
    assert medtransport_cli("models").exit_code == 0
    with pytest.raises(AssertionError, match="passed every audit"):
        audit_failures(model_class, example_scenario)


def test_the_registry_fixture_is_fresh(medtransport_registry: Any) -> None:
    assert medtransport_registry is get_registry() and "diffusion.fick" in \
        medtransport_registry.models


def test_ledger_plot_shows_the_residual_of_a_refused_run(tmp_path: Path) -> None:
    import xarray as xr

    from medtransport.errors import AuditFailure
    from medtransport.testing import build_model

    fick = _fick()

    class Leaky(fick):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            c = traj.states["concentration"]
            traj.states["concentration"] = (c * xr.DataArray(
                [1.0] + [0.99] * (c.sizes["time"] - 1), dims="time")).assign_attrs(c.attrs)
            return traj

    with pytest.raises(AuditFailure) as refused:
        medtransport.run(build_model(Leaky, fick.example_scenarios()[0]))
    fig = ledger_plot(refused.value.dataset, path=tmp_path / "ledger.png")
    residual_axis = fig.axes[1]
    assert (tmp_path / "ledger.png").stat().st_size > 0
    (line,) = [ln for ln in residual_axis.get_lines() if "residual" in ln.get_label()]
    assert min(line.get_ydata()) < -1e-6  # the 1 % leak, in mol/m²
    assert any("tolerance" in t.get_text() for t in residual_axis.get_legend().get_texts())
    with pytest.raises(ValueError, match="no ledger for 'heat'"):
        ledger_plot(refused.value.dataset, "heat")


def test_the_session_summary_lists_every_check_by_name(pytester: pytest.Pytester) -> None:
    """The pytest plugin (loaded through its pytest11 entry point) prints each result."""
    pytester.makepyfile(test_suite="""
        from medtransport.testing import parametrize_with_checks

        @parametrize_with_checks(
            ["pk.one_compartment"], select=["contract", "params_schema", "examples_pass_audits"],
            xfail={"pk.one_compartment": {"params_schema": "declared for the test",
                                          "examples_pass_audits": "declared too"}})
        def test_conformance(model_check):
            if model_check.name == "examples_pass_audits":
                raise AssertionError("a known failure, failing")
            model_check()
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)  # the strict xfail that passed fails
    summary = result.stdout.str().split("medtransport conformance", 1)[1]
    assert "pk.one_compartment: 1 passed, 1 xfailed, 1 xpassed" in summary
    assert "passed: contract\n" in summary
    assert "xpassed: params_schema — declared for the test" in summary
    assert "xfailed: examples_pass_audits — declared too" in summary
