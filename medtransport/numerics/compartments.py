"""Exact solution of linear compartment systems with zero-order inputs and instantaneous additions.

The system, for amounts ``A`` (n states, or P × n batched over P individuals), is

    dA/dt = K·A + r(t),

with ``K`` constant (n × n, or P × n × n) and ``r`` piecewise constant (zero-order inputs:
infusions), plus instantaneous additions ``A ← A + b`` at given times (boluses). Over an interval
of length Δ on which r is constant the variation-of-constants formula

    A(t + Δ) = e^{KΔ}·A(t) + ∫₀^Δ e^{Ks} ds · r

is evaluated exactly by one matrix exponential of the augmented matrix (Van Loan 1978,
"Computing integrals involving the matrix exponential", IEEE Trans. Autom. Control 23:395)::

    [A(t + Δ)]       ( [K  r]     )   [A(t)]
    [   1    ]  = exp( [0  0] · Δ ) · [  1 ]

The breakpoints are the union of the output times, the addition times and the input switch
times; propagators are cached by (Δ, input on the interval), so a regular output grid with a
periodic regimen costs a handful of matrix exponentials, each computed for the whole
batch of patients at once by :func:`expm_batched`.

Conservation: when ``K`` carries explicit sink states (an "eliminated" state fed by every
elimination path) its columns sum to zero, 1ᵀK = 0, hence 1ᵀe^{KΔ} = 1ᵀ and Σᵢ Aᵢ(t) equals
everything given so far (initial + additions + ∫r) up to round-off — the books close by
construction, and an auditor can check it.

Steady state (NONMEM SS=1): for a regimen repeated every τ, one interval maps the pre-dose state
to ``A(τ) = Φ·A(0) + c`` with Φ = e^{Kτ} and ``c`` the state one interval after a single regimen
given to an empty system. Sink states only accumulate, so the fixed point is taken over the body
states ``b`` alone::

    A_ss,b = (I − Φ_bb)⁻¹ · c_b,      A_ss,sink = 0.

The drug given before t0 is not part of any ledger: a model using SS must declare the SS body
content Σ A_ss,b as its initial amount.

Example (one compartment, bolus D into volume V, elimination k; states central, eliminated)::

    K = [[-k, 0], [k, 0]];  amounts(K, t, additions=[(0, [D, 0])])[:, 0] / V == D/V·e^{−kt}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from medtransport.numerics.propagate import kernel_for

__all__ = ["Addition", "Input", "amounts", "steady_state_start"]


@dataclass(frozen=True)
class Addition:
    """An instantaneous addition ``A ← A + amount`` at ``time``; ``amount`` is (n,) or (P, n)."""

    time: float
    amount: np.ndarray


@dataclass(frozen=True)
class Input:
    """A zero-order input ``r`` (amount per time, (n,) or (P, n)) on ``[start, stop)``."""

    start: float
    stop: float
    rate: np.ndarray


def _as_additions(items: Sequence[Addition | tuple[float, np.ndarray]]) -> list[Addition]:
    return [a if isinstance(a, Addition) else Addition(float(a[0]), np.asarray(a[1], float))
            for a in items]


def _as_inputs(items: Sequence[Input | tuple[float, float, np.ndarray]]) -> list[Input]:
    return [i if isinstance(i, Input) else Input(float(i[0]), float(i[1]),
                                                 np.asarray(i[2], float))
            for i in items]


def _key(delta: float) -> float:
    # Output grids built as start + i·dt give intervals differing in the last bits; one
    # propagator per nominal interval keeps the expm count small. Intervals that agree to 11
    # digits share the propagator of the first of them, so the time grid drifts by ULPs only.
    return float(f"{delta:.11e}")


def expm_batched(a: np.ndarray) -> np.ndarray:
    """exp(A) for a stack of small matrices (…, m, m), all at once.

    Scaling and squaring: exp(A) = (exp(A/2^s))^(2^s) with θ = ‖A/2^s‖₁ ≤ 1/2, and exp of the
    scaled matrix by its Taylor series to the smallest degree q whose remainder bound
    θ^(q+1)/(q+1)!·e^θ, relative to ‖exp(A)‖ ≥ e^−θ, is below 1e-18, far under double
    precision's 1.1e-16 (Moler & Van Loan
    2003, "Nineteen dubious ways…", method 3): q = 16 at θ = 1/2, but q = 7 for the short
    output steps of a PK grid (θ ≈ 0.02), where the matrix products are most of the cost.
    One s and one q for the whole stack, so every step is a batched matrix product.
    """
    a = np.asarray(a, dtype=float)
    norm = float(np.max(np.sum(np.abs(a), axis=-2))) if a.size else 0.0
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    theta = norm / 2.0 ** s
    x = a / 2.0 ** s
    degree = _taylor_degree(theta)
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    result = eye + x / degree
    for k in range(degree - 1, 0, -1):  # Horner: I + X/1·(I + X/2·(… (I + X/q)))
        result = eye + (x @ result) / k
    for _ in range(s):
        result = result @ result
    return result


#: Bound on the relative Taylor remainder in :func:`expm_batched`.
_TAYLOR_TOLERANCE = 1e-18


def _taylor_degree(theta: float) -> int:
    """The smallest degree q ≥ 1 with θ^(q+1)/(q+1)!·e^(2θ) ≤ 1e-18 (θ ≤ 1/2 gives q ≤ 18)."""
    q, term = 1, theta * theta / 2.0  # term = θ^(q+1)/(q+1)! as q grows
    while term * math.exp(2.0 * theta) > _TAYLOR_TOLERANCE and q < 18:
        q += 1
        term *= theta / (q + 1)
    return q


class _Propagators:
    """Cached augmented exponentials for one rate matrix (batched or not)."""

    def __init__(self, kmat: np.ndarray):
        self.kmat = kmat
        self.n = kmat.shape[-1]
        self.cache: dict[tuple[float, tuple[bytes, ...]], tuple[np.ndarray, np.ndarray]] = {}
        self.expm_calls = 0

    def get(self, delta: float, active: tuple[bytes, ...], rate: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
        """(Φ, c) with state(t + Δ) = Φ·state(t) + c under the summed ``rate`` of the active
        inputs, identified by ``active`` (their rates as bytes, so that equal inputs share)."""
        key = (_key(delta), active)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        n = self.n
        batch = self.kmat.shape[:-2]
        aug = np.zeros((*batch, n + 1, n + 1))
        aug[..., :n, :n] = self.kmat
        aug[..., :n, n] = rate
        prop = expm_batched(aug * delta)
        self.expm_calls += 1
        # contiguous blocks: they are applied at every step
        pair = (np.ascontiguousarray(prop[..., :n, :n]), np.ascontiguousarray(prop[..., :n, n]))
        self.cache[key] = pair
        return pair


#: Runs of more identical steps than this go through the compiled propagation loop.
_COMPILED_RUN = 16


@dataclass
class _Plan:
    """Which propagator each interval uses, and how far a run of identical steps reaches."""

    deltas: np.ndarray
    run_end: np.ndarray
    inputs: list[Input]
    actives: list[np.ndarray]
    rate_keys: list[bytes]
    batch: tuple[int, ...]
    n: int

    def propagator_of(self, k: int) -> tuple[float, tuple[bytes, ...], np.ndarray]:
        """(Δ, input signature, summed input rate) of interval ``k``."""
        on = [m for m, mask in enumerate(self.actives) if mask[k]]
        rate = sum((self.inputs[m].rate for m in on), np.zeros((*self.batch, self.n)))
        return float(self.deltas[k]), tuple(sorted(self.rate_keys[m] for m in on)), rate


def _plan(breaks: np.ndarray, t: np.ndarray, adds: list[Addition], ins: list[Input],
          batch: tuple[int, ...], n: int) -> _Plan:
    """Classify the intervals between breakpoints, vectorised: a run of intervals continues
    while the nominal length (36 mantissa bits, ~1e-11 relative) and the inputs stay the same,
    no dose falls on the breakpoint and exactly one output does."""
    deltas = np.diff(breaks)
    lo, hi = breaks[:-1], breaks[1:]
    rate_keys = [np.ascontiguousarray(i.rate, dtype=float).tobytes() for i in ins]
    distinct = {key: d for d, key in enumerate(dict.fromkeys(rate_keys))}
    actives = [(i.start <= lo) & (hi <= i.stop) for i in ins]
    mantissa, exponent = np.frexp(deltas)
    columns = [np.round(mantissa * 2.0 ** 36), exponent.astype(float)]
    counts = np.zeros((deltas.size, len(distinct)))
    for key, mask in zip(rate_keys, actives, strict=True):
        counts[:, distinct[key]] += mask
    table = np.column_stack([*columns, counts]) if deltas.size else np.zeros((0, 2))
    # interval k has the same propagator as interval k−1 (only neighbours matter for runs;
    # the propagator cache finds equal intervals anywhere)
    same = np.all(table[1:] == table[:-1], axis=1)
    dosed = np.isin(breaks, [a.time for a in adds])
    outputs_at = np.searchsorted(t, breaks, side="right") - np.searchsorted(t, breaks,
                                                                           side="left")
    # interval k continues the run of interval k−1
    cont = np.zeros(deltas.size, dtype=bool)
    cont[1:] = same & ~dosed[1:-1] & (outputs_at[1:-1] == 1)
    starts = np.flatnonzero(~cont)
    # run_end[k]: the first interval after k that starts a new run (or the number of intervals)
    nxt = np.searchsorted(starts, np.arange(deltas.size), side="right")
    run_end = np.append(starts, deltas.size)[nxt]
    return _Plan(deltas, run_end, ins, actives, rate_keys, batch, n)


def amounts(kmat: np.ndarray, times: Sequence[float] | np.ndarray, *,
            initial: np.ndarray | None = None,
            additions: Sequence[Addition | tuple[float, np.ndarray]] = (),
            inputs: Sequence[Input | tuple[float, float, np.ndarray]] = (),
            out: np.ndarray | None = None) -> np.ndarray:
    """Amounts at the output ``times`` (sorted, in the time unit of ``kmat``).

    ``initial`` is the state at ``times[0]`` before any addition at that time (zeros if
    omitted). An addition at an output time is included in that output (states are
    right-continuous). Additions or inputs after the last output time are ignored; before the
    first one they are an error. Returns (T, n) for a single ``kmat``, (P, T, n) for a stack.

    ``out``, a C-contiguous float64 array of the returned shape, (T, n) or (P, T, n), is
    written and returned; a caller running patients in chunks reuses one such buffer instead
    of paying for fresh pages each chunk.
    """
    kmat = np.asarray(kmat, dtype=float)
    if kmat.ndim not in (2, 3) or kmat.shape[-1] != kmat.shape[-2]:
        raise ValueError(f"kmat must be (n, n) or (P, n, n), got shape {kmat.shape}")
    n = kmat.shape[-1]
    batch = kmat.shape[:-2]
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) < 0):
        raise ValueError("times must be a non-empty sorted 1-D sequence")
    adds = _as_additions(additions)
    ins = _as_inputs(inputs)
    t0, t_end = float(t[0]), float(t[-1])
    for a in adds:
        if a.time < t0:
            raise ValueError(f"an addition at {a.time:g} precedes the first output {t0:g}")
    for i in ins:
        if i.start < t0 or i.stop < i.start:
            raise ValueError(f"input [{i.start:g}, {i.stop:g}) must start at or after {t0:g} "
                             "and not end before it starts")

    state = np.zeros((*batch, n)) if initial is None else \
        np.broadcast_to(np.asarray(initial, dtype=float), (*batch, n)).copy()
    points = set(t.tolist())
    points.update(a.time for a in adds if a.time <= t_end)
    for i in ins:
        points.update(x for x in (i.start, i.stop) if x <= t_end)
    breaks = np.array(sorted(points))

    # Patient-major storage: each patient's trajectory is one contiguous block.
    if out is None:
        out = np.empty((*batch, t.size, n))
    elif (out.shape != (*batch, t.size, n) or out.dtype != np.float64
          or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous float64 array of shape "
                         f"{(*batch, t.size, n)}, got {out.dtype} {out.shape}")
    plan = _plan(breaks, t, adds, ins, batch, n)
    props = _Propagators(kmat)
    add_at: dict[float, list[np.ndarray]] = {}
    for a in adds:
        add_at.setdefault(a.time, []).append(a.amount)
    flat_state = state.reshape(-1, n)  # (P, n) view, P = 1 without a batch
    flat_out = out.reshape(-1, t.size, n)
    j = 0  # next output index
    k = 0
    while True:
        b = float(breaks[k])
        for amount in add_at.get(b, ()):
            flat_state += np.broadcast_to(amount, state.shape).reshape(-1, n)
        while j < t.size and t[j] == b:
            out[..., j, :] = state
            j += 1
        if k + 1 == breaks.size:
            break
        phi, c = props.get(*plan.propagator_of(k))
        phi, c = phi.reshape(-1, n, n), c.reshape(-1, n)
        # Intervals k … k+r−1 share the propagator and end in exactly one output each, with
        # no dose in between: propagate them in one compiled pass.
        r = int(plan.run_end[k]) - k
        if r > _COMPILED_RUN:
            work = flat_state.shape[0] * (r - 1) * n
            kernel_for(n, work)(phi, c, flat_state, flat_out, j, r - 1)
            j += r - 1
        else:
            r = 1
        flat_state[:] = np.matmul(phi, flat_state[..., None])[..., 0] + c
        k += r
    return out


def steady_state_start(kmat: np.ndarray, interval: float, body: Sequence[int] | np.ndarray, *,
                       additions: Sequence[Addition | tuple[float, np.ndarray]] = (),
                       inputs: Sequence[Input | tuple[float, float, np.ndarray]] = ()
                       ) -> np.ndarray:
    """The pre-dose state at steady state of a regimen repeated every ``interval``.

    One regimen is ``additions`` (at offsets in [0, interval)) and ``inputs`` (on sub-intervals
    of [0, interval]) measured from the dose time. ``body`` lists the indices of the states
    that exchange drug; the others are sinks (their columns of ``kmat`` must be zero) and are
    returned as 0 — what reached them before t0 is outside the books. Returns (n,) or (P, n).
    Raises ``ValueError`` if the body does not eliminate (I − Φ_bb singular).
    """
    kmat = np.asarray(kmat, dtype=float)
    n = kmat.shape[-1]
    body_idx = np.asarray(body, dtype=int)
    sinks = np.setdiff1d(np.arange(n), body_idx)
    if sinks.size and np.any(kmat[..., :, sinks] != 0.0):
        raise ValueError("sink states must not feed other states (their columns of kmat are 0)")
    adds = _as_additions(additions)
    ins = _as_inputs(inputs)
    for a in adds:
        if not 0.0 <= a.time < interval:
            raise ValueError(f"a steady-state addition at offset {a.time:g} lies outside one "
                             f"interval [0, {interval:g})")
    for i in ins:
        if i.start < 0.0 or i.stop > interval * (1 + 1e-12):
            raise ValueError(f"a steady-state input [{i.start:g}, {i.stop:g}) does not fit in "
                             f"one interval of {interval:g}")
    # c: one regimen given to an empty system, followed for one interval.
    c = amounts(kmat, [0.0, interval], additions=adds, inputs=ins)[..., -1, :]
    phi = scipy.linalg.expm(kmat * interval)
    phi_bb = phi[..., body_idx[:, None], body_idx[None, :]]
    eye = np.eye(body_idx.size)
    # Without elimination Φ_bb has an eigenvalue 1 and the "fixed point" is round-off.
    if np.max(np.abs(np.linalg.eigvals(phi_bb))) > 1.0 - 1e-9:
        raise ValueError("no steady state: the body states do not eliminate")
    try:
        # numpy's solve broadcasts over the batch; the right-hand side needs a trailing axis.
        ss_b = np.linalg.solve(eye - phi_bb, c[..., body_idx][..., None])[..., 0]
    except np.linalg.LinAlgError as exc:
        raise ValueError("no steady state: the body states do not eliminate") from exc
    if not np.all(np.isfinite(ss_b)):
        raise ValueError("no steady state: the body states do not eliminate")
    out = np.zeros(c.shape)
    out[..., body_idx] = ss_b
    return out
