"""Urea kinetics through a dialysis schedule: the pools, the volumes, and the books, exactly.

Per patient, with the urea space V(t) split into pools of fixed fractions f_j (single pool:
f = 1; two pools: extracellular f_e, intracellular f_i = 1 − f_e) and amounts M_j::

    dV/dt    = a(t)                  a = intake − urine − Q_f (Q_f: ultrafiltration, in sessions)
    dM_e/dt  = G − (K + K_r)·C_e − K_c·(C_e − C_i),      C_j = M_j/(f_j·V)
    dM_i/dt  = K_c·(C_e − C_i)
    dD/dt    = K·C_e,   dR/dt = K_r·C_e,   d(generated)/dt = G

K is the dialyser clearance (:mod:`medtransport_dialysis.dialyser`, convection included) during
sessions and 0 between them; K_r the residual renal clearance; K_c the intercompartmental one.
Urea leaves only by D and R and is made only by G, so M_e + M_i + D + R − generated is constant.

With V time-dependent the coefficients 1/V(t) are not constant in t, but they are in the
"volume time" τ = ∫dt/V (on a piece where a is constant: τ = ln(1 + a·h/V_0)/a, V = V_0·e^{aτ}):

    dM_e/dτ = G·V − (K + K_r)·M_e/f_e − K_c·(M_e/f_e − M_i/f_i),     dV/dτ = a·V,
    dD/dτ = K·M_e/f_e,   dR/dτ = K_r·M_e/f_e,   d(∫C_e dt)/dτ = M_e/f_e,

a linear system with constant coefficients on each piece, solved exactly two ways:

- ``matrix_exponential`` (any number of pools): the state [M…, D, R, −generated, V, ∫C_e dt]
  propagated by e^{A·τ} with the core's batched exponential
  (:func:`medtransport.numerics.compartments.expm_batched`), each patient with its own τ. The
  urea columns of A sum to zero and the generation is booked by a reservoir state fed by V, so
  the books close by construction.
- ``closed_form`` (single pool, the fast path for populations), with k = K + K_r and
  φ(z) = (e^z − 1)/z::

      M(τ) = e^{−kτ}·M_0 + G·V_0·τ·e^{−kτ}·φ((a + k)τ)
      ∫_0^τ M dτ' (= ∫C dt) = M_0·τ·φ(−kτ) + G·V_0·τ²·[φ(aτ) − φ(−kτ)]/(aτ + kτ)

  and D += K·∫C dt, R += K_r·∫C dt, generated += G·h. At a = 0 this is the textbook fixed-volume
  C(t) = C_0·e^{−Kt/V} + G/K·(1 − e^{−Kt/V}).

Times in h, volumes in L, clearances in L/h, urea in mmol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtransport.numerics.compartments import expm_batched
from medtransport_dialysis.dialyser import phi1

__all__ = ["Course", "Kinetics", "Schedule", "dphi1", "log_ratio", "simulate_course"]


def dphi1(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The divided difference (φ(x) − φ(y))/(x − y), and φ'(x) where x ≈ y."""
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    close = np.abs(x - y) < 1e-5 * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (phi1(x) - phi1(y)) / (x - y)
    if close.any():  # rare (short pieces, a + k ≈ 0): the derivative only where needed
        out = np.array(out, copy=True)
        out[close] = _dphi1_at((x[close] + y[close]) / 2.0)
    return out


def _dphi1_at(z: np.ndarray) -> np.ndarray:
    """φ'(z) = (e^z·(z − 1) + 1)/z², by its series Σ n·z^(n−1)/(n+1)! near 0."""
    small = np.abs(z) < 0.2
    safe = np.where(small, 1.0, z)
    with np.errstate(over="ignore"):
        direct = (np.exp(safe) * (safe - 1.0) + 1.0) / safe ** 2
    series = np.zeros_like(z)
    fact = 2.0  # (n + 1)!
    power = np.ones_like(z)
    for n in range(1, 14):
        series = series + n * power / fact
        power = power * z
        fact *= n + 2
    return np.where(small, series, direct)


def log_ratio(x: np.ndarray) -> np.ndarray:
    """ln(1 + x)/x with the value 1 at x = 0."""
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - x / 2.0, np.log1p(safe) / safe)


@dataclass(frozen=True)
class Kinetics:
    """Per-patient constants, arrays over P patients (h, L, L/h, mmol/h)."""

    generation: np.ndarray          # G, mmol/h
    residual_clearance: np.ndarray  # K_r, L/h
    intake: np.ndarray              # L/h
    urine: np.ndarray               # L/h
    fractions: tuple[float, ...] = (1.0,)   # f_j of the pools (sum 1)
    intercompartmental_clearance: np.ndarray | float = 0.0   # K_c, L/h

    @property
    def pools(self) -> int:
        return len(self.fractions)


@dataclass(frozen=True)
class Schedule:
    """Sessions: start and stop (h, sorted, not overlapping), and per session and patient the
    dialyser clearance K and the ultrafiltration rate Q_f (L/h), arrays (S, P)."""

    start: np.ndarray
    stop: np.ndarray
    clearance: np.ndarray
    ultrafiltration: np.ndarray

    def active(self, t0: float, t1: float) -> int | None:
        """The session covering [t0, t1], if any."""
        i = int(np.searchsorted(self.start, t0, side="right")) - 1
        if i >= 0 and self.stop[i] >= t1 and self.start[i] <= t0:
            return i
        return None


@dataclass
class Course:
    """What the solver returns: states at the output times, (T, P, …), and the state at each
    session's start and end, (S, P, …), in the layout [M_1 … M_n, D, R, −generated, V, ∫C dt]."""

    states: np.ndarray
    at_start: np.ndarray
    at_stop: np.ndarray
    pools: int

    def part(self, name: str, where: str = "states") -> np.ndarray:
        n = self.pools
        idx = {"dialysate": n, "renal": n + 1, "generated": n + 2, "volume": n + 3,
               "area": n + 4}
        arr = getattr(self, where)
        if name == "amount":
            return arr[..., :n]
        value = arr[..., idx[name]]
        return -value if name == "generated" else value


def _advance_closed_form(y: np.ndarray, h: float, k_d: np.ndarray, kin: Kinetics,
                         a: np.ndarray) -> np.ndarray:
    """One piece of length h for a single pool, exactly (module docstring)."""
    m, d, r, res, v, area = (y[:, j] for j in range(6))
    g, kr = kin.generation, kin.residual_clearance
    tau = h / v * log_ratio(a * h / v)
    k = k_d + kr
    e = np.exp(-k * tau)
    z = (a + k) * tau
    big = np.abs(z) > 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        convolved = np.where(big, (np.exp(a * tau) - e) / np.where(big, a + k, 1.0),
                             e * tau * phi1(z))
    m_new = m * e + g * v * convolved
    integral = m * tau * phi1(-k * tau) + g * v * tau * tau * dphi1(a * tau, -k * tau)
    out = np.empty_like(y)
    out[:, 0] = m_new
    out[:, 1] = d + k_d * integral
    out[:, 2] = r + kr * integral
    out[:, 3] = res - g * h
    out[:, 4] = v + a * h
    out[:, 5] = area + integral
    return out


def _rate_matrix(k_d: np.ndarray, kin: Kinetics, a: np.ndarray) -> np.ndarray:
    """A in volume time τ, (P, n+5, n+5), over [M…, D, R, reservoir, V, ∫C_e dt]."""
    n = kin.pools
    p = a.shape[0]
    size = n + 5
    mat = np.zeros((p, size, size))
    fe = kin.fractions[0]
    kr = np.broadcast_to(kin.residual_clearance, (p,))
    mat[:, 0, 0] = -(k_d + kr) / fe
    if n == 2:
        kc = np.broadcast_to(np.asarray(kin.intercompartmental_clearance, float), (p,))
        fi = kin.fractions[1]
        mat[:, 0, 0] -= kc / fe
        mat[:, 0, 1] = kc / fi
        mat[:, 1, 0] = kc / fe
        mat[:, 1, 1] = -kc / fi
    mat[:, n, 0] = k_d / fe
    mat[:, n + 1, 0] = kr / fe
    mat[:, 0, n + 3] = kin.generation
    mat[:, n + 2, n + 3] = -kin.generation
    mat[:, n + 3, n + 3] = a
    mat[:, n + 4, 0] = 1.0 / fe
    return mat


def _advance_matrix_exponential(y: np.ndarray, h: float, k_d: np.ndarray, kin: Kinetics,
                                a: np.ndarray) -> np.ndarray:
    n = kin.pools
    v = y[:, n + 3]
    tau = h / v * log_ratio(a * h / v)
    prop = expm_batched(_rate_matrix(k_d, kin, a) * tau[:, None, None])
    return np.matmul(prop, y[..., None])[..., 0]


def simulate_course(times: np.ndarray, schedule: Schedule, kinetics: Kinetics,
                    initial_amount: np.ndarray, initial_volume: np.ndarray, *,
                    method: str = "closed_form") -> Course:
    """Run the pools through ``times`` (h, sorted) and the schedule's sessions.

    ``initial_amount`` (P, n) and ``initial_volume`` (P,) are the state at ``times[0]``."""
    n = kinetics.pools
    if method == "closed_form" and n != 1:
        raise ValueError("the closed form is for a single pool; use matrix_exponential")
    advance = _advance_closed_form if method == "closed_form" else _advance_matrix_exponential
    p = initial_volume.shape[0]
    # column-major: each state of all patients is contiguous, which halves the cost of the
    # closed form's elementwise passes over 10⁵ patients
    y = np.zeros((p, n + 5), order="F")
    y[:, :n] = initial_amount
    y[:, n + 3] = initial_volume
    t0, t_end = float(times[0]), float(times[-1])
    points = set(times.tolist())
    for s0, s1 in zip(schedule.start, schedule.stop, strict=True):
        points.update(x for x in (float(s0), float(s1)) if t0 <= x <= t_end)
    breaks = np.array(sorted(points))
    n_sessions = schedule.start.size
    states = np.empty((times.size, p, n + 5))
    at_start = np.full((n_sessions, p, n + 5), np.nan)
    at_stop = np.full((n_sessions, p, n + 5), np.nan)
    start_of = {float(s): i for i, s in enumerate(schedule.start)}
    stop_of = {float(s): i for i, s in enumerate(schedule.stop)}
    base_a = kinetics.intake - kinetics.urine
    j = 0
    for k, b in enumerate(breaks):
        b = float(b)
        while j < times.size and times[j] == b:
            states[j] = y
            j += 1
        if b in start_of:
            at_start[start_of[b]] = y
        if b in stop_of:
            at_stop[stop_of[b]] = y
        if k + 1 == breaks.size:
            break
        nxt = float(breaks[k + 1])
        session = schedule.active(b, nxt)
        if session is None:
            k_d = np.zeros(p)
            a = np.broadcast_to(base_a, (p,)).astype(float)
        else:
            k_d = np.broadcast_to(schedule.clearance[session], (p,)).astype(float)
            a = base_a - schedule.ultrafiltration[session]
        y = advance(y, nxt - b, k_d, kinetics, np.broadcast_to(a, (p,)))
    return Course(states, at_start, at_stop, n)
