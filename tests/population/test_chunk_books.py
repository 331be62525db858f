"""A chunk's books over time (:func:`medtransport.batch.chunk_ledger`): each ledger part summed
over the chunk's patients, by a compiled pass in the batch's memory order, gives numpy's sum
bit for bit (signed zeros and NaN included), whatever the layout."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from medtransport.batch import _patient_sums, chunk_ledger


def part(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=("time", "patient"),
                        coords={"time": np.arange(values.shape[0]) * 60.0},
                        attrs={"units": "mg", "routes": "doses"})


@pytest.mark.parametrize(("n_t", "n_p"), [(2, 1), (3, 2), (97, 7), (1441, 300), (2, 5000),
                                         (1, 50)])
@pytest.mark.parametrize("layout", ["patient-major", "time-major", "strided"])
def test_sums_over_patients_are_numpy_s_bit_for_bit(n_t: int, n_p: int, layout: str) -> None:
    rng = np.random.default_rng(n_t * n_p)
    # magnitudes over many decades and both signs: any change of the order of the additions
    # shows in the last bits
    base = rng.lognormal(0, 6, (n_p, n_t, 2)) * rng.choice([-1.0, 1.0], (n_p, n_t, 2))
    base[:, 0] = -0.0  # an all −0.0 time sums to +0.0, as numpy starts from 0.0
    if n_t > 2:
        base[n_p // 2, 2] = np.nan
    if layout == "patient-major":  # (time, patient) view of (patient, time) memory
        values = np.ascontiguousarray(base[:, :, 0]).T
    elif layout == "time-major":
        values = np.ascontiguousarray(base[:, :, 0].T)
    else:  # one tissue of (patient, time, tissue) memory
        values = base[:, :, 0].T
    var = part(values)
    got = _patient_sums(var.variable)
    # the compiled pass for a batch's own layouts; numpy's (pairwise) sums otherwise
    if layout == "time-major" or n_t == 1:
        assert got is None
        return
    assert got is not None
    want = var.sum("patient", skipna=False).values
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
    # and the chunk's books carry them, with the part's attributes, as xarray's sum did
    books = chunk_ledger(xr.Dataset({"drug_stored": var}), "drug")
    total = books["drug_stored_chunk_total"]
    assert total.dims == ("chunk", "time") and total.attrs["routes"] == "doses"
    np.testing.assert_array_equal(total.values[0].view(np.int64), want.view(np.int64))


def test_the_chunk_totals_are_the_sums_of_each_part() -> None:
    rng = np.random.default_rng(1)
    stored = rng.random((5, 40)).T.copy().T  # patient-major
    ds = xr.Dataset({"drug_stored": part(stored), "drug_expected": part(stored + 1e-12),
                     "drug_residual": part(stored * 0 - 1e-12)})
    books = chunk_ledger(ds, "drug")
    np.testing.assert_array_equal(books["drug_stored_chunk_total"].values[0],
                                  stored.sum(axis=1))
    assert books["drug_stored_chunk_total"].dims == ("chunk", "time")
    np.testing.assert_array_equal(books["drug_residual_chunk_max"].values[0], 1e-12)
    # a part over time only (kept once for all patients) counts once per patient
    ds["drug_inflow"] = part(stored).isel(patient=0, drop=True)
    np.testing.assert_array_equal(chunk_ledger(ds, "drug")["drug_inflow_chunk_total"].values[0],
                                  stored[:, 0] * 40)
