"""The event loop's tight run of grid outputs between two events (``engine.FAST_RUNS``) gives
the bits of the generic step, in the interpreted and the compiled loop, on regimens that
start, stop and interrupt runs everywhere: doses at grid times, infusions ending between grid
points, parameter segments (LOCF and NOCB), a dialysis session (the dialysate term), a reset
and a steady state (the rare ledger terms), bioavailability (unabsorbed), a degenerate segment
(the matrix-exponential branch), irregular and repeated output times, one, two and three
compartments, several subjects with their own kinetics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from record_rows import table

from medtransport_pk import engine
from medtransport_pk.records import RecordTable

KERNEL_FOR = engine.kernel_for
FIELDS = ("record_amounts", "record_concentration", "record_ledger", "grid_amounts",
          "grid_concentration", "grid_concentrations", "grid_ledger", "grid_nonzero",
          "check_residual", "before_amounts")


def minute_grid(hours: float) -> np.ndarray:
    """A 1-min grid (k/60 h, whose steps differ in their last bits) with irregular explicit
    times added, one of them twice."""
    extra = np.array([0.3333, 2.00001, 7.77, 7.77, 12.0, 13.123456789, hours - 1e-3])
    return np.concatenate([np.arange(0.0, hours + 1e-9, 1.0 / 60), extra])


def per_subject(kmats: list[np.ndarray], elims: list[np.ndarray], volumes: list[float],
                starts: list[float] | None = None, subject: list[int] | None = None,
                bioavailability: float = 1.0, nocb: bool = False) -> engine.Kinetics:
    m, n = len(kmats), kmats[0].shape[0]
    return engine.Kinetics(
        subject=np.array(subject if subject is not None else range(m)),
        start=np.array(starts if starts is not None else [-np.inf] * m),
        kmat=np.array(kmats), elimination=np.array(elims),
        bioavailability=np.full((m, n), bioavailability), lag=np.zeros((m, n)),
        infusion_rate=np.full((m, n), np.nan), infusion_duration=np.full((m, n), np.nan),
        volume=np.array(volumes), nocb=nocb)


def two_compartment(cl: float, v1: float, q: float, v2: float) -> tuple[np.ndarray, np.ndarray]:
    k10, k12, k21 = cl / v1, q / v1, q / v2
    return np.array([[-(k10 + k12), k21], [k12, -k21]]), np.array([k10, 0.0])


def vancomycin_like() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    """Three subjects on 1 g over 0.77 h q12h (the infusion ends between grid minutes), a
    bolus at a grid time, an SS 1 dose, a reset; subject 1 switches its kinetics at 6.5 h
    (between grid points) and back at 18 h (on one)."""
    rows: list[dict[str, Any]] = []
    for i in (1, 2, 3):
        rows += [dict(id=i, evid=1, amt=1000, rate=1000 / 0.77, ii=12, addl=1, mdv=1),
                 dict(id=i, time=5.0), dict(id=i, time=9.0, evid=1, amt=250, mdv=1),
                 dict(id=i, time=20.0)]
    rows += [dict(id=3, time=14.0, evid=3, mdv=1), dict(id=3, time=16.0, evid=1, amt=500,
                                                         ii=6, ss=1, mdv=1)]
    k_a, e_a = two_compartment(4.6, 30.0, 6.9, 40.0)
    k_b, e_b = two_compartment(2.1, 35.0, 6.0, 45.0)
    kin = per_subject([k_a, k_b, k_a, k_b, k_a], [e_a, e_b, e_a, e_b, e_a],
                      [30.0, 35.0, 30.0, 35.0, 33.0], starts=[-np.inf, -np.inf, 6.5, 18.0,
                                                            -np.inf],
                      subject=[0, 1, 1, 1, 2])
    return table(rows), kin, ("central", "peripheral"), 0


def with_dialysis(nocb: bool) -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    tbl, kin, names, central = vancomycin_like()
    kin.nocb = nocb
    return tbl, engine.with_clearance(kin, central, [(3.0, 7.0, 7.2), (21.5, np.inf, 2.0)]), \
        names, central


def oral_one_compartment() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    """Depot and central, F 0.7 (unabsorbed), and a subject with ka = k (degenerate: the
    matrix exponential between the eigen-path runs of the other subject)."""
    rows = [dict(id=i, evid=1, amt=100, ii=8, addl=2, mdv=1) for i in (1, 2)]
    rows += [dict(id=i, time=t) for i in (1, 2) for t in (1.0, 10.0)]
    k, ka = 0.2, 1.3
    normal = np.array([[-ka, 0.0], [ka, -k]])
    degenerate = np.array([[-k, 0.0], [k, -k]])
    kin = per_subject([normal, degenerate], [np.array([0.0, k])] * 2, [10.0, 10.0],
                      bioavailability=0.7)
    return table(rows), kin, ("depot", "central"), 1


def one_compartment() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    rows = [dict(evid=1, amt=500, rate=250, ii=12, addl=1, mdv=1), dict(time=3.0),
            dict(time=13.25, evid=1, amt=100, mdv=1)]
    kin = per_subject([np.array([[-0.15]])], [np.array([0.15])], [20.0])
    return table(rows), kin, ("central",), 0


def oral_two_compartment() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    rows = [dict(evid=1, amt=300, ii=6, addl=3, mdv=1), dict(time=2.5),
            dict(time=8.0, evid=1, amt=50, cmt=2, rate=40, mdv=1)]
    ka, (k, e) = 0.9, two_compartment(4.0, 25.0, 5.0, 50.0)
    kmat = np.zeros((3, 3))
    kmat[0, 0], kmat[1, 0] = -ka, ka
    kmat[1:, 1:] = k
    kin = per_subject([kmat], [np.array([0.0, *e])], [25.0], bioavailability=0.9)
    return table(rows), kin, ("depot", "central", "peripheral"), 1


def oral_three_compartment() -> tuple[RecordTable, engine.Kinetics, tuple[str, ...], int]:
    """Four compartments: the runs' loop for any body size."""
    rows = [dict(evid=1, amt=300, ii=6, addl=3, mdv=1), dict(time=2.5),
            dict(time=8.0, evid=1, amt=50, cmt=2, rate=40, mdv=1)]
    kmat = np.zeros((4, 4))
    kmat[0, 0], kmat[1, 0] = -0.9, 0.9
    k10, k12, k21, k13, k31 = 0.16, 0.2, 0.1, 0.05, 0.01
    kmat[1:, 1:] = [[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]]
    kin = per_subject([kmat], [np.array([0.0, k10, 0.0, 0.0])], [25.0], bioavailability=0.9)
    return table(rows), kin, ("depot", "central", "peripheral", "deep"), 1


CASES = {"two-compartment, segments, reset, SS": vancomycin_like,
         "dialysis sessions, LOCF": lambda: with_dialysis(False),
         "dialysis sessions, NOCB": lambda: with_dialysis(True),
         "oral one-compartment, F, degenerate subject": oral_one_compartment,
         "one compartment": one_compartment,
         "oral two-compartment (n = 3)": oral_two_compartment,
         "oral three-compartment (n = 4)": oral_three_compartment}


def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint8)


def other_compartments(n: int, central: int, n_sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Two compartments other than central (central again if there is one other only, none
    with one compartment), each subject with its volumes."""
    cmt = np.array(([c for c in range(n) if c != central] + [central])[:2] if n > 1 else [0])
    return cmt, 7.0 + np.arange(n_sub * cmt.size).reshape(n_sub, cmt.size) / 3.0


def run(case: Any, fast: bool, interpreted: bool, monkeypatch: pytest.MonkeyPatch
        ) -> tuple[engine.EngineResult, int, int]:
    """The engine's result, how many grid outputs the tight runs wrote and how many subjects
    are on the eigen path throughout (the others' steps are matrix exponentials)."""
    tbl, kin, names, central = case()
    monkeypatch.setattr(engine, "FAST_RUNS", fast)
    monkeypatch.setattr(engine, "INTERPRETED_WORK", 10**12 if interpreted else -1)
    written = []

    def counting(work: int) -> Any:
        kernel = KERNEL_FOR(work)
        return lambda *args: written.append(kernel(*args))

    monkeypatch.setattr(engine, "kernel_for", counting)
    block, ids = engine.subject_blocks(tbl.id)
    before = (block[tbl.evid == 1], tbl.time[tbl.evid == 1])
    res = engine.simulate(tbl, kin, compartments=names, central=central, default_dose=0,
                          grid=minute_grid(24.0), before=before,
                          concentrations=other_compartments(len(names), central, ids.size))
    use_eig = engine._eigensystems(kin)[5]
    eigen = np.unique(kin.subject).size - np.unique(kin.subject[~use_eig]).size
    return res, sum(written), eigen


@pytest.mark.parametrize("interpreted", [False, True], ids=["compiled", "interpreted"])
@pytest.mark.parametrize("name", list(CASES))
def test_runs_of_grid_outputs_give_the_generic_steps_bits(
        name: str, interpreted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    generic, none, _ = run(CASES[name], False, interpreted, monkeypatch)
    fast, written, eigen = run(CASES[name], True, interpreted, monkeypatch)
    assert none == 0
    assert generic.grid_amounts is not None and eigen > 0
    # the runs wrote most grid outputs of the subjects on the eigen path (each run's first
    # output is the generic step's)
    assert written > 0.8 * eigen * generic.grid_amounts.shape[1]
    for field in FIELDS:
        a, b = getattr(generic, field), getattr(fast, field)
        if a is None:
            assert b is None, field
            continue
        # bits, not values: −0.0 and 0.0 differ here
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=field)


def test_the_cases_put_something_on_every_ledger_term(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """So that the comparison above covers the rare terms' writes in the tight run."""
    seen = np.zeros(len(engine.LEDGER_TERMS), bool)
    for case in CASES.values():
        res, _, _ = run(case, True, False, monkeypatch)
        assert res.grid_ledger is not None
        seen |= np.any(res.grid_ledger != 0, axis=(0, 1))
        assert np.all(np.abs(res.record_residual()) <= 1e-9 * np.abs(res.record_ledger).max())
    assert seen.all(), dict(zip(engine.LEDGER_TERMS, seen, strict=True))


@pytest.mark.parametrize("interpreted", [False, True], ids=["compiled", "interpreted"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_loop_reports_the_ledger_columns_it_wrote(
        name: str, interpreted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``grid_nonzero`` is what a scan of the grid's books finds, column by column."""
    res, _, _ = run(CASES[name], True, interpreted, monkeypatch)
    assert res.grid_ledger is not None and res.grid_nonzero is not None
    np.testing.assert_array_equal(res.grid_nonzero, np.any(res.grid_ledger != 0, axis=(0, 1)))


@pytest.mark.parametrize("interpreted", [False, True], ids=["compiled", "interpreted"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_loop_writes_the_concentrations_asked_for(
        name: str, interpreted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Column 0 is the central concentration; the others each compartment's amount over its
    subject's volume, the bits of numpy's division."""
    res, _, _ = run(CASES[name], True, interpreted, monkeypatch)
    conc, amt = res.grid_concentrations, res.grid_amounts
    assert conc is not None and amt is not None and res.grid_concentration is not None
    n_sub, _, n = amt.shape
    central = int(CASES[name]()[3])
    cmt, vol = other_compartments(n, central, n_sub)
    assert conc.shape == (*amt.shape[:2], 1 + cmt.size)
    np.testing.assert_array_equal(conc[..., 0], res.grid_concentration)
    for j, c in enumerate(cmt):
        np.testing.assert_array_equal(conc[..., 1 + j], amt[..., c] / vol[:, None, j])


def test_saturable_runs_report_the_same_columns_and_concentrations() -> None:
    """The saturable propagation (its own loop) fills ``grid_nonzero`` and the further
    concentration columns the same way."""
    tbl, kin, names, central = vancomycin_like()
    m = kin.start.size
    kin.vmax, kin.km = np.full(m, 200.0), np.full(m, 15.0)
    _, ids = engine.subject_blocks(tbl.id)
    grid = np.arange(0.0, 24.0 + 1e-9, 0.25)
    cmt, vol = other_compartments(len(names), central, ids.size)
    res = engine.simulate(tbl, kin, compartments=names, central=central, default_dose=0,
                          grid=grid, concentrations=(cmt, vol))
    conc, amt, led = res.grid_concentrations, res.grid_amounts, res.grid_ledger
    assert conc is not None and amt is not None and led is not None
    assert res.grid_concentration is not None and res.grid_nonzero is not None
    np.testing.assert_array_equal(conc[..., 0], res.grid_concentration)
    for j, c in enumerate(cmt):
        np.testing.assert_array_equal(conc[..., 1 + j], amt[..., c] / vol[:, None, j])
    np.testing.assert_array_equal(res.grid_nonzero, np.any(led != 0, axis=(0, 1)))
    assert res.grid_nonzero[[0, 2, 3, 4]].all()  # given, eliminated, the reset, the SS dose


@pytest.mark.parametrize("fast", [False, True], ids=["generic", "tight runs"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_grid_output_is_written_so_reused_memory_never_shows(
        name: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid's amounts and concentrations come from reused memory in a population batch
    (medtransport.numerics.arena): with every such array handed out full of NaN, the
    results are the bits of a run on fresh memory — no element is left unwritten."""
    from medtransport.numerics import arena

    fresh, _, _ = run(CASES[name], fast, False, monkeypatch)
    arena.poison(True)
    try:
        poisoned, _, _ = run(CASES[name], fast, False, monkeypatch)
    finally:
        arena.poison(False)
    for field in ("grid_amounts", "grid_concentrations", "grid_concentration"):
        a, b = getattr(fresh, field, None), getattr(poisoned, field, None)
        assert a is not None and b is not None, field
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=field)
