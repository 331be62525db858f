"""dwi.signal with ``parameters.noise``: magnitude images with Rician / non-central χ noise,
their moments against scipy's distributions, the audit and its mutant (Gaussian noise added to
the magnitude, the common shortcut), the seed, and a Rician-bias-aware ADC fit of the
scenario's own images against a Monte Carlo of the same fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import failed_audits
from medtransport_dwi.maps import monoexponential_maps
from medtransport_dwi.model import DWISignal

SHELLS = [{"b_value": "0 s/mm^2"}, {"b_value": "1000 s/mm^2", "directions": 3},
          {"b_value": "2500 s/mm^2", "directions": 3}]


def scenario(noise: dict[str, Any] | None, seed: int | None = 7,
             shells: list[dict[str, Any]] = SHELLS) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "name": "noisy free water", "model": "dwi.signal",
        "parameters": {"s0": 100.0,
                       "protocol": {"kind": "pgse", "pulse_duration": "10 ms",
                                    "pulse_separation": "30 ms", "shells": shells},
                       "compartments": [{"kind": "free", "diffusivity": "2 um^2/ms"}]},
        "time": {"stop": "40 ms", "step": "0.2 ms", "output_every": "10 ms"}}
    if noise is not None:
        sc["parameters"]["noise"] = noise
    if seed is not None:
        sc["seed"] = seed
    return sc


def _z(sample: np.ndarray, mean: float) -> float:
    return float((sample.mean() - mean) / (sample.std(ddof=1) / np.sqrt(sample.size)))


def test_rician_magnitude_images_follow_the_rice_distribution() -> None:
    ds = run(scenario({"snr": 4.0, "repetitions": 4000}))
    assert ds.attrs["audit_status"] == "passed"
    m = ds["signal_magnitude"]
    assert m.dims == ("repetition", "measurement") and m.shape == (4000, 7)
    sigma = 100.0 / 4.0
    assert m.attrs["noise_sigma"] == pytest.approx(sigma) and m.attrs["coils"] == 1
    for j, nu in enumerate(ds["signal"].values):
        # scipy's Rice distribution: shape ν/σ, scale σ
        assert abs(_z(m.values[:, j], stats.rice.mean(nu / sigma, scale=sigma))) < 4.5, j
    # the Gaussian shortcut's mean would be ν: at b = 2500 (ν ≈ 0.67σ) that is far off
    weak = np.isclose(ds["b_value"].values, 2500.0)
    assert _z(m.values[:, weak].ravel(), float(ds["signal"].values[weak][0])) > 20


def test_non_central_chi_with_four_coils() -> None:
    ds = run(scenario({"snr": 5.0, "coils": 4, "repetitions": 4000}))
    assert ds.attrs["audit_status"] == "passed"
    m = ds["signal_magnitude"].values
    sigma = 20.0
    for j, nu in enumerate(ds["signal"].values):
        # M² / σ² is non-central χ² with 2L = 8 degrees of freedom and non-centrality ν²/σ²
        dist = stats.ncx2(8, (nu / sigma) ** 2, scale=sigma ** 2)
        assert abs(_z(m[:, j], dist.expect(np.sqrt))) < 4.5, j
        assert abs(_z(m[:, j] ** 2, dist.mean())) < 4.5, j


def test_gaussian_noise_on_the_magnitude_is_caught_by_the_audit() -> None:
    def gaussian(self: DWISignal, clean: np.ndarray) -> xr.DataArray:
        good = DWISignal._magnitude(self, clean)
        rng = np.random.default_rng(1)
        sigma = good.attrs["noise_sigma"]
        return good.copy(data=clean + sigma * rng.standard_normal(good.shape))

    sc = scenario({"snr": 4.0, "repetitions": 500})
    assert run(sc).attrs["audit_status"] == "passed"  # the control
    broken = type("GaussianMagnitudeDWI", (DWISignal,), {"_magnitude": gaussian})
    assert "magnitude_noise" in failed_audits(broken, sc)


def test_noise_is_reproducible_from_the_seed_and_seeded_when_absent() -> None:
    a = run(scenario({"snr": 10.0, "repetitions": 3}))
    b = run(scenario({"snr": 10.0, "repetitions": 3}))
    c = run(scenario({"snr": 10.0, "repetitions": 3}, seed=8))
    np.testing.assert_array_equal(a["signal_magnitude"].values, b["signal_magnitude"].values)
    assert not np.array_equal(a["signal_magnitude"].values, c["signal_magnitude"].values)
    # no seed: one is drawn and recorded, and replays the same images
    d = run(scenario({"snr": 10.0, "repetitions": 3}, seed=None))
    replay = run(scenario({"snr": 10.0, "repetitions": 3}, seed=int(d.attrs["seed"])))
    np.testing.assert_array_equal(d["signal_magnitude"].values,
                                  replay["signal_magnitude"].values)
    # without noise the run stays deterministic: no magnitude images
    assert "signal_magnitude" not in run(scenario(None))


@pytest.mark.parametrize("noise, field", [({"snr": -1}, "parameters.noise.snr"),
                                          ({"snr": 10, "coils": 0}, "parameters.noise.coils"),
                                          ({"coils": 2}, "parameters.noise.snr")])
def test_bad_noise_names_the_field(noise: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        run(scenario(noise))
    assert any(p.startswith(field) for p, _ in exc.value.problems), exc.value.problems


def test_rician_aware_adc_fit_of_the_scenarios_images_against_a_monte_carlo() -> None:
    """Each repetition is one voxel: the Rician-aware fit's mean ADC is within 4 standard errors
    of the truth and its reported SE matches the Monte Carlo spread within 10 %, while the
    Gaussian fit of the same images is biased low by more than 6 of its standard errors."""
    shells = [{"b_value": f"{b} s/mm^2", "directions": 3} for b in (500, 1000, 1500)]
    ds = run(scenario({"snr": 15.0, "repetitions": 800}, shells=[SHELLS[0], *shells]))
    m = ds["signal_magnitude"]
    b = ds["b_value"].values
    aware = monoexponential_maps(m.values, b, rician_sigma=m.attrs["noise_sigma"])
    adc = aware["adc"].values
    spread = adc.std(ddof=1)
    truth = 2e-3  # mm²/s
    assert abs(adc.mean() - truth) < 4 * spread / np.sqrt(adc.size)
    assert abs(np.median(aware["adc_se"].values) / spread - 1) < 0.1
    naive = monoexponential_maps(m.values, b)["adc"].values
    assert (truth - naive.mean()) / (naive.std(ddof=1) / np.sqrt(naive.size)) > 6
