"""Population summaries, computed lazily (xarray + dask when installed): percentile bands of a
concentration–time curve, per-patient NCA metrics and their distributions, and the probability
of target attainment (PTA).

Per patient i, from the curve C_i(t) on the output grid t_0 … t_m (the core's generic
"curve metrics"; for a PK model the central concentration):

    Cmax_i = max_k C_i(t_k),   Tmax_i = the first t_k where it is reached,
    Clast_i = C_i(t_m),        Cmin_i = min_k C_i(t_k) over t_k ≥ Tmax_i (the trough
                               after the peak; for q12h dosing to the next dose, the trough),
    AUC_i = Σ_k ΔAUC_k, with the linear-up / log-down trapezoid (Gabrielsson & Weiner,
            *Pharmacokinetic and Pharmacodynamic Data Analysis*, 5th ed., 2016, ch. 2):
            ΔAUC_k = Δt·(C_k + C_{k+1})/2                        if C_{k+1} ≥ C_k or either ≤ 0
            ΔAUC_k = Δt·(C_k − C_{k+1})/ln(C_k/C_{k+1})          otherwise

        The log-down segment is Δt times the logarithmic mean of C_k and C_{k+1}. With
        x = (C_k − C_{k+1})/(C_k + C_{k+1}), ln(C_k/C_{k+1}) = 2·artanh(x), so

            ΔAUC_k = Δt·((C_k + C_{k+1})/2)·x/artanh(x),
            x/artanh(x) = 1 − x²/3 − 4x⁴/45 − 44x⁶/945 − 428x⁸/14175 − 10196x¹⁰/467775 − …

        which :func:`log_mean` sums (to x¹⁰) when x < 1/32 — a fine grid, where the ratio
        C_k/C_{k+1} is within 7 % of 1 and ln of that rounded ratio would lose up to
        log10(1/x) digits — and takes ln(C_k/C_{k+1}) = log1p((C_k − C_{k+1})/C_{k+1})
        otherwise.

Percentile bands: the q-th percentile over patients at each output time, by linear
interpolation between order statistics (numpy's default, Hyndman & Fan 1996 type 7).

PTA for a target on a per-patient metric M: PTA(τ) = (1/N)·#{i : M_i ≥ τ}; for an exposure
target AUC/MIC ≥ r (vancomycin: AUC₂₄/MIC ≥ 400, Rybak et al. 2020, Am J Health Syst Pharm
77:835) over a range of MICs, PTA(MIC) = (1/N)·#{i : AUC_i ≥ r·MIC}.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medtransport.bands import bin_of

__all__ = ["curve_metrics", "nca_distribution", "percentile_bands", "plot_bands",
           "probability_of_target_attainment", "pta_auc_over_mic", "store_percentile_bands",
           "summary_curve"]

DEFAULT_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
#: The percentiles a population run writes into its store from the streamed bands (any
#: other is computed from the saved histogram, :meth:`PopulationResult.bands`).
STORED_BAND_PERCENTILES = (2.5, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5)


def summary_curve(ds: xr.Dataset, variable: str | None = None,
                  select: dict[str, Any] | None = None) -> xr.DataArray:
    """The (time, patient) curve summaries are made of: ``variable`` (default
    ``concentration``, then ``grid_concentration``, else the first variable over time and
    patients) with
    its other dimensions fixed by ``select`` (default: the label ``central`` where a dimension
    has it, else the first entry)."""
    if variable is None:
        # over time and patients: a data set's ``concentration`` is at its records, its curve
        # on the grid ``grid_concentration``
        over = [str(n) for n, v in ds.data_vars.variables.items()
                if {"time", "patient"} <= set(v.dims)]
        variable = next((n for n in ("concentration", "grid_concentration") if n in over),
                        over[0] if over else None)
    if variable is None or variable not in ds:
        raise KeyError(f"no variable {variable!r} over time and patients to summarise")
    da = ds[variable]
    select = dict(select or {})
    for dim in da.dims:
        if dim in ("time", "patient") or dim in select:
            continue
        labels = ds[dim].values if dim in ds.coords else None
        if labels is not None and "central" in [str(x) for x in labels]:
            select[str(dim)] = "central"
        else:
            select[str(dim)] = labels[0] if labels is not None else 0
    if select:
        da = da.sel(select)
    return da.transpose("time", "patient")


def curve_metrics(curve: xr.DataArray, *, compiled: bool = True,
                  band_keys: np.ndarray | None = None
                  ) -> dict[str, tuple[np.ndarray, str, str]]:
    """Per-patient Cmax, Tmax, Cmin, Clast and AUC (linear-up/log-down) of a (time, patient)
    curve held in memory: name → (values over patients, unit, long name). Time in hours.
    ``compiled=False``: the same pass in plain Python, without loading numba (a store's
    layout from one probe patient, in a client that runs no chunk). ``band_keys``: a
    (time, patient) array (:func:`medtransport.bands.key_dtype`) that the same pass fills
    with each value's bin of the streamed bands (:func:`medtransport.bands.bin_of`), so that
    a chunk reads its curve once for both."""
    # patient-major: each patient's curve one row (no copy when the solver wrote it so)
    c = np.asarray(curve.transpose("patient", "time").values, dtype=float)
    t_h = np.asarray(curve["time"].values, dtype=float) / 3600.0
    unit = curve.attrs.get("units", "1")
    # the last 24 h (AUC24 of a dosing day, the vancomycin exposure target), when the grid
    # reaches back that far and has a point there
    start = t_h[-1] - 24.0
    window = start >= t_h[0] - 1e-9 and bool(np.any(np.isclose(t_h, start, rtol=0,
                                                                atol=1e-9)))
    first = int(np.argmax(t_h[:-1] >= start - 1e-9)) if window and len(t_h) > 1 else 0
    from medtransport.bands import BITS, EXPONENT, key_dtype

    if band_keys is None:
        band_keys = np.empty((0, 0), dtype=key_dtype())
    elif band_keys.shape != c.shape[::-1]:
        raise ValueError(f"band_keys: expected shape {c.shape[::-1]}, got {band_keys.shape}")
    kernel = _metrics_kernel() if compiled else _metrics
    cmax, i_max, cmin, auc, auc_24h = kernel(c, c.view(np.int64), np.diff(t_h), first,
                                             band_keys, BITS, EXPONENT)
    tmax = np.where(np.isnan(cmax), np.nan, t_h[i_max] - t_h[0])
    out = {
        "nca_cmax": (cmax, unit, "maximum concentration"),
        "nca_tmax": (tmax, "h", "time of the maximum"),
        "nca_cmin": (cmin, unit, "minimum concentration after the maximum (the trough after "
                                 "the peak)"),
        "nca_clast": (c[:, -1].copy(), unit, "concentration at the last output time"),
        "nca_auc_last": (auc, f"{unit}*h", "area under the curve to the last output time "
                                           "(linear-up/log-down)"),
    }
    if window:
        out["nca_auc_24h"] = (auc_24h, f"{unit}*h", "area under the curve over the last 24 h")
    return out


#: Below this x = (C_k − C_{k+1})/(C_k + C_{k+1}) :func:`log_mean` sums the series of
#: x/artanh(x) in y = x²: the first term left out, |r_6|·y⁶, is then below 2^-65 (well under
#: an ulp of the sum, which is near 1).
SERIES_BELOW = 1.0 / 32.0
#: x/artanh(x) = Σ_j r_j·y^j, y = x²: the reciprocal of Σ_j y^j/(2j + 1), term by term
#: (r_0 = 1; exact fractions, rounded once to float64).
_R1, _R2, _R3, _R4, _R5 = -1 / 3, -4 / 45, -44 / 945, -428 / 14175, -10196 / 467775


def log_mean(c0: float, c1: float) -> float:
    """(c0 − c1)/ln(c0/c1) for c0 > c1 > 0, the logarithmic mean. When x = (c0 − c1)/(c0 +
    c1) < SERIES_BELOW it is ((c0 + c1)/2)·x/artanh(x) by the series in y = x² (no logarithm
    and one division; no digits lost to the rounded ratio c0/c1 near 1); else it is taken
    from ``log1p``. Plain Python, and compiled inline into :func:`_metrics`
    (:func:`_metrics_kernel`)."""
    total = c0 + c1
    d = c0 - c1
    if d < SERIES_BELOW * total:
        y = (d * d) / (total * total)
        return 0.5 * total * (1.0 + y * (_R1 + y * (_R2 + y * (_R3 + y * (_R4 + y * _R5)))))
    # ln(c0/c1) as log1p((c0 − c1)/c1): c0 − c1 is exact while c0 ≤ 2·c1 (Sterbenz), where
    # ln of the rounded ratio would lose log10(1/x) digits
    return d / np.log1p(d / c1)


_registering = threading.Lock()


@functools.cache
def _metrics_kernel() -> Any:
    """:func:`_metrics` compiled (the same arithmetic, without fast-math), with
    :func:`medtransport.bands.bin_of` and :func:`log_mean` inlined. numba's cache sees
    changes to this file only: after changing ``bin_of``, touch this one."""
    import numba
    from numba.extending import register_jitable

    from medtransport.bands import compiled_bin_of

    compiled_bin_of()
    with _registering:
        if not getattr(log_mean, "_registered", False):
            register_jitable(inline="always")(log_mean)
            log_mean._registered = True  # type: ignore[attr-defined]
    return numba.njit(cache=True, nogil=True)(_metrics)


def _metrics(c: np.ndarray, raw: np.ndarray, dt: np.ndarray, first: int, keys: np.ndarray,
             bits: int, exponent: int) -> tuple[np.ndarray, ...]:
    """One pass along each patient's curve, in its memory order: Cmax and its first index,
    the minimum from there on (the running minimum since the latest new maximum), the
    linear-up/log-down AUC (whole curve, and from segment ``first`` on), and — when ``keys``
    is not empty — each value's band bin from its bits ``raw`` (``c`` viewed as int64). A NaN
    anywhere in a curve makes its Cmax, Cmin and AUCs NaN (and its Tmax, in the caller), as
    numpy's reductions would."""
    n_patients, n_times = c.shape
    cmax = np.empty(n_patients)
    i_max = np.zeros(n_patients, dtype=np.int64)
    cmin = np.empty(n_patients)
    auc = np.empty(n_patients)
    auc_24h = np.empty(n_patients)
    binned = keys.shape[0] > 0
    for p in range(n_patients):
        c0 = c[p, 0]
        if binned:
            keys[0, p] = bin_of(raw[p, 0], bits, exponent)
        top, at, low, bad = c0, 0, c0, c0 != c0
        whole = 0.0
        tail = 0.0
        for k in range(n_times - 1):
            c1 = c[p, k + 1]
            if binned:
                keys[k + 1, p] = bin_of(raw[p, k + 1], bits, exponent)
            if c1 < c0 and c1 > 0:  # then c0 > 0 too
                seg = dt[k] * log_mean(c0, c1)
            else:
                seg = dt[k] * (c0 + c1) / 2.0
            whole += seg
            if k >= first:
                tail += seg
            if c1 != c1:
                bad = True
            elif c1 > top:
                top, at, low = c1, k + 1, c1
            else:
                low = min(low, c1)
            c0 = c1
        nan = np.nan
        cmax[p] = nan if bad else top
        i_max[p] = at
        cmin[p] = nan if bad else low
        auc[p] = nan if bad else whole
        auc_24h[p] = nan if bad else tail
    return cmax, i_max, cmin, auc, auc_24h


def percentile_bands(curve: xr.DataArray, percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                     *, time_block: int | None = None) -> xr.DataArray:
    """Percentiles over patients at each time, (percentile, time). Lazy for a dask-backed
    curve (rechunked to whole patients and blocks of ``time_block`` times: memory about
    N·time_block·8 bytes per task); computed block by block otherwise."""
    n = curve.sizes["patient"]
    if time_block is None:
        # about 2^24 values (128 MB in float64) per block; for a dask curve, whole stored
        # chunks along time, so that no stored chunk is split between tasks
        time_block = int(max(1, min(curve.sizes["time"], 2**24 // max(n, 1))))
        if _is_dask(curve) and curve.chunks is not None:
            stored = curve.chunks[curve.dims.index("time")][0]
            time_block = stored * max(1, time_block // stored) if time_block >= stored \
                else stored
    q = np.asarray(percentiles, dtype=float) / 100.0
    if _is_dask(curve):
        whole = curve.chunk({"patient": -1, "time": time_block})
        out = whole.quantile(q, dim="patient", skipna=False)
    else:
        blocks = []
        for i in range(0, curve.sizes["time"], time_block):
            part = np.asarray(curve.isel(time=slice(i, i + time_block)).values, dtype=float)
            blocks.append(np.quantile(part, q, axis=1))
        out = xr.DataArray(np.concatenate(blocks, axis=1), dims=("quantile", "time"),
                           coords={"quantile": q, "time": curve["time"]})
    out = out.assign_coords(percentile=("quantile", np.asarray(percentiles, dtype=float)))
    out = out.swap_dims({"quantile": "percentile"}).drop_vars("quantile")
    out.attrs = {"units": curve.attrs.get("units", "1"),
                 "long_name": f"percentiles over {n} patients of "
                              f"{curve.attrs.get('long_name', curve.name)}"}
    return out


def store_percentile_bands(path: Any, percentiles: Sequence[float] = DEFAULT_PERCENTILES, *,
                           variable: str | None = None, select: dict[str, Any] | None = None,
                           time_block: int | None = None) -> xr.DataArray:
    """Percentile bands of a population store's summary curve, one task per block of times
    that reads its block of every patient straight from the store — no shuffle between
    workers, about N·time_block·12 bytes per task. Lazy (dask.delayed) when dask is
    installed, so the tasks run on whatever scheduler computes them (a cluster's workers
    need the store's path); computed here otherwise."""
    from medtransport.store import PopulationStore, open_population

    store = PopulationStore.open(path)
    ds = open_population(path, allow_incomplete=True)
    curve = summary_curve(ds, variable, select)
    name = str(curve.name)
    var = ds[name]
    fixed = {str(d): int(np.flatnonzero(ds[d].values == curve[d].values)[0])
             for d in var.dims if d not in ("time", "patient")}
    n, n_time = ds.sizes["patient"], ds.sizes["time"]
    mask = store.passed_mask()
    stored = var.encoding.get("chunks") or var.encoding.get("preferred_chunks", {})
    stored_t = stored[var.dims.index("time")] if isinstance(stored, tuple) else n_time
    if time_block is None:
        time_block = max(1, 2**24 // max(n, 1))
        time_block = stored_t * max(1, time_block // stored_t) if time_block >= stored_t \
            else time_block
    q = np.asarray(percentiles, dtype=float) / 100.0
    blocks = [(t0, min(t0 + time_block, n_time)) for t0 in range(0, n_time, time_block)]
    try:
        import dask
        import dask.array as da
    except ImportError:
        dask = None
    args = (str(store.path), name, tuple(str(d) for d in var.dims), fixed, q,
            None if mask.all() else mask)
    if dask is not None:
        parts = [da.from_delayed(dask.delayed(_band_block, pure=True)(*args, t0, t1),
                                 shape=(q.size, t1 - t0), dtype=float) for t0, t1 in blocks]
        data: Any = da.concatenate(parts, axis=1)
    else:
        data = np.concatenate([_band_block(*args, t0, t1) for t0, t1 in blocks], axis=1)
    out = xr.DataArray(data, dims=("percentile", "time"),
                       coords={"percentile": np.asarray(percentiles, dtype=float),
                               "time": ds["time"].values})
    out["time"].attrs = dict(ds["time"].attrs)
    out.attrs = {"units": var.attrs.get("units", "1"),
                 "long_name": f"percentiles over {int(mask.sum())} patients of "
                              f"{var.attrs.get('long_name', name)}"}
    ds.close()
    return out


def _band_block(path: str, name: str, dims: tuple[str, ...], fixed: dict[str, int],
                q: np.ndarray, mask: np.ndarray | None, t0: int, t1: int) -> np.ndarray:
    """Percentiles over patients of times [t0, t1) of one stored variable."""
    from medtransport.store import _group

    arr = _group(Path(path), "r")[name]
    sel = tuple(slice(t0, t1) if d == "time" else fixed[d] if d in fixed else slice(None)
                for d in dims)
    # in the stored dtype: float32 partitions twice as fast, and the order statistics are
    # the stored values either way
    block = np.asarray(arr[sel])
    if next(d for d in dims if d in ("time", "patient")) == "patient":
        block = block.T
    if mask is not None:
        block = block[:, mask]
    return np.quantile(block, q, axis=1).astype(float)


def probability_of_target_attainment(metric: xr.DataArray, targets: Sequence[float] | float,
                                     *, attained_above: bool = True) -> xr.DataArray:
    """PTA(τ) = fraction of patients with ``metric`` ≥ τ (≤ τ with ``attained_above`` False),
    one value per target; patients without a value (NaN) are left out."""
    tau = xr.DataArray(np.atleast_1d(np.asarray(targets, dtype=float)), dims="target")
    valid = metric.notnull()
    hit = (metric >= tau) if attained_above else (metric <= tau)
    out = (hit & valid).sum("patient") / valid.sum("patient")
    out = out.assign_coords(target=tau.values)
    out["target"].attrs["units"] = metric.attrs.get("units", "1")
    out.attrs = {"units": "1", "long_name": f"probability of target attainment on "
                                            f"{metric.attrs.get('long_name', metric.name)}"}
    return out


def pta_auc_over_mic(ds: xr.Dataset, mics: Sequence[float], *, ratio: float = 400.0,
                     auc: str = "nca_auc_24h") -> xr.DataArray:
    """PTA of AUC/MIC ≥ ``ratio`` for each MIC (in the concentration unit of the AUC, e.g.
    mg/L for an AUC in mg/L·h), one value per MIC; the AUC over the last 24 h by default."""
    pta = probability_of_target_attainment(ds[auc], ratio * np.asarray(mics, dtype=float))
    pta = pta.rename(target="mic").assign_coords(mic=np.asarray(mics, dtype=float))
    unit = str(ds[auc].attrs.get("units", ""))
    pta["mic"].attrs["units"] = unit[:-2] if unit.endswith("*h") else unit
    pta.attrs["long_name"] = f"probability that AUC/MIC ≥ {ratio:g}"
    return pta


def nca_distribution(ds: xr.Dataset, percentiles: Sequence[float] = DEFAULT_PERCENTILES
                     ) -> xr.Dataset:
    """Percentiles over patients of every per-patient ``nca_*`` variable (and their mean)."""
    q = np.asarray(percentiles, dtype=float)
    out = xr.Dataset(coords={"percentile": q})
    for name, var in ds.data_vars.items():
        if not str(name).startswith("nca_") or var.dims != ("patient",):
            continue
        values = var.chunk({"patient": -1}) if _is_dask(var) else var
        qs = values.quantile(q / 100.0, dim="patient", skipna=True)
        qs = qs.assign_coords(percentile=("quantile", q)).swap_dims(
            {"quantile": "percentile"}).drop_vars("quantile")
        out[str(name)] = qs.assign_attrs(var.attrs)
        out[f"{name}_mean"] = var.mean("patient", skipna=True).assign_attrs(var.attrs)
    return out


def plot_bands(bands: xr.DataArray, path: str, *, title: str = "",
               pta: xr.DataArray | None = None) -> None:
    """The median and the outer and inner percentile bands over time (hours), with a PTA
    curve beside them when given; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    from matplotlib.figure import Figure

    from medtransport.results import write_atomically

    bands = bands.compute() if hasattr(bands, "compute") else bands
    fig = Figure(figsize=(11 if pta is not None else 6.5, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if pta is not None else 1)
    ax = axes[0] if pta is not None else axes
    t = bands["time"].values / 3600.0
    p = [float(x) for x in bands["percentile"].values]
    v = bands.values
    pairs = [(i, len(p) - 1 - i) for i in range(len(p) // 2)]
    for k, (lo, hi) in enumerate(pairs):
        ax.fill_between(t, v[lo], v[hi], alpha=0.2 + 0.2 * k,
                        label=f"{p[lo]:g}–{p[hi]:g} %", color="tab:blue", linewidth=0)
    if len(p) % 2:
        ax.plot(t, v[len(p) // 2], color="tab:blue", label=f"{p[len(p) // 2]:g} % (median)")
    ax.set_xlabel("time [h]")
    ax.set_ylabel(f"concentration [{bands.attrs.get('units', '')}]")
    ax.set_title(bands.attrs.get("long_name", ""), fontsize="small")
    ax.legend(fontsize="small")
    if pta is not None:
        pta = pta.compute() if hasattr(pta, "compute") else pta
        ax2 = axes[1]
        x = pta[pta.dims[0]]
        ax2.semilogx(x.values, pta.values, marker="o")
        ax2.set_xticks(x.values, [f"{v:g}" for v in x.values])
        ax2.minorticks_off()
        ax2.set_xlabel(f"MIC [{x.attrs.get('units', '')}]")
        ax2.set_ylabel("probability of target attainment")
        ax2.set_ylim(-0.02, 1.02)
        ax2.axhline(0.9, color="grey", linestyle=":", linewidth=1)
        ax2.set_title(pta.attrs.get("long_name", ""), fontsize="small")
    if title:
        fig.suptitle(title)
    suffix = Path(path).suffix or ".png"
    with write_atomically(path, suffix) as tmp:
        fig.savefig(tmp, dpi=110, format=suffix[1:])


def _is_dask(da: xr.DataArray) -> bool:
    return type(da.data).__module__.startswith("dask")
