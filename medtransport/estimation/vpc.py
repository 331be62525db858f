"""Visual predictive check: the data set's design simulated again and again from the model.

For r = 1 … R replicates, every subject gets η ~ N(0, Ω) and observations y = f(θ, η) + ε
from the residual model (seeded), at exactly the data set's observation records. Records are
grouped into time bins (quantiles of the observed times, so each bin holds about as many
observations); in each bin the 5th, 50th and 95th percentiles of the simulated observations
are taken per replicate, and their 2.5–97.5 % range over the replicates is the confidence
interval drawn as a band. The observed percentiles in each bin should fall inside their bands
(Holford 2005, PAGE 14 abstr 738; Bergstrand et al. 2011, AAPS J 13:143).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from medtransport.estimation.problem import Problem

__all__ = ["PERCENTILES", "save_vpc_plot", "vpc"]

PERCENTILES = (5.0, 50.0, 95.0)


def _bins(times: NDArray[np.float64], n_bins: int) -> NDArray[np.float64]:
    edges = np.unique(np.quantile(times, np.linspace(0, 1, n_bins + 1)))
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return edges


def vpc(problem: Problem, *, replicates: int = 200, n_bins: int = 8,
        seed: int = 1) -> xr.Dataset:
    """Percentiles of observed and simulated observations per time bin (see the docstring)."""
    if problem.time is None:
        raise ValueError("a VPC needs the records' times")
    obs = problem.observed & np.isfinite(problem.dv)
    times = problem.time[obs]
    edges = _bins(times, min(n_bins, max(1, np.unique(times).size)))
    which = np.clip(np.searchsorted(edges, problem.time, side="right") - 1, 0, edges.size - 2)
    rng = np.random.default_rng(seed)
    n, q = problem.n_subjects, len(problem.eta_names)
    sim_pct = np.full((replicates, edges.size - 1, len(PERCENTILES)), np.nan)
    chunk = max(1, 20_000 // max(n, 1))
    for start in range(0, replicates, chunk):
        m = min(chunk, replicates - start)
        subjects = np.tile(np.arange(n), m)
        eta = rng.multivariate_normal(np.zeros(q), problem.omega, size=n * m)
        f = problem.predict(problem.individual(eta, subjects=subjects), subjects)
        y = problem.residual.simulate(f, rng).reshape(m, n, -1)
        for b in range(edges.size - 1):
            mask = obs & (which == b)
            if mask.any():
                sim_pct[start:start + m, b] = np.percentile(y[:, mask], PERCENTILES,
                                                            axis=1).T
    obs_pct = np.full((edges.size - 1, len(PERCENTILES)), np.nan)
    centre = np.full(edges.size - 1, np.nan)
    for b in range(edges.size - 1):
        mask = obs & (which == b)
        if mask.any():
            obs_pct[b] = np.percentile(problem.dv[mask], PERCENTILES)
            centre[b] = float(np.median(problem.time[mask]))
    unit = problem.residual.unit or "1"
    ds = xr.Dataset(coords={"bin": np.arange(edges.size - 1),
                            "percentile": ("percentile", list(PERCENTILES), {"units": "%"})})
    ds["bin_time"] = ("bin", centre, {"units": "h", "long_name": "median time in the bin"})
    ds["bin_edges"] = ("bin_edge", edges, {"units": "h"})
    ds["observed"] = (("bin", "percentile"), obs_pct, {"units": unit})
    ds["simulated_median"] = (("bin", "percentile"), np.nanmedian(sim_pct, axis=0),
                              {"units": unit})
    ds["simulated_low"] = (("bin", "percentile"), np.nanpercentile(sim_pct, 2.5, axis=0),
                           {"units": unit, "long_name": "2.5 % over replicates"})
    ds["simulated_high"] = (("bin", "percentile"), np.nanpercentile(sim_pct, 97.5, axis=0),
                            {"units": unit, "long_name": "97.5 % over replicates"})
    ds.attrs["replicates"] = replicates
    ds.attrs["seed"] = seed
    return ds


def save_vpc_plot(ds: xr.Dataset, problem: Problem, path: str, title: str = "") -> None:
    """Bands (CI of the simulated 5/50/95 % percentiles), observed percentiles and points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    t = ds["bin_time"].values
    colours = ("C0", "C3", "C0")
    for j, p in enumerate(PERCENTILES):
        ax.fill_between(t, ds["simulated_low"].values[:, j], ds["simulated_high"].values[:, j],
                        color=colours[j], alpha=0.2 if j != 1 else 0.3,
                        label=f"simulated {p:g} % (95 % CI)")
        ax.plot(t, ds["observed"].values[:, j], color=colours[j], lw=1.8,
                ls="-" if j == 1 else "--", label=f"observed {p:g} %")
    obs = problem.observed & np.isfinite(problem.dv)
    ax.scatter(problem.time[obs], problem.dv[obs], s=8, color="0.4", alpha=0.6,
               label="observations")
    unit = ds["observed"].attrs.get("units", "")
    ax.set_xlabel("time [h]")
    ax.set_ylabel(f"observation [{unit}]")
    ax.set_title(title or f"VPC ({ds.attrs['replicates']} replicates)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
