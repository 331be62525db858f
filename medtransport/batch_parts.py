"""A stored chunk computed in batches: what each batch keeps, merged into the chunk's.

A population's chunk is the unit of the store (one Zarr chunk of every per-patient variable,
one record, one row of the chunk's books); a batch is the unit of memory (the patients whose
whole audited trajectories are held at once). When a chunk keeps no full curves, one chunk is
several batches: each batch is run and audited as a chunk used to be, and only what it keeps
— about 100 B per patient — is held until the chunk is written. Fewer, larger chunks cost
fewer writes (each array chunk written costs about a millisecond of Zarr's time, whatever its
size) and fewer records and merges, and not a byte more of trajectories in memory.

The merge, for batches ``b = 1 … B`` of one chunk in patient order:

- per-patient variables (and the sampled patients' curves) are concatenated, so each
  patient's numbers are the bits its batch computed — the same as for any other chunking;
- the chunk's books over time add up: ``total(t) = Σ_b total_b(t)`` (in batch order) for
  ``*_chunk_total``, ``max_b`` for ``*_chunk_max``;
- the band counts stay a list, one entry per batch (:class:`medtransport.batch._Bands` adds
  each);
- the audit report keeps, per audit, the worst batch's result (a failure first, then the
  largest measured value), its ``where.patient`` counted from the chunk's first patient and
  its detail saying it is the worst of the chunk's batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["merge_parts", "merge_reports"]

#: What each of the chunk's books does across batches, by the end of its name.
BOOK_MERGES = {"_chunk_total": np.add, "_chunk_max": np.maximum}
#: Dimensions along which batches are laid end to end.
PATIENT_DIMS = ("patient", "sampled_patient")


def merge_parts(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """One chunk's stored part from its batches' parts, in patient order (see the module
    docstring). A single part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    variables: dict[str, xr.Variable] = {}
    for name, var in first.variables.items():
        dim = next((d for d in PATIENT_DIMS if d in var.dims), None)
        if dim is not None:
            axis = var.dims.index(dim)
            data = np.concatenate([p.variables[name].values for p in parts], axis=axis)
            variables[str(name)] = xr.Variable(var.dims, data, var.attrs, var.encoding)
        elif "chunk" in var.dims:
            merge = next((f for end, f in BOOK_MERGES.items() if str(name).endswith(end)),
                         None)
            if merge is None:
                raise ValueError(f"{name}: a chunk's book that batches cannot merge (its name "
                                 f"ends in none of {', '.join(BOOK_MERGES)})")
            data = np.array(var.values, copy=True)
            for p in parts[1:]:
                merge(data, p.variables[name].values, out=data)
            variables[str(name)] = var.copy(data=data)
        else:
            variables[str(name)] = var  # a coordinate all batches share (time, tissue)
    coords = [str(c) for c in first.coords]
    out = xr.Dataset({n: v for n, v in variables.items() if n not in coords},
                     coords={n: variables[n] for n in coords}, attrs=dict(first.attrs))
    counts = [p.attrs["_band_counts"] for p in parts if "_band_counts" in p.attrs]
    out.attrs.pop("_band_counts", None)
    if counts:
        out.attrs["_band_counts"] = counts
    return out


def merge_reports(reports: Sequence[tuple[int, str]]) -> str:
    """One audit report (JSON) for the chunk from its batches' ``(offset, report JSON)``:
    ``offset`` is the batch's first patient counted from the chunk's."""
    from medtransport.audit.report import AuditReport, AuditResult

    if len(reports) == 1 and reports[0][0] == 0:
        return reports[0][1]
    worst: dict[str, AuditResult] = {}
    order: list[str] = []
    for offset, text in reports:
        if not text:
            continue
        for r in AuditReport.from_json(text).results:
            if "patient" in r.where:
                try:
                    r.where = {**r.where, "patient": int(r.where["patient"]) + offset}
                except (TypeError, ValueError):
                    pass  # a patient named otherwise than by its position: kept as it is
            held = worst.get(r.name)
            if held is None:
                order.append(r.name)
            if held is None or (not r.passed, r.measured) > (not held.passed, held.measured):
                worst[r.name] = r
    batches = sum(1 for _, text in reports if text)
    for r in worst.values():
        # its detail counts one batch's patients: say so
        r.detail = f"{r.detail} (the worst of the chunk's {batches} batches)" if r.detail \
            else f"the worst of the chunk's {batches} batches"
    return AuditReport([worst[n] for n in order]).to_json()


def band_counts(value: Any) -> list[Any]:
    """A record's band counts as a list of per-batch (time, bin, count) triples."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
