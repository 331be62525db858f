"""Population results streamed to Zarr, chunk by chunk, resumable.

Layout of ``OUT.zarr`` (a Zarr v3 group that xarray opens as a Dataset)::

    time, patient, compartment, …        coordinates, written when the store is created
    <variable>  (time, patient, …)        one Zarr chunk per run chunk along ``patient`` (and
                                          blocks of ``time``), NaN until its chunk is written
    <variable>  (patient)                 per-patient values: parameters, covariates, metrics
    <variable>  (chunk, time)             per-chunk values (the chunk's ledger totals), one
                                          row per run chunk, NaN until it is written
    .medtransport/manifest.json           what the store holds (scenario, size, chunk size,
                                          variables); fixed when the store is created
    .medtransport/chunks/<index>.json     the record of a finished chunk: patients, audit
                                          verdict, failing patients, timings

A run chunk covers whole Zarr chunks, so concurrent writers never share one. Its record is
written last, to a temporary name renamed into place (atomic on POSIX): a chunk without a
record was interrupted and is written again, whole, when the run resumes — so the store never
presents a half-written chunk as done, and :func:`open_population` masks patients whose chunk
has not passed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from medtransport.errors import MedtransportError

__all__ = ["PopulationStore", "StoreMismatch", "open_population"]

META = ".medtransport"
#: Target size of one Zarr chunk of a time-dependent variable (bytes, uncompressed).
TARGET_CHUNK_BYTES = 2**19


class StoreMismatch(MedtransportError):
    """An existing store was written for another run than the one asked for."""


def _ours(path: Path) -> bool:
    """Whether ``path`` is a (possibly incomplete) population store: it has our metadata
    directory, or is empty, or is a Zarr group whose attributes say it is a population."""
    if (path / META).is_dir() or not any(path.iterdir()):
        return True
    try:
        attrs = json.loads((path / "zarr.json").read_text(encoding="utf-8")).get(
            "attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and "population_size" in attrs


@contextlib.contextmanager
def store_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of the store at ``path`` (a file ``.<name>.medtransport-lock`` beside
    it) for a run; a second run on the same store fails at once with "store in use" instead
    of racing the first. The lock is released when the process ends, however it ends."""
    import fcntl

    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MedtransportError(f"store: the directory {target.parent} does not exist")
    lock = parent / f".{target.name}.medtransport-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MedtransportError(f"store: {target} is in use by another run (its lock "
                                    f"{lock.name} is held); wait for that run to finish, or "
                                    "choose another store") from None
        yield
    finally:
        os.close(fd)


def _write_json_atomically(path: Path, data: Any) -> None:
    """JSON to ``path`` through the core's atomic write, flushed to disk before the rename: a
    record that exists is whole."""
    from medtransport.results import write_atomically

    # No scan for stale temporaries per record: a store holds thousands of records, and a
    # killed record write leaves a few bytes.
    with write_atomically(path, clean_stale=False) as tmp, \
            open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, default=str)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class PopulationStore:
    """A population store on a file system path shared by every writer."""

    path: Path

    @property
    def meta(self) -> Path:
        return self.path / META

    @property
    def records(self) -> Path:
        return self.meta / "chunks"

    def exists(self) -> bool:
        return (self.meta / "manifest.json").is_file()

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.meta / "manifest.json").read_text(encoding="utf-8"))

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], template: xr.Dataset, *, size: int,
               chunk_size: int, manifest: dict[str, Any], dtype: str = "float64",
               overwrite: bool = False, sampled: np.ndarray | None = None
               ) -> PopulationStore:
        """Lay out the store for ``size`` patients from ``template``, the result of a run of
        any block of patients (only its structure, coordinates and attributes are used);
        ``sampled``: the ids of the patients whose curves are kept along ``sampled_patient``
        (one Zarr chunk per patient, so that no two run chunks share one)."""

        from medtransport.results import clean_stale_partials, partial_name

        target = Path(path)
        if target.exists():
            if not overwrite:
                raise MedtransportError(f"store: {target} exists and is not a population store "
                                        "(no manifest; a run killed while creating it leaves "
                                        "one): give --overwrite to replace it, or choose "
                                        "another path")
            if not _ours(target):
                raise MedtransportError(f"store: {target} exists and is not a population "
                                        "store; refusing to delete it")
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise MedtransportError(f"store: the directory {target.parent} does not exist")
        # Laid out under a temporary name and renamed into place once complete, so that a
        # kill during creation leaves no store at all (and its leftover is removed next time).
        clean_stale_partials(target)
        prefix, mark = partial_name(target)
        final, target = target, Path(tempfile.mkdtemp(prefix=prefix, suffix=mark, dir=parent))
        target.rmdir()  # to_zarr(mode="w-") creates it
        tpl = template.reset_coords([c for c in template.coords
                                     if c not in template.dims and "patient" in
                                     template[c].dims])
        coords: dict[str, Any] = {}
        for dim in tpl.dims:
            if dim == "chunk":
                continue  # a row per run chunk: no coordinate
            if dim == "patient":
                coords["patient"] = ("patient", np.arange(size, dtype=np.int64),
                                     dict(tpl["patient"].attrs))
            elif dim == "sampled_patient":
                coords[dim] = (dim, np.asarray(sampled, dtype=np.int64),
                               dict(tpl[dim].attrs))
            elif dim in tpl.coords:
                var = tpl[dim].variable
                # variable-length strings: Zarr v3 has no fixed-width unicode type
                coords[str(dim)] = var.astype(object) if var.dtype.kind == "U" else var
        attrs = {k: v for k, v in _json_attrs(tpl.attrs).items()
                 if k not in ("simulate_seconds", "audit_seconds", "audit_report")}
        # the verdict of the whole population is set by finish() once every chunk is in
        attrs.update(audit_status="incomplete", population_size=size,
                     population_chunk_size=chunk_size)
        base = xr.Dataset(coords=coords, attrs=attrs)
        # variables without a patient (or chunk) dimension are the same for every chunk
        for name, var in tpl.data_vars.items():
            if not {"patient", "sampled_patient", "chunk"} & set(var.dims):
                base[name] = var.variable
        base.to_zarr(target, mode="w-", zarr_format=3, consolidated=False)
        group = _group(target, "a")
        n_chunks = math.ceil(size / chunk_size)
        for name, var in tpl.data_vars.items():
            if "chunk" in var.dims and var.dtype.kind == "f":
                shape = tuple(n_chunks if d == "chunk" else tpl.sizes[d] for d in var.dims)
                group.create_array(
                    str(name), shape=shape, chunks=tuple(1 if d == "chunk" else n
                                                         for d, n in zip(var.dims, shape,
                                                                         strict=True)),
                    dtype=np.float64, fill_value=np.nan,
                    dimension_names=[str(d) for d in var.dims],
                    attributes={k: v for k, v in var.attrs.items()
                                if isinstance(v, str | int | float)},
                    compressors=_compressor())
                continue
            if not {"patient", "sampled_patient"} & set(var.dims):
                continue
            shape = tuple(size if d == "patient" else
                          len(sampled) if d == "sampled_patient" and sampled is not None else
                          tpl.sizes[d] for d in var.dims)
            kind = np.dtype(dtype) if var.dtype.kind == "f" and "time" in var.dims else \
                var.dtype
            if kind.kind not in "fiub":
                continue
            chunks = _chunks(var.dims, shape, chunk_size, kind.itemsize)
            fill: Any = np.nan if kind.kind == "f" else 0
            attrs = {k: v for k, v in var.attrs.items() if isinstance(v, str | int | float)}
            group.create_array(str(name), shape=shape, chunks=chunks, dtype=kind,
                               fill_value=fill, dimension_names=[str(d) for d in var.dims],
                               attributes=attrs, compressors=_compressor())
        building = cls(target)
        building.records.mkdir(parents=True, exist_ok=True)
        _write_json_atomically(building.meta / "manifest.json",
                               {**manifest, "size": size, "chunk_size": chunk_size,
                                "dtype": dtype})
        if final.exists():  # --overwrite: the old store goes only once the new one is whole
            shutil.rmtree(final)
        os.replace(target, final)
        return cls(final)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PopulationStore:
        store = cls(Path(path))
        if not store.exists():
            raise MedtransportError(f"store: {path} is not a population store (no "
                                    f"{META}/manifest.json)")
        return store

    def check(self, expected: dict[str, Any]) -> None:
        """Refuse to resume a store written for another run, naming what differs."""
        have = self.manifest()
        differ = [key for key, value in expected.items() if have.get(key) != value]
        if differ:
            raise StoreMismatch(f"store: {self.path} was written for another run "
                                f"({', '.join(differ)} differ); choose another store or "
                                "overwrite it")

    # -- chunks ------------------------------------------------------------------------------
    def completed(self) -> dict[int, dict[str, Any]]:
        """Index → record of every chunk that finished (passed or failed)."""
        out = {}
        if not self.records.is_dir():
            return out
        for item in self.records.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                record = json.loads(item.read_text(encoding="utf-8"))
                out[int(record["index"])] = record
        return out

    def write_chunk(self, start: int, stop: int, ds: xr.Dataset,
                    sampled: tuple[int, int] | None = None) -> None:
        """Write patients [start, stop) of every stored variable (``ds`` has them in its
        ``patient`` dimension; ``sampled``: the positions [first, last) along
        ``sampled_patient`` of its sampled patients). Not a record: call :meth:`mark` when
        this returns."""

        arrays = _writable_arrays(self.path)
        index = start // int(self.manifest()["chunk_size"])
        for name, arr in arrays.items():
            if name not in ds or name in ("patient", "sampled_patient") or not {
                    "patient", "sampled_patient", "chunk"} & set(ds[name].dims):
                continue
            dims = tuple(arr.metadata.dimension_names or ())
            values = ds[name].transpose(*dims).values
            if "sampled_patient" in dims and (sampled is None or sampled[0] == sampled[1]):
                continue
            region = tuple(slice(start, stop) if d == "patient" else
                           slice(*sampled) if d == "sampled_patient" and sampled else
                           slice(index, index + 1) if d == "chunk" else slice(None)
                           for d in dims)
            arr[region] = values.astype(arr.dtype, copy=False)

    def mark(self, record: dict[str, Any]) -> None:
        """Declare chunk ``record['index']`` finished (atomically)."""
        _write_json_atomically(self.records / f"{int(record['index']):06d}.json", record)

    def forget(self, indices: Iterable[int]) -> None:
        """Drop the records of chunks that are to be run again."""
        for i in indices:
            with contextlib.suppress(FileNotFoundError):
                (self.records / f"{int(i):06d}.json").unlink()

    def finish(self) -> dict[str, Any]:
        """Record the verdict of the whole population in the store's attributes."""
        records = self.completed()
        size = int(self.manifest()["size"])
        passed = int(self.passed_mask().sum())
        failed = sorted(i for i, r in records.items() if r.get("status") != "passed")
        status = "passed" if passed == size else "failed" if failed else "incomplete"
        summary = {"audit_status": status, "patients_passed": passed,
                   "chunks_failed": json.dumps(failed)}
        _group(self.path, "r+").attrs.update(summary)
        return summary

    # -- streamed percentile bands -----------------------------------------------------------
    @property
    def bands_path(self) -> Path:
        return self.meta / "bands.npz"

    def save_bands(self, hist: Any, chunks: Iterable[int]) -> None:
        """Checkpoint the merged band histogram and the chunks it counts (atomically)."""
        from medtransport.results import write_atomically

        data = hist.to_bytes(list(chunks))
        with write_atomically(self.bands_path, clean_stale=False) as tmp, \
                open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def load_bands(self) -> tuple[Any, list[int]] | None:
        """The last band checkpoint: (histogram, the chunks it counts), or None."""
        from medtransport.bands import BandHistogram

        try:
            return BandHistogram.from_bytes(self.bands_path.read_bytes())
        except (OSError, ValueError, KeyError):
            return None

    def write_bands(self, name: str, values: np.ndarray, percentiles: np.ndarray,
                    times: np.ndarray, attrs: dict[str, Any]) -> None:
        """The streamed bands as ``<name>`` over (band_percentile, band_time)."""
        group = _group(self.path, "r+")
        for key, data, unit in (("band_percentile", percentiles, "%"), ("band_time", times,
                                                                         "s")):
            arr = group.create_array(key, shape=data.shape, dtype=np.float64,
                                     dimension_names=[key], overwrite=True,
                                     attributes={"units": unit})
            arr[...] = data
        arr = group.create_array(name, shape=values.shape, dtype=np.float64,
                                 fill_value=np.nan, overwrite=True,
                                 dimension_names=["band_percentile", "band_time"],
                                 attributes=_json_attrs(attrs))
        arr[...] = values

    def passed_mask(self) -> np.ndarray:
        """Per patient: whether its chunk was written and passed its audits."""
        m = self.manifest()
        mask = np.zeros(m["size"], dtype=bool)
        for record in self.completed().values():
            if record.get("status") == "passed":
                mask[record["start"]:record["stop"]] = True
        return mask


@contextlib.contextmanager
def _quiet() -> Any:
    """Zarr lists every entry of the store's directory and warns about our bookkeeping
    folder; that warning says nothing to the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at {META} is not recognized")
        yield


def _compressor() -> Any:
    # LZ4 after byte shuffling: about 5x faster to write than Zarr's default zstd, and
    # smooth curves still shrink by about half
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


#: The arrays of the store a process writes chunks into, opened once: listing and opening
#: them (~30 arrays) cost ~30 ms per chunk, as much as writing its values. Keyed by the
#: store's manifest file, which every layout writes anew, so a store laid out again at the
#: same path (``overwrite``) is opened again.
_WRITABLE: dict[tuple[str, int, int], dict[str, Any]] = {}
_WRITABLE_LOCK = threading.Lock()


def _writable_arrays(path: Path) -> dict[str, Any]:
    """Name → open Zarr array of every array in the store at ``path``."""
    stat = (path / META / "manifest.json").stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns)
    with _WRITABLE_LOCK:
        arrays = _WRITABLE.get(key)
        if arrays is None:
            group = _group(path, "r+")
            with _quiet():
                arrays = {name: group[name] for name in group.array_keys()}
            _WRITABLE.clear()  # one store at a time: nothing of an old one stays open
            _WRITABLE[key] = arrays
    return arrays


def _group(path: Path, mode: str) -> Any:
    import zarr

    with _quiet():
        return zarr.open_group(path, mode=mode, zarr_format=3)  # type: ignore[arg-type]


def _json_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float) else str(v)) for k, v in attrs.items()}


def _chunks(dims: tuple[Any, ...], shape: tuple[int, ...], chunk_size: int,
            itemsize: int) -> tuple[int, ...]:
    """Whole run chunks along ``patient``, blocks of time of about TARGET_CHUNK_BYTES."""
    per_time = itemsize * (1 if "sampled_patient" in dims else chunk_size)
    for d, n in zip(dims, shape, strict=True):
        if d not in ("time", "patient", "sampled_patient"):
            per_time *= n
    time_block = max(1, TARGET_CHUNK_BYTES // max(per_time, 1))
    return tuple(min(chunk_size, n) if d == "patient" else 1 if d == "sampled_patient" else
                 min(time_block, n) if d == "time" else n
                 for d, n in zip(dims, shape, strict=True))


def open_population(path: str | os.PathLike[str], *, chunks: Any = None,
                    allow_incomplete: bool = False) -> xr.Dataset:
    """The population result in ``path`` as a lazy Dataset (dask arrays when dask is
    installed, else lazily indexed backend arrays).

    Patients whose chunk has not passed its audits are refused, or with ``allow_incomplete``
    masked (NaN) and flagged in the ``patient_passed`` variable."""
    store = PopulationStore.open(path)
    try:
        import dask  # noqa: F401

        chunks = {} if chunks is None else chunks  # {}: the stored chunks
    except ImportError:
        chunks = None
    with _quiet():
        ds = xr.open_zarr(store.path, chunks=chunks, consolidated=False, zarr_format=3,
                          decode_timedelta=False) if chunks is not None else \
            xr.open_dataset(store.path, engine="zarr", chunks=None, consolidated=False,
                            decode_timedelta=False)
    mask = store.passed_mask()
    if not mask.all():
        if not allow_incomplete:
            raise MedtransportError(f"store: {path}: {int((~mask).sum())} of {mask.size} "
                                    "patients have no audited result (an interrupted or "
                                    "failed run); resume the run, or open it with "
                                    "allow_incomplete=True")
        keep = xr.DataArray(mask, dims="patient")
        for name in [n for n, v in ds.data_vars.items() if "patient" in v.dims]:
            ds[name] = ds[name].where(keep)
    ds["patient_passed"] = ("patient", mask, {"units": "1", "long_name": "the patient's "
                                                                         "chunk passed its "
                                                                         "audits"})
    return ds
