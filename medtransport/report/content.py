"""What the audit report shows, gathered from a result alone.

Everything comes from the dataset and its attributes (the scenario as JSON, the audit report as
JSON, model id and version, package version, seed) and the ledger variables

    <species>_stored, _expected, _residual     (time,) or (time, patient)
    <species>_inflow, _outflow, _sink, _source cumulative, summed over routes

so that the same code serves a passing result read back from NetCDF and the raw dataset an
:class:`~medtransport.errors.AuditFailure` carries. The five answers come from the model when
the run writes the report, otherwise from what the result recorded of it (:mod:`.facts`):
reading a result never rebuilds its model, reads its inputs or runs a scenario it names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.display import pretty

if TYPE_CHECKING:
    from medtransport.model import Model

__all__ = ["AuditRow", "ChunkRow", "ReportContent", "gather", "ledger_species"]

LEDGER_TERMS = ("inflow", "outflow", "sink", "source")
_LEDGER_SUFFIXES = ("stored", "expected", "residual", *LEDGER_TERMS)


@dataclass
class AuditRow:
    """One audit as the page shows it; ``measured`` and ``tolerance`` are the report's values
    unchanged (the page prints them rounded and keeps the exact ones in data attributes)."""

    name: str
    stage: str
    source: str
    passed: bool
    measured: float
    tolerance: float
    units: str
    detail: str
    where: str
    check: str = ""


@dataclass
class ChunkRow:
    """The mass-balance audit restricted to one block of patients."""

    species: str
    label: str
    first: int
    last: int
    max_abs_residual: float
    worst_patient: int
    tolerance: float
    n_over: int
    units: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.n_over == 0


@dataclass
class ReportContent:
    """Everything the template renders, as plain values."""

    title: str
    failed: bool
    failure_message: str
    model_id: str
    model_version: str
    model_title: str
    plugin: str
    plugin_version: str
    package_version: str
    solver_method: str
    seed: str
    created: str
    patient: list[tuple[str, str]]
    scenario_text: str
    scenario_origin: str
    answers: list[tuple[str, str]]
    answers_note: str
    doses: list[tuple[str, str]]
    audits: list[AuditRow]
    summary: str
    species: list[str]
    n_patients: int | None
    chunks: list[ChunkRow] = field(default_factory=list)
    chunk_note: str = ""
    has_data: bool = True
    #: the model, when the report is made by the run itself (for the family plot); a report
    #: made from a file has none: the model is never rebuilt from what a file names
    model: Any = None
    #: the display units (:class:`medtransport.display.DisplayUnits`)
    display: Any = None
    #: a report from a file: what the result recorded of its model (for the default plot)
    recorded: Any = None
    #: where the five answers come from
    answers_origin: str = "from the model the run built"
    #: a population's covariates as sampled: (name, unit, median, 5–95 %, range)
    covariates: list[tuple[str, str, str, str, str]] = field(default_factory=list)


def ledger_species(ds: xr.Dataset | None) -> list[str]:
    """The species with a ledger in ``ds`` (those with a ``<species>_stored`` variable)."""
    if ds is None:
        return []
    return [str(v)[: -len("_stored")] for v in ds.data_vars if str(v).endswith("_stored")
            and f"{str(v)[: -len('_stored')]}_residual" in ds]


def is_ledger_variable(name: str, species: list[str]) -> bool:
    return any(name == f"{s}_{suffix}" for s in species for suffix in _LEDGER_SUFFIXES)


def format_number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"  # never "-0": an auditor reads a sign into it
    return f"{value:.6g}"


def format_seconds(seconds: float) -> str:
    """``4320 s`` → ``1.2 h (4320 s)``: the unit a reader thinks in, and the exact one."""
    for unit, scale in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.6g} {unit} ({seconds:.6g} s)"
    return f"{seconds:.6g} s"


def format_where(where: dict[str, Any], ds: xr.Dataset | None) -> str:
    """An audit's location in words: time, patient, variable, spatial coordinates."""
    if not where:
        return ""
    parts = []
    for key, value in where.items():
        if key in ("time_s", "time") and isinstance(value, int | float):
            parts.append(f"t = {format_seconds(float(value))}")
        elif key == "patient":
            parts.append(f"patient {value}")
        elif key == "first_patient":
            parts.append(f"first failing patient {value}")
        elif key == "variable":
            parts.append(f"variable {value}")
        else:
            unit = ""
            if ds is not None and key in ds.coords:
                unit = str(ds[key].attrs.get("units", ""))
            shown = format_number(value) if isinstance(value, float) else str(value)
            parts.append(f"{key} = {shown}{' ' + unit if unit else ''}")
    return ", ".join(parts)


def _display(model: Model | None, scenario: dict[str, Any], facts: dict[str, Any]) -> Any:
    """The display units: the model's, or those the result recorded and its scenario wrote."""
    from medtransport.display import DisplayUnits, written_units

    if model is not None:
        return DisplayUnits(model)
    try:
        written = written_units(scenario)
    except Exception:  # a scenario that cannot be read only costs the preference
        written = {}
    return DisplayUnits(declared=facts.get("display_units") or {}, written=written)


def _audit_rows(report: AuditReport, ds: xr.Dataset | None,
                display: Any = None) -> list[AuditRow]:
    from medtransport.audit.wording import check_in_words

    # the check in the units the scenario was written in; the exact values stay canonical,
    # their unit spelled as the CLI's table spells it (mol/m³, not mol/m**3)
    rows = []
    for r in report.results:
        where = format_where(r.where, ds)
        if not r.passed and r.name.startswith("mass_balance") and "patient" not in r.where:
            # The balance is over the domain integral: no one point carries the blame.
            where = (where + "; " if where else "") + "over the whole domain"
        rows.append(AuditRow(r.name, r.stage, r.source, r.passed, float(r.measured),
                             float(r.tolerance), pretty(r.units), r.detail, where,
                             check_in_words(r, display)))
    return rows


def _scenario_yaml(scenario: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True, width=96)


def _as_written(text: Any, recorded: dict[str, Any]) -> dict[str, Any]:
    """The ``patient`` and ``events`` of the scenario's text as written, when that text is
    the recorded scenario's (same model and name); otherwise the recorded ones."""
    import yaml

    try:
        data = yaml.safe_load(str(text)) if text else None
    except Exception:  # TOML, or text that is not a scenario: the recorded form is shown
        data = None
    if not isinstance(data, dict) or data.get("model") != recorded.get("model") or \
            data.get("name") != recorded.get("name"):
        return recorded
    shown = dict(recorded)
    for key in ("patient", "events"):
        if isinstance(data.get(key), dict | list):
            shown[key] = data[key]
    return shown


def _answers(model: Model | None, scenario: dict[str, Any], attrs: dict[str, Any]
             ) -> tuple[list[tuple[str, str]], str, dict[str, Any]]:
    """The rows of ``medtransport explain``: from the model when the report is made by the
    run itself, otherwise as the result recorded them (:mod:`.facts`) — never by rebuilding
    the model from the recorded scenario. Also the recorded display and ledger units."""
    from medtransport.report.facts import NOT_RECORDED, explain_rows, read_facts

    if model is not None:
        answers, note = explain_rows(model)
        return answers, note, {}
    facts = read_facts(attrs)
    if facts is None:
        return [], (NOT_RECORDED if scenario else "no scenario recorded"), {}
    return facts["answers"], facts["answers_note"], facts


def _doses(scenario: dict[str, Any], ledger_units: dict[str, str]) -> list[tuple[str, str]]:
    """Each declared dose (an event's ``amount``) converted to the ledger's unit, through the
    patient's weight where the dose is per kilogram (0.1 mmol/kg × 70 kg = 7 mmol)."""
    from medtransport.units import Q_

    rows = []
    weight = (scenario.get("patient") or {}).get("weight")
    for i, event in enumerate(scenario.get("events") or []):
        amount = event.get("amount")
        if amount is None:
            continue
        label = f"events[{i}]: {event.get('type', 'event')}"
        if int(event.get("count", 1)) > 1:
            label += f", {event['count']} doses every {event.get('every')}"
        try:
            q = Q_(str(amount))
        except Exception:
            rows.append((label, f"{amount} (not a quantity)"))
            continue
        text = f"{amount}"
        for species, unit in ledger_units.items():
            if q.check(unit):
                text += f" = {q.to(unit).magnitude:.9g} {unit} of {species} in the ledger"
                break
            if weight is not None and (q * Q_(str(weight))).check(unit):
                total = (q * Q_(str(weight))).to(unit)
                text += (f" × {weight} (patient weight) = {total.magnitude:.9g} {unit} of "
                         f"{species} in the ledger")
                break
        else:
            if ledger_units:
                text += " (not convertible to the ledger's unit " + \
                    ", ".join(ledger_units.values()) + ")"
        rows.append((label, text))
    return rows


def _patient_dim(ds: xr.Dataset, species: list[str]) -> int | None:
    return int(ds.sizes["patient"]) if "patient" in ds.dims else None


def _chunk_bounds(ds: xr.Dataset, n: int) -> tuple[list[tuple[str, int, int]], str]:
    """Blocks of patients: the run's own chunks where the result records them (a ``chunk``
    variable along ``patient``, or a ``chunk_size`` / ``population_chunk_size`` attribute),
    otherwise up to ten equal blocks."""
    if "chunk" in ds and ds["chunk"].dims == ("patient",):
        ids = np.asarray(ds["chunk"].values)
        out = []
        for c in dict.fromkeys(ids.tolist()):
            idx = np.flatnonzero(ids == c)
            out.append((f"chunk {c}", int(idx[0]), int(idx[-1])))
        return out, "chunks as the run computed them"
    size = None
    for key in ("chunk_size", "population_chunk_size"):
        if key in ds.attrs:
            try:
                size = int(ds.attrs[key])
            except (TypeError, ValueError):
                size = None
    note = "chunks as the run computed them"
    if not size or size < 1:
        size = max(1, math.ceil(n / 10))
        note = (f"the result records no chunks: patients in blocks of {size} "
                "(up to ten blocks)")
    out = []
    for k, start in enumerate(range(0, n, size)):
        stop = min(n, start + size) - 1
        out.append((f"block {k}", start, stop))
    return out, note


def _chunks(ds: xr.Dataset, species: list[str], report: AuditReport) -> tuple[list[ChunkRow],
                                                                             str]:
    n = _patient_dim(ds, species)
    if n is None:
        return [], ""
    tolerances = {r.name: r for r in report.results}
    bounds, note = _chunk_bounds(ds, n)
    rows = []
    for sp in species:
        res = ds[f"{sp}_residual"]
        if "patient" not in res.dims:
            continue
        values = np.abs(res.transpose("time", "patient").values)
        per_patient = np.max(values, axis=0)
        mb: AuditResult | None = tolerances.get(f"mass_balance[{sp}]")
        tol = float(mb.tolerance) if mb is not None else float("nan")
        for label, first, last in bounds:
            block = per_patient[first:last + 1]
            worst = int(np.argmax(np.where(np.isfinite(block), block, np.inf)))
            over = int(np.sum(~(block <= tol))) if math.isfinite(tol) else 0
            rows.append(ChunkRow(sp, label, first, last, float(np.max(block)),
                                 first + worst, tol, over,
                                 pretty(str(res.attrs.get("units", "")))))
    return rows, note


def gather(ds: xr.Dataset | None, *, report: AuditReport | None = None,
           model: Model | None = None, scenario_text: str | None = None,
           failure_message: str = "",
           chunk_records: dict[int, dict[str, Any]] | None = None,
           scenario_dir: str | None = None) -> ReportContent:
    """Collect the page's content from a result (or the raw dataset of a failed run, or only
    the report and model of a run refused before it started). ``chunk_records`` are the
    per-chunk records of a chunked population run (see :mod:`.store_report`);
    ``scenario_dir`` is where the recorded scenario's relative paths resolve (default: the
    directory the run recorded, if it exists here)."""
    attrs: dict[str, Any] = dict(ds.attrs) if ds is not None else {}
    if report is None and chunk_records is not None and "audit_report" not in attrs:
        from medtransport.report.store_report import aggregate_report

        report = aggregate_report(chunk_records)
    if report is None:
        if "audit_report" not in attrs:
            from medtransport.errors import MedtransportError

            raise MedtransportError("this dataset carries no audit report (attribute "
                                    "'audit_report'): is it a medtransport result?")
        report = AuditReport.from_json(attrs["audit_report"])
    if "scenario" in attrs:
        scenario = json.loads(attrs["scenario"])
    elif model is not None:
        scenario = json.loads(model.scenario.to_json())
    else:
        scenario = {}
    # ``scenario_dir`` is no longer used: nothing the recorded scenario names is read
    # the model a population run hands its store's report is its one-patient probe: its five
    # answers would describe that patient, so the store's record of them is shown
    answers, note, facts = _answers(model if chunk_records is None else None, scenario, attrs)
    species = ledger_species(ds)
    ledger_units = {sp: str(ds[f"{sp}_stored"].attrs.get("units", "")) for sp in species} \
        if ds is not None else {}
    if not ledger_units and model is not None:
        # a result without ledger variables (a population store): the model says
        try:
            ledger_units = dict(model.ledger_units())
        except Exception:
            ledger_units = {}
    if not ledger_units:
        ledger_units = dict(facts.get("ledger_units") or {})
    display = _display(model, scenario, facts)
    from medtransport import __version__

    failed = not report.passed or attrs.get("audit_status") == "failed"
    seed = attrs.get("seed", model.seed if model is not None and model.seed is not None else -1)
    seed_text = "none (deterministic run)" if int(seed) == -1 else str(int(seed))
    # the patient and the doses as the user wrote them (45 year, every 12 h), where the page
    # has the scenario's text; else as recorded (validated: 45 a, every 43200 s)
    written = _as_written(scenario_text if scenario_text is not None else
                          attrs.get("scenario_source"), scenario)
    patient = [(str(k), str(v)) for k, v in (written.get("patient") or {}).items()]
    content = ReportContent(
        title=str(attrs.get("title") or scenario.get("name") or "medtransport result"),
        failed=failed,
        failure_message=failure_message,
        model_id=str(attrs.get("model_id") or scenario.get("model", "")),
        model_version=str(attrs.get("model_version") or (model.version if model else "")),
        model_title=str(attrs.get("model_title") or (model.title if model else "")),
        plugin=str(attrs.get("plugin", "")),
        plugin_version=str(attrs.get("plugin_version", "")),
        package_version=str(attrs.get("medtransport_version") or __version__),
        solver_method=str(attrs.get("solver_method") or (model.method if model else "")),
        seed=seed_text,
        created=str(attrs.get("created", "")),
        patient=patient,
        scenario_text=scenario_text if scenario_text is not None else
        str(attrs.get("scenario_source") or _scenario_yaml(scenario)),
        scenario_origin="as written" if scenario_text is not None or
        attrs.get("scenario_source") else
        "as recorded in the result (validated; units in canonical spelling)",
        answers=answers,
        answers_note=note,
        doses=_doses(written, ledger_units),
        audits=_audit_rows(report, ds, display),
        summary=report.summary(),
        species=species,
        n_patients=_patient_dim(ds, species) if ds is not None else None,
        has_data=ds is not None,
    )
    if chunk_records is not None:
        from medtransport.report.store_report import chunk_rows

        content.chunks = chunk_rows(chunk_records)
        content.chunk_note = "chunks as the run computed and audited them"
    elif ds is not None:
        content.chunks, content.chunk_note = _chunks(ds, species, report)
    content.model = model
    content.display = display
    if model is None or chunk_records is not None:
        content.answers_origin = "as the run recorded them in the result; the model is not " \
                                 "rebuilt from the file"
    if model is None and facts.get("conserved"):
        from medtransport.report.facts import RecordedModel

        content.recorded = RecordedModel(facts, scenario, attrs)
    if ds is not None and content.n_patients:
        content.covariates = covariate_distributions(ds, scenario)
    return content


def covariate_distributions(ds: xr.Dataset, scenario: dict[str, Any]
                            ) -> list[tuple[str, str, str, str, str]]:
    """The patients' covariates as the population drew them — one row per covariate the
    scenario's ``patient`` or ``population.covariates`` names that varies over ``patient``:
    its median, 5th–95th percentile and range (for sex, the fraction of women)."""
    names = list((scenario.get("patient") or {}).keys())
    names += list(((scenario.get("population") or {}).get("covariates") or {}).keys())
    names += ["creatinine_clearance"]  # derived from the others where a model records it
    rows = []
    for name in dict.fromkeys("female" if n == "sex" else n for n in names):
        if name not in ds or ds[name].dims != ("patient",):
            continue
        values = np.asarray(ds[name].values)
        if name == "female":
            rows.append(("sex", "", f"{100 * float(np.mean(values)):.1f} % women", "", ""))
            continue
        values = values.astype(float)
        values = values[np.isfinite(values)]
        if values.size == 0 or np.ptp(values) == 0:
            continue
        unit = str(ds[name].attrs.get("units", ""))
        p5, p50, p95 = np.percentile(values, (5, 50, 95))
        rows.append((name.replace("_", " "), unit, f"{p50:.4g}", f"{p5:.4g}–{p95:.4g}",
                     f"{values.min():.4g}–{values.max():.4g}"))
    return rows
