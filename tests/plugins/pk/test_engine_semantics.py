"""NONMEM's event semantics in the PK event engine, against hand-derived superposition.

Every reference here is written from the definitions (NONMEM Users Guide VI, PREDPP: EVID,
AMT, RATE, II, ADDL, SS, ALAG, F) without the engine: a linear system's response is the sum of
the responses to each dose, a bolus b at s giving e^{K(t−s)}·b and an infusion r on [s, s + T)
giving K⁻¹(e^{K(t−s)} − e^{K(t−min(t, s+T))})·r (scipy's expm, not the engine's
eigen-decomposition); a steady state is the same sum over enough past doses that the rest is
below round-off, and for the simplest cases the geometric closed forms (D/(1 − e^{−kτ})).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.linalg
from record_rows import table

from medtransport_pk import engine

KA, CL, V = 1.3, 2.0, 10.0
K10 = CL / V
# depot, central
ORAL_K = np.array([[-KA, 0.0], [KA, -K10]])
ORAL_E = np.array([0.0, K10])
# central, peripheral (CL 2, V1 10, Q 3, V2 25)
Q, V2 = 3.0, 25.0
TWO_K = np.array([[-(K10 + Q / V), Q / V2], [Q / V, -Q / V2]])
TWO_E = np.array([K10, 0.0])
TOL = 1e-10




def obs(*times: float, id: int = 1) -> list[dict[str, Any]]:
    return [dict(id=id, time=t, mdv=1) for t in times]


def kinetics(kmat: np.ndarray, elim: np.ndarray, n_subjects: int = 1, **kw: Any
             ) -> engine.Kinetics:
    return engine.Kinetics.constant(n_subjects, kmat, elim, V, **kw)


def run(rows: list[dict[str, Any]], kin: engine.Kinetics, names: tuple[str, ...] = (
        "depot", "central"), central: int = 1, grid: np.ndarray | None = None,
        sort: bool = True) -> engine.EngineResult:
    return engine.simulate(table(rows, sort), kin, compartments=names, central=central,
                           default_dose=0, grid=grid)


class Ref:
    """Superposition of doses on dA/dt = K·A, amounts of every compartment at times t.

    For the oral model e^{Kt} is written out by hand (depot → depot e^{−ka·t}, depot →
    central ka/(ka − k)·(e^{−kt} − e^{−ka·t}), central → central e^{−kt}); otherwise scipy's
    expm."""

    def __init__(self, kmat: np.ndarray):
        self.k = kmat
        self.kinv = np.linalg.inv(kmat)
        self.oral = np.array_equal(kmat, ORAL_K)

    def e(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, float)
        if self.oral:
            out = np.zeros((s.size, 2, 2))
            out[:, 0, 0] = np.exp(-KA * s)
            out[:, 1, 0] = KA / (KA - K10) * (np.exp(-K10 * s) - np.exp(-KA * s))
            out[:, 1, 1] = np.exp(-K10 * s)
            return out
        return np.array([scipy.linalg.expm(self.k * x) for x in s])

    def bolus(self, t: np.ndarray, at: float, cmt: int, amount: float) -> np.ndarray:
        t = np.asarray(t, float)
        out = np.zeros((t.size, self.k.shape[0]))
        m = t >= at
        out[m] = self.e(t[m] - at)[:, :, cmt] * amount
        return out

    def infusion(self, t: np.ndarray, at: float, cmt: int, rate: float, dur: float
                 ) -> np.ndarray:
        t = np.asarray(t, float)
        out = np.zeros((t.size, self.k.shape[0]))
        m = t > at
        end = np.minimum(t[m], at + dur)
        out[m] = (self.kinv @ (self.e(t[m] - at) - self.e(t[m] - end)))[:, :, cmt] * rate
        return out


def assert_close(got: np.ndarray, want: np.ndarray, tol: float = TOL) -> None:
    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = np.maximum(np.abs(want), 1e-300)
    rel = np.abs(got - want) / scale
    assert np.all(rel <= tol), f"max relative error {rel.max():.3g} > {tol:g}\n{got}\n{want}"


T_OBS = (0.25, 1.0, 3.0, 7.5, 12.0, 13.0, 20.0, 30.0)


# ----------------------------------------------------------------------------- doses

def test_bolus_and_infusion_into_each_compartment() -> None:
    kin = kinetics(TWO_K, TWO_E)
    ref = Ref(TWO_K)
    for cmt in (1, 2):
        res = run([dict(evid=1, amt=100, cmt=cmt), *obs(*T_OBS)], kin, ("central", "peripheral"),
                  central=0)
        want = ref.bolus(np.array([0.0, *T_OBS]), 0.0, cmt - 1, 100.0)
        assert_close(res.record_amounts, want)
        res = run([dict(evid=1, amt=100, cmt=cmt, rate=30), *obs(*T_OBS)], kin,
                  ("central", "peripheral"), central=0)
        want = ref.infusion(np.array([0.0, *T_OBS]), 0.0, cmt - 1, 30.0, 100 / 30)
        assert_close(res.record_amounts[1:], want[1:])


def test_infusion_into_each_compartment_including_the_depot() -> None:
    kin = kinetics(ORAL_K, ORAL_E)
    ref = Ref(ORAL_K)
    t = np.array([0.0, *T_OBS])
    for cmt in (1, 2):
        res = run([dict(evid=1, amt=100, cmt=cmt, rate=40), *obs(*T_OBS)], kin)
        assert_close(res.record_amounts[1:], ref.infusion(t, 0.0, cmt - 1, 40.0, 2.5)[1:])
    # the depot infusion by hand: central = R·(H(t) − H(t − T)), H = ∫ Bateman
    h_int = lambda s: np.where(s > 0, KA / (KA - K10) * ((1 - np.exp(-K10 * s)) / K10  # noqa: E731
                                                         - (1 - np.exp(-KA * s)) / KA), 0.0)
    res = run([dict(evid=1, amt=100, cmt=1, rate=40), *obs(*T_OBS)], kin)
    t_obs = np.array(T_OBS)
    assert_close(res.record_amounts[1:, 1], 40.0 * (h_int(t_obs) - h_int(t_obs - 2.5)))


def test_oral_bolus_with_lag_and_bioavailability_is_bateman() -> None:
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[0.7, 1.0], lag=[0.75, 0.0])
    res = run([dict(evid=1, amt=320), *obs(*T_OBS)], kin)
    s = np.maximum(np.array(T_OBS) - 0.75, 0.0)  # nothing before the lag
    want = 0.7 * 320 * KA / (KA - K10) * (np.exp(-K10 * s) - np.exp(-KA * s)) / V
    assert_close(res.record_concentration[1:], want)
    assert res.record_concentration[0] == 0.0


def test_additional_doses_keep_the_lag_and_f_of_their_record() -> None:
    f, lag = 0.8, 0.75
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[f, 1.0], lag=[lag, 0.0])
    res = run([dict(evid=1, amt=200, ii=12, addl=3), *obs(*T_OBS, 36.5, 40.0, 47.9)], kin)
    ref = Ref(ORAL_K)
    t = np.array([0.0, *T_OBS, 36.5, 40.0, 47.9])
    want = sum(ref.bolus(t, 12.0 * j + lag, 0, f * 200.0) for j in range(4))
    assert_close(res.record_amounts[1:], want[1:])


def test_f_changes_the_duration_of_a_given_rate() -> None:
    f = 0.6  # F·AMT = 60 at RATE 50 lasts 1.2 h
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[1.0, f])
    res = run([dict(evid=1, amt=100, cmt=2, rate=50), *obs(*T_OBS)], kin)
    want = Ref(ORAL_K).infusion(np.array([0.0, *T_OBS]), 0.0, 1, 50.0, f * 100 / 50)
    assert_close(res.record_amounts[1:], want[1:])
    # the unabsorbed part is booked when the dose starts
    assert res.record_ledger[0, 1] == pytest.approx(40.0, rel=1e-15)


def test_f_changes_the_rate_of_a_modelled_duration() -> None:
    f = 0.6  # over the modelled 2 h at F·AMT/D = 30 per h
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[1.0, f],
                   infusion_duration=[np.nan, 2.0])
    res = run([dict(evid=1, amt=100, cmt=2, rate=-2), *obs(*T_OBS)], kin)
    want = Ref(ORAL_K).infusion(np.array([0.0, *T_OBS]), 0.0, 1, 30.0, 2.0)
    assert_close(res.record_amounts[1:], want[1:])


def test_a_modelled_rate() -> None:
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[1.0, 0.5], infusion_rate=[np.nan, 25.0])
    res = run([dict(evid=1, amt=100, cmt=2, rate=-1), *obs(*T_OBS)], kin)
    want = Ref(ORAL_K).infusion(np.array([0.0, *T_OBS]), 0.0, 1, 25.0, 0.5 * 100 / 25)
    assert_close(res.record_amounts[1:], want[1:])


class FOnTheRate:
    """Mutant rule: F applied to the rate (F·RATE for AMT/RATE h) instead of the duration."""

    real = staticmethod(engine.infusion_rate_and_duration)

    def __call__(self, amt: Any, rate: Any, f: Any, mr: Any, md: Any) -> Any:
        r, d = self.real(amt, rate, np.ones_like(f), mr, md)
        return r * f, d


def test_f_applied_to_the_rate_instead_of_the_duration_is_caught(monkeypatch: Any) -> None:
    monkeypatch.setattr(engine, "infusion_rate_and_duration", FOnTheRate())
    with pytest.raises(AssertionError, match="relative error"):
        test_f_changes_the_duration_of_a_given_rate()


# ----------------------------------------------------------------------------- steady state

def past_doses(ref: Ref, t: np.ndarray, first: float, tau: float, n: int, fn: Any
               ) -> np.ndarray:
    """Σ over doses at first − jτ, j = 0 … n − 1 (n large enough that the rest < 1e-16)."""
    return sum(fn(ref, t, first - j * tau) for j in range(n))


def test_steady_state_bolus_is_the_geometric_sum() -> None:
    tau = 12.0
    kin = kinetics(ORAL_K, ORAL_E)
    res = run([dict(evid=1, amt=100, cmt=2, ii=tau, ss=1), *obs(0.0, 3.0, 11.999)], kin)
    t = np.array([0.0, 0.0, 3.0, 11.999])
    want = 100 * np.exp(-K10 * t) / (1 - np.exp(-K10 * tau)) / V
    assert_close(res.record_concentration, want)


@pytest.mark.parametrize("lag", [0.0, 2.0, 12.0, 15.5], ids=["no_lag", "lag", "lag_eq_ii",
                                                               "lag_gt_ii"])
def test_steady_state_oral_with_lag(lag: float) -> None:
    tau, f = 12.0, 0.9
    kin = kinetics(ORAL_K, ORAL_E, bioavailability=[f, 1.0], lag=[lag, 0.0])
    times = (0.5, 2.0, 6.0, 11.9, 14.0, 23.0)
    res = run([dict(time=10.0, evid=1, amt=100, ii=tau, ss=1), *obs(*(10 + x for x in times))],
              kin)
    ref = Ref(ORAL_K)
    t = 10.0 + np.array([0.0, *times])
    # the regimen's doses start at 10 + lag + jτ, j ≤ 0; only those up to the record count
    want = past_doses(ref, t, 10.0 + lag, tau, 400,
                      lambda r, x, s: r.bolus(x, s, 0, f * 100.0))
    assert_close(res.record_amounts, want)


@pytest.mark.parametrize("dur", [2.0, 30.0], ids=["shorter_than_ii", "longer_than_ii"])
def test_steady_state_infusion(dur: float) -> None:
    tau = 6.0
    kin = kinetics(ORAL_K, ORAL_E)
    times = (0.5, 1.9, 3.0, 5.9, 8.0, 40.0)
    res = run([dict(evid=1, amt=100, cmt=2, rate=100 / dur, ii=tau, ss=1), *obs(*times)], kin)
    ref = Ref(ORAL_K)
    t = np.array([0.0, *times])
    # the record's own dose plus the infinite past; no later doses (ADDL 0)
    want = past_doses(ref, t, 0.0, tau, 400,
                      lambda r, x, s: r.infusion(x, s, 1, 100 / dur, dur))
    assert_close(res.record_amounts[:, 1], want[:, 1])


def test_constant_infusion_at_steady_state() -> None:
    kin = kinetics(ORAL_K, ORAL_E)
    res = run([dict(evid=1, amt=0, cmt=2, rate=20, ss=1), *obs(1.0, 50.0)], kin)
    assert_close(res.record_concentration, np.full(3, 20 / CL))
    # it runs until a reset: after EVID 3 everything is zero and stays so
    res = run([dict(evid=1, amt=0, cmt=2, rate=20, ss=1), dict(time=5.0, evid=3),
               *obs(6.0)], kin)
    assert res.record_concentration[1] == 0.0 and res.record_concentration[2] == 0.0


def test_steady_state_2_adds_to_the_current_state() -> None:
    tau = 12.0
    kin = kinetics(ORAL_K, ORAL_E)
    times = (6.0, 7.0, 12.0, 17.9, 30.0)
    res = run([dict(evid=1, amt=50, cmt=2), dict(time=6.0, evid=1, amt=100, cmt=2, ii=tau,
                                                 ss=2), *obs(*times)], kin)
    ref = Ref(ORAL_K)
    t = np.array(times)
    want = ref.bolus(t, 0.0, 1, 50.0) + past_doses(
        ref, t, 6.0, tau, 400, lambda r, x, s: r.bolus(x, s, 1, 100.0))
    assert_close(res.record_amounts[2:], want)
    # SS 1 instead resets: the first dose is gone
    res1 = run([dict(evid=1, amt=50, cmt=2), dict(time=6.0, evid=1, amt=100, cmt=2, ii=tau,
                                                  ss=1), *obs(*times)], kin)
    assert_close(res1.record_amounts[2:], want - ref.bolus(t, 0.0, 1, 50.0))
    assert res1.record_ledger[1, 3] == pytest.approx(50 * np.exp(-K10 * 6), rel=1e-12)


def test_steady_state_with_additional_doses_continues_the_regimen() -> None:
    tau = 8.0
    kin = kinetics(ORAL_K, ORAL_E, lag=[1.0, 0.0])
    times = (3.0, 9.5, 17.0, 40.0)
    res = run([dict(evid=1, amt=100, ii=tau, ss=1, addl=2), *obs(*times)], kin)
    ref = Ref(ORAL_K)
    t = np.array(times)
    want = past_doses(ref, t, 1.0, tau, 400, lambda r, x, s: r.bolus(x, s, 0, 100.0)) + sum(
        ref.bolus(t, 1.0 + j * tau, 0, 100.0) for j in (1, 2))
    assert_close(res.record_amounts[1:], want)


# ----------------------------------------------------------------------------- resets

def test_reset_zeroes_everything_and_cancels_pending_doses() -> None:
    kin = kinetics(ORAL_K, ORAL_E, lag=[0.5, 0.0])
    rows = [dict(evid=1, amt=100, ii=12, addl=5), dict(time=3.0, evid=1, amt=50, cmt=2,
                                                       rate=10),
            dict(time=20.0, evid=3), *obs(20.0, 25.0, 40.0),
            dict(time=30.0, evid=1, amt=100, cmt=2), *obs(31.0)]
    res = run(rows, kin)
    tbl = table(rows)
    c = dict(zip(zip(tbl.time, tbl.evid, strict=True), res.record_concentration, strict=True))
    assert c[20.0, 3] == c[20.0, 0] == c[25.0, 0] == 0.0  # the ADDL dose at 24 never comes
    assert c[31.0, 0] == pytest.approx(100 * np.exp(-K10) / V, rel=1e-13)
    assert c[40.0, 0] == pytest.approx(100 * np.exp(-K10 * 10) / V, rel=1e-13)
    # the books: what the reset removed is booked, the residual stays at round-off
    assert res.record_ledger[list(tbl.evid).index(3), 3] > 0
    assert np.max(np.abs(res.record_residual())) <= 1e-12 * 300


def test_reset_and_dose() -> None:
    kin = kinetics(ORAL_K, ORAL_E)
    res = run([dict(evid=1, amt=100, cmt=2, ii=6, addl=3), dict(time=8.0, evid=4, amt=30,
                                                                cmt=2), *obs(8.0, 13.0)], kin)
    assert_close(res.record_concentration[1:], 30 * np.exp(-K10 * np.array([0, 0, 5.0])) / V)


def test_observations_at_a_dose_time() -> None:
    """The prediction on a dose record includes its bolus; an additional dose implied at a
    record's time acts before that record."""
    kin = kinetics(ORAL_K, ORAL_E)
    res = run([dict(evid=1, amt=100, cmt=2, ii=12, addl=1), *obs(12.0)], kin)
    assert res.record_concentration[0] == pytest.approx(100 / V, rel=1e-15)
    assert_close(res.record_concentration[1:], [(100 + 100 * np.exp(-K10 * 12)) / V])


# ----------------------------------------------------------------------------- consistency

def test_records_equal_the_grid_at_the_same_times() -> None:
    kin = kinetics(ORAL_K, ORAL_E, lag=[0.4, 0.0])
    times = np.round(np.linspace(0.1, 47.9, 37), 6)
    rows = [dict(evid=1, amt=100, ii=12, addl=3), dict(time=5.0, evid=1, amt=20, cmt=2,
                                                       rate=8), *obs(*times)]
    res = run(rows, kin, grid=times)
    assert res.grid_amounts is not None
    is_obs = table(rows).evid == 0
    np.testing.assert_allclose(res.record_amounts[is_obs], res.grid_amounts[0], rtol=0, atol=0)


def test_a_subject_alone_equals_the_same_subject_in_a_batch() -> None:
    rows = [dict(evid=1, amt=100, ii=12, addl=2), dict(time=5.0, evid=1, amt=20, cmt=2,
                                                       rate=8), *obs(1.0, 6.0, 30.0)]
    batch = []
    for i in range(1, 6):
        batch += [{**r, "id": i, "amt": r.get("amt", 0.0) * i} for r in rows]
    ka = np.array([1.3, 0.7, 2.1, 1.3, 0.9])
    kmats = np.array([[[-a, 0.0], [a, -K10]] for a in ka])
    kin = engine.Kinetics.constant(5, kmats, ORAL_E, V)
    together = run(batch, kin)
    ids = table(batch).id
    for i in range(5):
        alone = run([{**r, "id": 7, "amt": r.get("amt", 0.0) * (i + 1)} for r in rows],
                    kinetics(kmats[i], ORAL_E))
        np.testing.assert_array_equal(together.record_amounts[ids == i + 1],
                                      alone.record_amounts)


def test_a_degenerate_system_uses_the_matrix_exponential() -> None:
    """ka equal to k makes the eigenvectors collinear; the Bateman limit D·k·t·e^{−kt}."""
    k = K10
    kin = kinetics(np.array([[-k, 0.0], [k, -k]]), ORAL_E)
    res = run([dict(evid=1, amt=100), *obs(*T_OBS)], kin)
    t = np.array(T_OBS)
    assert_close(res.record_amounts[1:, 1], 100 * k * t * np.exp(-k * t))


def test_grid_times_a_hair_off_a_dose_are_the_dose_time() -> None:
    kin = kinetics(ORAL_K, ORAL_E)
    grid = np.arange(1423) * (142.2 / 1422)  # 0.1 h steps as a scenario computes them
    res = run([dict(evid=1, amt=100, cmt=2, ii=12, addl=11)], kin, grid=grid)
    assert res.grid is not None and res.grid_concentration is not None
    for dose in 12.0 * np.arange(12):
        i = int(np.argmin(np.abs(res.grid - dose)))
        assert res.grid[i] == dose
        # just after the dose: more than the trough before it
        assert res.grid_concentration[0, i] > res.grid_concentration[0, i - 1] if i else True


# ----------------------------------------------------------------------------- mutants

def test_a_steady_state_that_double_counts_the_first_dose_is_caught(monkeypatch: Any) -> None:
    real = engine._steady_states

    def double(recs: Any, t: Any, kmat: Any, c: Any, amount: Any, *rest: Any) -> Any:
        out = real(recs, t, kmat, c, amount, *rest)
        out.table[np.arange(recs.size), c] += amount  # the record's dose, again
        return out

    kin = kinetics(ORAL_K, ORAL_E)
    good = run([dict(evid=1, amt=100, cmt=2, ii=12, ss=1), *obs(3.0)], kin)
    assert good.check_ok is not None and good.check_ok.all()
    monkeypatch.setattr(engine, "_steady_states", double)
    bad = run([dict(evid=1, amt=100, cmt=2, ii=12, ss=1), *obs(3.0)], kin)
    assert bad.check_ok is not None and not bad.check_ok.any()
    with pytest.raises(AssertionError):
        test_steady_state_bolus_is_the_geometric_sum()


def test_bad_records_are_refused_with_the_record_named() -> None:
    kin = kinetics(ORAL_K, ORAL_E)
    cases = [
        ([dict(evid=1, amt=0)], "AMT > 0"),
        ([dict(evid=1, amt=10, addl=2)], "ADDL needs II"),
        ([dict(evid=1, amt=10, ss=1)], "SS needs II"),
        ([dict(evid=1, amt=10, cmt=5)], "CMT"),
        ([dict(evid=1, amt=10, rate=-2)], "infusion_duration"),
        ([dict(time=5.0, evid=0), dict(time=4.0, evid=0)], "backwards"),
        ([dict(evid=7)], "EVID"),
    ]
    for rows, text in cases:
        with pytest.raises(engine.RecordError, match=text) as info:
            run(rows, kin, sort=False)
        assert info.value.problems[0][0].startswith("record ")


def test_a_time_limited_extra_clearance_is_two_more_segments() -> None:
    """The hook a dialysis session uses: clearance CL + CL_d on central from 2 h to 5 h."""
    k, kd = K10, 1.5 / V
    base = np.array([[-k]])
    kin = engine.Kinetics(
        subject=np.zeros(3, np.int64), start=np.array([-np.inf, 2.0, 5.0]),
        kmat=np.array([base, base - kd, base]), elimination=np.array([[k], [k + kd], [k]]),
        bioavailability=np.ones((3, 1)), lag=np.zeros((3, 1)),
        infusion_rate=np.full((3, 1), np.nan), infusion_duration=np.full((3, 1), np.nan),
        volume=np.full(3, V))
    res = run([dict(evid=1, amt=100, cmt=1), *obs(1.0, 3.0, 5.0, 8.0)], kin, ("central",),
              central=0)
    t = np.array([1.0, 3.0, 5.0, 8.0])
    on = np.clip(t - 2.0, 0.0, 3.0)
    assert_close(res.record_amounts[1:, 0], 100 * np.exp(-k * t - kd * on))
    assert np.max(np.abs(res.record_residual())) < 1e-12 * 100
