"""The report of a chunked population run (a Zarr population store, :mod:`medtransport.batch`).

Such a store keeps the audited chunks' states, one record per chunk — its patients, its
verdict, the ids of failing patients, and (for a passed chunk) its full audit report — and
each chunk's books over time (its ledger parts summed over its patients, and its largest
|residual|; :func:`medtransport.batch.chunk_ledger`). The report therefore shows:

- per audit, the worst chunk: the largest measured value over the chunks, with that chunk's
  tolerance; a chunk that failed (not written) as a failed row naming its patients;
- per chunk, its patients, verdict, failing patients and mass-balance figures;
- the drug account of every passed patient: the chunks' totals summed, the largest |residual|
  over them (stores written before the chunk totals existed have no such plot).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.display import pretty
from medtransport.report.content import ChunkRow

__all__ = ["aggregate_report", "chunk_rows", "is_population_store", "load_store",
           "with_population_ledger"]


def is_population_store(path: str | os.PathLike[str]) -> bool:
    try:
        from medtransport.store import PopulationStore
    except ImportError:  # the population store is optional (zarr)
        return False
    return Path(path).is_dir() and PopulationStore(Path(path)).exists()


def load_store(path: str | os.PathLike[str]) -> tuple[xr.Dataset, dict[int, dict[str, Any]]]:
    """The store's dataset (patients of failed chunks masked) and its chunk records."""
    from medtransport.store import PopulationStore, open_population

    records = PopulationStore.open(path).completed()
    ds = open_population(path, allow_incomplete=True)
    return with_population_ledger(ds, records), records


def with_population_ledger(ds: xr.Dataset, records: dict[int, dict[str, Any]]) -> xr.Dataset:
    """Add the ledger of the passed patients, (time,), from the chunks' totals:
    ``<species>_<part>`` = Σ over passed chunks of ``<species>_<part>_chunk_total``, and
    ``<species>_residual`` = the largest ``<species>_residual_chunk_max``. Each carries
    ``summed_patients``: how many patients it covers (a reader must not sum it again)."""
    passed = sorted(i for i, r in records.items() if r.get("status") == "passed")
    patients = sum(int(records[i]["stop"]) - int(records[i]["start"]) for i in passed)
    suffixes = {"_chunk_total": "sum", "_chunk_max": "max"}
    for name in list(ds.data_vars):
        var = ds[name]
        suffix = next((s for s in suffixes if str(name).endswith(s)), None)
        if suffix is None or var.dims != ("chunk", "time") or not passed:
            continue
        rows = var.isel(chunk=[i for i in passed if i < var.sizes["chunk"]]).values
        if not np.isfinite(rows).all():
            continue  # a passed chunk without its totals (a store of an older version)
        values = rows.sum(axis=0) if suffixes[suffix] == "sum" else rows.max(axis=0)
        what = "summed over" if suffixes[suffix] == "sum" else "largest |residual| over"
        ds[str(name)[: -len(suffix)]] = ("time", values, {
            "units": var.attrs.get("units", "1"), "summed_patients": patients,
            "long_name": f"{what} the {patients} patients of the passed chunks"})
    return ds


def _reports(records: dict[int, dict[str, Any]]) -> list[tuple[int, AuditReport]]:
    out = []
    for index, record in sorted(records.items()):
        if record.get("audit"):
            out.append((index, AuditReport.from_json(record["audit"])))
    return out


def aggregate_report(records: dict[int, dict[str, Any]]) -> AuditReport:
    """One row per audit, for its worst chunk; one failed row per failed chunk."""
    worst: dict[str, tuple[int, AuditResult]] = {}
    counts: dict[str, int] = {}
    for index, report in _reports(records):
        for r in report.results:
            counts[r.name] = counts.get(r.name, 0) + 1
            held = worst.get(r.name)
            # the worst chunk: a failure first, then the largest measured value
            key = (not r.passed, r.measured)
            if held is None or key > (not held[1].passed, held[1].measured):
                worst[r.name] = (index, r)
    results = []
    for name, (index, r) in worst.items():
        start, stop = records[index]["start"], records[index]["stop"]
        results.append(AuditResult(
            r.name, r.passed, r.measured, r.tolerance, r.units,
            f"worst of {counts[name]} chunks: chunk {index} (patients {start}–{stop - 1}); "
            f"{r.detail}", r.where, r.stage, r.source))
    for index, record in sorted(records.items()):
        if record.get("status") != "passed":
            failed = record.get("failed_patients") or []
            results.append(AuditResult(
                f"chunk[{index}]", False, float(len(failed)), 0.0, "patients",
                f"chunk {index} (patients {record['start']}–{record['stop'] - 1}) failed and "
                f"was not written: {record.get('reason', '')}",
                {"patients": ", ".join(str(p) for p in failed[:20])
                 + (f" … ({len(failed)} in all)" if len(failed) > 20 else "")}))
    return AuditReport(results)


def chunk_rows(records: dict[int, dict[str, Any]]) -> list[ChunkRow]:
    """Per chunk and species: the mass-balance figures its audit report recorded."""
    rows = []
    for index, record in sorted(records.items()):
        start, last = int(record["start"]), int(record["stop"]) - 1
        failed = record.get("failed_patients") or []
        report = AuditReport.from_json(record["audit"]) if record.get("audit") else None
        balances = [r for r in report.results if r.name.startswith("mass_balance[")] \
            if report else []
        if not balances:
            rows.append(ChunkRow("—", f"chunk {index}", start, last, float("nan"),
                                 int(failed[0]) if failed else -1, float("nan"), len(failed),
                                 "", detail=str(record.get("reason", ""))))
            continue
        for r in balances:
            patient = r.where.get("patient")
            rows.append(ChunkRow(r.name[len("mass_balance["):-1], f"chunk {index}", start,
                                 last, r.measured,
                                 start + int(patient) if patient is not None else -1,
                                 r.tolerance, 0 if r.passed else max(1, len(failed)),
                                 pretty(r.units), detail=f"{report.summary() if report else ''}; "
                                                 f"{record.get('seconds', 0):.3g} s"))
    return rows
