"""Render the audit report: one self-contained HTML file from a Jinja2 template.

Styles are inline and images are base64 data URIs, so the page needs no network and no other
file; it has no scripts. The template escapes every value (autoescape).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from medtransport.report.content import ReportContent, format_number, format_seconds, gather
from medtransport.report.figures import (
    Plot,
    family_plot,
    ledger_plot,
    population_bands,
    recorded_plot,
)

if TYPE_CHECKING:
    from medtransport.audit.report import AuditReport
    from medtransport.errors import AuditFailure
    from medtransport.model import Model

__all__ = ["population_report", "render_report", "report_from_failure", "report_from_file",
           "scenario_source", "write_report"]


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("medtransport.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"],
                                                                 default_for_string=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["num"] = format_number
    env.filters["seconds"] = format_seconds
    env.filters["exact"] = repr
    return env


def _plots(content: ReportContent, ds: xr.Dataset | None,
           report: AuditReport) -> tuple[list[Plot], list[Plot], Plot | None]:
    if ds is None:
        return [], [], None
    # Figures are drawn on matplotlib.figure.Figure, never through pyplot: no backend is
    # switched, nothing is shown, and the caller's own figures are left alone.
    from medtransport.display import DisplayUnits

    display = content.display if content.display is not None else \
        DisplayUnits(content.model) if content.model is not None else None
    ledgers = [ledger_plot(ds, sp, report, display) for sp in content.species]
    family = [family_plot(content.model, ds) if content.model is not None or
              content.recorded is None else recorded_plot(content.recorded, ds)]
    bands = population_bands(ds, content.species) if content.n_patients else None
    return ledgers, family, bands


def render_report(ds: xr.Dataset | None, *, report: AuditReport | None = None,
                  model: Model | None = None, scenario_text: str | None = None,
                  failure_message: str = "",
                  chunk_records: dict[int, dict[str, Any]] | None = None,
                  scenario_dir: str | None = None) -> str:
    """The report's HTML for a result (or the raw dataset of a failed run; or, for a run
    refused before it started, only ``report`` and ``model``; or a chunked population's
    dataset with its ``chunk_records``). ``scenario_dir``: see :func:`report_from_file`."""
    from medtransport.audit.report import AuditReport as _Report

    content = gather(ds, report=report, model=model, scenario_text=scenario_text,
                     failure_message=failure_message, chunk_records=chunk_records,
                     scenario_dir=scenario_dir)
    if report is None:
        if ds is not None and "audit_report" in ds.attrs:
            report = _Report.from_json(ds.attrs["audit_report"])
        else:
            from medtransport.report.store_report import aggregate_report

            report = aggregate_report(chunk_records or {})
    ledgers, family, bands = _plots(content, ds, report)
    template = _environment().get_template("report.html.j2")
    return template.render(c=content, ledgers=ledgers, family=family, bands=bands)


def write_report(path: str | os.PathLike[str], ds: xr.Dataset | None, **kwargs: Any) -> Path:
    """Render and write the report atomically (see :func:`render_report` for ``kwargs``)."""
    from medtransport.results import write_atomically

    html = render_report(ds, **kwargs)
    with write_atomically(path, ".html.tmp") as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return Path(path)


def report_from_file(result: str | os.PathLike[str], path: str | os.PathLike[str], *,
                     scenario_dir: str | os.PathLike[str] | None = None,
                     scenario_text: str | None = None, model: Model | None = None) -> Path:
    """``medtransport report RESULT -o report.html``: RESULT is a NetCDF file from
    ``medtransport run``, or the Zarr store of a chunked population run. The page is made
    from what the file holds: the model is not rebuilt, no input its scenario names is read
    and no scenario is run (:mod:`.facts`). ``scenario_dir`` is accepted for compatibility
    and not used.

    ``model``: only from the run that has just written RESULT (:func:`population_report`),
    never built from what a file names — it draws the model family's own plot and gives the
    display units; the rest of the page still comes from the file."""
    from medtransport.errors import MedtransportError
    from medtransport.report.store_report import is_population_store, load_store
    from medtransport.results import read_netcdf

    where = None if scenario_dir is None else str(scenario_dir)
    try:
        if is_population_store(result):
            ds, records = load_store(result)
        else:
            ds, records = read_netcdf(result), None
        if "audit_report" not in ds.attrs and records is None:
            raise ValueError("it has no audit report (attribute 'audit_report')")
        if records is None:
            from medtransport.audit.report import AuditReport

            AuditReport.from_json(ds.attrs["audit_report"])
    except MedtransportError:
        raise
    except Exception as exc:  # a corrupted or foreign file is bad input, not a crash
        from medtransport.isolation import describe

        raise MedtransportError(f"{result}: not a readable medtransport result or population "
                                f"store ({describe(exc)[:300]})") from exc
    if records is not None:
        return write_report(path, ds, chunk_records=records, scenario_dir=where,
                            scenario_text=scenario_text, model=model)
    return write_report(path, ds, scenario_dir=where, model=model)


def report_from_failure(exc: AuditFailure, path: str | os.PathLike[str], *,
                        model: Model | None = None, scenario_text: str | None = None) -> Path:
    """The report of a run the audits refused: the raw dataset the failure carries (if the
    run got that far), its audit report, marked failed."""
    return write_report(path, exc.dataset, report=exc.report, model=model,
                        scenario_text=scenario_text, failure_message=str(exc))


def scenario_source(path: str | os.PathLike[str], model: Model | None) -> str | None:
    """The scenario file's text as the user wrote it — or None when the run's scenario is not
    that file's (command-line options changed it), so the page shows the recorded one."""
    from medtransport.scenario import load_scenario

    if model is not None and model.scenario.__dict__.get("_source_path") == \
            Path(path).resolve():
        # Loaded from that very file: its text was kept, no need to read and parse it again.
        return model.scenario.__dict__.get("_source_text")
    try:
        text = Path(path).read_text(encoding="utf-8")
        if model is not None and load_scenario(path).to_json() != model.scenario.to_json():
            return None
    except Exception:
        return None
    return text


@contextlib.contextmanager
def population_report(store: str | None, path: str | None,
                      echo: Callable[[str], None], scenario: str | None = None
                      ) -> Iterator[None]:
    """Around a chunked population run (``medtransport run --population N --store S
    --report R``): write the report of the store S afterwards — also when chunks failed
    their audits, since the store then keeps the passed chunks and the failed ones' records.
    ``scenario``: the scenario file, shown as written (its units, its comments). This is the
    trusted path — the user ran that file — so the page gets the run's model (one patient of
    it, as the run's probe) for the family's own plot; ``medtransport report STORE`` never
    builds one."""
    from medtransport.errors import AuditFailure, MedtransportError

    if path is None:
        yield
        return
    if store is None:
        raise MedtransportError("--report: a population run is reported from its store; "
                                "give --store OUT.zarr")
    target = Path(path)
    if target.is_dir() or not (target.parent if str(target.parent) else Path(".")).is_dir():
        raise MedtransportError(f"--report: cannot write {path} (a directory, or its "
                                "directory does not exist)")
    try:
        yield
    except AuditFailure:
        from medtransport.report.store_report import is_population_store

        if is_population_store(store):
            report_from_file(store, path, scenario_text=_as_written(scenario),
                             model=_run_model(scenario))
            echo(f"wrote the failed run's report to {path}")
        raise
    echo(f"writing the report to {path}…")
    report_from_file(store, path, scenario_text=_as_written(scenario),
                     model=_run_model(scenario))
    echo(f"wrote the report to {path}")


def _run_model(scenario: str | None) -> Model | None:
    """The model of the population run that has just finished, as its first chunk's probe
    (one patient: the family plot needs its scenario and kind, not every patient's
    parameters); None when it cannot be built — the page then says why the plot is missing."""
    if scenario is None:
        return None
    from medtransport.errors import MedtransportError
    from medtransport.runner import prepare

    try:
        return prepare(scenario, patients=(0, 1))
    except MedtransportError:  # it ran a moment ago: only a changed file gets here
        return None


def _as_written(scenario: str | None) -> str | None:
    """The scenario file's text, or None (the page then shows the recorded scenario)."""
    if scenario is None:
        return None
    try:
        return Path(scenario).read_text(encoding="utf-8")
    except OSError:
        return None
