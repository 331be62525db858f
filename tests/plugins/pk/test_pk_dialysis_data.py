"""Dialysis and CRRT events beside a NONMEM data set: the sessions act on every subject, each
with its own central volume, the ``dialysate`` term closes the books at every record, the
removal per session and subject is reported, and a fit predicts with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import failed_audits

CL, V, CLD = 0.6, 40.0, 7.2  # L/h, L at 70 kg; 120 mL/min
T1, T2 = 24.0, 28.0
ROWS = """ID TIME EVID AMT CMT DV MDV WT
1 0 1 1000 1 . 1 60
1 12 0 . 1 20 0 60
1 26 0 . 1 15 0 60
1 48 0 . 1 10 0 60
2 0 1 1500 1 . 1 90
2 24 0 . 1 20 0 90
2 27.5 0 . 1 15 0 90
2 60 0 . 1 10 0 90
"""
DOSE = {1: 1000.0, 2: 1500.0}
WEIGHT = {1: 60.0, 2: 90.0}
SESSION = {"type": "dialysis", "at": f"{T1} h", "duration": f"{T2 - T1} h",
           "clearance": "120 mL/min"}


def _scenario(tmp_path: Path, events: list[dict[str, Any]], rows: str = ROWS) -> Path:
    (tmp_path / "d.csv").write_text(rows)
    sc = {"name": "dialysis with a data set", "model": "pk.one_compartment",
          "parameters": {"clearance": f"{CL} L/h", "central_volume": f"{V} L",
                         "allometric": {"reference_weight": "70 kg", "clearance_exponent": 1,
                                        "volume_exponent": 1}},
          "data": {"path": "d.csv", "format": "nonmem",
                   "units": {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WT": "kg"},
                   "covariates": {"WT": "weight"}},
          "events": events, "time": {"stop": "72 h", "step": "15 min"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def _closed_form(subject: int, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Concentration of a bolus with one session, and the drug it removed, written out:
    k = CL/V outside, (CL + CL_D)/V inside, CL and V scaled by the subject's weight."""
    v, cl = V * WEIGHT[subject] / 70, CL * WEIGHT[subject] / 70
    k, k2 = cl / v, (cl + CLD) / v
    dose = DOSE[subject]
    a1 = dose * np.exp(-k * T1)
    a2 = a1 * np.exp(-k2 * (T2 - T1))
    a = np.where(t < T1, dose * np.exp(-k * t),
                 np.where(t < T2, a1 * np.exp(-k2 * (t - T1)), a2 * np.exp(-k * (t - T2))))
    return a / v, CLD / (cl + CLD) * (a1 - a2)


def test_each_subject_follows_its_closed_form_and_its_books_close(tmp_path: Path) -> None:
    ds = run(_scenario(tmp_path, [SESSION]))
    assert ds.attrs["audit_status"] == "passed"
    ids, t = ds["ID"].values, ds["TIME"].values
    for subject in (1, 2):
        rows = ids == subject
        want, removed = _closed_form(subject, t[rows])
        np.testing.assert_allclose(ds["concentration"].values[rows], want, rtol=1e-10)
        j = int(np.flatnonzero(ds["subject_id"].values == subject)[0])
        np.testing.assert_allclose(float(ds["dialysis_removed"].values[0, j]), removed,
                                   rtol=1e-10)
        # the grid books: body = dose − eliminated − dialysate
        body = ds["amount"].isel(patient=j).sum("compartment").values
        np.testing.assert_allclose(body, DOSE[subject] - ds["eliminated"].values[:, j]
                                   - ds["dialysate"].values[:, j], atol=1e-10 * 1500)
    assert float(np.abs(ds["record_drug_residual"]).max()) < 1e-9 * 1500


def test_a_levels_only_data_set_takes_doses_and_sessions_from_the_events(
        tmp_path: Path) -> None:
    levels = "\n".join(line for line in ROWS.splitlines() if " 1 1000 " not in line
                       and " 1 1500 " not in line and not line.startswith("2 ")) + "\n"
    ds = run(_scenario(tmp_path, [{"type": "bolus", "amount": "1000 mg"}, SESSION], levels))
    assert ds.attrs["audit_status"] == "passed"
    want, removed = _closed_form(1, ds["TIME"].values)
    np.testing.assert_allclose(ds["concentration"].values, want, rtol=1e-10)
    np.testing.assert_allclose(float(ds["dialysis_removed"].values.reshape(-1)[0]), removed,
                               rtol=1e-10)


def test_crrt_beside_a_data_set_clears_every_subject_from_its_start(tmp_path: Path) -> None:
    ds = run(_scenario(tmp_path, [{"type": "crrt", "at": "6 h", "clearance": "1.2 L/h"}]))
    assert ds.attrs["audit_status"] == "passed"
    d = ds["dialysate"].values  # (time, patient)
    t = ds["time"].values / 3600
    assert np.all(d[t <= 6.0] == 0) and np.all(d[-1] > 0)
    # CRRT and the body's own clearance act on the same amount: their shares are fixed
    for j, subject in enumerate(ds["subject_id"].values):
        cl = CL * WEIGHT[int(subject)] / 70
        after = ds["eliminated"].values[-1, j] - np.interp(6.0, t, ds["eliminated"].values[:, j])
        assert d[-1, j] / after == pytest.approx(1.2 / cl, rel=1e-9)


def test_removal_not_booked_is_caught_with_a_data_set(tmp_path: Path) -> None:
    from medtransport_pk.model import OneCompartment

    class Unbooked(OneCompartment):
        def _engine_kinetics(self) -> Any:
            kin = super()._engine_kinetics()
            kin.dialysis = None
            return kin

    path = _scenario(tmp_path, [SESSION])
    names = failed_audits(Unbooked, path)
    assert "record_books[drug]" in names


def test_dose_events_beside_dose_records_are_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        run(_scenario(tmp_path, [{"type": "bolus", "amount": "1 mg"}, SESSION]))
    assert err.value.problems[0][0] == "events"


def test_michaelis_menten_with_dialysis_is_still_refused_naming_the_event(
        tmp_path: Path) -> None:
    sc = {"name": "mm", "model": "pk.one_compartment",
          "parameters": {"clearance": "0 L/h", "central_volume": "40 L",
                         "michaelis_menten": {"vmax": "50 mg/h", "km": "10 mg/L"}},
          "events": [{"type": "bolus", "amount": "500 mg"}, SESSION],
          "time": {"stop": "48 h", "step": "1 h"}}
    with pytest.raises(ScenarioError) as err:
        run(sc)
    assert err.value.problems[0][0] == "events.1.type"


def test_a_fit_predicts_with_the_sessions(tmp_path: Path) -> None:
    """FOCE-I evaluated at the scenario's values: its PRED (η = 0) is the run's concentration
    at every observation, sessions included (a fit that dropped them would predict the
    higher no-dialysis levels after 24 h); recommending a steady state around sessions is
    refused, naming the events."""
    import medtransport as mt

    path = _scenario(tmp_path, [SESSION])
    ran = run(path)
    sc = yaml.safe_load(path.read_text())
    sc["population"] = {"size": 2, "variability": {"clearance": 0.3, "central_volume": 0.2}}
    sc["residual_error"] = {"additive": "0.5 mg/L", "proportional": 0.1}
    sc["estimate"] = {"method": "foce_i", "evaluate_only": True, "covariance": False}
    fit_path = tmp_path / "fit.yaml"
    fit_path.write_text(yaml.safe_dump(sc))
    fitted = mt.fit(fit_path)
    obs = np.isfinite(fitted["DV"].values)
    assert obs.sum() == 6
    np.testing.assert_allclose(fitted["PRED"].values[obs], ran["concentration"].values[obs],
                               rtol=1e-12)
    t = fitted["TIME"].values
    ids = fitted["ID_record"].values
    later = obs & (t > T1)
    no_dialysis = np.array([DOSE[int(i)] / (V * WEIGHT[int(i)] / 70) * np.exp(-CL / V * x)
                            for i, x in zip(ids[later], t[later], strict=True)])
    assert np.all(fitted["PRED"].values[later] < 0.9 * no_dialysis)
    # a steady-state recommendation has no sessions on its calendar: refused, not wrong
    from medtransport.scenario import load_scenario
    from medtransport_pk.model import OneCompartment

    _, data = OneCompartment.estimation_problem(load_scenario(fit_path))
    np.testing.assert_allclose(data.sessions, [(T1, T2, CLD)], rtol=1e-12)
    with pytest.raises(ScenarioError) as err:
        data.exposure(np.array([[CL, V]]), 24.0)
    assert err.value.problems[0][0] == "events"
