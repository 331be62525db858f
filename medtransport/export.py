"""A result written in the format its file name asks for, atomically.

===========  ==========================================================================
extension    what is written
===========  ==========================================================================
``.nc``      NetCDF-4, the whole result (:func:`medtransport.results.write_netcdf`)
``.csv``     a table: one row per ``record`` (a data set's records) or, without records,
             per output ``time``; one column per variable along that dimension, its unit
             in the header (``concentration [mg/L]``); a variable with further
             dimensions gives one column per label (``amount[central] [mg]``; a
             coordinate with a unit names itself and its unit, ``concentration[x=0.5 mm]
             [mM]``). Given the model's :class:`~medtransport.display.DisplayUnits`, every
             column and every label is in the unit people read it in, by the rules of
             :mod:`medtransport.display` (the scenario's unit, the model's declared one,
             else a readable SI prefix; a species' ledger columns share one unit), output
             times in h or min (``time [h]``, :func:`~medtransport.display.time_unit`);
             a data set's record table stays in the data file's units (``TIME [h]``,
             DV as the file gives it), which its prediction columns already follow
``.zarr``    a Zarr (v3) store, the whole result
===========  ==========================================================================

A CSV file starts with one ``#`` line saying what wrote it (:func:`csv_provenance`: the
medtransport version, the model, the scenario's name, the audits' verdict) — pandas reads it
with ``read_csv(path, comment="#")``, the data-set reader skips it — which is also how a
later run knows the file is a result of ours that it may replace (:func:`is_our_csv`).

Any other extension is refused before anything runs (:func:`output_format`). Files are staged
under a temporary name beside the target and renamed into place only when complete
(:func:`staged`), so a failure leaves the old file, or none.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medtransport.errors import MedtransportError
from medtransport.results import write_atomically, write_netcdf

__all__ = ["CSV_MARK", "FORMATS", "csv_provenance", "csv_table", "is_our_csv", "is_zarr_store",
           "output_format", "staged", "write_result"]

FORMATS = {".nc": "NetCDF", ".csv": "CSV table", ".zarr": "Zarr store"}
#: Unit strings that mean "no unit": left out of a CSV header.
_NO_UNIT = ("", "1", "dimensionless")
#: How the first line of a CSV file medtransport writes begins.
CSV_MARK = "# medtransport result"
#: The ledger's variables per species (``<species>_<part>``, :mod:`medtransport.ledger`).
_LEDGER_PARTS = ("stored", "expected", "residual", "inflow", "outflow", "sink", "source")


def output_format(path: str | os.PathLike[str]) -> str:
    """The format of an output path by its extension; ValueError naming the accepted ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"{Path(path).name} has {shown}; the extension decides the format: "
                         + ", ".join(f"{ext} ({kind})" for ext, kind in FORMATS.items()))
    return suffix


def is_zarr_store(path: Path) -> bool:
    """Whether ``path`` is a directory holding a Zarr group (v3 or v2)."""
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


@contextlib.contextmanager
def staged(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to, renamed onto it when the block finishes
    and deleted otherwise (a directory for ``.zarr``, which replaces only a Zarr store)."""
    target = Path(path)
    if output_format(target) != ".zarr":
        with write_atomically(target, f"{target.suffix}.tmp") as tmp:
            yield tmp
        return
    if target.exists() and not (target.is_dir() and is_zarr_store(target)):
        raise MedtransportError(f"output: {target} exists and is not a Zarr store; it is left "
                                "alone")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise MedtransportError(f"output: the directory {directory} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory))
    try:
        yield tmp
        if target.exists():
            # two renames, so that a store is in place at every moment but between them
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=directory))
            os.replace(target, old / "store")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_result(ds: xr.Dataset, path: str | os.PathLike[str],
                 fmt: str | None = None, display: Any = None) -> None:
    """Write ``ds`` to ``path`` (a final path, or one :func:`staged` gave) in ``fmt`` (an
    extension of :data:`FORMATS`; default: ``path``'s own); a CSV table in the units of
    ``display`` (a :class:`~medtransport.display.DisplayUnits`), if given — NetCDF and Zarr
    keep the canonical units, with which a result is read back."""
    fmt = fmt or output_format(path)
    if fmt == ".nc":
        write_netcdf(ds, path)
    elif fmt == ".csv":
        Path(path).write_text(csv_provenance(ds) + csv_table(ds, display), encoding="utf-8")
    elif fmt == ".zarr":
        from medtransport.results import _encodable

        store = _encodable(ds)
        for name in store.variables:
            store[name].encoding = {}
        store.to_zarr(str(path), mode="w", zarr_format=3, consolidated=False)
    else:  # pragma: no cover - output_format refuses first
        raise ValueError(fmt)


def csv_provenance(ds: xr.Dataset) -> str:
    """The ``#`` line a CSV result starts with, from ``ds``'s provenance attributes, e.g.
    ``# medtransport result (medtransport 0.1.0): model pk.one_compartment 0.1.0;
    scenario 'Theophylline'; audits passed; units in the column headers``."""
    from medtransport import __version__

    attrs = ds.attrs
    parts = [f"{CSV_MARK} (medtransport {attrs.get('medtransport_version') or __version__})"]
    if attrs.get("model_id"):
        parts[0] += f": model {attrs['model_id']} {attrs.get('model_version', '')}".rstrip()
    if attrs.get("title"):
        parts.append(f"scenario {' '.join(str(attrs['title']).split())!r}")
    if attrs.get("audit_status"):
        parts.append(f"audits {attrs['audit_status']}")
    parts.append("units in the column headers")
    return "; ".join(parts) + "\n"


def is_our_csv(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a CSV file medtransport wrote (it starts with :data:`CSV_MARK`)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(CSV_MARK) + 2).startswith(CSV_MARK.encode("ascii") + b" (")
    except OSError:
        return False


def _row_dim(ds: xr.Dataset) -> str:
    for dim in ("record", "time"):
        if dim in ds.dims:
            return dim
    raise MedtransportError("a CSV table needs a 'record' or 'time' dimension; this result has "
                            f"{', '.join(map(str, ds.dims)) or 'none'} — write .nc or .zarr")


def _header(name: str, unit: str | None) -> str:
    from medtransport.display import pretty

    return name if unit is None or str(unit) in _NO_UNIT else f"{name} [{pretty(unit)}]"


def _shown(name: str, var: xr.DataArray, unit: Any, display: Any,
           ds: xr.Dataset | None = None) -> tuple[np.ndarray, Any]:
    """The values of ``var`` and their unit as the CSV writes them: converted to the display
    unit (:meth:`~medtransport.display.DisplayUnits.column_unit` over the whole variable, so its
    columns share one unit; a ledger part ``<species>_<part>`` in the unit of the species'
    stored amount, so a round-off residual is not shown in ng beside mg), output times in h
    or min."""
    values = var.values
    if display is None or unit is None or str(unit) in _NO_UNIT or \
            not np.issubdtype(values.dtype, np.number):
        return values, unit
    from medtransport.display import convert, dimensionality, time_unit

    unit = str(unit)
    if name == "time" and dimensionality(unit) == "[time]":
        target = time_unit(values)
    else:
        key, scale = name, values
        species = _ledger_species(name, ds)
        if species is not None and ds is not None:
            stored = ds[f"{species}_stored"]
            if str(stored.attrs.get("units", "")) == unit:
                key, scale = species, stored.values
        target = display.column_unit(key, unit, scale)
    if target == unit:
        return values, unit
    try:
        return convert(values, unit, target), target
    except Exception:  # an unconvertible declaration: the canonical numbers, so labelled
        return values, unit


def _ledger_species(name: str, ds: xr.Dataset | None) -> str | None:
    """``drug`` for ``drug_residual`` when ``ds`` holds ``drug_stored``; else None."""
    if ds is None:
        return None
    for part in _LEDGER_PARTS:
        if name.endswith(f"_{part}") and f"{name[: -len(part) - 1]}_stored" in ds:
            return name[: -len(part) - 1]
    return None


def _labels(ds: xr.Dataset, dim: str, size: int, display: Any) -> list[str]:
    """The labels of the columns a variable has along ``dim``: the coordinate's values —
    a coordinate with a unit as ``x=0.5 mm`` in its display unit, each value with as few
    digits as keep the labels apart (no ``1.5000000000000002e-05``)."""
    if dim not in ds.coords:
        return [str(i) for i in range(size)]
    coord = ds[dim]
    values = coord.values
    unit = coord.attrs.get("units")
    if not np.issubdtype(values.dtype, np.floating) or values.ndim != 1:
        return [_text(v) for v in values]
    if unit is None or str(unit) in _NO_UNIT:
        return _distinct(values)
    from medtransport.display import convert, pretty

    unit = str(unit)
    if display is not None:
        target = display.column_unit(dim, unit, values)
        try:
            values, unit = convert(values, unit, target), target
        except Exception:  # an unconvertible declaration: the coordinate as stored
            pass
    return [f"{dim}={text} {pretty(unit)}".rstrip() for text in _distinct(values)]


def _distinct(values: np.ndarray) -> list[str]:
    """``values`` in the fewest significant digits (at least 6) that keep them distinct."""
    numbers = [float(v) for v in np.asarray(values).ravel()]
    for digits in range(6, 18):
        texts = [f"{v:.{digits}g}" for v in numbers]
        if len(set(texts)) == len(set(numbers)):
            return texts
    return [repr(v) for v in numbers]


def _text(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def csv_table(ds: xr.Dataset, display: Any = None) -> str:
    """The result as CSV text (see the module doc): the row dimension's coordinate first,
    then the coordinates and variables along it, in the dataset's order; missing values are
    empty fields. ``display`` (a :class:`~medtransport.display.DisplayUnits`): the units to
    write the columns in; without it, the result's canonical ones."""
    dim = _row_dim(ds)
    if dim == "record":  # a data set's records: in the data file's units, as it was read
        display = None
    columns: list[tuple[str, np.ndarray]] = []
    seen: set[str] = set()
    labels_of: dict[str, list[str]] = {}
    for name, var in itertools.chain([(dim, ds[dim])] if dim in ds.coords else [],
                                     ds.coords.items(), ds.data_vars.items()):
        if name in seen or dim not in var.dims:
            continue
        seen.add(str(name))
        var = var.transpose(dim, ...)
        values, unit = _shown(str(name), var, var.attrs.get("units"), display, ds)
        others = [d for d in var.dims if d != dim]
        if not others:
            columns.append((_header(str(name), unit), values))
            continue
        labels = [labels_of.setdefault(str(d), _labels(ds, str(d), var.sizes[d], display))
                  for d in others]
        flat = np.asarray(values).reshape(var.sizes[dim], -1)
        for k, combo in enumerate(itertools.product(*labels)):
            label = ", ".join(combo)
            columns.append((_header(f"{name}[{label}]", unit), flat[:, k]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([h for h, _ in columns])
    for i in range(ds.sizes[dim]):
        writer.writerow([_text(values[i]) for _, values in columns])
    return out.getvalue()
