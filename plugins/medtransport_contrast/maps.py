"""Whole-volume DCE parameter maps: every voxel of a mask at once, vectorised.

Concentration curves are (P, T): P voxels × T times (s), in mM; one plasma input C_p (T,) in
mM for all of them. Each fit returns name → :class:`Map` (values, unit, description) with
standard-error maps (``<name>_se``, s²·(JᵀJ)⁻¹ at the solution) and fit-quality maps (``rms``
residual in mM, ``converged``). Parameters are reported in the DCE literature's units (Ktrans
and PS in 1/min, Fp in mL/min/100 mL, fractions) — the units of
:mod:`medtransport_contrast.fitting` — and computed with the forward models of
:mod:`medtransport_contrast.kinetics` (SI: s, 1/s).

- Patlak is linear in (Ktrans, vp): C = vp·C_p + Ktrans·∫C_p, solved exactly by least squares.
- Tofts and extended Tofts start from the linearised form (Murase, *Magn Reson Med*
  2004;51:858), integrating C = Ktrans·(e^{−kep t} ∗ C_p) [+ vp·C_p]:

      C(t) = Ktrans·∫C_p − kep·∫C            (+ vp·C_p + kep·vp·∫C_p for extended Tofts)

  a per-voxel 2×2 (3×3) least-squares problem, then batched Levenberg–Marquardt
  (:mod:`medtransport.numerics.batched_lm`) refines the nonlinear model; ve = Ktrans/kep.
- 2CXM (Fp, PS, vp, ve) by batched Levenberg–Marquardt from the OSIPI start and, with
  ``multistart``, the further starts of :data:`medtransport_contrast.fitting.FP_STARTS` ×
  ``PS_STARTS``, keeping each voxel's lowest cost.
- Arterial delay (``delays``): the input is shifted by each candidate delay (linear
  interpolation, 0 before) and every voxel keeps the delay of its lowest cost; the grid step
  bounds the delay's error (default 0.5 s, half OSIPI's 1 s tolerance).

Bounds as in :mod:`medtransport_contrast.fitting` (OSIPI's): Ktrans, PS in [0, 5] /min, ve in
[1e-4, 1], vp in [0, 1], Fp in [0, 200] mL/min/100 mL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medtransport.numerics.batched_lm import LMResult, levenberg_marquardt
from medtransport_contrast import kinetics as kin
from medtransport_contrast import tofts_kernel as tk
from medtransport_contrast.fitting import FP_STARTS, PS_STARTS

__all__ = ["MODELS", "Map", "fit_maps"]

_PER_MIN = 1.0 / 60.0
#: Voxels per block: a block's (voxels × times) temporaries stay in cache, which makes a
#: whole-volume fit ~3× cheaper than one pass over all voxels (bench_imaging); blocks are
#: also the unit of work of ``threads``.
_BLOCK = 256
#: model → (parameter, unit, start, lower, upper, typical scale) in the reported units
MODELS: dict[str, tuple[tuple[str, str, float, float, float, float], ...]] = {
    "patlak": (("ktrans", "1/min", 0.6, 0.0, 5.0, 0.1), ("vp", "dimensionless", 0.01, 0.0, 1.0,
                                                         0.01)),
    "tofts": (("ktrans", "1/min", 0.6, 0.0, 5.0, 0.1),
              ("ve", "dimensionless", 0.2, 1e-4, 1.0, 0.1)),
    "extended_tofts": (("ktrans", "1/min", 0.6, 0.0, 5.0, 0.1),
                       ("ve", "dimensionless", 0.2, 1e-4, 1.0, 0.1),
                       ("vp", "dimensionless", 0.01, 0.0, 1.0, 0.01)),
    "two_compartment_exchange": (("plasma_flow", "mL/min/dL", 20.0, 0.0, 200.0, 10.0),
                                 ("permeability_surface", "1/min", 0.6, 0.0, 5.0, 0.1),
                                 ("vp", "dimensionless", 0.01, 1e-4, 1.0, 0.01),
                                 ("ve", "dimensionless", 0.2, 1e-4, 1.0, 0.1)),
}
_LONG = {"ktrans": "volume transfer constant Ktrans", "ve": "extravascular extracellular "
         "volume fraction ve", "vp": "plasma volume fraction vp", "plasma_flow": "plasma flow Fp",
         "permeability_surface": "permeability–surface area product PS"}


@dataclass
class Map:
    """Values over the mask's voxels (P,), their unit and what they are."""

    values: np.ndarray
    unit: str
    description: str


def _uniform(t: np.ndarray) -> bool:
    d = np.diff(t)
    return bool(np.all(np.abs(d - d[0]) <= 1e-9 * d[0]))


def _forward(model: str, t: np.ndarray, cp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Predictions (P, T) for parameters (P, K) in the reported units."""
    uniform = _uniform(t)
    if model == "patlak":
        return kin.patlak(t, cp, x[:, 0] * _PER_MIN, x[:, 1])
    if model in ("tofts", "extended_tofts"):
        ktrans = x[:, 0] * _PER_MIN
        kep = ktrans / x[:, 1]
        if uniform:  # compiled, voxel-major rows: what the optimiser reads
            return tk.tofts_predict(ktrans, x[:, 1], x[:, 2] if model == "extended_tofts"
                                    else None, float(t[1] - t[0]), cp)
        else:
            c = ktrans[:, None] * kin.exp_convolution(kep, t, cp)
        if model == "extended_tofts":
            c = c + x[:, 2:3] * cp
        return c
    return kin.two_compartment_exchange(t, cp, x[:, 0] / 100.0 * _PER_MIN, x[:, 1] * _PER_MIN,
                                        x[:, 2], x[:, 3])


def _cumtrapz(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.diff(t)
    z = np.zeros((*y.shape[:-1], 1))
    return np.concatenate([z, np.cumsum(0.5 * d * (y[..., 1:] + y[..., :-1]), axis=-1)], axis=-1)


def _linear_start(model: str, t: np.ndarray, cp: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Murase's linearised least squares (module docstring), batched; clipped into bounds."""
    icp = _cumtrapz(t, cp)
    ic = _cumtrapz(t, c)
    p = c.shape[0]
    # the normal equations of the columns (∫C_p, −∫C[, C_p]) written out: the shared column's
    # products are scalars, so no (P, T, K) design is ever built
    shared = [icp] if model != "extended_tofts" else [icp, cp]
    k = len(shared) + 1
    ata = np.empty((p, k, k))
    atb = np.empty((p, k))
    for i, u in enumerate(shared):
        for j, v in enumerate(shared):
            ata[:, i, j] = float(u @ v)
        ata[:, i, k - 1] = ata[:, k - 1, i] = -(ic @ u)
        atb[:, i] = c @ u
    ata[:, k - 1, k - 1] = np.einsum("pt,pt->p", ic, ic)
    atb[:, k - 1] = -np.einsum("pt,pt->p", ic, c)
    # columns ordered (∫C_p[, C_p], −∫C): move −∫C to position 1 as the code below expects
    order = [0, k - 1, *range(1, k - 1)]
    ata = ata[:, order][:, :, order]
    atb = atb[:, order]
    coef = np.linalg.solve(ata + 1e-300 * np.eye(k), atb[..., None])[..., 0]
    kep = np.clip(coef[:, 1], 1e-6, None)  # 1/s
    if model == "extended_tofts":
        vp = coef[:, 2]
        ktrans = coef[:, 0] - kep * vp
        x = np.stack([ktrans / _PER_MIN, ktrans / kep, vp], axis=1)
    else:
        ktrans = coef[:, 0]
        x = np.stack([ktrans / _PER_MIN, ktrans / kep], axis=1)
    spec = MODELS[model]
    lo = np.array([s[3] for s in spec])
    hi = np.array([s[4] for s in spec])
    bad = ~np.all(np.isfinite(x), axis=1)
    x[bad] = np.array([s[2] for s in spec])
    return np.clip(x, lo, hi) if p else x


def _patlak(t: np.ndarray, cp: np.ndarray, c: np.ndarray) -> LMResult:
    a = np.stack([_cumtrapz(t, cp) * _PER_MIN, cp], axis=1)  # Ktrans in 1/min, vp
    pinv = np.linalg.pinv(a)
    x = c @ pinv.T
    res = c - x @ a.T
    dof = max(t.size - 2, 1)
    s2 = np.sum(res ** 2, axis=1) / dof
    cov = np.linalg.inv(a.T @ a)
    se = np.sqrt(s2[:, None] * np.diag(cov)[None, :])
    return LMResult(x, 0.5 * np.sum(res ** 2, axis=1), se, np.ones(c.shape[0], bool),
                    np.zeros(c.shape[0], int))


def _fit_one_input(model: str, t: np.ndarray, cp: np.ndarray, c: np.ndarray,
                   multistart: bool, max_iter: int) -> LMResult:
    if model == "patlak":
        return _patlak(t, cp, c)
    spec = MODELS[model]
    lo = np.array([s[3] for s in spec])
    hi = np.array([s[4] for s in spec])
    typical = np.array([s[5] for s in spec])

    def f(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _forward(model, t, cp, x)

    dt = float(t[1] - t[0]) if _uniform(t) else None

    def tofts_jacobian(x: np.ndarray, idx: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The exact derivative of the discrete model, compiled (:mod:`.tofts_kernel`)."""
        assert dt is not None
        return tk.tofts_jacobian(x[:, 0] * _PER_MIN, x[:, 1], model == "extended_tofts", dt,
                                 cp, _PER_MIN)

    def run(x0: np.ndarray) -> LMResult:
        # a relative step of 1e-8 is far below any tolerance a map is read at, and stops the
        # noisy voxels 3–4 iterations after the linearised start instead of ~12
        analytic = dt is not None and model in ("tofts", "extended_tofts")
        return levenberg_marquardt(lambda x, idx: f(x, idx), x0, c, lower=lo, upper=hi,
                                   typical=typical, max_iter=max_iter, xtol=1e-8, ftol=1e-10,
                                   jacobian=tofts_jacobian if analytic else None)

    p = c.shape[0]
    if model in ("tofts", "extended_tofts"):
        return run(_linear_start(model, t, cp, c))
    starts = [np.array([s[2] for s in spec])]
    if multistart:
        for fp in FP_STARTS:
            for ps in PS_STARTS:
                s = starts[0].copy()
                s[0], s[1] = fp, ps
                starts.append(s)
    best: LMResult | None = None
    for s in starts:
        res = run(np.tile(s, (p, 1)))
        best = res if best is None else _keep_better(best, res)
    assert best is not None
    return best


def _keep_better(a: LMResult, b: LMResult) -> LMResult:
    take = b.cost < a.cost
    return LMResult(np.where(take[:, None], b.x, a.x), np.where(take, b.cost, a.cost),
                    np.where(take[:, None], b.stderr, a.stderr),
                    np.where(take, b.converged, a.converged),
                    np.where(take, b.iterations, a.iterations))


def fit_maps(model: str, times: np.ndarray, concentration: np.ndarray, plasma: np.ndarray, *,
             delays: Sequence[float] | None = None, multistart: bool = False,
             max_iter: int = 200, threads: int = 1) -> dict[str, Map]:
    """Fit ``model`` to every curve of ``concentration`` (P, T; mM) sampled at ``times`` (s)
    with the plasma input ``plasma`` (T,; mM). ``delays`` (s): candidate arterial delays, each
    voxel keeping its best (adds a ``delay`` map). ``threads`` > 1 fits blocks of voxels on
    that many threads (the kernels and numpy release the GIL); the result does not depend on
    it beyond rounding (voxels are independent)."""
    c_all = np.atleast_2d(np.asarray(concentration, dtype=float))
    if c_all.shape[0] > _BLOCK:
        blocks = [slice(i, min(i + _BLOCK, c_all.shape[0]))
                  for i in range(0, c_all.shape[0], _BLOCK)]

        def one(s: slice) -> dict[str, Map]:
            return _fit_block(model, times, c_all[s], plasma, delays, multistart, max_iter)

        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(one, blocks))
        else:
            parts = [one(s) for s in blocks]
        return {k: Map(np.concatenate([p[k].values for p in parts]), parts[0][k].unit,
                       parts[0][k].description) for k in parts[0]}
    return _fit_block(model, times, c_all, plasma, delays, multistart, max_iter)


def _fit_block(model: str, times: np.ndarray, concentration: np.ndarray, plasma: np.ndarray,
               delays: Sequence[float] | None, multistart: bool,
               max_iter: int) -> dict[str, Map]:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    t = np.asarray(times, dtype=float)
    c = np.atleast_2d(np.asarray(concentration, dtype=float))
    cp = np.asarray(plasma, dtype=float)
    if c.shape[1] != t.size or cp.shape != t.shape:
        raise ValueError(f"concentration has {c.shape[1]} times, plasma {cp.size}, times "
                         f"{t.size}; all three must match")
    if not np.all(np.isfinite(c)):
        raise ValueError("concentration curves must be finite (mask out voxels with NaN)")
    grid = [0.0] if delays is None else [float(d) for d in delays]
    best: LMResult | None = None
    delay = np.zeros(c.shape[0])
    for d in grid:
        res = _fit_one_input(model, t, kin.shift(t, cp, d), c, multistart, max_iter)
        if best is None:
            best, delay = res, np.full(c.shape[0], d)
        else:
            take = res.cost < best.cost
            delay = np.where(take, d, delay)
            best = _keep_better(best, res)
    assert best is not None
    out: dict[str, Map] = {}
    for k, (name, unit, *_rest) in enumerate(MODELS[model]):
        out[name] = Map(best.x[:, k], unit, f"{_LONG[name]} ({model})")
        out[f"{name}_se"] = Map(best.stderr[:, k], unit, f"standard error of {name}")
    if delays is not None:
        out["delay"] = Map(delay, "s", f"arterial delay (grid of {len(grid)} values)")
    out["rms"] = Map(np.sqrt(2.0 * best.cost / t.size), "mM", "RMS residual of the fit")
    out["converged"] = Map(best.converged.astype(float), "dimensionless",
                           "1 where the optimiser converged")
    return out
