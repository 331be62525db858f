"""The fit reads a time-varying covariate as a run of the same data set does (NOCB, LOCF).

Three subjects on IV boluses whose creatinine clearance changes between doses (at a dose
record, and at an observation record), CL = θ·CRCL/100 mL/min, V fixed by covariates. The
fit's PRED (η = 0) must equal the run's concentration at every record, and both the closed
form computed here; the FOCE-I OFV of ``evaluate_only`` must equal that of the same
statistical model with the closed-form predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import medtransport as mt
from medtransport.estimation.foce import estimate_foce
from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError
from medtransport.runner import run

CL, V, DOSE = 4.0, 30.0, 1000.0
#: (time, EVID, CRCL mL/min) per subject; DV is made up below
TIMES = [0.0, 2.0, 6.0, 12.0, 14.0, 20.0, 24.0]
EVID = [1, 0, 0, 1, 0, 0, 0]
CRCL = {1: [100, 100, 100, 50, 50, 50, 50],      # falls at the second dose
        2: [60, 60, 60, 90, 90, 90, 90],          # rises at the second dose
        3: [120, 120, 120, 120, 120, 80, 80]}     # falls at an observation
OMEGA_SD = {"clearance": 0.3, "central_volume": 0.2}


def closed_form(t: float, subject: int, cl_scale: float, v: float, nocb: bool) -> float:
    """Σ_doses D/V·exp(−∫ CL(u)/V du): CL piecewise constant, switching where CRCL changes —
    under NOCB from the time of the record before the change, under LOCF at the change."""
    crcl = CRCL[subject]
    breaks, values = [-np.inf], [crcl[0]]
    for j in range(1, len(TIMES)):
        if crcl[j] != crcl[j - 1]:
            breaks.append(TIMES[j - 1] if nocb else TIMES[j])
            values.append(crcl[j])
    breaks.append(np.inf)
    total = 0.0
    for td, ev in zip(TIMES, EVID, strict=True):
        if ev != 1 or td > t:
            continue
        integral = sum(cl_scale * c / 100.0 / v * max(0.0, min(t, b1) - max(td, b0))
                       for b0, b1, c in zip(breaks[:-1], breaks[1:], values, strict=True))
        total += DOSE / v * np.exp(-integral)
    return total


def write_case(tmp_path: Path, *, interpolation: str | None, population: bool) -> Path:
    rng = np.random.default_rng(3)
    lines = ["ID,TIME,AMT,EVID,MDV,DV,CRCL"]
    for sid in CRCL:
        for t, ev, c in zip(TIMES, EVID, CRCL[sid], strict=True):
            if ev:
                lines.append(f"{sid},{t},{DOSE},1,1,.,{c}")
            else:
                dv = closed_form(t, sid, CL * 1.2, V * 0.9, True) * np.exp(rng.normal(0, 0.1))
                lines.append(f"{sid},{t},0,0,0,{dv:.4f},{c}")
    (tmp_path / "levels.csv").write_text("\n".join(lines) + "\n")
    effect = {"parameter": "clearance", "covariate": "creatinine_clearance", "type": "power",
              "reference": "100 mL/min", "exponent": 1.0}
    params = {"clearance": f"{CL} L/h", "central_volume": f"{V} L",
              "covariate_effects": [effect]}
    if interpolation is not None:
        params["covariate_interpolation"] = interpolation
    sc = {"name": "time-varying CRCL", "model": "pk.one_compartment", "parameters": params,
          "data": {"path": "levels.csv", "units": {"TIME": "h", "AMT": "mg", "DV": "mg/L",
                                                   "CRCL": "mL/min"},
                   "covariates": {"CRCL": "creatinine_clearance"}},
          "time": {"stop": "24 h", "step": "1 h"}}
    if population:
        sc["population"] = {"size": 3, "variability": OMEGA_SD}
        sc["residual_error"] = {"additive": "0.5 mg/L", "proportional": 0.1}
        sc["estimate"] = {"method": "foce_i", "evaluate_only": True, "covariance": False}
    path = tmp_path / f"{interpolation}-{population}.yaml"
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return path


@pytest.mark.parametrize("interpolation", [None, "locf"])
def test_fit_pred_equals_the_runs_concentration_with_a_time_varying_covariate(
        tmp_path: Path, interpolation: str | None) -> None:
    nocb = interpolation != "locf"
    ran = run(write_case(tmp_path, interpolation=interpolation, population=False))
    fitted = mt.fit(write_case(tmp_path, interpolation=interpolation, population=True))
    ids, times = ran["ID"].values, ran["TIME"].values
    want = np.array([closed_form(t, int(i), CL, V, nocb) for i, t in zip(ids, times,
                                                                         strict=True)])
    conc = ran["concentration"].values
    np.testing.assert_allclose(conc, want, rtol=1e-10)
    obs = np.isfinite(fitted["DV"].values)
    assert obs.sum() == 15
    np.testing.assert_array_equal(fitted["TIME"].values, times)
    np.testing.assert_allclose(fitted["PRED"].values[obs], conc[obs], rtol=1e-12, atol=0)


def _closed_form_problem(dv: np.ndarray, cl_of_segments: bool) -> Problem:
    """The fit's statistical model with the closed-form predictions (or, as a mutant, with
    each subject's first CRCL held throughout)."""
    obs_t = np.array([t for t, e in zip(TIMES, EVID, strict=True) if e == 0])
    first = np.array([CRCL[s][0] / 100.0 for s in CRCL])

    def predict(phi: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        out = np.empty((subjects.size, obs_t.size))
        for r, s in enumerate(subjects):
            sid = int(s) + 1
            scale = phi[r, 0] / first[s]         # θ_CL·exp(η), CRCL factor taken out
            for k, t in enumerate(obs_t):
                out[r, k] = (closed_form(t, sid, scale, phi[r, 1], True) if cl_of_segments
                             else DOSE / phi[r, 1] * sum(
                                 np.exp(-phi[r, 0] / phi[r, 1] * (t - td))
                                 for td, e in zip(TIMES, EVID, strict=True)
                                 if e == 1 and td <= t))
        return out

    return Problem(
        predict=predict, dv=dv, observed=np.isfinite(dv),
        parameter_names=("clearance", "central_volume"), theta=np.array([CL, V]),
        eta_names=("clearance", "central_volume"),
        omega=np.diag([OMEGA_SD["clearance"] ** 2, OMEGA_SD["central_volume"] ** 2]),
        residual=ResidualError.parse({"additive": "0.5 mg/L", "proportional": 0.1}, "mg/L"),
        covariate_factor=np.stack([first, np.ones(3)], axis=1))


def test_evaluate_only_ofv_uses_the_time_varying_covariate(tmp_path: Path) -> None:
    fitted = mt.fit(write_case(tmp_path, interpolation=None, population=True))
    obs = np.isfinite(fitted["DV"].values)
    dv = fitted["DV"].values[obs].reshape(3, 5)
    ofv = float(fitted["ofv"].values)
    expected = estimate_foce(_closed_form_problem(dv, True), evaluate_only=True,
                             covariance=False).ofv
    first_only = estimate_foce(_closed_form_problem(dv, False), evaluate_only=True,
                               covariance=False).ofv
    assert abs(first_only - expected) > 1.0       # the test can tell the two apart
    assert ofv == pytest.approx(expected, abs=1e-3)


def test_a_recommendation_is_for_the_patients_latest_covariates(tmp_path: Path) -> None:
    # subject 1's CRCL halves at its second dose: the next regimen is for CL at CRCL 50 mL/min
    from medtransport.estimation.recommend import recommend
    from medtransport.units import Q_

    path = write_case(tmp_path, interpolation=None, population=True)
    lines = (tmp_path / "levels.csv").read_text().splitlines()
    (tmp_path / "one.csv").write_text("\n".join(
        [lines[0], *(r for r in lines[1:] if r.startswith("1,"))]) + "\n")
    rec = recommend(str(path), data=str(tmp_path / "one.csv"),
                    targets=[("auc24", 400.0, 600.0, "mg*h/L")], intervals=[12.0, 24.0],
                    round_to=Q_(250, "mg"), n_samples=200, seed=1)
    cl_first = float(rec.fit["clearance"].values[0])     # at the first record's CRCL 100
    for c in rec.candidates:
        assert c["predicted"]["auc24"] == pytest.approx(
            24.0 / c["interval"] * c["dose"] / (cl_first * 0.5), rel=1e-9)
    # the audited run of the regimen uses the same clearance (covariates not applied twice):
    # after ≥ 9 half-lives its last trough is the steady-state trough predicted
    conc = rec.run["concentration"]
    if "tissue" in conc.dims:
        conc = conc.sel(tissue="central")
    assert float(conc.values[-1]) == pytest.approx(rec.predicted["trough"], rel=1e-2)
