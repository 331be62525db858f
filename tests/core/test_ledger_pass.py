"""The mass balance's one pass over a batch: the ledger's bits, numpy's extremes, and the
broken models it must still catch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtransport.audit import ledger_pass as lp
from medtransport.audit.extremes import COMPILED_SIZE
from medtransport.ledger import Ledger

T, P = 1441, 800  # > COMPILED_SIZE values: the compiled pass
assert T * P >= COMPILED_SIZE


def batch(patient_major: bool, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(P, T)) * 10.0 ** rng.integers(-3, 4, size=(P, 1))
    return x.T if patient_major else np.ascontiguousarray(x.T)


def routes(n: int, patient_major: bool) -> dict[str, dict[str, np.ndarray]]:
    names = ("inflow", "source", "outflow", "sink")
    return {names[k]: {f"route{k}": batch(patient_major, seed=10 + k)} for k in range(n)}


@pytest.mark.parametrize("patient_major", [True, False])
@pytest.mark.parametrize("n_terms", [1, 2, 3, 4])
@pytest.mark.parametrize("per_patient", [True, False])
def test_expected_and_residual_have_the_ledgers_bits(patient_major: bool, n_terms: int,
                                                      per_patient: bool) -> None:
    stored = batch(patient_major)
    ledger = Ledger.of("drug", "mg", T, **routes(n_terms, patient_major))
    initial = np.linspace(0.0, 5.0, P) if per_patient else 2.5
    done = lp.ledger_pass(stored, initial, ledger.signed_terms(T))
    assert done is not None
    expected = ledger.expected_stored(initial, T)
    np.testing.assert_array_equal(done.expected, expected)
    np.testing.assert_array_equal(done.residual, stored - expected)
    assert done.expected.strides == stored.strides  # laid out like the states
    for a in (stored, done.expected, done.residual,
              *(t for t, _ in ledger.signed_terms(T))):
        assert done.extremes[lp.memory_key(a)] == (a.min(), a.max())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["stored", "inflow", "outflow"])
def test_a_single_non_finite_value_shows_in_its_arrays_extremes(bad: float, where: str
                                                                ) -> None:
    stored = batch(True)
    ledger = Ledger.of("drug", "mg", T, **routes(3, True))
    target = {"stored": stored, "inflow": ledger.inflow["route0"],
              "outflow": ledger.outflow["route2"]}[where]
    target[700, 333] = bad
    done = lp.ledger_pass(stored, 0.0, ledger.signed_terms(T))
    assert done is not None
    lo, hi = done.extremes[lp.memory_key(target)]
    res_lo, res_hi = done.extremes[lp.memory_key(done.residual)]
    if np.isnan(bad):
        assert np.isnan(lo) and np.isnan(hi) and np.isnan(res_lo)
    else:
        assert bad in (lo, hi)
        assert np.isnan(res_lo) or np.isinf(res_lo) or np.isinf(res_hi)


@pytest.mark.parametrize("n_terms", [1, 4])
def test_a_patient_major_batch_gets_numpys_sums_over_patients_and_residual_maxima(
        n_terms: int) -> None:
    stored = batch(True)
    ledger = Ledger.of("drug", "mg", T, **routes(n_terms, True))
    residual_nan = (5, 77)
    stored[residual_nan] = np.nan
    stored[7, :] = -0.0  # a time of negative zeros only: numpy's sum gives +0.0 there
    done = lp.ledger_pass(stored, np.linspace(0.0, 5.0, P), ledger.signed_terms(T))
    assert done is not None and done.patient_sums is not None
    assert done.residual_abs_max is not None
    for a in (stored, done.expected, *(t for t, _ in ledger.signed_terms(T))):
        sums = done.patient_sums[lp.memory_key(a)]
        np.testing.assert_array_equal(sums, a.sum(axis=1))  # bit for bit, NaN where NaN
        np.testing.assert_array_equal(np.signbit(sums), np.signbit(a.sum(axis=1)))
    over_time, over_patients = done.residual_abs_max
    np.testing.assert_array_equal(over_time, np.abs(done.residual).max(axis=0))
    np.testing.assert_array_equal(over_patients, np.abs(done.residual).max(axis=1))
    assert np.isnan(over_time[77]) and np.isnan(over_patients[5])


def test_a_time_major_batch_gets_no_sums() -> None:
    stored = batch(False)
    ledger = Ledger.of("drug", "mg", T, **routes(2, False))
    done = lp.ledger_pass(stored, 0.0, ledger.signed_terms(T))
    assert done is not None
    assert done.patient_sums is None and done.residual_abs_max is None


def test_the_pass_declines_what_it_is_not_for() -> None:
    small = np.zeros((10, 3))
    assert lp.ledger_pass(small, 0.0, [(small, 1.0)]) is None
    stored = batch(True)
    five = [(stored, 1.0)] * (lp.MAX_TERMS + 1)
    assert lp.ledger_pass(stored, 0.0, five) is None
    assert lp.ledger_pass(stored, 0.0, [(stored[:, :1], 1.0)]) is None  # a (T, 1) term
    assert lp.ledger_pass(stored, 0.0, []) is None


# ------------------------------------------------------------------- broken models, caught

SCENARIO: dict[str, Any] = {
    "name": "a batch large enough for the one pass",
    "model": "pk.two_compartment",
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L"},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": P, "variability": {"clearance": 0.3}},
    "time": {"stop": "24 h", "step": "1 min"},
    "seed": 5,
}


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    used: list[bool] = []
    real = lp.ledger_pass

    def spy(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        used.append(out is not None)
        return out

    monkeypatch.setattr(lp, "ledger_pass", spy)
    return used


def _broken(change: Any) -> type:
    from medtransport_pk.model import TwoCompartment

    class Broken(TwoCompartment):
        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            change(traj)
            return traj

    return Broken


def test_a_batch_that_balances_passes_through_the_one_pass(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import medtransport as mt

    used = _spy(monkeypatch)
    ds = mt.run(SCENARIO)
    assert used == [True]
    assert ds.attrs["audit_status"] == "passed"


def test_a_leak_of_one_patient_is_caught_and_located(monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    from medtransport.errors import AuditFailure
    from medtransport.runner import prepare, run

    def leak(traj: Any) -> None:
        traj.ledgers["drug"].outflow["eliminated"][:, 417] *= 0.999

    used = _spy(monkeypatch)
    with pytest.raises(AuditFailure) as info:
        run(prepare(SCENARIO, model_class=_broken(leak)))
    assert used == [True]
    failed = {r.name: r for r in info.value.report.failures}
    assert list(failed) == ["mass_balance[drug]"]
    assert failed["mass_balance[drug]"].where["patient"] == 417


def test_a_nan_in_a_ledger_route_that_is_also_a_state_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from medtransport.errors import AuditFailure
    from medtransport.runner import prepare, run

    def poison(traj: Any) -> None:
        eliminated = traj.ledgers["drug"].outflow["eliminated"]
        # the state "eliminated" shows the same memory as the route
        assert np.shares_memory(eliminated, traj.states["eliminated"].values)
        eliminated[900, 12] = np.nan

    used = _spy(monkeypatch)
    with pytest.raises(AuditFailure) as info:
        run(prepare(SCENARIO, model_class=_broken(poison)))
    assert used == [True]
    names = {r.name for r in info.value.report.failures}
    assert {"finiteness", "mass_balance[drug]"} <= names
