"""Saturable (Michaelis–Menten) elimination through the event engine: the same records and
NONMEM semantics as the linear engine.

References, none from the code under test:
- the linear engine (validated to 1e-10 against superposition in test_engine_semantics) in the
  limit Km ≫ C, where Vmax·C/(Km + C) = (Vmax/Km)·C·(1 − C/Km + …): with Vmax/Km = CL/V·V the
  relative difference is of order C/Km (here ≤ 1e-7, checked at 1e-6);
- a tight-tolerance ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12) of the same ODE with
  the dose schedule written out by hand in the test;
- steady state (SS 1) against the same regimen dosed 150 times without SS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from record_rows import table
from scipy.integrate import solve_ivp

from medtransport.errors import ScenarioError
from medtransport.runner import prepare, run
from medtransport_pk import engine, saturable

KA, V, Q, V2 = 1.1, 20.0, 3.0, 30.0
TWO_NAMES = ("depot", "central", "peripheral")




def oral_two(cl: float) -> tuple[np.ndarray, np.ndarray]:
    """depot → central ⇄ peripheral, linear clearance ``cl`` from central."""
    k10, k12, k21 = cl / V, Q / V, Q / V2
    kmat = np.array([[-KA, 0.0, 0.0], [KA, -(k10 + k12), k21], [0.0, k12, -k21]])
    return kmat, np.array([0.0, k10, 0.0])


def kinetics(cl: float, vmax: float | None = None, km: float | None = None, **kw: Any
             ) -> engine.Kinetics:
    kmat, elim = oral_two(cl)
    kin = engine.Kinetics.constant(1, kmat, elim, V, **kw)
    if vmax is not None:
        kin.vmax, kin.km = np.array([vmax]), np.array([km])
    return kin


def simulate(rows: list[dict[str, Any]], kin: engine.Kinetics,
             grid: np.ndarray | None = None) -> engine.EngineResult:
    return engine.simulate(table(rows), kin, compartments=TWO_NAMES, central=1,
                           default_dose=0, grid=grid)


OBS = [dict(time=t, evid=0) for t in (0.5, 1.0, 2.0, 3.5, 5.0, 8.0, 12.0, 12.5, 16.0, 23.0,
                                      24.0, 30.0, 36.0, 47.0, 49.0, 60.0)]
#: every event kind that applies to a nonlinear model, in one history
EVERYTHING = sorted([
    dict(time=0.0, evid=1, amt=200.0, cmt=1, ii=12.0, addl=2),          # oral, ADDL/II, lag, F
    dict(time=2.0, evid=1, amt=150.0, cmt=2, rate=100.0),                # given RATE, F
    dict(time=5.0, evid=1, amt=80.0, cmt=3),                             # into peripheral
    dict(time=6.0, evid=1, amt=60.0, cmt=2, rate=-1),                    # modelled rate
    dict(time=9.0, evid=1, amt=90.0, cmt=1, rate=-2),                    # infusion into depot
    dict(time=24.0, evid=4, amt=100.0, cmt=2),                           # reset and dose
    dict(time=30.0, evid=3),                                             # reset
    dict(time=36.0, evid=1, amt=120.0, cmt=2, rate=60.0, ii=8.0, ss=1),  # SS 1, D < II
    dict(time=48.0, evid=1, amt=300.0, cmt=1, ii=12.0, ss=1),            # SS 1 oral, lag
    *OBS], key=lambda r: r["time"])
PARAMS = dict(bioavailability=np.array([0.7, 0.9, 1.0]), lag=np.array([0.4, 0.0, 0.0]),
              infusion_rate=np.array([np.nan, 30.0, np.nan]),
              infusion_duration=np.array([1.5, np.nan, np.nan]))


def test_with_km_far_above_the_concentration_it_is_the_linear_engine() -> None:
    """Vmax/Km = CL with Km = 1e9 mg/L (C ≤ 100 mg/L): every record and grid time of a history
    with every event kind agrees with the linear engine to 1e-6 relative."""
    cl, km = 2.5, 1e9
    grid = np.linspace(0.0, 60.0, 121)
    lin = simulate(EVERYTHING, kinetics(cl, **PARAMS), grid)
    # Vmax·C/(Km + C) with C = A/V: Vmax/(Km·V)·A = (CL/V)·A needs Vmax = CL·Km
    mm = simulate(EVERYTHING, kinetics(0.0, cl * km, km, **PARAMS), grid)
    scale = np.abs(lin.record_amounts).max()
    assert np.abs(mm.record_amounts - lin.record_amounts).max() <= 1e-6 * scale
    assert np.abs(mm.grid_amounts - lin.grid_amounts).max() <= 1e-6 * scale
    # the books: eliminated, given, reset and steady-state terms alike
    assert np.abs(mm.record_ledger - lin.record_ledger).max() <= 1e-6 * np.abs(
        lin.record_ledger).max()
    assert np.abs(mm.record_residual()).max() <= 1e-9 * scale
    assert mm.check_ok is not None and mm.check_ok.all()


def reference(vmax: float, km: float, cl: float, t_out: np.ndarray) -> np.ndarray:
    """The saturable 2-compartment oral model by solve_ivp (DOP853, rtol 1e-12) with the doses
    of ``HISTORY`` written out by hand: amounts (depot, central, peripheral) at ``t_out``,
    each output after the doses at its time."""
    k10, k12, k21 = cl / V, Q / V, Q / V2
    f_depot, f_central, lag = 0.6, 0.8, 0.5

    def rhs(_t: float, a: np.ndarray, rate: np.ndarray) -> np.ndarray:
        c = a[1] / V
        return np.array([-KA * a[0],
                         KA * a[0] - (k10 + k12) * a[1] + k21 * a[2] - vmax * c / (km + c),
                         k12 * a[1] - k21 * a[2]]) + rate

    # boluses (time, compartment, amount): oral 400 mg at 0 and 8 h (ADDL 1, II 8) land after
    # the lag with F 0.6; the EVID 4 record at 20 h empties everything and gives 250 mg
    # central (F 0.8) at once
    boluses = [(0.5, 0, 400 * f_depot), (8.5, 0, 400 * f_depot), (20.0, 1, 250 * f_central)]
    # infusion 300 mg at 150 mg/h into central from 3 h: F 0.8 shortens it to 1.6 h
    infusions = [(3.0, 3.0 + 300 * f_central / 150.0, 150.0)]
    resets = [20.0]
    del lag
    cuts = sorted({0.0, *(b[0] for b in boluses), *(s for s, _, _ in infusions),
                   *(e for _, e, _ in infusions), *resets, *t_out.tolist()})
    a = np.zeros(3)
    out = {}
    for i, t in enumerate(cuts):
        if t in resets:
            a = np.zeros(3)
        for tb, cmt, amount in boluses:
            if tb == t:
                a[cmt] += amount
        out[t] = a.copy()
        if i + 1 == len(cuts):
            break
        nxt = cuts[i + 1]
        rate = np.zeros(3)
        for s, e, r in infusions:
            if s <= t and nxt <= e:
                rate[1] += r
        a = solve_ivp(rhs, (t, nxt), a, method="DOP853", rtol=1e-12, atol=1e-12,
                      args=(rate,)).y[:, -1]
    return np.array([out[t] for t in t_out])


HISTORY = sorted([
    dict(time=0.0, evid=1, amt=400.0, cmt=1, ii=8.0, addl=1),
    dict(time=3.0, evid=1, amt=300.0, cmt=2, rate=150.0),
    dict(time=20.0, evid=4, amt=250.0, cmt=2),
    *[dict(time=t, evid=0) for t in (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 4.6, 6.0, 8.0, 8.5, 10.0,
                                     14.0, 19.0, 20.0, 21.0, 26.0, 36.0)]],
    key=lambda r: r["time"])


@pytest.mark.parametrize("km", [0.5, 4.0, 40.0])
def test_a_saturating_history_matches_a_tight_solve_ivp_reference(km: float) -> None:
    """Concentrations far above, near and below Km (doses give C up to ~30 mg/L)."""
    vmax, cl = 40.0, 0.5
    kin = kinetics(cl, vmax, km, bioavailability=np.array([0.6, 0.8, 1.0]),
                   lag=np.array([0.5, 0.0, 0.0]))
    res = simulate(HISTORY, kin)
    t = np.array([r["time"] for r in HISTORY])
    want = reference(vmax, km, cl, t)
    scale = np.abs(want).max()
    assert np.abs(res.record_amounts - want).max() <= 1e-8 * scale
    np.testing.assert_allclose(res.record_concentration, want[:, 1] / V, rtol=1e-7,
                               atol=1e-9 * scale / V)
    # the books close at every record (reset removal and saturable elimination booked)
    assert np.abs(res.record_residual()).max() <= 1e-9 * scale
    assert res.record_ledger[:, 3].max() > 0  # the reset removed drug


@pytest.mark.slow
@pytest.mark.parametrize(("dose", "what"), [
    (dict(amt=300.0, cmt=1, ii=12.0), "oral with lag"),
    (dict(amt=300.0, cmt=2, rate=20.0, ii=12.0), "infusion longer than II (15 h)"),
    (dict(amt=200.0, cmt=1, ii=6.0), "lag 7 h ≥ II"),
])
def test_steady_state_equals_the_regimen_dosed_until_it_settles(dose: dict[str, Any],
                                                                what: str) -> None:
    """SS 1 by repeated dosing against the plain history of 150 doses (ADDL; the slowest
    disposition rate leaves e^{-40} of the start): the profile over the next two intervals
    agrees to 1e-7 relative, and the SS check passes."""
    vmax, km, cl = 30.0, 3.0, 0.8
    lag = 7.0 if "≥" in what else 1.0
    kin = kinetics(cl, vmax, km, lag=np.array([lag, 0.0, 0.0]))
    ii = dose["ii"]
    n = 150
    t_ss = n * ii
    probe = [t_ss + x for x in np.linspace(0.0, 2 * ii, 13)]
    long = simulate([dict(time=0.0, evid=1, addl=n + 1, **dose),
                     *[dict(time=t, evid=0) for t in probe]], kin)
    ss = simulate([dict(time=t_ss, evid=1, ss=1, addl=1, **dose),
                   *[dict(time=t, evid=0) for t in probe]], kin)
    assert ss.check_ok is not None and ss.check_ok.all()
    want = long.record_amounts[1:]
    got = ss.record_amounts[1:]
    assert np.abs(got - want).max() <= 1e-7 * np.abs(want).max(), what


def test_a_constant_infusion_at_steady_state_balances_elimination() -> None:
    """AMT 0, RATE 12 mg/h, SS 1 into central of a 1-compartment model: at steady state
    Vmax·C/(Km + C) + CL·C = 12, solved for C by hand (quadratic)."""
    vmax, km, cl, r = 20.0, 4.0, 1.0, 12.0
    kin = engine.Kinetics.constant(1, np.array([[-cl / V]]), np.array([cl / V]), V)
    kin.vmax, kin.km = np.array([vmax]), np.array([km])
    res = engine.simulate(table([dict(time=0.0, evid=1, amt=0.0, rate=r, ss=1),
                                 dict(time=5.0), dict(time=50.0)]), kin,
                          compartments=("central",), central=0, default_dose=0)
    # cl·C² + (cl·Km + Vmax − r)·C − r·Km = 0
    b = cl * km + vmax - r
    c_ss = (-b + np.sqrt(b * b + 4 * cl * r * km)) / (2 * cl)
    np.testing.assert_allclose(res.record_concentration, c_ss, rtol=1e-8)


def test_ss_2_and_a_regimen_without_steady_state_are_refused_naming_the_record() -> None:
    kin = kinetics(0.0, 10.0, 2.0)
    with pytest.raises(engine.RecordError, match=r"record 1 \(ID 1, TIME 0 h\): SS 2"):
        simulate([dict(time=0.0, evid=1, amt=100.0, cmt=2, ii=12.0, ss=2), dict(time=1.0)],
                 kin)
    # 200 mg every 12 h is 16.7 mg/h on average: above Vmax 10 mg/h, no linear route
    with pytest.raises(engine.RecordError, match=r"record 1 \(ID 1, TIME 0 h\): no steady"):
        simulate([dict(time=0.0, evid=1, amt=200.0, cmt=2, ii=12.0, ss=1), dict(time=1.0)],
                 kin)


# ----------------------------------------------------------------------------- the model


SCENARIO: dict[str, Any] = {
    "name": "saturable", "model": "pk.two_compartment",
    "parameters": {"clearance": "0.5 L/h", "central_volume": "20 L",
                   "intercompartmental_clearance": "3 L/h", "peripheral_volume": "30 L",
                   "absorption_rate": "1.1 1/h", "bioavailability": {"depot": 0.7},
                   "lag_time": {"depot": "0.5 h"},
                   "infusion_duration": {"central": "2 h"},
                   "michaelis_menten": {"vmax": "30 mg/h", "km": "3 mg/L"}},
    "events": [{"type": "oral", "amount": "300 mg", "every": "12 h", "count": 3},
               {"type": "infusion", "amount": "100 mg", "duration": "modelled", "at": "5 h"},
               {"type": "bolus", "amount": "50 mg", "compartment": "peripheral", "at": "7 h"},
               {"type": "reset", "at": "30 h"},
               {"type": "infusion", "amount": "200 mg", "rate": "50 mg/h", "every": "8 h",
                "at": "36 h", "steady_state": True}],
    "time": {"stop": "48 h", "step": "30 min"},
}


def test_yaml_events_with_resets_compartments_and_steady_state_run_and_balance() -> None:
    ds = run(SCENARIO)
    assert ds.attrs["audit_status"] == "passed"
    assert ds.attrs["solver_method"] == "ode"
    assert float(ds["removed"].values[-1]) > 0  # the reset's removal is booked


def test_a_data_set_runs_with_saturable_elimination(tmp_path: Path) -> None:
    """Two subjects of a NONMEM data set: predictions at every record, each subject equal to
    the same history through the engine alone, and the books audited at every record."""
    (tmp_path / "d.csv").write_text(
        "ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,DV\n"
        "1,0,1,300,1,0,12,1,0,.\n1,2,0,.,.,.,.,.,.,8.1\n1,14,0,.,.,.,.,.,.,9.3\n"
        "1,20,4,100,2,50,0,0,0,.\n1,26,0,.,.,.,.,.,.,2.0\n"
        "2,0,1,500,2,-2,24,0,1,.\n2,1,0,.,.,.,.,.,.,12\n2,30,3,.,.,.,.,.,.,.\n"
        "2,31,0,.,.,.,.,.,.,0\n")
    sc = {**SCENARIO, "data": {"path": "d.csv", "units": {"AMT": "mg", "RATE": "mg/h",
                                                          "II": "h", "DV": "mg/L"}},
          "events": [], "time": {"stop": "36 h", "step": "1 h"}}
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc, allow_unicode=True))
    ds = run(str(path))
    assert ds.attrs["audit_status"] == "passed"
    assert ds.sizes["record"] == 9
    model = prepare(str(path))
    kin = model._engine_kinetics()
    alone = engine.simulate(model.records, kin, compartments=model.body, central=1,
                            default_dose=0)
    # (the run's grid splits the solves differently: equal to the solver's tolerance)
    np.testing.assert_allclose(ds["concentration"].values, alone.record_concentration,
                               rtol=1e-8)
    assert np.abs(ds["record_drug_residual"].values).max() <= 1e-9 * 800


def test_the_exact_solver_is_refused() -> None:
    with pytest.raises(ScenarioError) as info:
        prepare({**SCENARIO, "solver": {"method": "exact"}})
    assert "parameters.michaelis_menten" in [q for q, _ in info.value.problems]


def test_a_saturable_route_missing_from_the_books_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: half of what leaves central by elimination is not booked as eliminated."""
    original = saturable._rhs

    def leaky(system: Any, y: np.ndarray, rate: np.ndarray) -> np.ndarray:
        dy = original(system, y, rate).reshape(system.p, system.m)
        dy[:, system.n] *= 0.5
        return dy.reshape(-1)

    sc = {**SCENARIO, "events": SCENARIO["events"][:2]}
    assert run(sc).attrs["audit_status"] == "passed"
    monkeypatch.setattr(saturable, "_rhs", leaky)
    from medtransport.testing import failed_audits
    from medtransport_pk.model import TwoCompartment

    failed = failed_audits(TwoCompartment, sc)
    assert "record_books[drug]" in failed and "mass_balance[drug]" in failed
