"""Results: xarray conventions, provenance, and NetCDF written atomically.

A result is an :class:`xarray.Dataset` whose every variable and coordinate has ``units`` (pint
parseable) and ``long_name`` attributes, with the conservation ledger alongside the states:

    <species>_stored      Σ w·u recomputed by the framework from the states
    <species>_expected    initial + inflow + source − outflow − sink, as the model claims
    <species>_residual    stored − expected
    <species>_inflow / _outflow / _sink / _source   cumulative, summed over routes

Attributes: ``model_id``, ``model_version``, ``plugin``, ``plugin_version``,
``medtransport_version``, ``scenario`` (JSON), ``audit_report`` (JSON), ``audit_status``
(``passed`` or ``failed``), ``seed`` (the one used: a stochastic run without one in its
scenario draws a fresh seed and records it here; −1 for deterministic runs without one),
``created``.

Files are written to a temporary name beside the target and renamed into place, so a crash
leaves the old file or none, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from medtransport.errors import MedtransportError

if TYPE_CHECKING:
    from medtransport.audit import AuditContext, AuditReport
    from medtransport.model import Model

__all__ = ["attach_ledger", "read_netcdf", "write_atomically", "write_netcdf"]

LEDGER_TERMS = ("inflow", "outflow", "sink", "source")


def package_version() -> str:
    from medtransport import __version__

    return __version__


def attach_ledger(ds: xr.Dataset, model: Model, ctx: AuditContext) -> xr.Dataset:
    """Add the ledger variables of every species the framework could recompute."""
    assert ctx.trajectory is not None and ctx.times is not None
    n = len(ctx.times)
    # gathered, then added in one update: each assignment to a Dataset aligns and merges
    # anew (about a millisecond apiece, a population chunk's fixed cost)
    new: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {}
    for sp in model.conserved:
        if sp.name not in ctx.stored:
            continue
        ledger = ctx.trajectory.ledgers[sp.name]
        unit = ledger.units
        stored = ctx.stored[sp.name]
        try:
            residual = ctx.residual(sp.name)
        except ValueError:
            continue  # a per-patient ledger for states that are not: mass balance says so
        expected = ctx.expected(sp.name)
        dims: tuple[str, ...] = ("time",) if stored.ndim == 1 else ("time", "patient")
        expected = expected.reshape(stored.shape) if expected.size == stored.size else \
            np.broadcast_to(expected.reshape(n, -1), stored.shape)
        new[f"{sp.name}_stored"] = (dims, stored, {
            "units": unit, "long_name": f"stored {sp.dimension} (recomputed from the states)"})
        new[f"{sp.name}_expected"] = (dims, expected, {
            "units": unit, "long_name": f"{sp.dimension} the ledger accounts for "
                                        "(initial + inflow + source − outflow − sink)"})
        new[f"{sp.name}_residual"] = (dims, residual, {
            "units": unit, "long_name": f"ledger residual of {sp.dimension}"})
        for term in LEDGER_TERMS:
            routes = getattr(ledger, term)
            if routes:
                # a lone route as it is (a batch's (T, P) copy per term cost a pass each)
                total = ledger.total(term, n, new=False)
                new[f"{sp.name}_{term}"] = (dims[:total.ndim], total, {
                    "units": unit, "long_name": f"cumulative {term} of {sp.dimension}",
                    "routes": ", ".join(routes)})
    if new:
        ds.update(new)
    return ds


def stamp(ds: xr.Dataset, model: Model, report: AuditReport, plugin: tuple[str, str],
          provenance: bool = True) -> None:
    """Provenance and the audit report, in the dataset's attributes; the audit report only
    without ``provenance`` (a population batch, whose store has the run's provenance from
    its probe: the scenario's JSON and the five answers cost ~2 ms a batch)."""
    if not provenance:
        ds.attrs.update({"audit_report": report.to_json(),
                         "audit_status": "passed" if report.passed else "failed"})
        return
    ds.attrs.update({
        "title": model.scenario.name,
        "model_id": model.id,
        "model_version": model.version,
        "model_title": model.title,
        "plugin": plugin[0],
        "plugin_version": plugin[1],
        "medtransport_version": package_version(),
        "solver_method": model.method,
        "scenario": model.scenario.to_json(),
        # where its relative paths resolved (provenance; a report never rebuilds the model)
        "scenario_dir": str(model.scenario.source_dir),
        "audit_report": report.to_json(),
        "audit_status": "passed" if report.passed else "failed",
        "seed": -1 if model.seed is None else int(model.seed),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "Conventions": "CF-1.10 (units are pint-parseable)",
    })
    from medtransport.report.facts import ATTRIBUTE, model_facts

    # what a report made later from this file shows of the model, so that it needs no rebuild
    ds.attrs[ATTRIBUTE] = model_facts(model)


#: What marks a temporary file or directory of ours: ``.<name>.<pid>.<random>`` + this.
PARTIAL = ".medtransport-partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a pid we cannot judge: leave it
    return True


def clean_stale_partials(target: Path) -> list[Path]:
    """Remove the temporary files (or directories) of ours beside ``target`` whose writing
    process is gone (killed while writing ``target``); those of a live writer stay. Returns
    what was removed."""
    import shutil

    directory = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}."
    removed = []
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            name = entry.name
            if not name.startswith(prefix) or PARTIAL not in name:
                continue
            pid_text = name[len(prefix):].split(".", 1)[0]
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def partial_name(target: Path) -> tuple[str, str]:
    """``(prefix, suffix)`` for :func:`tempfile.mkstemp`/``mkdtemp`` naming a temporary beside
    ``target`` recognisably: ``.<name>.<pid>.<random>.medtransport-partial``."""
    return f".{target.name}.{os.getpid()}.", PARTIAL


@contextlib.contextmanager
def write_atomically(path: str | os.PathLike[str], suffix: str = "", *,
                     clean_stale: bool = True):
    """Yield a temporary path in the target's directory; rename it onto ``path`` only if the
    block finishes, delete it otherwise. The temporary is named
    ``.<name>.<pid>.<random>.medtransport-partial<suffix>``; those a killed writer left are
    removed on the next write to the same path (``clean_stale=False`` skips that scan of the
    directory, for the many small records of a population store)."""
    target = Path(path)
    if target.is_dir():
        raise MedtransportError(f"output: {target} is a directory, expected a file path")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise MedtransportError(f"output: the directory {directory} does not exist")
    if clean_stale:
        clean_stale_partials(target)
    prefix, mark = partial_name(target)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=mark + (suffix or ".tmp"),
                               dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _encodable(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    for name, value in list(out.attrs.items()):
        if isinstance(value, bool):
            out.attrs[name] = int(value)
        elif value is None:
            out.attrs[name] = ""
    for var in list(out.variables):
        if out[var].dtype.kind == "U":
            out[var] = out[var].astype(object)
        elif out[var].dtype == bool:
            out[var] = out[var].astype(np.int8)
    return out


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to NetCDF-4 through h5netcdf, atomically."""
    with write_atomically(path, ".nc.tmp") as tmp:
        _encodable(ds).to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    return Path(path)


def read_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a result back (loaded into memory; the file is closed)."""
    if not Path(path).is_file():
        raise MedtransportError(f"no such file: {path}")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
