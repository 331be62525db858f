"""Hypothesis strategies that break a valid scenario in the ways users do.

Shared by ``tests/core/test_fuzz_scenario.py`` (the loader) and ``tests/cli/test_cli.py`` (the
command). Every strategy starts from :data:`BASE`, a small valid ``diffusion.fick`` scenario
(40 cells, 20 steps), and applies one mutation at a known field path:

- ``replace`` — a node (leaf or section) gets a value of a wrong type or dimension, a NaN/inf,
  a negative amount/length/time, an empty list, an enormous grid, a random unit …;
- ``delete`` — a field (required or not) disappears;
- ``add`` — an unknown field appears in some mapping, at any depth;
- ``face`` — a boundary on a face the domain does not have, or of an unknown kind.

:func:`names_field` decides whether an error message names the mutated field: the full dotted
path, or an enclosing section together with the field (or its new value) for the rules that
pydantic can only attach to a section (``domain: 'size' has 2 axes but 'cells' has 1``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

__all__ = [
    "BASE",
    "Mutation",
    "base_scenario",
    "dotted",
    "malformed_yaml",
    "mutations",
    "names_field",
    "node_paths",
]

Path = tuple[str | int, ...]

#: A small valid scenario: 40 cells, 20 steps of 1 s; every common section is present so that
#: every section can be mutated.
BASE: dict[str, Any] = {
    "name": "fuzzed dye slab",
    "description": "a 1 mm slab, loaded near x = 0, cleared at x = 1 mm",
    "model": "diffusion.fick",
    "patient": {"weight": "70 kg", "height": "175 cm", "age": "45 year", "sex": "male",
                "serum_creatinine": "0.9 mg/dL"},
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [40]},
    "parameters": {
        "diffusivity": "1e-9 m^2/s",
        "decay_rate": "1e-5 1/s",
        "initial": {"kind": "uniform", "region": {"x": ["0 mm", "0.25 mm"]},
                    "amount": "1 umol/cm^2"},
    },
    "events": [{"type": "bolus", "at": "0 s", "amount": "1 umol"}],
    "boundaries": {
        "x-": {"kind": "no_flux"},
        "x+": {"kind": "robin", "transfer_coefficient": "1e-6 m/s", "ambient": "0 mol/m^3"},
    },
    "solver": {"method": "crank_nicolson"},
    "time": {"start": "0 s", "stop": "20 s", "step": "1 s", "output_every": "5 s"},
    "audit": {"rtol": 1e-9},
    "seed": 1,
    "output": {"variables": ["concentration"]},
}

#: Sections whose change legitimately surfaces as an error in another section: a different
#: grid has other faces and another amount dimension; another solver supports other
#: boundaries and initial conditions.
RELATED: dict[str, tuple[str, ...]] = {
    "domain": ("boundaries", "parameters.initial", "solver.method"),
    "solver": ("boundaries", "parameters", "solver"),
    "model": ("parameters", "domain", "boundaries"),
}


def base_scenario(runnable: bool = False) -> dict[str, Any]:
    """A fresh deep copy of :data:`BASE`; ``runnable`` drops its event, which the loader
    checks but ``diffusion.fick`` (interpreting no events) refuses."""
    scenario = copy.deepcopy(BASE)
    if runnable:
        del scenario["events"]
    return scenario


def dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def node_paths(node: Any, prefix: Path = ()) -> list[Path]:
    """Every path below ``node`` (sections and leaves; list items by index)."""
    out: list[Path] = []
    if isinstance(node, dict):
        items: list[tuple[str | int, Any]] = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return out
    for key, child in items:
        out.append((*prefix, key))
        out.extend(node_paths(child, (*prefix, key)))
    return out


def mapping_paths(node: Any, prefix: Path = ()) -> list[Path]:
    """The paths of every mapping in ``node``, the root ``()`` included."""
    out: list[Path] = [prefix] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for key, child in node.items():
            out.extend(mapping_paths(child, (*prefix, key)))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out.extend(mapping_paths(child, (*prefix, i)))
    return out


def _parent(tree: Any, path: Path) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def set_at(tree: dict[str, Any], path: Path, value: Any) -> None:
    _parent(tree, path)[path[-1]] = value


def delete_at(tree: dict[str, Any], path: Path) -> None:
    del _parent(tree, path)[path[-1]]


# ------------------------------------------------------------------------------ values

UNITS = ["m^2/s", "mL", "kg", "mg", "umol/cm^2", "mol/m^3", "m/s", "1/s", "s", "min", "mm",
         "degC", "K", "L/h", "mg/dL", "year", "cm", "dimensionless", "Hz", "J"]

#: Quantities of (mostly) the wrong dimension for whatever field they land in.
wrong_dimension = st.builds(lambda m, u: f"{m} {u}",
                            st.sampled_from(["1", "5", "0.5", "2e-3", "1e-9", "37"]),
                            st.sampled_from(UNITS))

nonfinite = st.builds(lambda m, u: f"{m} {u}",
                      st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e400",
                                       "-1e999"]),
                      st.sampled_from(UNITS))

negative = st.builds(lambda m, u: f"-{m} {u}", st.sampled_from(["1", "1e-9", "0.25", "5"]),
                     st.sampled_from(["m^2/s", "umol/cm^2", "mg", "mL", "L", "mm", "s", "1/s",
                                      "m/s", "mol/m^3", "kg", "year"]))

#: Text after a number, as a unit: random unicode, operators, brackets, code.
junk_unit = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="m s^*/()[]{}+-.0123456789eE_ µ°ΔΩ%#!\\'\"\t\n", max_size=14),
    st.sampled_from(["m**1e400", "s**-99999999999", "m/0", "(m", "m)", "__class__",
                     "lambda: 0", "m^^2", "10**400 m", "∂", "𝔪", "\x00", "mg/dL/", "1/"]),
).map(lambda u: f"1 {u}")

huge_numbers = st.sampled_from([10 ** 400, -(10 ** 400), 10 ** 30, 2 ** 63, -1, 0, 1e308,
                                float("nan"), float("inf"), float("-inf")])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10 ** 20), max_value=10 ** 20),
    st.floats(allow_nan=True, allow_infinity=True), huge_numbers,
    st.text(max_size=16), st.binary(max_size=8),
)

containers = st.one_of(
    st.just([]), st.just({}), st.just([[]]),
    st.lists(st.one_of(st.integers(), st.text(max_size=4), wrong_dimension), max_size=4),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=4)),
                    max_size=3),
    st.fixed_dictionaries({"magnitude": st.one_of(st.floats(), huge_numbers, st.text(max_size=3),
                                                  st.booleans()),
                           "units": st.one_of(st.text(max_size=6), st.sampled_from(UNITS),
                                              st.integers())}),
)

#: Grids from empty to enormous, and sizes from empty to nonsense.
cells_values = st.one_of(
    st.just([]), st.just([10 ** 6, 10 ** 6, 10 ** 6]), st.just([10 ** 9]),
    st.lists(st.integers(min_value=-3, max_value=400), min_size=1, max_size=4),
    st.lists(st.sampled_from([0, -1, 1.5, "40", True, None, 10 ** 400]), min_size=1,
             max_size=3),
)
size_values = st.one_of(
    st.just([]),
    st.lists(st.one_of(st.sampled_from(["1 mm", "0 mm", "-1 mm", "nan mm", "inf m", "1 s",
                                        "1e-320 m", "5 mL"]), wrong_dimension),
             min_size=1, max_size=4),
)

bad_values = st.one_of(wrong_dimension, nonfinite, negative, junk_unit, scalars, containers)

# ------------------------------------------------------------------------------ mutations


@dataclass
class Mutation:
    """A scenario mapping broken at ``path`` by ``op`` (with the new ``value``, if any)."""

    scenario: dict[str, Any]
    op: str
    path: Path
    value: Any = None

    @property
    def where(self) -> str:
        return dotted(self.path)

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        value = "" if self.op == "delete" else f" = {self.value!r}"
        return f"Mutation({self.op} {self.where}{value})"


KNOWN_FACES = ["x-", "x+", "y-", "y+", "z-", "z+", "r-", "r+"]
KINDS = ["no_flux", "dirichlet", "absorbing", "neumann", "robin", "permeable", "periodic",
         "clearance"]

field_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True),
    st.sampled_from(["colour", "diffusivty", "Diffusivity", "stpe", "cell", "boundary", "x",
                     "kind ", "ämount", "🙂", "1", "null", "a.b"]),
)


@st.composite
def replacements(draw: st.DrawFn, base: dict[str, Any]) -> Mutation:
    path = draw(st.sampled_from(node_paths(base)))
    key = path[-1]
    if key == "cells" or path[-2:-1] == ("cells",):
        value = draw(st.one_of(cells_values, bad_values))
    elif key == "size":
        value = draw(st.one_of(size_values, bad_values))
    elif key == "kind":
        value = draw(st.one_of(st.sampled_from([*KINDS, "gaussian", "point", "wall", "Robin",
                                                ""]), bad_values))
    elif key == "method":  # real solvers too: each has its own rules (stability, boundaries)
        value = draw(st.one_of(st.sampled_from(["ftcs", "backward_euler", "lattice_walk",
                                                "brownian", "series", "rk4", ""]), bad_values))
    elif key in ("step", "stop", "start", "output_every"):
        value = draw(st.one_of(st.sampled_from(["0 s", "-1 s", "1e-9 s", "1e300 s", "7 s",
                                                "0.3 s", "1 h", "30 s"]), bad_values))
    else:
        value = draw(bad_values)
    scenario = copy.deepcopy(base)
    set_at(scenario, path, value)
    return Mutation(scenario, "replace", path, value)


@st.composite
def deletions(draw: st.DrawFn, base: dict[str, Any]) -> Mutation:
    path = draw(st.sampled_from(node_paths(base)))
    scenario = copy.deepcopy(base)
    delete_at(scenario, path)
    return Mutation(scenario, "delete", path)


@st.composite
def additions(draw: st.DrawFn, base: dict[str, Any]) -> Mutation:
    where = draw(st.sampled_from(mapping_paths(base)))
    scenario = copy.deepcopy(base)
    section = scenario
    for key in where:
        section = section[key]
    name = draw(field_names.filter(lambda n: n not in section))
    value = draw(st.one_of(bad_values, st.just("1 m"), st.just({"kind": "no_flux"})))
    section[name] = value
    return Mutation(scenario, "add", (*where, name), value)


@st.composite
def faces(draw: st.DrawFn, base: dict[str, Any]) -> Mutation:
    scenario = copy.deepcopy(base)
    face = draw(st.one_of(st.sampled_from([*KNOWN_FACES, "x", "left", "X+", "x+ ", ""]),
                          st.text(max_size=4)))
    kind = draw(st.one_of(st.sampled_from(KINDS), st.text(max_size=8)))
    spec: dict[str, Any] = {"kind": kind}
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["value", "flux", "ambient", "permeability",
                                   "transfer_coefficient", "clearance", "outside"]))] = \
            draw(st.one_of(wrong_dimension, nonfinite, negative))
    scenario.setdefault("boundaries", {})[face] = spec
    return Mutation(scenario, "face", ("boundaries", face), spec)


def mutations(base: dict[str, Any] | None = None) -> st.SearchStrategy[Mutation]:
    """One mutation of ``base`` (default :data:`BASE`) of any kind."""
    base = BASE if base is None else base
    return st.one_of(replacements(base), deletions(base), additions(base), faces(base))


# ------------------------------------------------------------------------------ YAML text

_YAML_NOISE = [*":{}[],-?&*!|>'\"%@`#\t\n ", "\x00", "\ufeff", "…", "{{", "]]", "- -",
               "!!binary", "!!python/name:os.system", "&a", "*a", "<<: *a", "---", "..."]


@st.composite
def malformed_yaml(draw: st.DrawFn) -> bytes:
    """Text (as bytes) a user might hand the loader: the base scenario's YAML with edits,
    random text, or random bytes."""
    text = yaml.safe_dump(BASE, sort_keys=False, allow_unicode=True)
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            j = draw(st.integers(i, min(len(text), i + 40)))
            text = text[:i] + text[j:]
        else:
            text = text[:i] + draw(st.sampled_from(_YAML_NOISE)) + text[i:]
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------------ the oracle

def _mentioned(token: str, message: str) -> bool:
    return bool(token) and token in message


def names_field(message: str, mutation: Mutation) -> bool:
    """Whether ``message`` names the field ``mutation`` broke.

    Accepted: the full dotted path; or an enclosing section (as ``section:`` or ``section.``)
    together with a field below it or the new value (cross-field rules); or a section that a
    change of this kind legitimately affects (:data:`RELATED`).
    """
    path = mutation.path
    if _mentioned(dotted(path), message):
        return True
    # The new value counts as naming the field only when it is distinctive.
    value = str(mutation.value) if isinstance(mutation.value, str) and \
        len(mutation.value.strip()) >= 3 else None
    below = [str(p) for p in path]
    for depth in range(len(path) - 1, 0, -1):
        section = re.escape(dotted(path[:depth]))
        if depth == len(path) - 1 and re.search(rf"(^|[\s:(]){section}\.", message):
            return True  # a sibling of the field: e.g. a changed 'kind' needs other fields
        if re.search(rf"(^|[\s:(]){section}[.:]", message):
            rest = below[depth:]
            if any(_mentioned(p, message) for p in rest if not p.isdigit()) or \
                    (value is not None and _mentioned(value, message)):
                return True
    for section in RELATED.get(str(path[0]), ()):
        if re.search(rf"(^|[\s:(]){re.escape(section)}[.:]", message):
            return True
    return False
