"""Injections into diffusion.fick: amounts added at given times, placed like the initial
condition, booked as inflow — and refused clearly where they cannot apply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtransport.errors import AuditFailure, ScenarioError
from medtransport.plugins import get_registry
from medtransport.runner import prepare, run

D = 1e-9  # m²/s


def scenario(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "repeated injections into a slab",
        "model": "diffusion.fick",
        "domain": {"shape": "box", "size": ["2 mm"], "cells": [80]},
        "parameters": {"diffusivity": f"{D} m^2/s",
                       "initial": {"kind": "point", "amount": "1 umol/cm^2",
                                   "center": ["0.5 mm"]}},
        "boundaries": {"x-": {"kind": "absorbing"}},
        "events": [{"type": "injection", "at": "60 s", "every": "60 s", "count": 3,
                    "kind": "gaussian", "amount": "0.5 umol/cm^2", "center": ["1.5 mm"],
                    "width": "0.1 mm"}],
        "time": {"stop": "300 s", "step": "0.5 s", "output_every": "30 s"},
    }
    base.update(changes)
    return base


@pytest.mark.parametrize("method", ["crank_nicolson", "backward_euler", "ftcs"])
def test_injected_amounts_are_inflow_and_the_books_close(method: str) -> None:
    ds = run(scenario(solver={"method": method, **({"allow_substeps": True}
                                                   if method == "ftcs" else {})}))
    t = ds["time"].values
    dose = 0.5e-6 / 1e-4  # mol/m² per injection
    given = dose * np.clip(np.floor(t / 60.0 + 1e-9), 0, 3)
    np.testing.assert_allclose(ds["solute_inflow"].values, given, rtol=1e-12, atol=1e-18)
    books = (ds["solute_stored"] + ds["solute_outflow"]).values
    np.testing.assert_allclose(books, 1e-2 + given, rtol=1e-9)
    assert ds.attrs["audit_status"] == "passed"


def test_an_injection_equals_a_second_run_started_from_it() -> None:
    """Linearity: the slab with one injection at 60 s equals the slab without it plus a run
    that starts at 60 s from the injected gaussian alone."""
    one = [{"type": "injection", "at": "60 s", "kind": "gaussian", "amount": "0.5 umol/cm^2",
            "center": ["1.5 mm"], "width": "0.1 mm"}]
    with_it = run(scenario(events=one))
    without = run(scenario(events=[]))
    later = run(scenario(events=[], parameters={
        "diffusivity": f"{D} m^2/s", "initial": {k: v for k, v in one[0].items()
                                                 if k not in ("type", "at")}},
        time={"stop": "240 s", "step": "0.5 s", "output_every": "30 s"}))
    c = with_it["concentration"].values
    expected = without["concentration"].values.copy()
    expected[2:] += later["concentration"].values
    np.testing.assert_allclose(c, expected, rtol=1e-9, atol=1e-12 * np.abs(c).max())


def test_an_unbooked_injection_fails_the_mass_balance() -> None:
    """The mutant adds the solute but hides the inflow: the audit finds a gap of one dose
    per injection given, none before the first."""
    base = get_registry().model_class("diffusion.fick")

    def simulate(self: Any, progress: Any = None) -> Any:
        traj = base.simulate(self, progress)
        traj.ledgers["solute"].inflow.pop("injection")
        return traj

    leaky = type("UnbookedInjection", (base,), {"simulate": simulate})
    with pytest.raises(AuditFailure) as err:
        run(prepare(scenario(), model_class=leaky))
    (mb,) = [r for r in err.value.report.failures if r.name.startswith("mass_balance")]
    assert mb.where["time_s"] >= 60.0
    ds = err.value.dataset
    t = ds["time"].values
    gap = 0.5e-6 / 1e-4 * np.clip(np.floor(t / 60.0 + 1e-9), 0, 3)
    np.testing.assert_allclose(ds["solute_residual"].values, gap, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(("change", "path", "text"), [
    ({"at": "0 s"}, "events.0.at", "at the start"),
    ({"at": "60.2 s"}, "events.0.at", "not on the time grid"),
    ({"amount": "0.5 umol"}, "events.0.amount", "per unit face area"),
    ({"amount": "0.5 mg/cm^2"}, "events.0.amount", "one kind of amount"),
    ({"center": ["3 mm"]}, "events.0.center", "outside"),
    ({"kind": "cloud"}, "events.0.kind", ""),
    ({"volume": "1 mL"}, "events.0.volume", "an injection takes"),
])
def test_bad_injections_name_the_field(change: dict[str, Any], path: str, text: str) -> None:
    event = {**scenario()["events"][0], **change}
    with pytest.raises(ScenarioError) as err:
        prepare(scenario(events=[event]))
    paths = [p for p, _ in err.value.problems]
    assert path in paths, err.value.problems
    assert text in dict(err.value.problems)[path]


@pytest.mark.parametrize("method", ["lattice_walk", "brownian"])
def test_walkers_refuse_injections(method: str) -> None:
    with pytest.raises(ScenarioError, match="finite-volume method") as err:
        prepare(scenario(solver={"method": method, "walkers": 100}, seed=1))
    assert err.value.problems[0][0] == "events.0.type"


def test_occurrences_after_the_end_are_not_given() -> None:
    event = {**scenario()["events"][0], "count": 50}
    ds = run(scenario(events=[event]))
    assert ds["solute_inflow"].values[-1] == pytest.approx(5 * 0.5e-6 / 1e-4, rel=1e-12)
