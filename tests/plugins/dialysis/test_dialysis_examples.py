"""The dialysis example scenarios run, pass their audits and say what they are for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medtransport as mt

EXAMPLES = Path(__file__).parents[3] / "examples" / "scenarios"


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    return {p.stem: mt.run(p) for p in sorted(EXAMPLES.glob("dialysis_*.yaml"))}


def test_every_example_passes(runs: dict) -> None:  # type: ignore[type-arg]
    assert len(runs) == 5
    assert all(ds.attrs["audit_status"] == "passed" for ds in runs.values())


def test_the_thrice_weekly_week_meets_kdoqi(runs: dict) -> None:  # type: ignore[type-arg]
    ds = runs["dialysis_thrice_weekly_hd"]
    assert ds.sizes["session"] == 3 and np.all(ds["kdoqi_adequate"] == 1)
    assert 2.0 < float(ds["std_ktv"]) < 4.0  # KDOQI 2015: stdKt/V ≥ 2.1 thrice weekly


def test_the_under_dialysed_patient_is_flagged(runs: dict) -> None:  # type: ignore[type-arg]
    ds = runs["dialysis_underdialysed"]
    assert np.all(ds["sp_ktv"] < 1.2) and np.all(ds["kdoqi_adequate"] == 0)


def test_the_two_pool_session_rebounds(runs: dict) -> None:  # type: ignore[type-arg]
    ds = runs["dialysis_two_pool_rebound"]
    ce = ds["concentration"].sel(compartment="extracellular")
    t = ds["time"].values / 3600
    after = ce.values[t >= 5.0]
    assert np.all(np.diff(after) > 0)  # rising after the session ends at 5 h
    assert 0.1 < float(ds["rebound"][0]) < 0.3


def test_vancomycin_sessions_remove_a_third(runs: dict) -> None:  # type: ignore[type-arg]
    ds = runs["dialysis_vancomycin_hd"]
    assert np.all((ds["session_removed_fraction"] > 0.25)
                  & (ds["session_removed_fraction"] < 0.40))


def test_the_three_bun_example_solves_a_plausible_patient(runs: dict) -> None:  # type: ignore[type-arg]
    ds = runs["dialysis_three_bun_ukm"]
    # 72 kg: a urea space of 55–70 % of the weight, nPCR in the usual 0.8–1.4 g/kg/day
    assert 0.55 * 72 < float(ds["ukm_volume"]) < 0.70 * 72
    assert 0.8 < float(ds["ukm_npcr"]) < 1.4
    assert abs(float(ds["ukm_sp_ktv"]) - float(ds["measured_sp_ktv_daugirdas"])) < 0.1
    np.testing.assert_allclose(float(ds["urea_nitrogen"][0]), 70.0, rtol=1e-12)
