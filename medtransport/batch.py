"""Population runs at scale: chunks of patients, each solved batched in numpy and audited,
streamed to a Zarr store; on one machine, or on a ``dask.distributed`` cluster.

    run_population(scenario, n=100_000)                       # chunks, one after another
    run_population(scenario, n=1_000_000, client="local")     # a 2-worker LocalCluster
    run_population(scenario, n=…, client="tcp://host:8786")   # any scheduler

Every chunk is a complete :func:`medtransport.runner.run` of its block of patients — the same
pre- and post-run audits as a single run — and its per-patient curve metrics
(:func:`medtransport.summaries.curve_metrics`) are computed while it is in memory. A chunk
that fails its audits (or raises) is recorded with the ids of the patients that failed and is
not written; the other chunks go on. The run then raises :class:`PopulationAuditFailure`
naming them, and the store keeps every passed chunk, so a resumed run only repeats the rest.

Chunks never share a Zarr chunk, so workers write their own results straight to the store
(a path every worker can reach); the client only receives each chunk's small record. At
most two chunks per worker are in flight, so memory stays bounded whatever N.

Reproducibility: each patient's parameters and covariates are drawn from its own positions of
one random stream (:mod:`medtransport.population`), so they are identical whatever the
chunking. A run without a seed gets one, recorded in the store, so that resuming continues
the same population.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from medtransport.errors import AuditFailure, MedtransportError, ScenarioError
from medtransport.model import Model
from medtransport.population import chunk_bounds
from medtransport.scenario import Scenario, load_scenario
from medtransport.store import PopulationStore, open_population, store_lock

if TYPE_CHECKING:
    from medtransport.audit.report import AuditContext

__all__ = ["ChunkFailure", "PopulationAuditFailure", "PopulationResult", "run_population"]

#: Memory the saved states of one chunk may take (bytes): what sets the default chunk size.
CHUNK_STATE_BYTES = 48 * 2**20
#: At most this many batches of CHUNK_STATE_BYTES in one stored chunk that keeps no full
#: curves (its writes, records and band merges are per chunk, its memory per batch) ...
BATCHES_PER_CHUNK = 8
#: ... while a run keeps at least this many chunks (balance between workers, progress,
#: what a resumed run repeats).
MIN_CHUNKS = 16
#: Patients per piece of a per-patient variable read for the summaries (8 MiB of float64).
PER_PATIENT_PIECE = 2**20


class PopulationAuditFailure(AuditFailure):
    """Some chunks of a population failed their audits (or raised); ``failures`` lists them
    with the ids of the failing patients. The passed chunks are in the store."""

    def __init__(self, message: str, failures: list[ChunkFailure], store: Path | None):
        super().__init__(message)
        self.failures = failures
        self.store = store


@dataclass
class ChunkFailure:
    """A chunk that did not pass: its patients, the failing ones, and why."""

    index: int
    start: int
    stop: int
    patients: list[int]
    reason: str

    def describe(self) -> str:
        shown = _id_list(self.patients)
        return (f"chunk {self.index} (patients {self.start}–{self.stop - 1}): patient"
                f"{'s' if len(self.patients) != 1 else ''} {shown}: {self.reason}")


@dataclass
class PopulationResult:
    """A finished population run: its store, the chunk records, and lazy summaries."""

    path: Path
    size: int
    chunk_size: int
    records: dict[int, dict[str, Any]]
    seconds: float
    resumed_chunks: int = 0
    _dataset: xr.Dataset | None = field(default=None, repr=False)
    _per_patient: xr.Dataset | None = field(default=None, repr=False)

    @property
    def dataset(self) -> xr.Dataset:
        """The whole population as a lazy Dataset (dask arrays when dask is installed)."""
        if self._dataset is None:
            # with strict=False a run may have failed chunks: their patients are masked
            self._dataset = open_population(self.path, allow_incomplete=bool(self.failures))
        return self._dataset

    @property
    def per_patient(self) -> xr.Dataset:
        """The per-patient variables (parameters, covariates, NCA, max |residual|), lazy in
        pieces of about 2^20 patients (whole stored chunks each): the summaries then take a
        few tasks per variable, not one per stored chunk (a cluster's scheduler spent 100 s
        on 1429 chunks × a dozen variables at 10⁶ patients)."""
        if self._per_patient is None:
            piece = max(1, PER_PATIENT_PIECE // max(self.chunk_size, 1)) * self.chunk_size
            ds = open_population(self.path, chunks={"patient": piece},
                                 allow_incomplete=bool(self.failures))
            self._per_patient = ds[[n for n, v in ds.data_vars.items()
                                    if v.dims == ("patient",)]]
        return self._per_patient

    @property
    def failures(self) -> list[ChunkFailure]:
        return _failures(self.records)

    def curve(self, variable: str | None = None,
              select: dict[str, Any] | None = None) -> xr.DataArray:
        from medtransport.summaries import summary_curve

        return summary_curve(self.dataset, variable, select)

    def bands(self, percentiles: Any = None, *, source: str = "auto",
              **kw: Any) -> xr.DataArray:
        """Percentile bands over patients of the summary curve, (percentile, time).

        ``source="stream"``: from the histogram counted while the chunks ran (any
        percentiles, no pass over the store; within the bound of :mod:`medtransport.bands`:
        2⁻⁸ of the neighbouring order statistics, relative); ``"store"``: exact, read block by
        block from the stored curves (lazy; :func:`medtransport.summaries.store_percentile_bands`;
        needs every curve kept at every output time); ``"auto"``: streamed when counted."""
        from medtransport.summaries import DEFAULT_PERCENTILES, store_percentile_bands

        percentiles = percentiles or DEFAULT_PERCENTILES
        if source not in ("auto", "stream", "store"):
            raise ValueError(f"source: expected auto, stream or store, got {source!r}")
        store = PopulationStore.open(self.path)
        if source != "store":
            kept = self._stored_bands(percentiles)
            if kept is not None:
                return kept
        saved = store.load_bands() if source != "store" else None
        if saved is None:
            if source == "stream":
                raise MedtransportError(f"store: {self.path} holds no streamed bands "
                                        "(population.output.bands was false)")
            return store_percentile_bands(self.path, percentiles, **kw)
        hist, _ = saved
        name = next((str(n) for n in self.dataset.data_vars if str(n).endswith("_band")),
                    None)
        var = self.dataset[name] if name is not None else None
        out = xr.DataArray(hist.percentiles(percentiles), dims=("percentile", "time"),
                           coords={"percentile": np.asarray(percentiles, dtype=float),
                                   "time": self.dataset["band_time"].values})
        out["time"].attrs = {"units": "s", "long_name": "time"}
        if var is not None:
            out.attrs = {"units": var.attrs.get("units", "1"),
                         "long_name": var.attrs.get("long_name", name)}
        return out

    def _stored_bands(self, percentiles: Any) -> xr.DataArray | None:
        """The streamed bands the run wrote at its end, when they hold every percentile
        asked for and count the patients of every passed chunk: the rows of what
        :meth:`bands` would compute again from the histogram (the same function of the same
        counts), without decoding the histogram's checkpoint (94 MB for 1441 times)."""
        ds = self.dataset
        name = next((str(n) for n in ds.data_vars if str(n).endswith("_band")), None)
        if name is None or "band_percentile" not in ds.coords:
            return None
        var = ds[name]
        stored = [float(q) for q in ds["band_percentile"].values]
        wanted = [float(q) for q in np.atleast_1d(np.asarray(percentiles, dtype=float))]
        passed = sum(int(r["stop"]) - int(r["start"]) for r in self.records.values()
                     if r.get("status") == "passed")
        if any(q not in stored for q in wanted) or var.attrs.get("patients") != passed:
            return None
        rows = np.asarray(var.values)[[stored.index(q) for q in wanted]]
        out = xr.DataArray(rows, dims=("percentile", "time"),
                           coords={"percentile": np.asarray(wanted, dtype=float),
                                   "time": ds["band_time"].values})
        out["time"].attrs = {"units": "s", "long_name": "time"}
        out.attrs = {"units": var.attrs.get("units", "1"),
                     "long_name": var.attrs.get("long_name", name)}
        return out

    def nca(self, percentiles: Any = None) -> xr.Dataset:
        from medtransport.summaries import DEFAULT_PERCENTILES, nca_distribution

        return nca_distribution(self.per_patient, percentiles or DEFAULT_PERCENTILES)

    def pta(self, mics: Any, ratio: float = 400.0) -> xr.DataArray:
        from medtransport.summaries import pta_auc_over_mic

        return pta_auc_over_mic(self.per_patient, mics, ratio=ratio)

    def close(self) -> None:
        if self._dataset is not None:
            self._dataset.close()
            self._dataset = None
        if self._per_patient is not None:
            self._per_patient.close()
            self._per_patient = None


def _id_list(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" … ({len(ids)} in all)" if len(ids) > limit else "")


def _failures(records: Mapping[int, dict[str, Any]]) -> list[ChunkFailure]:
    return [ChunkFailure(r["index"], r["start"], r["stop"], r["failed_patients"], r["reason"])
            for _, r in sorted(records.items()) if r["status"] != "passed"]


# ---------------------------------------------------------------------------------- a chunk

@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to run, audit and store one chunk (picklable)."""

    scenario: str  # JSON
    index: int
    start: int
    stop: int
    store: str
    variables: tuple[str, ...] | None
    model_class: type[Model] | None = None
    keep: Keep | None = None
    #: the scenario's directory, against which its input files (a data set) resolve
    base_dir: str | None = None
    #: patients run and audited at once (None: the whole chunk); see :func:`compute_chunk`
    batch: int | None = None


@dataclass(frozen=True)
class Keep:
    """What a chunk keeps of its audited result (from ``population.output``): curves or not,
    every ``every``-th output time, only the sampled patients ``sampled`` (global ids, sorted;
    None: all) of which the chunk's are ``sampled[first:last]``; and whether it counts the
    percentile bands of the summary curve."""

    curves: bool = True
    every: int = 1
    sampled: tuple[int, ...] | None = None
    bands: bool = False

    def of_chunk(self, start: int, stop: int) -> tuple[int, int]:
        """The positions [first, last) of the chunk's sampled patients in ``sampled``."""
        ids = np.asarray(self.sampled or (), dtype=np.int64)
        return int(np.searchsorted(ids, start)), int(np.searchsorted(ids, stop))


def run_chunk(task: ChunkTask) -> dict[str, Any]:
    """Run, audit and store one chunk; return its record (also written to the store)."""
    record, out = compute_chunk(task)
    return store_chunk(task, record, out)


def compute_chunk(task: ChunkTask) -> tuple[dict[str, Any], xr.Dataset | None]:
    """Run and audit one chunk: its record, and what it stores (None if it failed) — with,
    when bands are counted, the chunk's band counts (:func:`medtransport.bands.count_keys`)
    as ``_band_counts``. A chunk larger than ``task.batch`` runs as batches of that many
    patients, one after another (:mod:`medtransport.batch_parts`); after a batch fails the
    others still run and are audited, so that the record names every failing patient."""
    from medtransport.batch_parts import merge_parts, merge_reports
    from medtransport.numerics import arena
    from medtransport.runner import prepare, run_audited

    started, cpu = time.perf_counter(), time.thread_time()
    record: dict[str, Any] = {"index": task.index, "start": task.start, "stop": task.stop,
                              "host": os.uname().nodename, "pid": os.getpid()}
    step = task.batch or task.stop - task.start
    parts: list[xr.Dataset] = []
    reports: list[tuple[int, str]] = []
    failed: list[int] = []
    reasons: list[str] = []
    simulate = audit = 0.0
    # each batch's large arrays in the memory the batch before left (numerics.arena)
    with arena.reusing():
        for start in range(task.start, task.stop, step):
            stop = min(start + step, task.stop)
            ids = list(range(start, stop))
            try:
                model = prepare(_chunk_scenario(task.scenario, task.base_dir),
                                patients=(start, stop), model_class=task.model_class)
                ds, books = run_audited(model, provenance=False)
            except AuditFailure as exc:
                reasons.append(_short(str(exc)))
                failed.extend(failing_patients(exc, ids))
                continue
            except Exception as exc:  # a chunk that raises must not take the others down
                reasons.append(_short(f"{type(exc).__name__}: {exc}"))
                failed.extend(ids)
                continue
            finally:
                model = None
            simulate += float(ds.attrs.get("simulate_seconds", 0.0))
            audit += float(ds.attrs.get("audit_seconds", 0.0))
            reports.append((start - task.start, ds.attrs.get("audit_report", "")))
            if not reasons:
                # the audits' context: its mass balance summed over the patients on the way
                parts.append(_stored_part(ds, task.variables, task.keep, books=books))
            del ds, books  # one batch's trajectories in memory at a time
            arena.reclaim()
    out = None
    if reasons:
        more = f" (and {len(reasons) - 1} more of its batches)" if len(reasons) > 1 else ""
        record.update(status="failed", reason=reasons[0] + more,
                      failed_patients=failed)
    else:
        out = merge_parts(parts)
        record.update(status="passed", reason="", failed_patients=[],
                      audit=merge_reports(reports), simulate_seconds=simulate,
                      audit_seconds=audit)
    record["seconds"] = time.perf_counter() - started
    record["cpu_seconds"] = time.thread_time() - cpu
    return record, out


@functools.lru_cache(maxsize=4)
def _chunk_scenario(text: str, base_dir: str | None) -> Scenario:
    """A run's scenario, validated once per process rather than once per chunk (2–3 ms of
    pydantic and pint a chunk): every chunk of a run carries the same JSON, and nothing
    changes a Scenario once it is loaded (``with_changes`` makes a new one)."""
    return load_scenario(json.loads(text), base_dir=base_dir)


def store_chunk(task: ChunkTask, record: dict[str, Any], out: xr.Dataset | None
                ) -> dict[str, Any]:
    """Write a computed chunk to the store, then its record (the record last: a chunk
    without one is written again on resume)."""
    started, cpu = time.perf_counter(), time.thread_time()
    store = PopulationStore(Path(task.store))
    counts = None
    if out is not None:
        counts = out.attrs.pop("_band_counts", None)
        sampled = task.keep.of_chunk(task.start, task.stop) if task.keep is not None and \
            task.keep.sampled is not None else None
        store.write_chunk(task.start, task.stop, out,
                          **({"sampled": sampled} if sampled is not None else {}))
    record["write_seconds"] = time.perf_counter() - started
    record["seconds"] += record["write_seconds"]
    record["cpu_seconds"] += time.thread_time() - cpu
    store.mark(record)
    # the band counts go to the client with the record, never into the record's file
    return {**record, "_bands": counts} if counts is not None else record


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def failing_patients(exc: AuditFailure, ids: list[int]) -> list[int]:
    """The ids of the patients that make a chunk fail: those whose ledger residual exceeds
    the failed mass balance's tolerance, whose states are not finite, or that an audit names;
    the whole chunk when the failure cannot be pinned on patients."""
    ds, report = exc.dataset, exc.report
    if report is None:
        return ids
    bad = np.zeros(len(ids), dtype=bool)
    pinned = True
    for result in report.failures:
        if ds is not None and "patient" in ds.dims and result.name.startswith("mass_balance["):
            species = result.name[len("mass_balance["):-1]
            res = ds.get(f"{species}_residual")
            if res is not None and "patient" in res.dims:
                worst = np.abs(res.values).max(axis=res.dims.index("time")) \
                    if "time" in res.dims else np.abs(res.values)
                bad |= ~(worst <= result.tolerance)  # NaN counts as failing
                continue
        if ds is not None and "patient" in ds.dims and result.name.startswith("finite"):
            for var in ds.data_vars.values():
                if "patient" in var.dims and var.dtype.kind == "f":
                    other = tuple(i for i, d in enumerate(var.dims) if d != "patient")
                    bad |= ~np.isfinite(var.values).all(axis=other)
            continue
        where = result.where.get("patient")
        if where is not None and 0 <= int(where) < len(ids):
            bad[int(where)] = True
            continue
        pinned = False
    if not pinned or not bad.any():
        return ids
    return [ids[i] for i in np.flatnonzero(bad)]


def _stored_part(ds: xr.Dataset, variables: tuple[str, ...] | None,
                 keep: Keep | None = None, *, template: bool = False,
                 books: AuditContext | None = None) -> xr.Dataset:
    """The variables a chunk stores: the time-dependent ones asked for (default: the summary
    curve's variable), every per-patient one, and the per-patient curve metrics — all taken
    from the whole audited result before ``keep`` thins its curves (to none, to the sampled
    patients, or to every k-th output time). ``template``: the probe that lays out a store
    (its one patient stands for the sampled ones). ``books``: the context of the run's
    audits, whose mass balance pass may have made the sums and maxima kept here."""
    from medtransport.bands import count_keys, key_dtype
    from medtransport.numerics import arena
    from medtransport.summaries import curve_metrics, summary_curve

    keep = keep or Keep()
    out = ds.reset_coords([c for c in ds.coords if c not in ds.dims and "patient" in
                           ds[c].dims])
    curve = summary_curve(out)
    counted = keep.bands and not template
    # the bins of the streamed bands come from the same pass over the curve as its metrics
    keys = arena.empty((curve.sizes["time"], curve.sizes["patient"]),
                       dtype=key_dtype()) if counted else None
    # what the chunk adds, merged into the Dataset at once: each assignment is a merge
    # (alignment, copies of the indexes), a dozen of them cost more than the metrics' pass
    added: dict[str, Any] = {}
    # the probe's layout in plain Python: a client that runs no chunk never loads numba
    for name, (values, unit, long_name) in curve_metrics(curve, compiled=not template,
                                                         band_keys=keys).items():
        added[name] = xr.Variable("patient", values, {"units": unit, "long_name":
                                                     f"{long_name} of {curve.name}"})
    for sp in _species(ds):
        res = out.get(f"{sp}_residual")
        worst = None
        if res is not None and res.dims == ("time", "patient") and not template:
            from medtransport.audit.extremes import abs_max_along

            # both maxima of |residual| (over time per patient, over patients per time):
            # made by the mass balance's pass, or here in one pass without an |residual|
            # temporary
            known = books.residual_abs_max(sp) if books is not None else None
            if known is not None:
                over_time, over_patients = known
            else:
                over_patients, over_time = abs_max_along(res.values)
            # laid out as the reductions over "patient" and "time" would give them
            worst = res.isel(patient=0, drop=True).copy(data=over_patients)
            worst.attrs = {}
            added[f"{sp}_max_abs_residual"] = xr.Variable("patient", over_time, {
                "units": res.attrs.get("units", "1"),
                "long_name": f"largest |ledger residual| of {sp} over time (audited)"})
        elif res is not None and "patient" in res.dims:
            added[f"{sp}_max_abs_residual"] = np.abs(res).max(
                "time", skipna=False).assign_attrs(
                units=res.attrs.get("units", "1"),
                long_name=f"largest |ledger residual| of {sp} over time (audited)")
        added.update(chunk_ledger(ds, sp, worst=worst, books=books))
    out.update(added)
    # the Variables, not DataArrays: building a DataArray per name costs more than reading it
    held = out.data_vars.variables
    curves = [n for n, v in held.items() if {"time", "patient"} <= set(v.dims)]
    if variables is None or "all" not in variables:
        wanted = set(variables or (str(curve.name),))
        keep_vars = [n for n, v in held.items()
                     if "chunk" in v.dims
                     or ("patient" in v.dims and ("time" not in v.dims or n in wanted))]
        # without curves, one selection instead of a selection and a drop
        out = out[[n for n in keep_vars if keep.curves or n not in curves]]
        curves = [n for n in curves if n in keep_vars]
    if not keep.curves:
        if any(n in out.data_vars for n in curves):
            out = out.drop_vars([n for n in curves if n in out.data_vars])
    elif keep.sampled is not None:
        ids = np.asarray(out["patient"].values, dtype=np.int64)
        chosen = np.ones(ids.size, dtype=bool) if template else \
            np.isin(ids, np.asarray(keep.sampled, dtype=np.int64))
        for name in curves:
            out[f"sampled_{name}"] = out[name].isel(patient=chosen).rename(
                patient="sampled_patient").assign_attrs(out[name].attrs)
        out = out.drop_vars(curves)
        out = out.assign_coords(sampled_patient=("sampled_patient", ids[chosen], {
            "units": "1", "long_name": "virtual patient whose curves are kept"}))
    if keep.every > 1:
        out = out.isel(time=slice(None, None, keep.every))
    if keys is not None:
        # counted here, so that no reference to the chunk's curves outlives this function
        out.attrs["_band_counts"] = count_keys(keys)
    return out


def chunk_ledger(ds: xr.Dataset, species: str, *, worst: xr.DataArray | None = None,
                 books: AuditContext | None = None) -> dict[str, xr.Variable]:
    """The chunk's books over time, (chunk = 1, time): each ledger part summed over the
    chunk's patients (``<species>_<part>_chunk_total``; a part kept once for all patients
    counts once per patient) and the largest |residual| over them
    (``<species>_residual_chunk_max``). The store keeps one row per chunk, so the report of a
    population of any size draws the whole population's drug account from a few numbers per
    chunk. ``worst``: max |residual| over the patients at each time, when the caller has it.
    Variables over the Dataset's own time, so that adding them to it needs no alignment.
    ``books``: the audits' context, whose mass balance pass may have made the sums."""
    from medtransport.results import LEDGER_TERMS

    n = ds.sizes.get("patient", 1)
    out: dict[str, xr.Variable] = {}
    for part in ("stored", "expected", *LEDGER_TERMS):
        name = f"{species}_{part}"
        # membership first: a missing name in Dataset.get costs a KeyError with suggestions
        var = ds[name] if name in ds.variables else None
        if var is None or "time" not in var.dims:
            continue
        attrs = {"units": var.attrs.get("units", "1"),
                 "long_name": f"{var.attrs.get('long_name', part)}, summed over the chunk's "
                              "patients"}
        sums = books.patient_sums(var.values) if books is not None and \
            var.dims == ("time", "patient") else None
        if sums is None:
            sums = _patient_sums(var.variable)
        if sums is not None:  # the attributes too, as xarray's reductions keep them
            out[f"{name}_chunk_total"] = xr.Variable(("chunk", "time"), sums[np.newaxis],
                                                     {**var.attrs, **attrs})
            continue
        # skipna=False: numpy's sum — a NaN here is a failed chunk, never a value to skip
        total = var.sum("patient", skipna=False) if "patient" in var.dims else var * n
        out[f"{name}_chunk_total"] = total.expand_dims(chunk=1).assign_attrs(attrs).variable
    res = ds.get(f"{species}_residual")
    if res is not None and "time" in res.dims:
        if worst is None:
            worst = np.abs(res).max("patient", skipna=False) if "patient" in res.dims else \
                np.abs(res)
        out[f"{species}_residual_chunk_max"] = worst.expand_dims(chunk=1).assign_attrs(
            units=res.attrs.get("units", "1"),
            long_name=f"largest |ledger residual| of {species} over the chunk's patients"
        ).variable
    return out


def _patient_sums(var: xr.Variable) -> np.ndarray | None:
    """``var.sum("patient")`` of a (time, patient) float64 ledger part, bit for bit, when its
    memory is patient-major — what a batched solver writes: one compiled pass in memory order
    adds each patient's row to the running sums, patient after patient, as numpy's reduction
    does for that layout (numpy's own pass, wrapped by xarray, cost 2–3 ms per 24 MB part);
    None for any other array (numpy's pairwise order could differ there)."""
    a = var.data
    if var.dims != ("time", "patient") or not isinstance(a, np.ndarray) or \
            a.dtype != np.float64 or a.shape[0] < 2 or a.shape[1] < 1 or \
            not a.strides[1] > a.strides[0] > 0:
        return None
    return np.asarray(_patient_sums_kernel()(a.T))


@functools.cache
def _patient_sums_kernel() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def patient_sums(rows: np.ndarray) -> np.ndarray:
        """Σ_p rows[p, t] for each t, from 0.0 (numpy's identity: an all −0.0 column sums
        to +0.0) and p in order."""
        out = np.zeros(rows.shape[1])
        for p in range(rows.shape[0]):
            for t in range(rows.shape[1]):
                out[t] += rows[p, t]
        return out

    return patient_sums


def _species(ds: xr.Dataset) -> list[str]:
    return [str(n)[:-len("_residual")] for n in ds.data_vars if str(n).endswith("_residual")]


# ----------------------------------------------------------------------------- the whole run

def _client(client: Any) -> tuple[Any, Callable[[], None]]:
    """A dask.distributed client for ``client`` (a Client, ``"local"`` for a 2-worker
    LocalCluster on the loopback interface, or a scheduler address), and how to close what
    was opened here."""
    if client is None or not isinstance(client, str):
        return client, lambda: None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MedtransportError("a cluster run needs dask.distributed: pip install "
                                "'medtransport[distributed]'") from None
    if client == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        c = Client(cluster)
        c.wait_for_workers(2, timeout=60)

        def close() -> None:
            c.close()
            cluster.close()

        return c, close
    try:
        c = Client(client, timeout="20s")
    except OSError as exc:
        raise MedtransportError(f"--scheduler: cannot reach the scheduler at {client}: "
                                f"{exc}") from None
    return c, c.close


def default_chunk_size(model: Model, size: int) -> int:
    """Patients per chunk so that one chunk's saved states take about CHUNK_STATE_BYTES."""
    per_patient = len(model.scenario.time.output_times()) * math.prod(model.domain.shape) * 8
    chunk = max(1, CHUNK_STATE_BYTES // max(per_patient, 1))
    if chunk >= 100:
        chunk = int(chunk // 100 * 100)
    return int(min(size, chunk))


def _load_compiled() -> None:
    """Import numba and the core's compiled audit and summary kernels (best effort: any
    failure shows again, with its cause, where a chunk needs them)."""
    with contextlib.suppress(Exception):
        import medtransport.audit._kernels  # noqa: F401
        from medtransport.bands import compiled_bin_of
        from medtransport.summaries import _metrics_kernel

        compiled_bin_of()
        _metrics_kernel()


def batches_per_chunk(keep: Keep, size: int, batch: int) -> int:
    """Batches in one stored chunk by default: several when the chunk keeps no full curves
    (its per-patient numbers and sampled curves are small; :mod:`medtransport.batch_parts`),
    up to BATCHES_PER_CHUNK and so that the run still has MIN_CHUNKS chunks; one otherwise."""
    if keep.curves and keep.sampled is None:
        return 1
    return max(1, min(BATCHES_PER_CHUNK, size // (MIN_CHUNKS * max(batch, 1))))


def run_population(scenario: str | Path | Mapping[str, Any] | Scenario, n: int | None = None,
                   *, client: Any = None, store: str | os.PathLike[str] | None = None,
                   chunk_size: int | None = None, variables: Any = None,
                   dtype: str = "float64", overwrite: bool = False,
                   model_class: type[Model] | None = None,
                   on_chunk: Callable[[dict[str, Any]], None] | None = None,
                   progress: Callable[[float], None] | None = None,
                   strict: bool = True, threads: int = 1,
                   batch_size: int | None = None) -> PopulationResult:
    """Run a population in chunks, audit each, stream the results to a Zarr ``store``.

    ``n`` overrides ``population.size``; ``client`` is None (run here), a dask.distributed
    ``Client``, ``"local"`` or a scheduler address; ``store`` is a directory path (default: a
    temporary one, removed with the result object); an existing store of the same run is
    resumed. ``variables`` are the time-dependent variables to store (default: the summary
    curve's, e.g. ``concentration``; ``"all"`` for every one); per-patient variables are
    always stored. ``dtype="float32"`` halves the stored states (audits run in float64
    first). ``on_chunk`` is called with each finished chunk's record. Raises
    :class:`PopulationAuditFailure` if any chunk failed (unless ``strict`` is False).
    ``threads``: chunks computed at once when run here (no ``client``); the event loops,
    audits' array passes and writes release the GIL, so two threads use two cores — the
    model's code must then be thread-safe (the built-in ones are; a plugin's may not be, so
    the default is one). ``batch_size``: patients run and audited at once within a chunk
    (default: about CHUNK_STATE_BYTES of saved states; a chunk that keeps no full curves
    holds several batches by default, :func:`batches_per_chunk`).
    """
    from medtransport.runner import prepare

    started = time.perf_counter()
    sc = load_scenario(scenario)
    if n is not None:
        if n < 1:
            raise ScenarioError([("population.size", f"expected at least 1 patient, got {n}")])
        pop = json_section(sc.population) if sc.population is not None else {}
        sc = sc.with_changes(population={**pop, "size": int(n)})
    if sc.population is None:
        raise ScenarioError([("population", "a population run needs a population section "
                                            "(or --population N)")])
    size = sc.population.size
    if size is None:
        raise ScenarioError([("population.size", "a population run needs the number of "
                                                 "patients (or --population N)")])
    if isinstance(variables, str):
        variables = (variables,)
    variables = tuple(variables) if variables is not None else None
    if dtype not in ("float64", "float32"):
        raise ScenarioError([("dtype", f"expected float64 or float32, got {dtype!r}")])

    path = Path(store) if store is not None else None
    existing = PopulationStore(path) if path is not None and path.exists() else None
    if existing is not None and existing.exists() and not overwrite:
        manifest = existing.manifest()
        if sc.seed is None:
            sc = sc.with_changes(seed=int(manifest["seed"]))
    elif sc.seed is None:
        sc = sc.with_changes(seed=secrets.randbits(63))
    if client is None and threads > 1:
        # the compiled kernels' modules load while the probe runs, not while both chunk
        # threads wait on the import lock at their first batch (~0.5 s of a 30-s run)
        threading.Thread(target=_load_compiled, name="medtransport-preload",
                         daemon=True).start()
    # One patient first: the scenario is checked, and the store laid out, before any chunk.
    probe_model = prepare(sc, patients=(0, 1), model_class=model_class)
    if probe_model.n_patients is None:
        raise ScenarioError([("population", f"{sc.model} runs one patient at a time")])
    keep = _keep(sc)
    batch = int(batch_size or default_chunk_size(probe_model, size))
    if batch < 1:
        raise ScenarioError([("batch_size", f"expected at least 1, got {batch}")])
    if chunk_size is None and existing is not None and existing.exists() and not overwrite:
        chunk_size = int(existing.manifest()["chunk_size"])  # resumed as it was laid out
    chunk = int(chunk_size or batch * batches_per_chunk(keep, size, batch))
    if chunk < 1:
        raise ScenarioError([("chunk_size", f"expected at least 1, got {chunk}")])
    batch = min(batch, chunk)
    manifest = {"scenario": sc.to_json(), "seed": int(sc.seed or 0), "model": sc.model,
                "variables": list(variables) if variables else None}
    expected = {**manifest, "size": size, "chunk_size": chunk, "dtype": dtype}

    # The scheduler first: one that cannot be reached must leave no store behind.
    dask_client, close = _client(client)
    with contextlib.ExitStack() as resources:
        resources.callback(close)
        cleanup = None
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="medtransport-population-")) / "population.zarr"
            cleanup = path.parent
        # One run at a time per store: another one waiting on it fails cleanly ("store in use").
        resources.enter_context(store_lock(path))
        pstore = PopulationStore(path)
        if pstore.exists() and not overwrite:
            pstore.check(expected)
        from medtransport.runner import run

        probe = run(probe_model)
        if not (pstore.exists() and not overwrite):
            template = _stored_part(probe, variables, keep, template=True)
            from medtransport.report.facts import ATTRIBUTE, for_population

            # the probe is one patient: its five answers are not the population's
            template.attrs[ATTRIBUTE] = for_population(template.attrs.get(ATTRIBUTE), size)
            pstore = PopulationStore.create(
                path, template, size=size, chunk_size=chunk, manifest=manifest, dtype=dtype,
                overwrite=overwrite, sampled=None if keep.sampled is None else
                np.asarray(keep.sampled, dtype=np.int64))
        done = pstore.completed()
        passed = {i for i, r in done.items() if r.get("status") == "passed"}
        bands = _Bands(pstore, probe) if keep.bands else None
        if bands is not None:
            # a passed chunk whose counts no checkpoint holds is run again (the same bits)
            uncounted = passed - bands.chunks
            passed -= uncounted
        pstore.forget(set(done) - passed)  # failed (and uncounted) chunks are tried again
        records = {i: done[i] for i in passed}
        source = sc.__dict__.get("_source_dir")
        todo = [ChunkTask(sc.to_json(), i, a, b, str(path), variables, model_class, keep,
                          None if source is None else str(source), batch)
                for i, a, b in chunk_bounds(size, chunk) if i not in passed]
        n_chunks = math.ceil(size / chunk)

        def finished(record: dict[str, Any]) -> None:
            counts = record.pop("_bands", None)
            if bands is not None and counts is not None:
                bands.add(record["index"], counts)
            records[record["index"]] = record
            if progress is not None:
                progress(len(records) / n_chunks)
            if on_chunk is not None:
                on_chunk(record)

        if dask_client is None:
            _run_here(todo, finished, threads)
        else:
            _run_on_cluster(dask_client, todo, finished, pstore)
        if bands is not None:
            bands.finish()
        pstore.finish()
        result = PopulationResult(path, size, chunk, records, time.perf_counter() - started,
                                  resumed_chunks=len(passed))
        if cleanup is not None:
            weakref.finalize(result, shutil.rmtree, cleanup, True)
        failures = result.failures
        if failures and strict:
            lines = "; ".join(f.describe() for f in failures[:10])
            more = f" (and {len(failures) - 10} more chunks)" if len(failures) > 10 else ""
            kept = (f"The {n_chunks - len(failures)} passed chunks are in {path}; a rerun "
                    "repeats only the failed ones") if cleanup is None else \
                "Give store= to keep the passed chunks and rerun only the failed ones"
            raise PopulationAuditFailure(f"{len(failures)} of {n_chunks} chunks failed — {lines}"
                                         f"{more}. {kept}", failures, None if cleanup else path)
        return result


def _run_here(tasks: list[ChunkTask], finished: Callable[[dict[str, Any]], None],
              threads: int = 1) -> None:
    """One chunk computes while the one before it is written by a second thread (Blosc
    compression and file writes release the GIL): at most two chunks in memory. With
    ``threads`` > 1, that many chunks compute at once (at most threads + 1 in memory), and
    are written in their order."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from medtransport.numerics import arena

    if threads > 1:
        _run_threaded(tasks, finished, threads)  # its threads, and their buffers, end with it
        return
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer") as writer:
            pending: Future[dict[str, Any]] | None = None
            for task in tasks:
                record, out = compute_chunk(task)
                if pending is not None:
                    finished(pending.result())
                pending = writer.submit(store_chunk, task, record, out)
            if pending is not None:
                finished(pending.result())
    finally:
        arena.clear()  # the chunks ran on this thread: its reused buffers go with the run


def _run_threaded(tasks: list[ChunkTask], finished: Callable[[dict[str, Any]], None],
                  threads: int) -> None:
    """:func:`_run_here` with ``threads`` chunks computing at once. Chunks that keep no
    full curves (small results) are queued one ahead, so that a thread whose chunk ends
    before the oldest one does starts the next at once instead of waiting for it."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    small = bool(tasks) and tasks[0].keep is not None and \
        (not tasks[0].keep.curves or tasks[0].keep.sampled is not None)
    pending = iter(tasks)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chunk") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer") as writer:
        running: deque[tuple[ChunkTask, Future[Any]]] = deque(
            (t, pool.submit(compute_chunk, t)) for t in _take(pending, threads + small))
        writing: Future[dict[str, Any]] | None = None
        while running:
            task, computing = running.popleft()
            record, out = computing.result()
            for t in _take(pending, 1):
                running.append((t, pool.submit(compute_chunk, t)))
            if writing is not None:
                finished(writing.result())
            writing = writer.submit(store_chunk, task, record, out)
        if writing is not None:
            finished(writing.result())


def _run_on_cluster(client: Any, tasks: list[ChunkTask],
                    finished: Callable[[dict[str, Any]], None], store: PopulationStore) -> None:
    """Submit the chunks with at most two per worker in flight (memory stays bounded), and
    hand each record to ``finished`` as it arrives. A chunk whose worker died (out of
    memory, a lost node) is recorded as failed with all its patients; the others go on."""
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = 2 * workers
    pending = iter(tasks)
    of: dict[str, ChunkTask] = {}

    def submit(task: ChunkTask) -> Any:
        future = client.submit(run_chunk, task, pure=False)
        of[future.key] = task
        return future

    stream = as_completed([submit(t) for t in _take(pending, limit)])
    try:
        for future in stream:
            task = of.pop(future.key)
            try:
                record = future.result()
            except Exception as exc:  # the worker, not the chunk, failed
                record = {"index": task.index, "start": task.start, "stop": task.stop,
                          "status": "failed", "seconds": 0.0,
                          "reason": _short(f"the worker running it was lost: "
                                           f"{type(exc).__name__}: {exc}"),
                          "failed_patients": list(range(task.start, task.stop))}
                store.mark(record)
            finished(record)
            future.release()
            for t in _take(pending, 1):
                stream.add(submit(t))
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(stream.futures))
        raise


def _keep(sc: Scenario) -> Keep:
    """What the chunks keep, from ``population.output`` (checked against the time grid)."""
    assert sc.population is not None
    spec = sc.population.output
    every = 1
    if spec.every is not None:
        tm = sc.time
        step = (tm.output_every or tm.step).m_as("s")
        ratio = spec.every.m_as("s") / step
        if abs(ratio - round(ratio)) > 1e-9 * max(ratio, 1.0) or round(ratio) < 1:
            raise ScenarioError([("population.output.every",
                                  f"expected a whole multiple of the output step ({step:g} s), "
                                  f"got {spec.every.m_as('s'):g} s")])
        if spec.every.m_as("s") > (tm.stop - tm.start).m_as("s") * (1 + 1e-9):
            raise ScenarioError([("population.output.every", "expected at most the span of "
                                  "the run (time.stop − time.start)")])
        every = round(ratio)
    sampled = spec.curve_patients(sc.population.size, int(sc.seed or 0))
    return Keep(curves=spec.curves == "all", every=every,
                sampled=None if sampled is None or spec.curves == "none" else
                tuple(int(i) for i in sampled), bands=spec.bands)


#: A checkpoint of the band histogram is written when the time since the last one is this
#: many times what the last one took: at most 1/20 of the run goes to checkpoints, and a
#: resumed run repeats only the chunks finished since the last one (none, for a small
#: histogram; a few seconds' worth for a large one).
BAND_CHECKPOINT_RATIO = 20.0
#: A checkpoint that took less than this (seconds) is written after every chunk.
BAND_CHECKPOINT_CHEAP = 0.05


class _Bands:
    """The band histogram of a run: merged from each chunk's counts as they arrive,
    checkpointed with the chunks it holds, written as bands into the store at the end."""

    def __init__(self, store: PopulationStore, probe: xr.Dataset):
        from medtransport.bands import BandHistogram
        from medtransport.summaries import summary_curve

        self.store = store
        curve = summary_curve(probe)
        self.name = f"{curve.name}_band"
        self.times = np.asarray(curve["time"].values, dtype=float)
        self.of = str(curve.attrs.get("long_name", curve.name))
        self.attrs = {"units": curve.attrs.get("units", "1"),
                      "error_bound": "|streamed - exact| <= 2^-8 max(|x_(j)|, |x_(j+1)|) + "
                                     "2^-32 (medtransport.bands)"}
        saved = store.load_bands()
        if saved is not None and saved[0].n_times == self.times.size:
            self.hist, chunks = saved
            self.chunks = set(chunks)
        else:
            self.hist, self.chunks = BandHistogram(self.times.size), set()
        self.saved_at = time.perf_counter()
        self.save_seconds = 0.0

    def add(self, index: int, counts: Any) -> None:
        """Count chunk ``index``: its (time, bin, count) triple, or one per batch."""
        from medtransport.batch_parts import band_counts

        if index in self.chunks:
            return
        for triple in band_counts(counts):
            self.hist.add(*triple)
        self.chunks.add(index)
        now = time.perf_counter()
        if self.save_seconds < BAND_CHECKPOINT_CHEAP or \
                now - self.saved_at >= BAND_CHECKPOINT_RATIO * self.save_seconds:
            self.store.save_bands(self.hist, self.chunks)
            self.saved_at = time.perf_counter()
            self.save_seconds = self.saved_at - now

    def finish(self) -> None:
        from medtransport.summaries import STORED_BAND_PERCENTILES

        self.store.save_bands(self.hist, self.chunks)
        q = np.asarray(STORED_BAND_PERCENTILES, dtype=float)
        n = int(self.hist.total().max(initial=0))
        self.store.write_bands(self.name, self.hist.percentiles(q), q, self.times,
                               {**self.attrs, "patients": n, "long_name":
                                f"percentiles over {n} patients of {self.of} (streamed)"})


def _take(iterator: Any, k: int) -> list[Any]:
    out = []
    for _ in range(k):
        try:
            out.append(next(iterator))
        except StopIteration:
            break
    return out


def json_section(section: Any) -> dict[str, Any]:
    return json.loads(section.model_dump_json(exclude_none=True, round_trip=True))


def population_command(scenario: str, *, n: int | None, scheduler: str | None,
                       chunk_size: int | None, store: str | None, overwrite: bool,
                       output: str | None, plot_path: str | None,
                       echo: Callable[[str], None]) -> None:
    """``medtransport run SCENARIO --population N …``: run, then print and write the
    summaries (``-o``: a NetCDF of percentile bands, NCA distributions and PTA; ``--plot``:
    the percentile bands)."""
    if store is None:
        raise MedtransportError("--store: a population run streams its results to a Zarr "
                                "directory; give --store OUT.zarr")
    for target, option in ((output, "-o/--output"), (plot_path, "--plot")):
        if target and not (Path(target).parent if str(Path(target).parent) else
                           Path(".")).is_dir():
            raise MedtransportError(f"{option}: the directory {Path(target).parent} does not "
                                    "exist")
    if output:
        from medtransport.trust import output_path

        # Before the run: a file that is not a medtransport result is not replaced.
        output_path(output, option="-o/--output", scenario_dir=None, overwrite=overwrite)

    from medtransport.progress import ChunkProgress

    progress = ChunkProgress(echo)
    result = run_population(scenario, n, client=scheduler, store=store,
                            chunk_size=chunk_size, overwrite=overwrite, progress=progress)
    # after the last chunk, the summaries, plot and report take a while on a large run: say so
    if progress.shown:
        echo("computing the summaries (percentile bands, NCA distributions, PTA)…")
    summary = summarize(result)
    nca = summary["nca"]
    echo(f"{result.size} patients in {math.ceil(result.size / result.chunk_size)} chunks of "
         f"{result.chunk_size} ({result.resumed_chunks} resumed), every chunk audited and "
         f"passed; {result.seconds:.1f} s; store {result.path}")
    from medtransport.display import pretty

    for name in ("nca_cmax", "nca_auc_24h", "nca_cmin"):
        if name in nca:
            q = nca[name].values
            echo(f"  {name[4:]:9s} median {q[len(q) // 2]:.4g} "
                 f"(5–95 %: {q[0]:.4g}–{q[-1]:.4g}) {pretty(nca[name].attrs.get('units', ''))}")
    if output:
        from medtransport.export import staged, write_result

        with staged(output) as tmp:  # the format by the extension, as for a single run
            write_result(summary["dataset"], tmp, Path(output).suffix.lower(),
                         _display_units(scenario))
        echo(f"wrote the summaries to {output}")
    if plot_path:
        from medtransport.summaries import plot_bands

        if progress.shown:
            echo("drawing the percentile bands…")

        plot_bands(summary["bands"], plot_path, title=str(
            result.dataset.attrs.get("title", "")), pta=summary.get("pta"))
        echo(f"wrote the percentile bands to {plot_path}")


def _display_units(scenario: Any) -> Any:
    """The units a CSV of the summaries is written in: the scenario's own, then those its
    model declares (:mod:`medtransport.display`)."""
    from medtransport.display import DisplayUnits, written_units
    from medtransport.plugins import get_registry

    sc = load_scenario(scenario)
    try:
        declared = getattr(get_registry().model_class(sc.model), "display_units", None)
    except Exception:  # the run found the model; a failing look-up only costs the preference
        declared = None
    return DisplayUnits(declared=declared or {}, written=written_units(sc))


def summarize(result: PopulationResult, mics: Any = (0.25, 0.5, 1.0, 2.0, 4.0)
              ) -> dict[str, Any]:
    """Percentile bands, NCA distributions and (when a 24-h AUC is stored) PTA of
    AUC24/MIC ≥ 400,
    computed; also gathered in one Dataset for NetCDF."""
    bands = result.bands()
    nca = result.nca()
    parts: dict[str, Any] = {"bands": bands, "nca": nca}
    if "nca_auc_24h" in result.dataset:
        parts["pta"] = result.pta(list(mics))
    try:
        import dask

        computed = dask.compute(*parts.values())
    except ImportError:
        computed = tuple(parts.values())
    parts = dict(zip(parts, computed, strict=True))
    ds = parts["nca"].copy()
    ds["concentration_percentiles"] = parts["bands"].rename(percentile="band_percentile")
    if "pta" in parts:
        ds["pta_auc_over_mic"] = parts["pta"]
    ds.attrs = {k: v for k, v in result.dataset.attrs.items() if isinstance(v, str | int)}
    ds.attrs["summary_of"] = str(result.path)
    parts["dataset"] = ds
    return parts
