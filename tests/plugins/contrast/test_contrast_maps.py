"""Whole-volume DCE maps: noise-free round trips and the OSIPI reference data fitted as maps (all
curves sharing an input at once) at OSIPI's tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from contrast_osipi_data import delayed_variant, load_dce
from test_contrast_osipi import TOL

from medtransport_contrast import kinetics as kin
from medtransport_contrast.aif import parker_blood, plasma_from_blood
from medtransport_contrast.maps import fit_maps

T = np.arange(0, 300.0, 2.0)
CP = plasma_from_blood(parker_blood(T), 0.42)


def _truth(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ktrans": rng.uniform(0.02, 0.5, n), "ve": rng.uniform(0.1, 0.6, n),
            "vp": rng.uniform(0.005, 0.1, n), "plasma_flow": rng.uniform(10, 100, n),
            "permeability_surface": rng.uniform(0.05, 0.5, n)}


def test_tofts_and_patlak_round_trip_to_1e_6() -> None:
    x = _truth(400)
    c = kin.tofts(T, CP, x["ktrans"] / 60, x["ve"])
    m = fit_maps("tofts", T, c, CP)
    assert np.max(np.abs(m["ktrans"].values - x["ktrans"]) / x["ktrans"]) < 1e-6
    assert np.max(np.abs(m["ve"].values - x["ve"]) / x["ve"]) < 1e-6
    assert m["converged"].values.all() and np.max(m["rms"].values) < 1e-9
    c = kin.extended_tofts(T, CP, x["ktrans"] / 60, x["ve"], x["vp"])
    m = fit_maps("extended_tofts", T, c, CP)
    for k in ("ktrans", "ve", "vp"):
        assert np.max(np.abs(m[k].values - x[k]) / x[k]) < 1e-6, k
    c = kin.patlak(T, CP, x["ktrans"] / 60, x["vp"])
    m = fit_maps("patlak", T, c, CP)
    for k in ("ktrans", "vp"):
        assert np.max(np.abs(m[k].values - x[k]) / x[k]) < 1e-9, k


@pytest.mark.slow
def test_two_compartment_exchange_round_trip_with_delay() -> None:
    x = _truth(20, seed=2)
    t = np.arange(0, 300.0, 1.0)
    cp = plasma_from_blood(parker_blood(t), 0.42)
    c = kin.two_compartment_exchange(t, kin.shift(t, cp, 3.0), x["plasma_flow"] / 6000,
                                     x["permeability_surface"] / 60, x["vp"], x["ve"])
    m = fit_maps("two_compartment_exchange", t, c, cp, delays=[0.0, 1.5, 3.0, 4.5],
                 multistart=True)
    assert np.all(m["delay"].values == 3.0)
    for k in ("plasma_flow", "permeability_surface", "vp", "ve"):
        assert np.max(np.abs(m[k].values - x[k]) / x[k]) < 1e-4, k


def _close(name: str, measured: np.ndarray, reference: np.ndarray) -> np.ndarray:
    atol, rtol = TOL[name]
    return np.abs(measured - reference) <= atol + rtol * np.abs(reference)


def _maps_by_input(rows: list[dict], model: str, c_key: str, cp_key: str, delay_key: str,
                   names: dict[str, str]) -> list[str]:
    """Fit every group of rows sharing times and input as one map; the failures."""
    groups: dict[bytes, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[cp_key].tobytes() + r["t"].tobytes() + bytes([r[delay_key] > 0]),
                          []).append(r)
    failures = []
    for g in groups.values():
        delayed = g[0][delay_key] > 0
        c = np.stack([r[c_key] for r in g])
        m = fit_maps(model, g[0]["t"], c, g[0][cp_key],
                     delays=np.arange(0.0, 10.01, 0.5) if delayed else None)
        for ours, theirs in names.items():
            ref = np.array([r[theirs] for r in g])
            got = m[ours].values
            key = "ktrans" if ours == "permeability_surface" else ours
            ok = _close(key, got, ref)
            failures += [f"{r['label']}: {ours} {v:.4g} vs {e:.4g}"
                         for r, v, e, good in zip(g, got, ref, ok, strict=True) if not good]
        if delayed:
            ref = np.array([r[delay_key] for r in g])
            ok = _close("delay", m["delay"].values, ref)
            failures += [f"{r['label']}: delay" for r, good in zip(g, ok, strict=True) if not good]
    return failures


def test_osipi_tofts_as_maps() -> None:
    rows = load_dce("dce_DRO_data_tofts")
    rows = rows + [delayed_variant(r, 10) for r in rows]
    assert _maps_by_input(rows, "tofts", "C", "ca", "arterialdelay",
                          {"ktrans": "Ktrans", "ve": "ve"}) == []


def test_osipi_extended_tofts_as_maps() -> None:
    rows = load_dce("dce_DRO_data_extended_tofts")
    rows = rows + [delayed_variant(r, 5) for r in rows]
    assert _maps_by_input(rows, "extended_tofts", "C", "ca", "arterialdelay",
                          {"ktrans": "Ktrans", "ve": "ve", "vp": "vp"}) == []


def test_osipi_patlak_as_maps() -> None:
    rows = load_dce("patlak_sd_0.02_delay_0") + load_dce("patlak_sd_0.02_delay_5")
    assert _maps_by_input(rows, "patlak", "C_t", "cp_aif", "arterial_delay",
                          {"ktrans": "ps", "vp": "vp"}) == []


@pytest.mark.slow
def test_osipi_two_compartment_exchange_as_maps() -> None:
    """As for the per-curve fits (test_contrast_osipi): 47 of 48 within tolerance, the miss
    being case_8_delayed's barely identifiable PS."""
    rows = load_dce("2cxm_sd_0.001_delay_0") + load_dce("2cxm_sd_0.001_delay_5")
    for r in rows:
        r["plasma_flow_ref"] = r["fp"]
    failures = _maps_by_input(rows, "two_compartment_exchange", "C_t", "cp_aif",
                              "arterial_delay", {"plasma_flow": "fp",
                                                 "permeability_surface": "ps", "vp": "vp",
                                                 "ve": "ve"})
    assert len(failures) <= 1 and all(f.startswith("case_8_delayed") for f in failures), failures


def test_a_wrong_input_unit_fails_the_osipi_maps() -> None:
    """Mutant: an input 1.5× too large (blood taken for plasma at Hct 0.33) — the fitted
    Ktrans leave OSIPI's tolerance."""
    rows = load_dce("dce_DRO_data_tofts")
    bad = [dict(r, ca=r["ca"] * 1.5) for r in rows]
    assert _maps_by_input(bad, "tofts", "C", "ca", "arterialdelay",
                          {"ktrans": "Ktrans", "ve": "ve"}) != []


def test_threads_do_not_change_the_maps() -> None:
    x = _truth(2 * 8192 + 5, seed=8)
    c = kin.tofts(T, CP, x["ktrans"] / 60, x["ve"])
    c += np.random.default_rng(0).normal(0, 0.01, c.shape)
    one, two = fit_maps("tofts", T, c, CP), fit_maps("tofts", T, c, CP, threads=2)
    for k in one:
        # voxels are independent; only the summation order of a few reductions can differ
        np.testing.assert_allclose(one[k].values, two[k].values, rtol=1e-6, atol=1e-12)
