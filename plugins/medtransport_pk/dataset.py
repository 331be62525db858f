"""A NONMEM-format data set, read into a :class:`~medtransport_pk.records.RecordTable`.

The scenario names it in its ``data`` section::

    data:
      path: subjects.csv            # relative to the scenario's directory
      format: nonmem                # the default
      units: {TIME: h, AMT: mg, RATE: mg/h, II: h, DV: mg/L, WT: kg}
      compartments: {1: depot, 2: central}   # optional: CMT number → model compartment
      covariates: {WT: weight, AGE: age}     # optional: column → covariate name

The file: comma- or whitespace-separated (the header line decides: a comma in it means CSV), a
header line of column names, then one record per line. Lines whose first non-blank character is
``#``, or ``C`` followed by a separator (NONMEM's ``IGNORE=C``), are comments; blank lines are
skipped. A first column named ``C`` (``C,ID,TIME,…``) is that convention's comment column: rows
with ``C`` in it are comments, and the column is not a covariate. ``.`` (or an empty CSV
field) is a missing value: 0 for AMT, RATE, II, ADDL, SS and CMT
as in NONMEM, "no observation" for DV, "not recorded here" for a covariate. The standard columns
are matched case-insensitively: ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, MDV, DV; ID and
TIME are required. Every other column whose values are all numbers is a covariate (under its
``covariates`` name, else its column name); a covariate missing on a record takes the subject's
previous value (its first one for the records before it).

Derived when absent (NONMEM's rules): EVID = 1 where AMT > 0 or RATE ≠ 0, else 2 where MDV = 1,
else 0; MDV = 1 on every record but an observation, and on an observation without a DV.

Units are part of the data. TIME defaults to h; AMT, RATE, II and DV, and every covariate named
in ``covariates``, must have a unit in ``units`` when the column is used (a dose, a rate, an
interval, an observation present). A dose per body weight (mg/kg) is multiplied by the subject's
``weight`` covariate at that record; per body-surface area (mg/m²) by its ``body_surface_area``
covariate, or by Mosteller's BSA = √(height[cm]·weight[kg]/3600) m² from ``height`` and
``weight``. The table is in canonical units: h, mg (or mmol for substance doses), mg/h.

CMT follows NONMEM's ADVANs: with first-order absorption 1 = depot, 2 = central, 3 = peripheral,
4 = second peripheral; without it 1 = central, 2 = peripheral, 3 = second peripheral
(:func:`compartment_numbers`). A ``compartments`` map replaces that numbering; the reader
translates the file's numbers to the standard ones, so the table always uses them.

Bad records are refused, all at once (the first :data:`MAX_PROBLEMS`), each naming its line of
the file and the rule it breaks: ``data row 17 (ID 3, TIME 24 h): EVID 1 needs AMT > 0 or
RATE``. Reading never evaluates anything in the file: every field is a number or missing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medtransport.errors import ScenarioError
from medtransport.scenario import Scenario, format_validation_error
from medtransport.units import Q_, ureg
from medtransport_pk.clocktime import DATE_ITEMS, elapsed_hours
from medtransport_pk.records import RecordTable

__all__ = ["DataSetError", "NonmemSpec", "RepeatedIDWarning", "compartment_numbers", "read_dataset",
           "read_nonmem"]

STANDARD = ("ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "MDV", "DV")
#: Counts and codes: they take no unit.
_UNITLESS = ("ID", "EVID", "CMT", "ADDL", "SS", "MDV")
#: How many problems one error lists; the rest are counted.
MAX_PROBLEMS = 20
#: The most records a data set may hold (far beyond any study; a larger file is a mistake).
MAX_ROWS = 20_000_000

#: Covariates the PK models know, with the unit their values are converted to (the first of a
#: tuple whose dimension matches).
KNOWN_COVARIATES: dict[str, tuple[str, ...]] = {
    "weight": ("kg",),
    "height": ("cm",),
    "age": ("year",),
    "body_surface_area": ("m^2",),
    "serum_creatinine": ("mg/dL", "umol/L"),
    "creatinine_clearance": ("mL/min",),
    "hematocrit": ("dimensionless",),
}

_PERIPHERAL = ("peripheral", "peripheral_2")
_N_PERIPHERAL = {"pk.one_compartment": 0, "pk.two_compartment": 1, "pk.three_compartment": 2}


class DataSetError(ScenarioError):
    """Bad records or columns of a data set; each problem names its line or the field."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None,
                 more: int = 0):
        super().__init__(problems, source=source)
        lines = [f"{path}: {msg}" if path else msg for path, msg in problems]
        if more:
            lines.append(f"… and {more} more problem{'s' if more > 1 else ''} (the first "
                         f"{len(problems)} are shown)")
        head = f"invalid data set {source}" if source else "invalid data set"
        self.args = (f"{head}: {lines[0]}" if len(lines) == 1 else
                     head + ":\n" + "\n".join(f"  - {line}" for line in lines),)

    def __str__(self) -> str:
        return str(self.args[0])


class NonmemSpec(BaseModel):
    """The ``data`` section of a scenario for a NONMEM-format file (see the module doc)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    format: Literal["nonmem"] = "nonmem"
    #: column → unit (pint syntax), e.g. ``{TIME: h, AMT: mg, DV: mg/L, WT: kg}``
    units: dict[str, str] = Field(default_factory=dict)
    #: CMT number → model compartment, replacing the ADVAN numbering
    compartments: dict[int, str] = Field(default_factory=dict)
    #: column → covariate name, e.g. ``{WT: weight, AGE: age}``
    covariates: dict[str, str] = Field(default_factory=dict)

    @field_validator("units")
    @classmethod
    def _units_parse(cls, units: dict[str, str]) -> dict[str, str]:
        for column, text in units.items():
            try:
                ureg.parse_units(str(text).strip() or "dimensionless")
            except Exception:
                raise ValueError(f"{column}: unknown or malformed unit {text!r}") from None
        return units

    @field_validator("covariates")
    @classmethod
    def _names(cls, covariates: dict[str, str]) -> dict[str, str]:
        for column, name in covariates.items():
            if not name.isidentifier():
                raise ValueError(f"{column}: covariate name {name!r} must be a plain name "
                                 "(letters, digits, _)")
        names = list(covariates.values())
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"more than one column is mapped to {', '.join(twice)}")
        return covariates

    @field_validator("compartments")
    @classmethod
    def _numbers(cls, compartments: dict[int, str]) -> dict[int, str]:
        if any(n < 1 for n in compartments):
            raise ValueError("CMT numbers start at 1")
        names = list(compartments.values())
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"more than one CMT number is mapped to {', '.join(twice)}")
        return compartments


def compartment_numbers(n_peripheral: int, absorption: bool,
                        rename: Mapping[int, str] | None = None) -> dict[int, str]:
    """CMT number → compartment name, as NONMEM's ADVANs count them.

    With first-order absorption (ADVAN2/4/12): 1 depot, 2 central, 3 peripheral,
    4 peripheral_2; without it (ADVAN1/3/11): 1 central, 2 peripheral, 3 peripheral_2.
    ``rename`` (a data set's ``compartments`` map) replaces that numbering; it must name each
    of the model's compartments at most once, and only those.
    """
    names = (["depot"] if absorption else []) + ["central"] + list(_PERIPHERAL[:n_peripheral])
    if not rename:
        return {i + 1: name for i, name in enumerate(names)}
    unknown = sorted(set(rename.values()) - set(names))
    if unknown:
        raise ValueError(f"the model has no compartment {', '.join(map(repr, unknown))}; it "
                         f"has {', '.join(names)}")
    return dict(sorted(rename.items()))


def _describe(numbers: Mapping[int, str]) -> str:
    return ", ".join(f"{n} = {name}" for n, name in sorted(numbers.items()))


# --------------------------------------------------------------------------- the file

def _is_comment(line: str) -> bool:
    s = line.lstrip()
    if s.startswith("#"):
        return True
    return s[:1] in ("C", "c") and (len(s) == 1 or s[1] in " \t,;")


def _is_c_header(line: str) -> bool:
    """A header whose first column is NONMEM's comment column ``C`` (``C,ID,TIME,…``): every
    field an upper-case name (as NONMEM's are; a comment line is prose), ID and TIME among
    them."""
    fields = [f for f in _split(line, "," in line) if f]
    return all(f.replace("_", "A").isalnum() and f.isupper() and not f[:1].isdigit()
               for f in fields) and {"ID", "TIME"} <= set(fields)


def _split(line: str, csv: bool) -> list[str]:
    if csv:
        return [f.strip().strip('"').strip() for f in line.split(",")]
    return line.split()


def _number(text: str) -> float:
    """A field as a float; '.' and '' are missing (NaN). Raises ValueError otherwise."""
    if text in (".", ""):
        return math.nan
    value = float(text)  # accepts only numeric text: nothing is evaluated
    if not math.isfinite(value):
        raise ValueError
    return value


class _Problems:
    """Problems collected in file order, bounded."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, str]] = []  # (line, where, message)

    def add(self, line: int, where: str, message: str) -> None:
        self.items.append((line, where, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_(self, source: str) -> None:
        if not self.items:
            return
        ordered = sorted(self.items, key=lambda p: p[0])
        shown = [(where, msg) for _, where, msg in ordered[:MAX_PROBLEMS]]
        raise DataSetError(shown, source=source, more=max(0, len(ordered) - MAX_PROBLEMS))


def _read_rows(path: Path, source: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Header, line numbers, and the fields of every record as a 2-D array of text."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataSetError([("data.path", "the file is not UTF-8 text")], source=source) \
            from None
    except OSError as exc:
        raise DataSetError([("data.path", f"cannot read the file: {exc.strerror or exc}")],
                           source=source) from None
    header: list[str] | None = None
    csv_form = False
    header_line = 0
    numbers: list[int] = []
    texts: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if _is_comment(line) and not (header is None and _is_c_header(line)):
            continue
        if header is None:
            csv_form = "," in line
            header = _split(line, csv_form)
            header_line = number
            continue
        numbers.append(number)
        texts.append(line)
        if len(texts) > MAX_ROWS:
            raise DataSetError([("data.path", f"more than {MAX_ROWS} records")], source=source)
    if header is None:
        raise DataSetError([("data.path", "the file has no header line (column names)")],
                           source=source)
    if not texts:
        raise DataSetError([("data.path", "the file has a header but no records")],
                           source=source)
    # one record per line, always (a stray quote must not join lines, as csv quoting would)
    rows = [t.split(",") for t in texts] if csv_form else [t.split() for t in texts]
    problems = _Problems()
    for number, fields in zip(numbers, rows, strict=True):
        if len(fields) != len(header):
            problems.add(number, f"data row {number}", f"{len(fields)} fields, but the header "
                                                       f"(line {header_line}) names "
                                                       f"{len(header)} columns")
    problems.raise_(source)
    table = np.array(rows, dtype=str).reshape(len(rows), len(header))
    if csv_form:
        table = np.char.strip(table, ' \t"')
    return header, np.asarray(numbers, dtype=np.int64), table


def _numbers(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A column of text as floats ('.' and '' missing: NaN) and the mask of fields that are
    not finite numbers. Only numeric text converts: nothing is evaluated."""
    missing = (column == ".") | (column == "")
    values = np.full(column.size, math.nan)
    present = ~missing
    try:
        values[present] = column[present].astype(np.float64)
    except ValueError:  # some field is not a number: find which, one by one
        for i in np.flatnonzero(present):
            try:
                values[i] = float(column[i])
            except ValueError:
                values[i] = math.inf  # marked bad below
    bad = present & ~np.isfinite(values)
    values[bad] = math.nan
    return values, bad


def _unit(text: str) -> pint.Unit:
    return ureg.parse_units(text.strip() or "dimensionless")


def _factor(unit: pint.Unit, target: str) -> float:
    return float(Q_(1.0, unit).m_as(target))


def _compact(unit: pint.Unit) -> str:
    return "1" if unit.dimensionless and str(unit) == "dimensionless" else format(unit, "~C")


# --------------------------------------------------------------------------- reading

def read_nonmem(path: str | Path, spec: NonmemSpec | Mapping[str, Any], *,
                compartments: Mapping[int, str] | None = None,
                model: str = "this model") -> RecordTable:
    """Read a NONMEM-format file into a :class:`RecordTable` (see the module doc).

    ``compartments`` (CMT number → name, e.g. from :func:`compartment_numbers`) is the
    model's numbering: CMT outside it is refused and a ``spec.compartments`` map is
    translated to it; ``model`` names the model in messages. Raises :class:`DataSetError`
    listing every problem found.
    """
    if not isinstance(spec, NonmemSpec):
        try:
            spec = NonmemSpec.model_validate(dict(spec))
        except ValidationError as exc:
            raise ScenarioError(format_validation_error(exc, "data", data=dict(spec))) \
                from None
    path = Path(path)
    source = path.name
    header, line_no, rows = _read_rows(path, source)
    n = rows.shape[0]

    # -- columns
    problems: list[tuple[str, str]] = []
    upper = [h.upper() for h in header]
    seen: dict[str, int] = {}
    for i, h in enumerate(upper):
        if not header[i]:
            problems.append(("data.path", f"column {i + 1} of the header has no name"))
        elif h in seen:
            problems.append(("data.path", f"column {header[i]!r} appears twice in the header"))
        seen.setdefault(h, i)
    for need in ("ID", "TIME"):
        if need not in seen:
            problems.append(("data.path", f"the header has no {need} column (columns: "
                                          f"{', '.join(header)})"))
    units: dict[str, pint.Unit] = {}
    unit_text: dict[str, str] = {}  # as the user wrote it, for the table ('mg/L', not 'mg/l')
    for column, text in spec.units.items():
        key = column.upper()
        if key not in seen:
            # a standard column may be absent (one units map serves several files); any other
            # name is likelier a typo
            if key not in STANDARD:
                problems.append((f"data.units.{column}", f"the file has no column "
                                                         f"{column!r}"))
        elif key in _UNITLESS:
            problems.append((f"data.units.{column}", f"{key} is a count or code; it takes no "
                                                     "unit"))
        else:
            units[key] = _unit(text)
            unit_text[key] = text.strip() or "1"
    covariate_of: dict[str, str] = {}  # column (upper) → covariate name
    for column, name in spec.covariates.items():
        key = column.upper()
        if key not in seen:
            problems.append((f"data.covariates.{column}", f"the file has no column {column!r}"))
        elif key in STANDARD:
            problems.append((f"data.covariates.{column}", f"{key} is a standard NONMEM column, "
                                                          "not a covariate"))
        else:
            covariate_of[key] = name
    # NONMEM's clock times (TIME hh:mm) and date items (DATE, DAT1, DAT2, DAT3)
    date_items = [h for h in seen if h in DATE_ITEMS]
    if len(date_items) > 1:
        problems.append(("data.path", f"the header has several date items "
                                      f"({', '.join(date_items)}); NONMEM takes one"))
    date_item = date_items[0] if date_items else None
    clock_mode = date_item is not None or ("TIME" in seen and bool(
        np.any(np.char.find(rows[:, seen["TIME"]], ":") >= 0)))
    if clock_mode and "TIME" in units and units["TIME"] != ureg.parse_units("h"):
        problems.append(("data.units.TIME", "clock times (hh:mm, with a date item) are read "
                                            "as hours: give h or leave TIME's unit out"))
    if problems:
        raise DataSetError(problems, source=source)

    bad = _Problems()
    raw: dict[str, np.ndarray] = {}
    covariate_raw: dict[str, np.ndarray] = {}
    for j, h in enumerate(upper):
        if not header[j] or (h in STANDARD and seen[h] != j) or h == "C":
            continue  # unnamed, repeated, or the comment column (its 'C' rows are skipped)
        if clock_mode and (h == "TIME" or h == date_item):
            continue  # read below, as elapsed hours per individual
        values, wrong = _numbers(rows[:, j])
        if h in STANDARD or h in covariate_of:
            for i in np.flatnonzero(wrong):
                bad.add(int(line_no[i]), f"data row {line_no[i]}",
                        f"{header[j]} {str(rows[i, j])!r} is not a number")
        if h in STANDARD:
            raw[h] = values
        elif h in covariate_of or not wrong.any():
            covariate_raw[h] = values  # a column with text in it is not a covariate
    bad.raise_(source)
    if clock_mode:
        ids_now = raw["ID"]
        new = np.r_[True, ids_now[1:] != ids_now[:-1]]
        hours, clock_problems = elapsed_hours(
            rows[:, seen["TIME"]], None if date_item is None else rows[:, seen[date_item]],
            date_item, np.cumsum(new) - 1)
        for i, message in clock_problems:
            bad.add(int(line_no[i]), f"data row {line_no[i]} (ID {ids_now[i]:g})", message)
        bad.raise_(source)
        raw["TIME"] = hours

    # -- the standard columns, with NONMEM's defaults
    def col(key: str, default: float = 0.0) -> np.ndarray:
        values = raw.get(key)
        if values is None:
            return np.full(n, default)
        return np.where(np.isnan(values), default, values)

    time_raw = raw["TIME"]
    id_raw = raw["ID"]
    amt, rate, ii, addl, ss, cmt = (col(k) for k in ("AMT", "RATE", "II", "ADDL", "SS", "CMT"))
    dv = raw.get("DV", np.full(n, math.nan))
    mdv_raw = raw.get("MDV", np.full(n, math.nan))
    evid_raw = raw.get("EVID", np.full(n, math.nan))
    derived_evid = np.where((amt > 0) | (rate != 0), 1.0, np.where(mdv_raw == 1, 2.0, 0.0))
    evid = np.where(np.isnan(evid_raw), derived_evid, evid_raw)
    mdv = np.where(np.isnan(mdv_raw),
                   np.where((evid == 0) & ~np.isnan(dv), 0.0, 1.0), mdv_raw)

    units.setdefault("TIME", ureg.parse_units("h"))  # the one default the issue allows
    time_unit = units["TIME"]

    def where(i: int) -> str:
        ident = "?" if np.isnan(id_raw[i]) else f"{id_raw[i]:g}"
        t = "?" if np.isnan(time_raw[i]) else f"{time_raw[i]:g} {_compact(time_unit)}"
        return f"data row {line_no[i]} (ID {ident}, TIME {t})"

    def flag(mask: np.ndarray, message: Any) -> None:
        for i in np.flatnonzero(mask):
            bad.add(int(line_no[i]), where(int(i)),
                    message(int(i)) if callable(message) else message)

    def not_integer(x: np.ndarray) -> np.ndarray:
        return ~np.isnan(x) & (x != np.round(x))

    flag(np.isnan(id_raw), "ID is missing")
    flag(np.isnan(time_raw), "TIME is missing")
    for key, values in (("ID", id_raw), ("EVID", evid), ("CMT", cmt), ("ADDL", addl),
                        ("SS", ss), ("MDV", mdv)):
        flag(not_integer(values), lambda i, k=key, v=values: f"{k} {v[i]:g} is not an integer")
    flag(~np.isin(evid, (0, 1, 2, 3, 4)) & ~not_integer(evid),
         lambda i: f"EVID {evid[i]:g} is not one of 0 (observation), 1 (dose), 2 (other), "
                   "3 (reset), 4 (reset and dose)")
    dose = np.isin(evid, (1, 4))
    flag(amt < 0, lambda i: f"AMT {amt[i]:g} is negative")
    flag(dose & (amt <= 0) & (rate == 0),
         lambda i: f"EVID {evid[i]:g} needs AMT > 0 or RATE")
    flag(dose & (amt == 0) & (rate > 0) & ~((ss == 1) & (ii == 0)),
         "AMT 0 with RATE > 0 is a constant infusion: it needs SS 1 and II 0")
    flag(dose & (amt == 0) & ((rate == -1) | (rate == -2)),
         lambda i: f"RATE {rate[i]:g} (a modelled {'rate' if rate[i] == -1 else 'duration'}) "
                   "needs AMT > 0")
    flag((rate < 0) & (rate != -1) & (rate != -2),
         lambda i: f"RATE {rate[i]:g} is not > 0, 0, −1 (modelled rate) or −2 (modelled "
                   "duration)")
    for key, values in (("AMT", amt), ("RATE", rate), ("II", ii), ("ADDL", addl), ("SS", ss)):
        flag(~dose & (values != 0),
             lambda i, k=key, v=values: f"{k} {v[i]:g} on a record that is not a dose "
                                        f"(EVID {evid[i]:g})")
    flag(ii < 0, lambda i: f"II {ii[i]:g} is negative")
    flag(addl < 0, lambda i: f"ADDL {addl[i]:g} is negative")
    flag(dose & (addl > 0) & (ii <= 0), lambda i: f"ADDL {addl[i]:g} needs II > 0")
    flag(~np.isin(ss, (0, 1, 2)), lambda i: f"SS {ss[i]:g} is not 0, 1 or 2")
    flag(dose & np.isin(ss, (1, 2)) & (ii <= 0) & ~((ss == 1) & (amt == 0) & (rate > 0)),
         lambda i: f"SS {ss[i]:g} needs II > 0 (only a constant infusion, AMT 0 and RATE > 0, "
                   "has SS 1 with II 0)")
    flag(~np.isnan(dv) & (dv != 0) & (evid != 0),
         lambda i: f"DV {dv[i]:g} on a {'dose ' if dose[i] else ''}record (EVID {evid[i]:g}); "
                   "an observation needs its own EVID 0 record")
    flag(~np.isin(mdv, (0, 1)), lambda i: f"MDV {mdv[i]:g} is not 0 or 1")
    flag((mdv == 0) & (evid != 0),
         lambda i: f"MDV 0 on a record that is not an observation (EVID {evid[i]:g})")
    flag((mdv == 0) & (evid == 0) & np.isnan(dv), "MDV 0 needs a DV")
    flag(cmt < 0, lambda i: f"CMT {cmt[i]:g} is negative")

    # -- compartments: translate the file's numbering to the model's
    if compartments is not None:
        try:
            file_numbers = spec.compartments or dict(compartments)
            if spec.compartments:
                unknown = sorted(set(spec.compartments.values()) - set(compartments.values()))
                if unknown:
                    raise ValueError(f"the model has no compartment "
                                     f"{', '.join(map(repr, unknown))}; it has "
                                     f"{', '.join(compartments.values())}")
        except ValueError as exc:
            raise DataSetError([("data.compartments", str(exc))], source=source) from None
        standard = {name: number for number, name in compartments.items()}
        out_of_range = (cmt > 0) & ~np.isin(cmt, list(file_numbers))
        flag(out_of_range, lambda i: f"CMT {cmt[i]:g} is out of range for {model} "
                                     f"({_describe(file_numbers)})")
        if spec.compartments:
            translate = {n: standard[name] for n, name in file_numbers.items()}
            cmt = np.array([translate.get(int(c), c) if c > 0 and c == int(c) else c
                            for c in cmt], dtype=float)

    # -- individuals: as in NONMEM, a new one whenever ID changes from the previous record
    # (an ID that comes back later is a new individual, with its own η and books); time
    # never goes back within one (except at a reset)
    ok_id = ~np.isnan(id_raw)
    ids_known = np.where(ok_id, id_raw, -np.inf)
    starts = np.flatnonzero(np.r_[True, ids_known[1:] != ids_known[:-1]])
    ends = np.r_[starts[1:], n] - 1
    first_block: dict[float, int] = {}
    repeated: list[str] = []
    for k, (a, ident) in enumerate(zip(starts, ids_known[starts], strict=True)):
        if not ok_id[a]:
            continue
        if ident in first_block:
            prev = first_block[ident]
            repeated.append(f"ID {ident:g} at rows {line_no[a]}–{line_no[ends[k]]} (it had "
                            f"rows {line_no[starts[prev]]}–{line_no[ends[prev]]})")
        else:
            first_block[ident] = k
    if repeated:
        shown = "; ".join(repeated[:5]) + (f"; and {len(repeated) - 5} more"
                                           if len(repeated) > 5 else "")
        warnings.warn(RepeatedIDWarning(
            f"{source}: an ID comes back after other IDs, and is read as NONMEM reads it: a "
            f"new individual (same ID value, its own individual index): {shown}"),
            stacklevel=2)
    same = np.r_[False, (ids_known[1:] == ids_known[:-1]) & ok_id[1:]]
    back = np.zeros(n, dtype=bool)
    back[1:] = same[1:] & (time_raw[1:] < time_raw[:-1]) & ~np.isin(evid[1:], (3, 4))
    flag(back, lambda i: f"TIME goes backwards within ID {id_raw[i]:g} (previous record at "
                         f"{time_raw[i - 1]:g} {_compact(time_unit)}); only a reset (EVID 3 "
                         "or 4) may start again earlier")

    # -- units: every dimensional column that is used needs one
    unit_problems: list[tuple[str, str]] = []

    def need(key: str, used: bool, dimensions: tuple[str, ...], what: str) -> pint.Unit | None:
        if not used:
            return units.get(key)
        column = header[seen[key]] if key in seen else key
        unit = units.get(key)
        if unit is None:
            unit_problems.append((f"data.units.{column}",
                                  f"column {column} is used ({what}) but has no unit; give "
                                  f"data.units.{column}"))
            return None
        if dimensions and not any(Q_(1.0, unit).check(d) for d in dimensions):
            unit_problems.append((f"data.units.{column}",
                                  f"{_compact(unit)} is not {' or '.join(dimensions)}"))
            return None
        return unit

    per_body = ("[mass]", "[substance]", "[mass]/[mass]", "[substance]/[mass]",
                "[mass]/[length]**2", "[substance]/[length]**2")
    need("TIME", True, ("[time]",), "record times")
    amt_unit = need("AMT", bool(np.any(amt > 0)), per_body, "doses")
    rate_unit = need("RATE", bool(np.any(rate > 0)),
                     tuple(f"{d}/[time]" for d in per_body), "infusion rates")
    ii_unit = need("II", bool(np.any(ii > 0)), ("[time]",), "dosing intervals")
    dv_unit = need("DV", bool(np.any((mdv == 0) & ~np.isnan(dv))), (), "observations")
    covariate_units: dict[str, str] = {}
    covariates: dict[str, np.ndarray] = {}
    columns: dict[str, str] = {}
    given_to = {name: header[seen[key]] for key, name in covariate_of.items()}
    for key, values in covariate_raw.items():
        name = covariate_of.get(key, header[seen[key]])
        if key not in covariate_of and name in given_to:
            unit_problems.append((f"data.covariates.{given_to[name]}",
                                  f"the name {name!r} is also a column of the file; the "
                                  "covariate would be ambiguous"))
            continue
        targets = KNOWN_COVARIATES.get(name, ())
        unit = need(key, key in covariate_of, (), f"as the covariate {name}")
        columns[name] = header[seen[key]]
        if unit is None:
            covariates[name] = values
            continue
        converted = values
        match = ""
        if targets:
            match = next((t for t in targets
                          if Q_(1.0, unit).dimensionality == _unit(t).dimensionality), None)
            if match is None:
                unit_problems.append((f"data.units.{header[seen[key]]}",
                                      f"{_compact(unit)} is not a unit of {name} (expected "
                                      f"{' or '.join(targets)})"))
                continue
            converted = values * _factor(unit, match)
        covariates[name] = converted
        covariate_units[name] = match if targets else unit_text[key]
    if unit_problems:
        raise DataSetError(unit_problems, source=source)
    bad.raise_(source)

    # -- to canonical units (h, mg or mmol, per hour); per-body doses scaled per subject
    to_h = _factor(time_unit, "h")
    given = amt_unit if amt_unit is not None else rate_unit
    amount_unit = "mmol" if given is not None and \
        "[substance]" in Q_(1.0, given).dimensionality else "mg"
    subject = _subject_index(id_raw)
    amt_out = _scale(amt, amt_unit, amount_unit, "", "AMT", subject, covariates,
                     covariate_units, where, line_no, bad, header, seen)
    rate_out = _scale(rate, rate_unit, amount_unit, "/h", "RATE", subject, covariates,
                      covariate_units, where, line_no, bad, header, seen)
    bad.raise_(source)
    rate_out = np.where(rate < 0, rate, rate_out)  # −1 / −2 are codes, not rates
    # A covariate left missing ('.') on a record has the subject's last value (the first one
    # for records before it): a value per record, as the models need.
    covariates = {name: _carried(values, subject) for name, values in covariates.items()}
    return RecordTable(
        id=id_raw.astype(np.int64),
        time=time_raw * to_h,
        evid=evid.astype(np.int64),
        amt=amt_out,
        cmt=cmt.astype(np.int64),
        rate=rate_out,
        ii=ii * (_factor(ii_unit, "h") if ii_unit is not None else 1.0),
        addl=addl.astype(np.int64),
        ss=ss.astype(np.int64),
        mdv=mdv.astype(np.int64),
        dv=np.asarray(dv, dtype=np.float64),
        row=line_no,
        amount_unit=amount_unit,
        dv_unit=None if dv_unit is None else unit_text["DV"],
        covariates=covariates,
        covariate_units=covariate_units,
        source=source,
        columns=columns,
        compartments=dict(compartments) if compartments is not None else {},
    )


class RepeatedIDWarning(UserWarning):
    """A data set's ID comes back after other IDs: it starts a new individual (NONMEM's
    rule), which is rarely what a file meant to say."""


def _subject_index(ids: np.ndarray) -> np.ndarray:
    """Each record's subject as consecutive blocks 0, 1, 2 … (records are contiguous)."""
    change = np.ones(ids.size, dtype=bool)
    change[1:] = ids[1:] != ids[:-1]
    return np.cumsum(change) - 1


def _carried(values: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """Last observation carried forward within each subject, then the first one carried back
    to the records before it (``subject`` numbers contiguous blocks)."""
    n = values.size
    index = np.arange(n)
    valid = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(valid, index, -1))
    forward = (last >= 0) & (subject[np.maximum(last, 0)] == subject)
    following = np.minimum.accumulate(np.where(valid, index, n)[::-1])[::-1]
    backward = (following < n) & (subject[np.minimum(following, n - 1)] == subject)
    out = np.full(n, math.nan)
    out[backward] = values[following[backward]]
    out[forward] = values[last[forward]]
    return out


def _scale(values: np.ndarray, unit: pint.Unit | None, amount_unit: str, per: str, key: str,
           subject: np.ndarray, covariates: dict[str, np.ndarray],
           covariate_units: dict[str, str], where: Any, line_no: np.ndarray,
           bad: _Problems, header: list[str], seen: dict[str, int]) -> np.ndarray:
    """Doses (or rates) in ``amount_unit`` (per hour for rates): converted, and multiplied by
    the subject's weight or body-surface area for per-kg or per-m² doses."""
    if unit is None:
        return values.astype(np.float64)
    q = Q_(1.0, unit)
    column = header[seen[key]]
    amounts = tuple(f"{d}{per and '/[time]'}" for d in ("[mass]", "[substance]"))
    if any(q.check(d) for d in amounts):
        try:
            return values * float(q.m_as(f"{amount_unit}{per}"))
        except pint.DimensionalityError:
            bad.add(0, f"data.units.{column}", f"{_compact(unit)} cannot be converted to "
                                               f"{amount_unit}{per} without a molar mass")
            return values
    if any((q * Q_(1.0, "kg")).check(d) for d in amounts):
        size_name, size_unit = "weight", "kg"
        size = covariates.get("weight") if "weight" in covariate_units else None
        missing = "the subject's weight: map its column to weight in data.covariates " \
                  "(e.g. WT: weight) with a unit"
    else:
        size_name, size_unit = "body_surface_area", "m**2"
        size = covariates.get("body_surface_area") \
            if "body_surface_area" in covariate_units else None
        missing = "the subject's body-surface area: map a column to body_surface_area, or " \
                  "columns to height and weight, in data.covariates (with units)"
        if size is None and "weight" in covariate_units and "height" in covariate_units:
            w = _carried(covariates["weight"], subject)
            h = _carried(covariates["height"], subject)
            size = np.sqrt(h * w / 3600.0)  # Mosteller, with weight in kg and height in cm
    if size is None:
        if np.any(values > 0):
            bad.add(0, f"data.units.{column}", f"{_compact(unit)} doses need {missing}")
        return values
    size = _carried(size, subject)
    factor = float((q * Q_(1.0, size_unit)).m_as(f"{amount_unit}{per}"))
    for i in np.flatnonzero((values > 0) & np.isnan(size)):
        bad.add(int(line_no[i]), where(int(i)),
                f"{column} in {_compact(unit)} needs the subject's {size_name.replace('_', ' ')}"
                ", and this subject has none")
    return np.where(values > 0, values * np.nan_to_num(size) * factor, values)


# --------------------------------------------------------------------------- the scenario

def data_spec(scenario: Scenario) -> NonmemSpec | None:
    """The scenario's ``data`` section validated as a NONMEM spec (None without one)."""
    if scenario.data is None:
        return None
    raw = {"path": scenario.data.path, **scenario.data.options()}
    if scenario.data.format is not None:
        raw["format"] = scenario.data.format
    try:
        return NonmemSpec.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, "data", data=raw)) from None


def model_compartments(scenario: Scenario) -> dict[int, str]:
    """The model's ADVAN numbering for this scenario: depot first when the parameters give an
    ``absorption_rate`` (first-order absorption), then central and the peripherals."""
    n_peripheral = _N_PERIPHERAL.get(scenario.model, 0)
    return compartment_numbers(n_peripheral, "absorption_rate" in scenario.parameters)


def read_dataset(scenario: Scenario) -> RecordTable | None:
    """The records of the scenario's data set, or None when it has no ``data`` section.

    The path resolves against the scenario's directory; CMT is checked against the model's
    compartments (:func:`model_compartments`). ``events`` beside a data set that has dose
    records are refused (which would win?); a levels-only data set takes its doses from them,
    given to every subject (:func:`medtransport_pk.fitting.records_from_events`). ``dialysis``
    and ``crrt`` events are not doses: they act on every subject of any data set
    (:mod:`medtransport_pk.extracorporeal`)."""
    spec = data_spec(scenario)
    if spec is None:
        return None
    path = scenario.data_path()
    assert path is not None
    if not path.is_file():
        raise ScenarioError([("data.path", f"no such file: {spec.path} (relative to "
                                           f"{scenario.source_dir.name or '.'}/, the "
                                           "scenario's directory)")])
    numbers = model_compartments(scenario)
    kind = "with" if "depot" in numbers.values() else "without"
    table = read_nonmem(path, spec, compartments=numbers,
                        model=f"{scenario.model} {kind} first-order absorption")
    # dialysis and CRRT sessions are clearances acting on every subject, not records
    doses = [e for e in scenario.events if e.type not in ("dialysis", "crrt")]
    if doses or (scenario.events and not np.any(np.isin(table.evid, (1, 4)))):
        if np.any(np.isin(table.evid, (1, 4))):
            # both would be doses, and which one wins would be unseen
            raise ScenarioError([("events", f"the data set {spec.path} has dose records "
                                            "(EVID 1 or 4) of its own; give the doses in one "
                                            "or the other")])
        # a levels-only data set: every subject is given the events' doses (the convention
        # of fitting one patient's levels), so that a run predicts them too
        from medtransport_pk.fitting import records_from_events

        table = records_from_events(scenario, table)
    return table
