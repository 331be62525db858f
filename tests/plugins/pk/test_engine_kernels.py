"""The engine's event loop in plain Python (small runs, no numba loaded) gives the compiled
loop's bits, on record tables that take every branch: boluses with lag and F, given and
modelled infusions, ADDL, resets (EVID 3 and 4), steady states (SS 1 with lag ≥ II and an
infusion longer than II, SS 2, a constant infusion), parameter segments (LOCF and NOCB), a
degenerate system (the matrix-exponential branch), a grid and several subjects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtransport_pk import engine
from medtransport_pk.records import RecordTable

KA, K10, V = 1.3, 0.2, 10.0
ORAL_K = np.array([[-KA, 0.0], [KA, -K10]])
ORAL_E = np.array([0.0, K10])
# depot, central, peripheral
THREE_K = np.array([[-KA, 0.0, 0.0], [KA, -(K10 + 0.3), 0.12], [0.0, 0.3, -0.12]])
THREE_E = np.array([0.0, K10, 0.0])


def table(rows: list[dict[str, Any]]) -> RecordTable:
    defaults = dict(id=1, time=0.0, evid=0, amt=0.0, cmt=0, rate=0.0, ii=0.0, addl=0, ss=0,
                    mdv=1, dv=np.nan)
    ints = ("id", "evid", "cmt", "addl", "ss", "mdv")
    col = {k: np.array([r.get(k, d) for r in rows], np.int64 if k in ints else float)
           for k, d in defaults.items()}
    return RecordTable(**col, row=np.arange(1, len(rows) + 1))


def obs(*times: float, id: int = 1) -> list[dict[str, Any]]:
    return [dict(id=id, time=t) for t in times]


def oral_with_everything() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...]]:
    rows = [dict(evid=1, amt=100, ii=12, addl=5), *obs(0.5, 3.0),
            dict(time=3.0, evid=1, amt=50, cmt=2, rate=10), *obs(6.0, 11.9),
            dict(time=20.0, evid=3), *obs(20.0, 25.0),
            dict(time=30.0, evid=4, amt=80, cmt=2), *obs(31.0, 40.0)]
    kin = engine.Kinetics.constant(1, ORAL_K, ORAL_E, V, lag=[0.5, 0.0],
                                   bioavailability=[0.8, 1.0])
    return table(rows), kin, ("depot", "central")


def steady_states() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...]]:
    rows = [dict(evid=1, amt=100, ii=8, ss=1, addl=2), *obs(1.0, 9.5, 17.0),  # lag 10 ≥ II
            dict(time=30.0, evid=1, amt=120, cmt=2, rate=10, ii=6, ss=1),  # 12 h > II
            *obs(33.0, 41.0),
            dict(time=50.0, evid=1, amt=60, cmt=2, ii=12, ss=2), *obs(55.0),
            dict(time=70.0, evid=1, amt=0, cmt=2, rate=5, ss=1), *obs(71.0, 90.0)]
    kin = engine.Kinetics.constant(1, ORAL_K, ORAL_E, V, lag=[10.0, 0.0])
    return table(rows), kin, ("depot", "central")


def segments_and_subjects(nocb: bool) -> tuple[RecordTable, engine.Kinetics, tuple[str, ...]]:
    rows = []
    for i in (1, 2):
        rows += [dict(id=i, evid=1, amt=100 * i, ii=12, addl=3, rate=-1), *obs(1, id=i),
                 dict(id=i, time=5.0, evid=1, amt=40, cmt=2, rate=-2), *obs(6, 14, 30, id=i)]
    kmat = np.array([THREE_K, THREE_K * 0.7, THREE_K])
    elim = np.array([THREE_E, THREE_E * 0.7, THREE_E])
    kin = engine.Kinetics(
        subject=np.array([0, 0, 1]), start=np.array([-np.inf, 13.0, -np.inf]), kmat=kmat,
        elimination=elim, bioavailability=np.full((3, 3), 0.9), lag=np.zeros((3, 3)),
        infusion_rate=np.full((3, 3), 25.0), infusion_duration=np.full((3, 3), 2.5),
        volume=np.array([V, 1.2 * V, V]), nocb=nocb)
    return table(rows), kin, ("depot", "central", "peripheral")


def degenerate() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...]]:
    """ka = k: collinear eigenvectors, so the matrix-exponential branch runs."""
    kin = engine.Kinetics.constant(1, np.array([[-K10, 0.0], [K10, -K10]]), ORAL_E, V)
    rows = [dict(evid=1, amt=100, ii=24, addl=1), *obs(0.7),
            dict(time=2.0, evid=1, amt=30, cmt=2, rate=15), *obs(3.0, 20.0, 50.0)]
    return table(rows), kin, ("depot", "central")


CASES = {"oral, lag, F, infusion, resets": oral_with_everything,
         "steady states": steady_states,
         "segments LOCF, modelled rate": lambda: segments_and_subjects(False),
         "segments NOCB, modelled rate": lambda: segments_and_subjects(True),
         "degenerate (expm)": degenerate}


def run(case: Any, limit: int, monkeypatch: pytest.MonkeyPatch) -> engine.EngineResult:
    tbl, kin, names = case()
    monkeypatch.setattr(engine, "INTERPRETED_WORK", limit)
    return engine.simulate(tbl, kin, compartments=names, central=1, default_dose=0,
                           grid=np.linspace(0.0, 60.0, 41))


@pytest.mark.parametrize("name", list(CASES))
def test_the_interpreted_loop_gives_the_compiled_loops_bits(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    interpreted = run(CASES[name], 10**12, monkeypatch)
    compiled = run(CASES[name], -1, monkeypatch)
    assert interpreted.record_amounts.any() and interpreted.grid_amounts is not None
    for field in ("record_amounts", "record_concentration", "record_ledger", "grid_amounts",
                  "grid_concentration", "grid_ledger", "check_residual"):
        np.testing.assert_array_equal(getattr(interpreted, field), getattr(compiled, field),
                                      err_msg=field)


def test_the_loop_is_chosen_by_the_amount_of_work() -> None:
    assert engine.kernel_for(engine.INTERPRETED_WORK) is engine._kernel
    compiled = engine.kernel_for(engine.INTERPRETED_WORK + 1)
    assert compiled is not engine._kernel and compiled.py_func is engine._kernel


def _two_subjects(scales: list[float]) -> tuple[RecordTable, engine.Kinetics]:
    """One subject per scale of the rate constants, each with its own kinetics and the same
    infusion; subject i's rates are ORAL_K × scales[i]."""
    rows = []
    for i in range(len(scales)):
        rows += [dict(id=i + 1, evid=1, amt=100, cmt=2, rate=50, ii=12, addl=1),
                 *obs(5.0, id=i + 1)]
    m = len(scales)
    kin = engine.Kinetics(
        subject=np.arange(m), start=np.full(m, -np.inf),
        kmat=np.array([ORAL_K * s for s in scales]), elimination=np.array(
            [ORAL_E * s for s in scales]), bioavailability=np.ones((m, 2)),
        lag=np.zeros((m, 2)), infusion_rate=np.full((m, 2), np.nan),
        infusion_duration=np.full((m, 2), np.nan), volume=np.full(m, V))
    return table(rows), kin


@pytest.mark.parametrize("limit", [10**12, -1])
def test_equal_steps_reuse_no_coefficients_across_subjects_or_segments(
        limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop reuses e^{λΔ} and φ's of the last step when Δ and the segment repeat (a
    1-min grid): a subject run after another with different kinetics gets the bits it gets
    alone, and a segment switch on an equal-step grid takes the new segment's rates."""
    monkeypatch.setattr(engine, "INTERPRETED_WORK", limit)
    grid = np.arange(0.0, 24.0 + 1e-9, 1.0 / 60)

    def sim(tbl: RecordTable, kin: engine.Kinetics) -> engine.EngineResult:
        return engine.simulate(tbl, kin, compartments=("depot", "central"), central=1,
                               default_dose=0, grid=grid)

    both = sim(*_two_subjects([1.0, 2.5]))
    alone = sim(*_two_subjects([2.5]))
    assert both.grid_amounts is not None and alone.grid_amounts is not None
    assert both.grid_ledger is not None and alone.grid_ledger is not None
    np.testing.assert_array_equal(both.grid_amounts[1], alone.grid_amounts[0])
    np.testing.assert_array_equal(both.grid_ledger[1], alone.grid_ledger[0])
    assert not np.array_equal(both.grid_amounts[0], both.grid_amounts[1])
    # a switch to the faster rates at 6 h: from then on, central decays at the new K
    _, kin2 = _two_subjects([1.0, 2.5])
    switch = engine.Kinetics(
        subject=np.array([0, 0]), start=np.array([-np.inf, 6.0]), kmat=kin2.kmat,
        elimination=kin2.elimination, bioavailability=kin2.bioavailability, lag=kin2.lag,
        infusion_rate=kin2.infusion_rate, infusion_duration=kin2.infusion_duration,
        volume=kin2.volume)
    one = table([dict(evid=1, amt=100, cmt=2, rate=50, ii=12, addl=1), *obs(5.0)])
    res = sim(one, switch)
    assert res.grid_amounts is not None
    i6 = int(np.searchsorted(grid, 6.0))
    k_fast = ORAL_K * 2.5
    step = scipy_expm(k_fast / 60)
    # no input between 6 h and 12 h: every 1-min step is e^{K_fast Δ}
    for g in range(i6, i6 + 30):
        np.testing.assert_allclose(res.grid_amounts[0, g + 1], step @ res.grid_amounts[0, g],
                                   rtol=1e-12, atol=1e-12)


def scipy_expm(m: np.ndarray) -> np.ndarray:
    import scipy.linalg

    return scipy.linalg.expm(m)
