"""The ledger's sums: initial + inflow + source − outflow − sink, for one run or a batch."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.ledger import Ledger


def batch_ledger() -> tuple[Ledger, dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    solver = rng.uniform(0.0, 1.0, (6, 9, 4))  # (patient, time, state), patient-major
    routes = {
        "bolus": np.linspace(0.0, 2.0, 9),  # the same for every patient, (T,)
        "infusion": solver[..., 0].T,  # (T, P) views into a solver's array
        "eliminated": solver[..., 1].T,
        "renal": solver[..., 2].T,
        "metabolised": solver[..., 3].T,
    }
    ledger = Ledger.of("drug", "mg", 9,
                       inflow={"bolus": routes["bolus"], "infusion": routes["infusion"]},
                       outflow={"eliminated": routes["eliminated"], "renal": routes["renal"]},
                       sink={"metabolised": routes["metabolised"]})
    return ledger, routes


def test_expected_stored_is_the_signed_sum_of_every_route() -> None:
    ledger, r = batch_ledger()
    initial = np.arange(6.0)
    expected = ((initial[None, :] + r["bolus"][:, None] + r["infusion"])
                - (r["eliminated"] + r["renal"]) - r["metabolised"])
    got = ledger.expected_stored(initial, 9)
    assert got.shape == (9, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(ledger.total("outflow", 9), r["eliminated"] + r["renal"],
                               rtol=1e-15)
    np.testing.assert_array_equal(ledger.total("source", 9), np.zeros(9))


def test_sums_leave_the_models_arrays_alone() -> None:
    """The routes are often views of the model's own outputs: summing in place must happen in
    the ledger's own arrays, never in those."""
    ledger, r = batch_ledger()
    before = {k: v.copy() for k, v in r.items()}
    ledger.expected_stored(1.0, 9)
    for term in ("inflow", "outflow", "sink", "source"):
        ledger.total(term, 9)
    for k, v in r.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_one_run_gives_one_value_per_time() -> None:
    ledger = Ledger.of("drug", "mg", 3, inflow=np.array([0.0, 1.0, 2.0]),
                       outflow=np.array([0.0, 0.5, 0.5]))
    np.testing.assert_allclose(ledger.expected_stored(4.0, 3), [4.0, 4.5, 5.5])
    with pytest.raises(ValueError, match="one value per output time"):
        ledger.expected_stored(4.0, 5)
