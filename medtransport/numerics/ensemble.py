"""Ensemble statistics of Monte Carlo paths, each with its standard error, and the histogram
density.

For the n alive paths x_1 … x_n at one output time (absorbed paths, NaN, are left out):

- mean x̄ with SE s/√n (s² the unbiased sample variance);
- variance s² with SE √((m₄ − s⁴·(n − 3)/(n − 1))/n), m₄ the fourth central moment — the
  large-sample standard error of the sample variance (no normality assumed);
- quantile q̂_p (the order statistic) with the distribution-free SE from the binomial law of
  the number of paths below it: half the distance between the order statistics of ranks
  n·p ± √(n·p(1 − p)) (one standard deviation of that count);
- the histogram density on cells of width w_j: p_j = (paths in cell j)/(n_started·w_j), so that
  Σ p_j w_j + (fraction alive outside the cells) = the fraction still alive; SE of each p_j
  from the binomial count, √(k_j(1 − k_j/N))/(N·w_j).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EnsembleStatistics", "HistogramDensity", "ensemble_statistics", "histogram_density"]


@dataclass(frozen=True)
class EnsembleStatistics:
    """Per output time (T) and component (d): ``alive`` (T,), ``mean``/``mean_se``,
    ``variance``/``variance_se`` (T, d), ``quantiles``/``quantile_se`` (T, Q, d) at
    ``levels``."""

    alive: np.ndarray
    mean: np.ndarray
    mean_se: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    levels: np.ndarray
    quantiles: np.ndarray
    quantile_se: np.ndarray


def ensemble_statistics(values: np.ndarray,
                        levels: Sequence[float] = (0.05, 0.5, 0.95)) -> EnsembleStatistics:
    """Statistics of ``values`` (T, n_paths, d) with NaN for absorbed paths."""
    v = np.asarray(values, float)
    if v.ndim == 2:
        v = v[:, :, None]
    t_n, _, d = v.shape
    lv = np.asarray(levels, float)
    if np.any((lv <= 0) | (lv >= 1)):
        raise ValueError("quantile levels must lie strictly between 0 and 1")
    alive = np.zeros(t_n, np.int64)
    mean = np.full((t_n, d), np.nan)
    mean_se = np.full((t_n, d), np.nan)
    var = np.full((t_n, d), np.nan)
    var_se = np.full((t_n, d), np.nan)
    q = np.full((t_n, lv.size, d), np.nan)
    q_se = np.full((t_n, lv.size, d), np.nan)
    for k in range(t_n):
        ok = np.all(np.isfinite(v[k]), axis=1)
        x = v[k][ok]
        n = x.shape[0]
        alive[k] = n
        if n == 0:
            continue
        m = x.mean(axis=0)
        mean[k] = m
        if n < 2:
            continue
        dev = x - m
        s2 = (dev * dev).sum(axis=0) / (n - 1)
        m4 = (dev ** 4).mean(axis=0)
        var[k] = s2
        mean_se[k] = np.sqrt(s2 / n)
        var_se[k] = np.sqrt(np.maximum(m4 - s2 * s2 * (n - 3) / (n - 1), 0.0) / n)
        xs = np.sort(x, axis=0)
        for j, p in enumerate(lv):
            half = np.sqrt(n * p * (1 - p))
            pos = n * p
            q[k, j] = xs[min(n - 1, max(0, int(np.ceil(pos)) - 1))]
            lo = xs[min(n - 1, max(0, int(np.floor(pos - half))))]
            hi = xs[min(n - 1, max(0, int(np.ceil(pos + half)) - 1))]
            q_se[k, j] = 0.5 * (hi - lo)
    return EnsembleStatistics(alive, mean, mean_se, var, var_se, lv, q, q_se)


@dataclass(frozen=True)
class HistogramDensity:
    """``density`` (T, n_cells) per unit state, its ``standard_error``, ``outside`` (T,) the
    fraction of started paths alive but beyond the cells, ``edges`` (n_cells + 1)."""

    edges: np.ndarray
    density: np.ndarray
    standard_error: np.ndarray
    outside: np.ndarray
    counts: np.ndarray


def histogram_density(values: np.ndarray, edges: np.ndarray, n_started: int) -> HistogramDensity:
    """Histogram density of component values (T, n_paths) (NaN: absorbed) on cells ``edges``."""
    v = np.asarray(values, float)
    e = np.asarray(edges, float)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError("edges must increase strictly")
    width = np.diff(e)
    t_n = v.shape[0]
    counts = np.zeros((t_n, width.size), np.int64)
    outside = np.zeros(t_n)
    for k in range(t_n):
        x = v[k][np.isfinite(v[k])]
        inside = (x >= e[0]) & (x <= e[-1])
        idx = np.clip(np.searchsorted(e, x[inside], side="right") - 1, 0, width.size - 1)
        counts[k] = np.bincount(idx, minlength=width.size)
        outside[k] = (x.size - int(inside.sum())) / n_started
    density = counts / (n_started * width)
    se = np.sqrt(counts * (1.0 - counts / n_started)) / (n_started * width)
    return HistogramDensity(e, density, se, outside, counts)
