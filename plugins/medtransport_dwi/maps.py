"""Whole-volume DWI parameter maps: every voxel of a mask at once, vectorised.

Signals are (P, N): P voxels × N volumes, b in s/mm², diffusivities in mm²/s (the maps'
units). Each fit returns a dict name → :class:`Map` (values, unit, description), with
per-voxel standard errors and a fit-quality map (``rms``: the root-mean-square residual
relative to S0).

- ADC per shell:  ln S̄_shell = ln S0 − b·ADC, with S̄_shell the geometric mean over the shell's
  directions (the trace ADC when the directions average ĝĝᵀ to I/3); S0 from the b = 0 volumes.
- DTI (Basser et al., *J Magn Reson B* 1994;103:247):  ln S = ln S0 − b·ĝᵀDĝ, six elements of
  D and ln S0 by weighted least squares with weights Ŝ² from an ordinary least-squares first
  pass (Salvador et al., *Hum Brain Mapp* 2005;24:144 — the WLS DIPY's ``TensorModel`` uses);
  λ1 ≥ λ2 ≥ λ3 its eigenvalues: MD = (λ1+λ2+λ3)/3, AD = λ1, RD = (λ2+λ3)/2,
  FA = √(3/2)·‖λ − MD‖/‖λ‖; V1 the principal eigenvector (in the bvec frame). Standard errors
  from s²·(XᵀWX)⁻¹, FA's by the delta method.
- IVIM (Le Bihan et al., *Radiology* 1988;168:497):  S = S0·(f·e^{−b·D*} + (1 − f)·e^{−b·D}).
  ``segmented``: D and the intercept S_int from ln S̄ on the shells b ≥ ``b_split``; f = 1 −
  S_int/S0; D* by a one-parameter fit of the rest. ``full``: all four by batched
  Levenberg–Marquardt from the segmented start; D ≤ :data:`D_MAX` ≤ D* keeps the two
  exponentials from swapping roles.
- DKI (Jensen et al., *Magn Reson Med* 2005;53:1432):  ln S = ln S0 − b·ĝᵀDĝ +
  b²·MD²·(Σ W_ijkl g_i g_j g_k g_l)/6, linear in the 6 + 15 unknowns (Tabesh et al., *Magn Reson
  Med* 2011;65:823); the apparent kurtosis K(n̂) = MD²·W(n̂)/(n̂ᵀDn̂)², and the mean kurtosis
  MK = (1/4π)∮K(n̂)dn̂ by quadrature over :data:`MK_DIRECTIONS` Fibonacci-sphere directions;
  the axial kurtosis AK = K(ê1) along the principal eigenvector and the radial kurtosis
  RK = (1/2π)∮_{n̂⊥ê1} K(n̂)dn̂, the mean over the great circle perpendicular to ê1 by the
  trapezoidal rule on :data:`RK_DIRECTIONS` equally spaced angles (spectrally accurate for a
  smooth periodic integrand; Tabesh et al. 2011 give both definitions).

- Mono-exponential over all shells: S̄ = S0·e^{−b·ADC} by batched Levenberg–Marquardt.

``rician_sigma`` (IVIM and mono-exponential fits): the magnitude noise σ (and ``coils``), so
that the fit compares the model with the noise's mean E[M|ν] = σ√(π/2)·L½(−ν²/2σ²) (Rician;
non-central χ for several coils, :mod:`medtransport.numerics.magnitude_noise`) rather than with
ν itself: the bias-aware fit for low SNR, where the noise floor would otherwise flatten the
decay (Gudbjartsson & Patz, *Magn Reson Med* 1995;34:910). It fits each shell's arithmetic
mean (whose expectation is that of the model; a geometric mean's is not) weighted by the
shell's volume count, with standard errors from the known σ.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from medtransport.numerics.batched_lm import LMResult, levenberg_marquardt
from medtransport.numerics.magnitude_noise import magnitude_mean
from medtransport_dwi.gradients import shells

__all__ = ["B0_MAX", "MK_DIRECTIONS", "RK_DIRECTIONS", "Map", "adc_maps", "dki_maps",
           "dti_design", "dti_maps", "ivim_maps", "monoexponential_maps"]

_TINY = 1e-12
#: b-values (s/mm²) up to this are "b = 0" volumes (some scanners write 5 for them; IVIM
#: protocols have real shells at 10 and 20 s/mm²).
B0_MAX = 5.0
#: IVIM: the bound between tissue diffusion D and pseudo-diffusion D* (mm²/s); free water at
#: 37 °C has 3.0e-3, blood pseudo-diffusion is typically ≥ 10e-3.
D_MAX = 5e-3
#: Directions of the mean-kurtosis quadrature.
MK_DIRECTIONS = 500
#: Angles on the circle perpendicular to ê1 of the radial-kurtosis quadrature.
RK_DIRECTIONS = 72


@dataclass
class Map:
    """Values over the mask's voxels (P,) or (P, C), their unit and what they are."""

    values: np.ndarray
    unit: str
    description: str


def _log(signal: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(signal, _TINY))


def _b0(signal: np.ndarray, b: np.ndarray, b0_max: float) -> np.ndarray:
    zero = b <= b0_max
    if not zero.any():
        raise ValueError(f"no b = 0 volume (b ≤ {b0_max:g} s/mm²) to give S0")
    return np.exp(_log(signal[:, zero]).mean(axis=1))


def _shell_means(signal: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shell b-values (S,), geometric-mean signal per shell (P, S))."""
    idx = shells(b)
    bs = np.array([b[idx == s].mean() for s in range(idx.max() + 1)])
    means = np.stack([np.exp(_log(signal[:, idx == s]).mean(axis=1))
                      for s in range(idx.max() + 1)], axis=1)
    return bs, means


def _rician_shells(signal: np.ndarray, b: np.ndarray, n_shells: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For the Rician-aware fits: each shell's arithmetic mean (P, S) — its expectation is the
    mean of E[M|ν] the model predicts, which a geometric mean's is not — and its number of
    volumes (S,), the weight of that mean."""
    idx = shells(b)
    means = np.stack([signal[:, idx == k].mean(axis=1) for k in range(n_shells)], axis=1)
    return means, np.array([np.count_nonzero(idx == k) for k in range(n_shells)], dtype=float)


def _known_sigma_stderr(fit: LMResult, sigma: float, n_data: int) -> None:
    """s²·(JᵀWJ)⁻¹ with s² = σ² known (W counts volumes), not the residual's estimate from a
    few shells: rescale the optimiser's standard errors in place."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s2 = 2.0 * fit.cost / max(n_data - fit.x.shape[1], 1)
        fit.stderr *= sigma / np.sqrt(s2)[:, None]


def adc_maps(signal: np.ndarray, b: np.ndarray, *, b0_max: float = B0_MAX) -> dict[str, Map]:
    """ADC of every shell with b > ``b0_max``: maps ``adc_b<b>`` and their standard errors
    (``adc_b<b>_se``, from the spread of ln S over the shell's directions and b = 0 volumes,
    which includes any anisotropy), and ``s0``."""
    signal = np.asarray(signal, dtype=float)
    b = np.asarray(b, dtype=float)
    idx = shells(b)
    zero = b <= b0_max
    y0 = _log(signal[:, zero])
    out: dict[str, Map] = {"s0": Map(np.exp(y0.mean(axis=1)), "dimensionless",
                                     "S0 (geometric mean of the b = 0 volumes)")}
    for s in np.unique(idx[~zero]):
        sel = (idx == s) & ~zero
        bb = float(b[sel].mean())
        y = _log(signal[:, sel])
        adc = (y0.mean(axis=1) - y.mean(axis=1)) / bb
        n0, n1 = y0.shape[1], y.shape[1]
        var = (y0.var(axis=1, ddof=1) / n0 if n0 > 1 else 0.0) + \
            (y.var(axis=1, ddof=1) / n1 if n1 > 1 else 0.0)
        key = f"adc_b{bb:.0f}"
        out[key] = Map(adc, "mm^2/s", f"apparent diffusion coefficient, shell b = {bb:.0f} "
                                      "s/mm² (geometric mean over directions)")
        out[key + "_se"] = Map(np.sqrt(var) / bb, "mm^2/s", f"standard error of {key}")
    return out


def dti_design(b: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Rows (−b·gx², −b·gy², −b·gz², −2b·gx·gy, −2b·gx·gz, −2b·gy·gz, 1): ln S = X·β,
    β = (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz, ln S0)."""
    b = np.asarray(b, dtype=float)
    gx, gy, gz = np.asarray(g, dtype=float).T
    return np.stack([-b * gx * gx, -b * gy * gy, -b * gz * gz, -2 * b * gx * gy,
                     -2 * b * gx * gz, -2 * b * gy * gz, np.ones_like(b)], axis=1)


def _tensor(beta: np.ndarray) -> np.ndarray:
    d = np.empty((*beta.shape[:-1], 3, 3))
    d[..., 0, 0], d[..., 1, 1], d[..., 2, 2] = beta[..., 0], beta[..., 1], beta[..., 2]
    d[..., 0, 1] = d[..., 1, 0] = beta[..., 3]
    d[..., 0, 2] = d[..., 2, 0] = beta[..., 4]
    d[..., 1, 2] = d[..., 2, 1] = beta[..., 5]
    return d


def _fa(lam: np.ndarray) -> np.ndarray:
    md = lam.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.sum(lam ** 2, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = np.sqrt(1.5) * np.sqrt(np.sum((lam - md) ** 2, axis=-1)) / norm
    return np.where(norm > 0, fa, 0.0)


def _solve_batched(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    return np.linalg.solve(a, rhs[..., None])[..., 0]


def dti_maps(signal: np.ndarray, b: np.ndarray, g: np.ndarray, *,
             chunk: int = 65536) -> dict[str, Map]:
    """DTI by WLS (module docstring): FA, MD, AD, RD, V1 (P, 3), eigenvalues (P, 3), S0,
    standard errors of MD and FA, the relative RMS residual."""
    signal = np.asarray(signal, dtype=float)
    x = dti_design(b, g)
    if np.linalg.matrix_rank(x) < 7:
        raise ValueError("the gradient table does not determine a tensor (need b = 0 and ≥ 6 "
                         "non-collinear directions)")
    pinv = np.linalg.pinv(x)
    n = x.shape[0]
    p = signal.shape[0]
    beta = np.empty((p, 7))
    cov = np.empty((p, 7, 7))
    rms = np.empty(p)
    for s in range(0, p, chunk):
        y = _log(signal[s:s + chunk])
        ols = y @ pinv.T
        w = np.exp(2.0 * (ols @ x.T))  # Ŝ² from the OLS pass
        a = np.einsum("pn,nk,nl->pkl", w, x, x)
        rhs = np.einsum("pn,nk,pn->pk", w, x, y)
        bt = _solve_batched(a, rhs)
        res = y - bt @ x.T
        s2 = np.sum(w * res ** 2, axis=1) / max(n - 7, 1)
        cov[s:s + chunk] = np.linalg.inv(a) * s2[:, None, None]
        beta[s:s + chunk] = bt
        pred = np.exp(bt @ x.T)
        s0 = np.exp(bt[:, 6])
        rms[s:s + chunk] = np.sqrt(np.mean((pred - signal[s:s + chunk]) ** 2, axis=1)) / s0
    lam, vec = np.linalg.eigh(_tensor(beta[:, :6]))
    lam, vec = lam[:, ::-1], vec[:, :, ::-1]
    md = lam.mean(axis=1)
    fa = _fa(lam)
    ones = np.array([1.0, 1.0, 1.0, 0, 0, 0, 0]) / 3.0
    md_se = np.sqrt(np.maximum(np.einsum("k,pkl,l->p", ones, cov, ones), 0.0))
    # FA's gradient in the six tensor elements by central differences (delta method)
    grad = np.empty((p, 6))
    for j in range(6):
        h = 1e-6 * np.maximum(np.abs(md), 1e-9)
        up, dn = beta[:, :6].copy(), beta[:, :6].copy()
        up[:, j] += h
        dn[:, j] -= h
        grad[:, j] = (_fa(np.linalg.eigvalsh(_tensor(up))) -
                      _fa(np.linalg.eigvalsh(_tensor(dn)))) / (2 * h)
    fa_se = np.sqrt(np.maximum(np.einsum("pk,pkl,pl->p", grad, cov[:, :6, :6], grad), 0.0))
    v1 = vec[:, :, 0]
    # a sign convention so that maps do not flicker: largest component positive
    sign = np.sign(v1[np.arange(p), np.argmax(np.abs(v1), axis=1)])
    v1 = v1 * np.where(sign == 0, 1.0, sign)[:, None]
    return {
        "fa": Map(fa, "dimensionless", "fractional anisotropy (DTI, WLS)"),
        "md": Map(md, "mm^2/s", "mean diffusivity (DTI, WLS)"),
        "ad": Map(lam[:, 0], "mm^2/s", "axial diffusivity λ1 (DTI, WLS)"),
        "rd": Map(0.5 * (lam[:, 1] + lam[:, 2]), "mm^2/s",
                  "radial diffusivity (λ2 + λ3)/2 (DTI, WLS)"),
        "eigenvalues": Map(lam, "mm^2/s", "tensor eigenvalues λ1 ≥ λ2 ≥ λ3"),
        "v1": Map(v1, "dimensionless", "principal eigenvector (bvec frame)"),
        "s0": Map(np.exp(beta[:, 6]), "dimensionless", "S0 (DTI, WLS)"),
        "md_se": Map(md_se, "mm^2/s", "standard error of MD (s²·(XᵀWX)⁻¹)"),
        "fa_se": Map(fa_se, "dimensionless", "standard error of FA (delta method)"),
        "rms": Map(rms, "dimensionless", "RMS residual of the fitted signal relative to S0"),
    }


def _ivim(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    s0, f, d, dstar = (x[:, i:i + 1] for i in range(4))
    return s0 * (f * np.exp(-b * dstar) + (1.0 - f) * np.exp(-b * d))


def ivim_maps(signal: np.ndarray, b: np.ndarray, *, method: str = "full",
              b_split: float = 200.0, rician_sigma: float | None = None,
              max_iter: int = 200) -> dict[str, Map]:
    """IVIM on the direction-averaged signal of each shell (module docstring). ``method``:
    ``segmented`` or ``full``. Returns f, D, D*, S0, their standard errors (full) and rms."""
    if method not in ("segmented", "full"):
        raise ValueError(f"IVIM method must be 'segmented' or 'full', got {method!r}")
    signal = np.asarray(signal, dtype=float)
    b = np.asarray(b, dtype=float)
    bs, s = _shell_means(signal, b)
    if bs[0] > B0_MAX:
        raise ValueError("IVIM needs b = 0 volumes")
    high = bs >= b_split
    if high.sum() < 2 or (~high).sum() < 2:
        raise ValueError(f"IVIM needs ≥ 2 shells below and ≥ 2 at or above b = {b_split:g} "
                         f"s/mm² (shells: {', '.join(f'{v:.0f}' for v in bs)})")
    s0 = s[:, 0]
    # segmented: the high-b line, then f, then D* alone
    xh = np.stack([np.ones(high.sum()), -bs[high]], axis=1)
    coef = _log(s[:, high]) @ np.linalg.pinv(xh).T
    d = np.clip(coef[:, 1], 0.0, None)
    s_int = np.exp(coef[:, 0])
    f = np.clip(1.0 - s_int / np.maximum(s0, _TINY), 0.0, 1.0)
    rest = s - s_int[:, None] * np.exp(-np.outer(d, bs))

    def fstar(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return (s0[idx] * f[idx])[:, None] * np.exp(-np.outer(x[:, 0], bs))

    ds0 = np.full((s.shape[0], 1), 10.0 * D_MAX)
    dstar = levenberg_marquardt(fstar, ds0, rest, lower=np.array([D_MAX]),
                                upper=np.array([1.0]), typical=np.array([1e-2]),
                                max_iter=max_iter).x[:, 0]
    x0 = np.stack([s0, f, np.minimum(d, D_MAX), np.maximum(dstar, D_MAX)], axis=1)
    if method == "segmented":
        pred = _ivim(x0, bs)
        rms = np.sqrt(np.mean((pred - s) ** 2, axis=1)) / np.maximum(s0, _TINY)
        return {"f": Map(f, "dimensionless", "perfusion fraction (IVIM, segmented)"),
                "d": Map(d, "mm^2/s", "diffusion coefficient D (IVIM, segmented)"),
                "dstar": Map(dstar, "mm^2/s", "pseudo-diffusion D* (IVIM, segmented)"),
                "s0": Map(s0, "dimensionless", "S0"),
                "rms": Map(rms, "dimensionless", "RMS residual relative to S0")}

    def model(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        pred = _ivim(x, bs)
        return pred if rician_sigma is None else magnitude_mean(pred, rician_sigma)

    scale = float(np.median(s0))
    # D below D*: the bounds keep the two exponentials from swapping roles (f ↔ 1 − f)
    lo = np.array([0.0, 0.0, 0.0, D_MAX])
    hi = np.array([np.inf, 1.0, D_MAX, 1.0])
    y, weights = (s, None) if rician_sigma is None else _rician_shells(signal, b, bs.size)
    fit = levenberg_marquardt(model, x0, y, lower=lo, upper=hi, weights=weights,
                              typical=np.array([scale, 0.1, 1e-3, 1e-2]), max_iter=max_iter,
                              xtol=1e-12, ftol=1e-20)
    if rician_sigma is not None:
        _known_sigma_stderr(fit, rician_sigma, bs.size)
    x = fit.x
    rms = np.sqrt(2.0 * fit.cost / bs.size) / np.maximum(x[:, 0], _TINY)
    tag = "IVIM, full" + (", Rician-bias-aware" if rician_sigma is not None else "")
    return {"f": Map(x[:, 1], "dimensionless", f"perfusion fraction ({tag})"),
            "d": Map(x[:, 2], "mm^2/s", f"diffusion coefficient D ({tag})"),
            "dstar": Map(x[:, 3], "mm^2/s", f"pseudo-diffusion D* ({tag})"),
            "s0": Map(x[:, 0], "dimensionless", f"S0 ({tag})"),
            "f_se": Map(fit.stderr[:, 1], "dimensionless", "standard error of f"),
            "d_se": Map(fit.stderr[:, 2], "mm^2/s", "standard error of D"),
            "dstar_se": Map(fit.stderr[:, 3], "mm^2/s", "standard error of D*"),
            "converged": Map(fit.converged.astype(float), "dimensionless",
                             "1 where the optimiser converged"),
            "rms": Map(rms, "dimensionless", "RMS residual relative to S0")}


def monoexponential_maps(signal: np.ndarray, b: np.ndarray, *,
                         rician_sigma: float | None = None, coils: int = 1,
                         max_iter: int = 200) -> dict[str, Map]:
    """S0 and ADC from every shell's direction-averaged signal by nonlinear least squares,
    optionally Rician-bias-aware (module docstring). Rician-aware, each shell is its
    volumes' arithmetic mean — whose expectation is the mean of E[M|ν], which the model
    predicts (a geometric mean has no such expectation) — weighted by its number of volumes,
    and the standard errors use the known σ rather than the residual of a few shells."""
    signal = np.asarray(signal, dtype=float)
    b = np.asarray(b, dtype=float)
    bs, s = _shell_means(signal, b)
    if bs.size < 2:
        raise ValueError("a mono-exponential fit needs ≥ 2 shells")
    coef = _log(s) @ np.linalg.pinv(np.stack([np.ones_like(bs), -bs], axis=1)).T
    x0 = np.stack([np.exp(coef[:, 0]), np.clip(coef[:, 1], 1e-6, 5e-3)], axis=1)
    weights = None
    if rician_sigma is not None:
        s, weights = _rician_shells(signal, b, bs.size)

    def model(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        pred = x[:, :1] * np.exp(-np.outer(x[:, 1], bs))
        return pred if rician_sigma is None else magnitude_mean(pred, rician_sigma, coils)

    fit = levenberg_marquardt(model, x0, s, lower=np.array([0.0, 0.0]),
                              upper=np.array([np.inf, 0.1]), weights=weights,
                              typical=np.array([float(np.median(x0[:, 0])), 1e-3]),
                              max_iter=max_iter, xtol=1e-12, ftol=1e-20)
    if rician_sigma is not None:
        _known_sigma_stderr(fit, rician_sigma, bs.size)
    tag = "mono-exponential" + (", Rician-bias-aware" if rician_sigma is not None else "")
    return {"adc": Map(fit.x[:, 1], "mm^2/s", f"apparent diffusion coefficient ({tag})"),
            "s0": Map(fit.x[:, 0], "dimensionless", f"S0 ({tag})"),
            "adc_se": Map(fit.stderr[:, 1], "mm^2/s", "standard error of the ADC"),
            "rms": Map(np.sqrt(2.0 * fit.cost / bs.size) / np.maximum(fit.x[:, 0], _TINY),
                       "dimensionless", "RMS residual relative to S0"),
            "converged": Map(fit.converged.astype(float), "dimensionless",
                             "1 where the optimiser converged")}


_W_INDEX = [c for c in itertools.combinations_with_replacement(range(3), 4)]


def _w_columns(g: np.ndarray) -> np.ndarray:
    """Σ W_ijkl g_i g_j g_k g_l as a row per direction over the 15 unique W elements (each
    column multiplied by its number of index permutations)."""
    cols = []
    for c in _W_INDEX:
        mult = math.factorial(4)
        for v in set(c):
            mult //= math.factorial(c.count(v))
        cols.append(mult * np.prod(g[:, list(c)], axis=1))
    return np.stack(cols, axis=1)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _kurtosis_along(n: np.ndarray, d: np.ndarray, mdw: np.ndarray) -> np.ndarray:
    """K(n̂) = MD²·W(n̂)/(n̂ᵀDn̂)² for per-voxel directions ``n`` (P, M, 3), tensors ``d``
    (P, 3, 3) and MD²·W (P, 15); NaN where n̂ᵀDn̂ ≤ 0."""
    adc = np.einsum("pmi,pij,pmj->pm", n, d, n)
    wn = np.einsum("pmc,pc->pm", _w_columns(n.reshape(-1, 3)).reshape(*n.shape[:2], 15), mdw)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(adc > 0, wn / adc ** 2, np.nan)


def dki_maps(signal: np.ndarray, b: np.ndarray, g: np.ndarray) -> dict[str, Map]:
    """DKI by linear least squares (module docstring): MK, AK, RK, MD, FA (of the DKI
    tensor), rms."""
    signal = np.asarray(signal, dtype=float)
    b = np.asarray(b, dtype=float)
    g = np.asarray(g, dtype=float)
    nz = b > B0_MAX
    if len(np.unique(shells(b[nz]))) < 2 or nz.sum() < 15:
        raise ValueError("DKI needs ≥ 2 non-zero shells and ≥ 15 diffusion-weighted volumes")
    xd = dti_design(b, g)
    xw = (b ** 2 / 6.0)[:, None] * _w_columns(g)
    x = np.concatenate([xd[:, :6], xw, xd[:, 6:]], axis=1)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError("the gradient table does not determine the kurtosis tensor")
    beta = _log(signal) @ np.linalg.pinv(x).T
    dt = beta[:, :6]
    mdw = beta[:, 6:21]  # MD²·W
    n = _fibonacci_sphere(MK_DIRECTIONS)
    dn = _tensor(dt)
    adc = np.einsum("ni,pij,nj->pn", n, dn, n)
    wn = mdw @ _w_columns(n).T
    with np.errstate(divide="ignore", invalid="ignore"):
        k = wn / adc ** 2
    mk = np.nanmean(np.where(adc > 0, k, np.nan), axis=1)
    lam_up, vec = np.linalg.eigh(dn)
    lam = lam_up[:, ::-1]
    ak = _kurtosis_along(vec[:, :, 2][:, None, :], dn, mdw)[:, 0]
    theta = 2.0 * np.pi * np.arange(RK_DIRECTIONS) / RK_DIRECTIONS
    circle = (np.cos(theta)[None, :, None] * vec[:, None, :, 1]
              + np.sin(theta)[None, :, None] * vec[:, None, :, 0])
    rk = np.mean(_kurtosis_along(circle, dn, mdw), axis=1)
    pred = np.exp(beta @ x.T)
    s0 = np.exp(beta[:, 21])
    rms = np.sqrt(np.mean((pred - signal) ** 2, axis=1)) / np.maximum(s0, _TINY)
    return {"mk": Map(mk, "dimensionless", "mean kurtosis (DKI, mean of K(n) over the sphere)"),
            "ak": Map(ak, "dimensionless", "axial kurtosis (DKI, K along the principal "
                                           "eigenvector)"),
            "rk": Map(rk, "dimensionless", "radial kurtosis (DKI, mean of K(n) perpendicular "
                                           "to the principal eigenvector)"),
            "md": Map(lam.mean(axis=1), "mm^2/s", "mean diffusivity (DKI)"),
            "fa": Map(_fa(lam), "dimensionless", "fractional anisotropy (DKI)"),
            "s0": Map(s0, "dimensionless", "S0 (DKI)"),
            "rms": Map(rms, "dimensionless", "RMS residual relative to S0")}
