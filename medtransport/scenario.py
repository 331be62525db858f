"""Scenarios: the patient, the time grid, the events, and everything a run needs.

A scenario is what a user writes (YAML, TOML or JSON). The core validates its common sections;
``parameters`` is left as a mapping until the model's own ``Params`` validates it, and errors
from either name the field path (``parameters.diffusivity: expected …``).

Derived patient quantities, each from its published formula:

- body-surface area, Mosteller (N Engl J Med 1987;317:1098):  BSA = √(height[cm]·weight[kg]/3600) m²
- body-surface area, Du Bois & Du Bois (Arch Intern Med 1916;17:863):
  BSA = 0.007184·weight[kg]^0.425·height[cm]^0.725 m²
- body-mass index (Quetelet):  BMI = weight/height²
- ideal body weight, Devine (Drug Intell Clin Pharm 1974;8:650):
  50 kg (male) or 45.5 kg (female) + 2.3 kg per inch of height over 60 in
- lean body weight, Janmahasatian et al. (Clin Pharmacokinet 2005;44:1051):
  male 9270·W/(6680 + 216·BMI), female 9270·W/(8780 + 244·BMI)
- creatinine clearance, Cockcroft & Gault (Nephron 1976;16:31):
  CrCl [mL/min] = (140 − age[y])·weight[kg]/(72·SCr[mg/dL]) × 0.85 if female
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pint
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from medtransport.boundary import BoundarySpec
from medtransport.domain import DomainSpec, NotBool
from medtransport.errors import ScenarioError
from medtransport.estimation.residual import ResidualErrorSpec
from medtransport.estimation.spec import EstimateSpec
from medtransport.population import PopulationSpec
from medtransport.units import Q_, Qty, format_quantity, parse_quantity

__all__ = [
    "AuditSpec",
    "DataSpec",
    "Event",
    "OutputSpec",
    "Patient",
    "Scenario",
    "SolverSpec",
    "TimeGrid",
    "format_validation_error",
    "load_scenario",
]

#: The most output times (or steps) a scenario may ask for; beyond this a typo is likelier
#: than intent, and the arrays would not fit in memory.
MAX_STEPS = 50_000_000
#: The most events a scenario may list, and the most occurrences they may have in all
#: (counting repeats); :mod:`medtransport.limits` checks the latter.
MAX_EVENTS = 10_000


class _Section(BaseModel):
    # YAML's !!binary gives bytes; stored as base64 so that to_json() never fails on them.
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64")


class Patient(_Section):
    """The patient a scenario is run for."""

    weight: Qty("kg", gt=0, lt=1000)
    height: Qty("cm", gt=0, lt=300) | None = None
    age: Qty("year", ge=0, lt=150) | None = None
    sex: Literal["male", "female"] | None = None
    serum_creatinine: Qty("mg/dL", "umol/L", gt=0) | None = None
    hematocrit: Qty("dimensionless", gt=0, lt=1) | None = None

    def _need(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ScenarioError([(f"patient.{n}", "required for this derived quantity")
                                 for n in missing])

    @property
    def body_surface_area(self) -> pint.Quantity:
        """Mosteller's formula (the default in most clinical software)."""
        self._need("height")
        assert self.height is not None
        return Q_(math.sqrt(self.height.m_as("cm") * self.weight.m_as("kg") / 3600.0), "m^2")

    @property
    def body_surface_area_dubois(self) -> pint.Quantity:
        self._need("height")
        assert self.height is not None
        return Q_(0.007184 * self.weight.m_as("kg") ** 0.425 * self.height.m_as("cm") ** 0.725,
                  "m^2")

    @property
    def body_mass_index(self) -> pint.Quantity:
        self._need("height")
        assert self.height is not None
        return (self.weight / self.height ** 2).to("kg/m^2")

    @property
    def ideal_body_weight(self) -> pint.Quantity:
        self._need("height", "sex")
        assert self.height is not None
        base = 50.0 if self.sex == "male" else 45.5
        return Q_(base + 2.3 * (self.height.m_as("inch") - 60.0), "kg")

    @property
    def lean_body_weight(self) -> pint.Quantity:
        self._need("height", "sex")
        w = self.weight.m_as("kg")
        bmi = self.body_mass_index.m_as("kg/m^2")
        den = 6680.0 + 216.0 * bmi if self.sex == "male" else 8780.0 + 244.0 * bmi
        return Q_(9270.0 * w / den, "kg")

    @property
    def creatinine_clearance(self) -> pint.Quantity:
        """Cockcroft–Gault, with the serum creatinine converted to mg/dL (113.12 g/mol)."""
        self._need("age", "sex", "serum_creatinine")
        assert self.age is not None and self.serum_creatinine is not None
        scr = self.serum_creatinine
        if scr.check("[mass]/[length]**3"):
            scr_mgdl = scr.m_as("mg/dL")
        else:
            scr_mgdl = (scr * Q_(113.12, "g/mol")).m_as("mg/dL")
        crcl = (140.0 - self.age.m_as("year")) * self.weight.m_as("kg") / (72.0 * scr_mgdl)
        return Q_(crcl * (0.85 if self.sex == "female" else 1.0), "mL/min")

    def derived(self) -> dict[str, pint.Quantity]:
        """Every derived quantity the given fields allow."""
        out: dict[str, pint.Quantity] = {}
        for name in ("body_surface_area", "body_mass_index", "ideal_body_weight",
                     "lean_body_weight", "creatinine_clearance"):
            try:
                out[name] = getattr(self, name)
            except ScenarioError:
                continue
        return out


class TimeGrid(_Section):
    """The simulated interval and its step; outputs every ``output_every`` (default: every
    step). ``at`` adds explicit output times for the models that solve exactly between
    outputs (:meth:`grid_and_explicit_times`); a stepping model keeps to its grid."""

    start: Qty("s") = Q_(0.0, "s")
    stop: Qty("s")
    step: Qty("s", gt=0)
    output_every: Qty("s", gt=0) | None = None
    at: list[Qty("s")] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TimeGrid:
        span = (self.stop - self.start).m_as("s")
        if span <= 0:
            raise ValueError(f"'stop' ({format_quantity(self.stop)}) must be after 'start' "
                             f"({format_quantity(self.start)})")
        if self.at is not None:
            outside = [format_quantity(q) for q in self.at
                       if not self.start.m_as("s") <= q.m_as("s") <= self.stop.m_as("s")]
            if outside:
                raise ValueError(f"'at' times {', '.join(outside)} lie outside 'start' to "
                                 "'stop'")
        n = span / self.step.m_as("s")
        if n < 1 - 1e-9:
            raise ValueError(f"'step' ({format_quantity(self.step)}) is longer than the whole "
                             f"run ('start' {format_quantity(self.start)} to 'stop' "
                             f"{format_quantity(self.stop)}); expected a step of at most "
                             f"{format_quantity((self.stop - self.start).to('s'))}")
        if self.output_every is not None and \
                self.output_every.m_as("s") > span * (1 + 1e-9):
            raise ValueError(f"'output_every' ({format_quantity(self.output_every)}) is longer "
                             f"than the whole run ({span:.6g} s); expected at most that")
        if n > MAX_STEPS:
            raise ValueError(f"'start' ({format_quantity(self.start)}) to 'stop' "
                             f"({format_quantity(self.stop)}) in steps of 'step' "
                             f"({format_quantity(self.step)}) is {n:.3g} steps, more than the "
                             f"limit of {MAX_STEPS}; use a larger 'step'")
        if self.output_every is not None:
            ratio = self.output_every.m_as("s") / self.step.m_as("s")
            if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
                raise ValueError(f"'output_every' ({format_quantity(self.output_every)}) must "
                                 f"be a whole multiple of 'step' ({format_quantity(self.step)})")
        return self

    @property
    def n_steps(self) -> int:
        """Number of equal steps; ``step`` is shortened slightly if it does not divide the
        span, so that the run ends exactly at ``stop``."""
        return max(1, math.ceil((self.stop - self.start).m_as("s") / self.step.m_as("s")
                                - 1e-9))

    @property
    def dt(self) -> float:
        """The step actually taken, in seconds (≤ ``step``)."""
        return (self.stop - self.start).m_as("s") / self.n_steps

    @property
    def steps_per_output(self) -> int:
        if self.output_every is None:
            return 1
        return max(1, round(self.output_every.m_as("s") / self.step.m_as("s")))

    def output_steps(self) -> np.ndarray:
        """Indices of the output steps, from 0 to :attr:`n_steps` inclusive."""
        idx = np.arange(0, self.n_steps + 1, self.steps_per_output)
        if idx[-1] != self.n_steps:
            idx = np.append(idx, self.n_steps)
        return idx

    def output_times(self) -> np.ndarray:
        """Output times in seconds, including start and stop."""
        return self.start.m_as("s") + self.output_steps() * self.dt

    def grid_and_explicit_times(self) -> np.ndarray:
        """The output grid and the explicit times ``at``, in seconds, sorted without repeats
        (for models that solve exactly between any two outputs)."""
        grid = self.output_times()
        if not self.at:
            return grid
        return np.unique(np.concatenate([grid, [q.m_as("s") for q in self.at]]))


class Event(BaseModel):
    """A timed event that the model interprets (a dose, an injection, a power step).

    ``type`` names it; ``at`` is its first time; ``every`` and ``count`` repeat it. Any further
    fields (``amount``, ``rate``, ``duration``, ``power`` …) are kept as given and validated by
    the model that reads them; quantity strings are parsed into quantities here.
    """

    model_config = ConfigDict(extra="allow", ser_json_bytes="base64")

    type: str = Field(min_length=1)
    at: Qty("s", ge=0) = Q_(0.0, "s")
    every: Qty("s", gt=0) | None = None
    count: Annotated[int, Field(ge=1, le=1_000_000), NotBool] = 1

    @model_validator(mode="after")
    def _repeat(self) -> Event:
        if self.count > 1 and self.every is None:
            raise ValueError("'count' > 1 needs 'every'")
        for key, value in (self.model_extra or {}).items():
            # Anything that starts like a number, "nan" and "inf" included.
            if isinstance(value, str) and (value[:1] in "+-.0123456789"
                                           or value[:3].lower() in ("nan", "inf")):
                try:
                    q = parse_quantity(value, field=key)
                except Exception:
                    continue
                if not math.isfinite(float(q.magnitude)):
                    raise ValueError(f"'{key}' must be finite, got {value!r}")
                setattr(self, key, q)
        return self

    @model_serializer(mode="wrap")
    def _quantities_as_text(self, handler: SerializerFunctionWrapHandler) -> Any:
        # The extra fields parsed above are pint quantities, which pydantic cannot serialize;
        # write them back as the strings they were read from.
        parsed = {k: format_quantity(v) for k, v in (self.model_extra or {}).items()
                  if isinstance(v, pint.Quantity)}
        return handler(self.model_copy(update=parsed) if parsed else self)

    def times(self) -> np.ndarray:
        """Occurrence times in seconds."""
        step = 0.0 if self.every is None else self.every.m_as("s")
        return self.at.m_as("s") + step * np.arange(self.count)

    def get(self, key: str, default: Any = None) -> Any:
        return (self.model_extra or {}).get(key, default)


class SolverSpec(BaseModel):
    """How to solve: ``method`` names one of the model's solvers; further keys are the
    solver's options (``walkers``, ``allow_substeps`` …), read by the model."""

    model_config = ConfigDict(extra="allow", ser_json_bytes="base64")

    method: Annotated[str, Field(min_length=1)] | None = None
    allow_substeps: bool = False


class AuditSpec(_Section):
    """Audit tolerances. A scenario may tighten a model's defaults, never loosen them."""

    rtol: Annotated[float, Field(gt=0, lt=1)] | None = None
    atol: Annotated[float, Field(ge=0)] | None = None
    n_sigma: Annotated[float, Field(gt=0, le=100)] | None = None

    @field_validator("rtol", "atol", "n_sigma")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @field_validator("rtol")
    @classmethod
    def _resolvable(cls, v: float | None) -> float | None:
        # below float64's spacing no computed sum can meet it: a typo, not a tighter check
        eps = float(np.finfo(np.float64).eps)
        if v is not None and v < eps:
            raise ValueError(f"{v:g} is below what float64 arithmetic can resolve; the smallest "
                             f"meaningful relative tolerance is {eps:.3g} (machine epsilon)")
        return v


class OutputSpec(_Section):
    """What to keep: ``variables`` (default: all) and a file ``path`` the CLI writes to."""

    variables: list[str] | None = None
    path: str | None = None


class DataSpec(BaseModel):
    """An input data set the model reads: ``path`` (relative to the scenario's directory, like
    every input file) and its ``format``; any further keys (units, column maps …) are the
    reading plugin's options, kept as given and validated by that plugin."""

    model_config = ConfigDict(extra="allow", ser_json_bytes="base64")

    path: str = Field(min_length=1)
    #: None lets the reading plugin use its own default format
    format: str | None = Field(default=None, min_length=1)

    def options(self) -> dict[str, Any]:
        """The plugin's options: every key but ``path`` and ``format``."""
        return dict(self.model_extra or {})


class Scenario(_Section):
    """A complete scenario; see the module docstring and ``schemas/scenario.schema.json``."""

    name: str = Field(min_length=1)
    description: str | None = None
    model: str = Field(min_length=1, pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
    patient: Patient | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)
    domain: DomainSpec | None = None
    boundaries: dict[str, BoundarySpec] = Field(default_factory=dict)
    solver: SolverSpec = Field(default_factory=SolverSpec)
    time: TimeGrid
    audit: AuditSpec = Field(default_factory=AuditSpec)
    seed: Annotated[int, Field(ge=0, lt=2**63), NotBool] | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    population: PopulationSpec | None = None
    data: DataSpec | None = None
    residual_error: ResidualErrorSpec | None = None
    estimate: EstimateSpec | None = None

    @field_validator("name", "description")
    @classmethod
    def _printable(cls, v: str | None) -> str | None:
        # A NUL or a lone surrogate cannot be written to a result file (NetCDF, HTML).
        if v is not None and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in v):
            raise ValueError("must not contain a NUL character or a lone surrogate")
        return v

    @property
    def source_dir(self) -> Path:
        """The directory of the scenario file (a model resolves relative paths inside the
        scenario, such as an input file, against it), or the working directory for a
        scenario given as a mapping."""
        # Kept outside the fields (and pydantic's private attributes), so that it takes no part
        # in equality, serialization or the schema.
        source = self.__dict__.get("_source_dir")
        return source if source is not None else Path.cwd()

    def data_path(self) -> Path | None:
        """The data set's file, resolved against :attr:`source_dir` (None without ``data``)."""
        if self.data is None:
            return None
        return (self.source_dir / self.data.path).resolve()

    def to_json(self) -> str:
        """The scenario as JSON, quantities as strings that load back to the same values."""
        return self.model_dump_json(exclude_none=True, round_trip=True)

    def with_changes(self, **changes: Any) -> Scenario:
        """A validated copy with some top-level sections replaced."""
        data = json.loads(self.to_json())
        data.update(changes)
        return load_scenario(data, base_dir=self.__dict__.get("_source_dir"))


# --------------------------------------------------------------------------- loading

_KINDS = {"no_flux", "dirichlet", "absorbing", "neumann", "robin", "permeable", "periodic",
          "clearance"}


def _is_tag(p: Any) -> bool:
    """Whether a pydantic location item is one of its own tags, not a field the user wrote:
    union members (``function-plain[…]``, ``list[…]``), ``[key]``, discriminator values."""
    return isinstance(p, str) and ("[" in p or p.startswith("function-") or p in _KINDS)


def _user_path(loc: tuple[Any, ...], data: Any, *, field_last: bool = False) -> list[str]:
    """The items of ``loc`` the user wrote: a key or index found in ``data`` is always kept
    (a face may be called ``robin``); a union's tag is dropped — pydantic's own
    (``function-plain[…]``) or the value of a discriminator the user wrote (``kind:
    parker``). ``field_last``: the last item names a field (a missing or an unknown one),
    even when it looks like a tag (the parameter ``clearance`` and the boundary kind)."""
    out, node = [], data
    for i, p in enumerate(loc):
        last = field_last and i == len(loc) - 1
        tag = i < len(loc) - 1 and isinstance(node, Mapping) and isinstance(p, str) and \
            p in {v for v in node.values() if isinstance(v, str)}
        if tag:
            continue  # the discriminator's value (`kind: robin`): the member pydantic tried
        if isinstance(node, Mapping) and p in node:
            out.append(str(p))
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            out.append(str(p))
            node = node[p]
        elif last or not _is_tag(p):
            out.append(str(p))
            node = None
    return out


def bools_taken_as_numbers(raw: Any, validated: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Where the user wrote ``true``/``false`` and validation turned it into a number (pydantic
    reads ``ve: true`` as 1.0): ``(field_path, message)`` pairs, each a mistake to refuse."""
    problems: list[tuple[str, str]] = []

    def walk(raw: Any, val: Any, path: list[str]) -> None:
        if len(path) > 64:  # no field is this deep; what is, the validators refuse
            return
        if isinstance(raw, bool):
            if not isinstance(val, bool | np.bool_) and \
                    isinstance(val, int | float | np.number | pint.Quantity | np.ndarray):
                problems.append((".".join(path), f"expected a number, got the boolean "
                                                 f"{str(raw).lower()}"))
            return
        if isinstance(raw, Mapping):
            for key, sub in raw.items():
                if isinstance(val, BaseModel):
                    fields = type(val).model_fields
                    name = next((n for n, f in fields.items() if f.alias == key), key)
                    inner = getattr(val, name, None) if isinstance(key, str) else None
                elif isinstance(val, Mapping):
                    inner = val.get(key)
                else:
                    continue
                walk(sub, inner, [*path, str(key)])
        elif isinstance(raw, list | tuple) and isinstance(val, list | tuple | np.ndarray) \
                and len(raw) == len(val):
            for i, (sub, inner) in enumerate(zip(raw, val, strict=True)):
                walk(sub, inner, [*path, str(i)])

    walk(raw, validated, [prefix] if prefix else [])
    return problems


def format_validation_error(exc: ValidationError, prefix: str = "", *,
                            data: Any = None, schema: Any = None) -> list[tuple[str, str]]:
    """``(field_path, message)`` pairs from a pydantic error, paths dotted like the file.

    Give the validated ``data`` so that keys the user wrote are told apart from pydantic's
    tags even when they look alike, and the pydantic class (``schema``) so that an unknown
    field gets a "did you mean" among the fields it accepts there."""
    from medtransport.suggest import did_you_mean, field_names_at, quoted_names

    errors = exc.errors()
    missing = {tuple(e["loc"][:-1]): [] for e in errors if e["type"] == "missing"}
    for e in errors:
        if e["type"] == "missing":
            missing[tuple(e["loc"][:-1])].append(str(e["loc"][-1]))
    json_schema: dict[str, Any] | None = None
    problems = []
    for err in errors:
        named = err["type"] in ("missing", "extra_forbidden")
        loc = _user_path(tuple(err["loc"]), data, field_last=named)
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        ctx = err.get("ctx") or {}
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
            known = missing.get(tuple(err["loc"][:-1]), [])
            if schema is not None:
                if json_schema is None:
                    json_schema = _json_schema(schema)
                known = known + field_names_at(json_schema, err["loc"][:-1])
            written = _container(data, err["loc"][:-1])  # a name already used is no guess
            hint = did_you_mean(str(err["loc"][-1]),
                                [k for k in dict.fromkeys(known) if k not in written])
            msg = f"unknown field{hint}" if hint else msg
        elif err["type"] == "union_tag_invalid":
            msg = (f"unknown kind {ctx.get('tag')!r}; expected one of "
                   f"{ctx.get('expected_tags')}"
                   + did_you_mean(str(ctx.get("tag")), quoted_names(ctx.get("expected_tags"))))
        elif err["type"] in ("literal_error", "enum"):
            msg += did_you_mean(str(err.get("input")), quoted_names(ctx.get("expected", "")))
        elif err["type"] in ("model_type", "dict_type"):
            msg = f"expected a mapping, got {type(err.get('input')).__name__}"
        elif err["type"] == "string_pattern_mismatch" and loc == ["model"]:
            msg = (f"{err.get('input')!r} is not a model id: an id is a family and a name "
                   "joined by a dot, each starting with a letter, such as "
                   "'pk.two_compartment' (`medtransport models` lists them)")
        problems.append((path, msg))
    return problems


def _container(data: Any, loc: Any) -> Any:
    """The mapping of ``data`` at pydantic location ``loc`` (tags skipped), or ``{}``."""
    node = data
    for p in loc:
        if isinstance(node, Mapping) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
    return node if isinstance(node, Mapping) else {}


def _json_schema(schema: Any) -> dict[str, Any]:
    from medtransport.schema import _Generator

    try:
        return schema.model_json_schema(mode="validation", schema_generator=_Generator) \
            if hasattr(schema, "model_json_schema") else dict(schema)
    except Exception:  # a schema that cannot be generated only costs the suggestion
        return {}


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would silently
    keep the last, so a typo'd second `diffusivity:` would win unseen)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; the mapping constructor reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (as YAML and TOML do)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ScenarioError(f"malformed JSON: duplicate key {key!r}")
        out[key] = value
    return out


def _read(path: Path) -> tuple[Any, str]:
    """The parsed file and its text (kept on the scenario: a file is parsed once per run)."""
    text = path.read_text(encoding="utf-8")
    return _parse(text, path), text


def _parse(text: str, path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=_StrictLoader)
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=_unique_keys)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"malformed YAML{where}: {problem}", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"malformed TOML: {exc}", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}", source=str(path)) from None
    raise ScenarioError(f"unknown scenario format {suffix!r}; expected .yaml, .yml, .toml or "
                        ".json", source=str(path))


_adapter = TypeAdapter(Scenario)


def load_scenario(source: str | Path | Mapping[str, Any] | Scenario, *,
                  base_dir: str | Path | None = None) -> Scenario:
    """Load and validate a scenario from a file path (YAML/TOML/JSON) or a mapping.

    Relative paths inside it (an input file, another scenario) resolve against the file's
    directory, or against ``base_dir`` for a mapping (default: the working directory).
    Raises :class:`ScenarioError` naming every bad field path.
    """
    if isinstance(source, Scenario):
        return source
    label = None
    if isinstance(source, str | Path):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise ScenarioError(f"no such file: {path}")
        try:
            data, text = _read(path)
        except UnicodeDecodeError:
            raise ScenarioError("the file is not UTF-8 text", source=label) from None
        except RecursionError:  # the YAML/JSON/TOML parsers recurse per nesting level
            raise ScenarioError("the scenario is nested too deeply", source=label) from None
        except OSError as exc:
            raise ScenarioError(f"cannot read the file: {exc.strerror or exc}",
                                source=label) from None
    else:
        data = source
    if not isinstance(data, Mapping):
        raise ScenarioError(f"expected a mapping of sections at the top level, got "
                            f"{type(data).__name__}", source=label)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ScenarioError([(str(k), "section names must be strings") for k in bad_keys],
                            source=label)
    data = dict(data)
    events = data.get("events")
    if isinstance(events, list) and len(events) > MAX_EVENTS:
        # Before validating each of them, which takes a while for so many.
        raise ScenarioError([("events", f"{len(events)} events; the limit is {MAX_EVENTS} "
                                        "(a repeated dose is one event with 'every' and "
                                        "'count')")], source=label)
    try:
        scenario = _adapter.validate_python(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, data=data, schema=Scenario),
                            source=label) from None
    except RecursionError:
        raise ScenarioError("the scenario is nested too deeply", source=label) from None
    flagged = bools_taken_as_numbers(data, scenario)
    if flagged:
        raise ScenarioError(flagged, source=label)
    if label is not None:
        object.__setattr__(scenario, "_source_dir", Path(label).resolve().parent)
        object.__setattr__(scenario, "_source_text", text)
        object.__setattr__(scenario, "_source_path", Path(label).resolve())
    elif base_dir is not None:
        object.__setattr__(scenario, "_source_dir", Path(base_dir).resolve())
    return scenario
