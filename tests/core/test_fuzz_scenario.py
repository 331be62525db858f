"""Property-based fuzzing of the scenario loader and of model preparation.

The property, for every broken scenario (wrong dimensions and types, missing and unknown fields,
NaN/inf, negative amounts, volumes and lengths, empty and enormous grids, unknown boundary kinds
and faces, random units, malformed YAML): :func:`medtransport.load_scenario` and
:func:`medtransport.runner.prepare` either succeed or raise the package's own error whose message
names the broken field — never another exception, and never :class:`ModelError` (which is how
``prepare`` reports an exception it did not expect from a model's set-up).

Below the properties, explicit regression examples, one or more per category, pin the exact
field path in the message.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medtransport import MedtransportError, ModelError, PluginError, ScenarioError, UnitError
from medtransport.domain import MAX_CELLS
from medtransport.runner import prepare
from medtransport.scenario import MAX_STEPS, load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scenario_strategies as ss

FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _check(mutation: ss.Mutation) -> None:
    """The property: load and prepare, or fail with our error naming the mutated field."""
    try:
        sc = load_scenario(mutation.scenario)
    except ScenarioError as exc:
        assert ss.names_field(str(exc), mutation), f"{mutation!r}: {exc}"
        return
    # What loads can be stored (results keep the scenario as JSON) and loaded again.
    load_scenario(json.loads(sc.to_json()))
    try:
        prepare(_runnable(sc))
    except ModelError:  # an unexpected exception inside the model's set-up: a bug
        raise
    except (ScenarioError, UnitError, PluginError) as exc:
        assert ss.names_field(str(exc), mutation), f"{mutation!r}: {exc}"


def _runnable(sc: Any) -> Any:
    """The loaded scenario without its events: the event mutations test the loader, and
    diffusion.fick refuses every event type (tested separately below)."""
    return sc.model_copy(update={"events": []})


def test_the_base_scenario_is_valid() -> None:
    model = prepare(ss.base_scenario(runnable=True))
    assert model.grid.cells == (40,)
    assert model.scenario.time.n_steps == 20


@FUZZ
@given(ss.mutations())
def test_any_mutation_loads_or_names_the_field(mutation: ss.Mutation) -> None:
    _check(mutation)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ss.replacements(ss.BASE))
@example(ss.Mutation(ss.BASE | {"parameters": {**ss.BASE["parameters"], "diffusivity": 10 ** 400}},
                     "replace", ("parameters", "diffusivity"), 10 ** 400))
def test_wrong_values_load_or_name_the_field(mutation: ss.Mutation) -> None:
    _check(mutation)


@settings(max_examples=200, deadline=None)
@given(ss.faces(ss.BASE))
def test_boundary_faces_and_kinds_load_or_name_the_face(mutation: ss.Mutation) -> None:
    _check(mutation)


@settings(max_examples=200, deadline=None)
@given(cells=ss.cells_values, size=ss.size_values)
def test_grids_from_empty_to_enormous_load_or_name_the_domain(cells: Any, size: Any) -> None:
    scenario = ss.base_scenario()
    scenario["domain"] = {"shape": "box", "size": size, "cells": cells}
    _check(ss.Mutation(scenario, "replace", ("domain",), None))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ss.malformed_yaml(), suffix=st.sampled_from([".yaml", ".yml", ".json", ".toml"]))
def test_malformed_files_load_or_raise_scenario_error(text: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"scenario{suffix}"
        path.write_bytes(text)
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            assert str(path) in str(exc)  # the message says which file
            return
        try:
            prepare(sc)
        except ModelError:
            raise
        except MedtransportError:
            pass


# ------------------------------------------------------------------------------ regressions

def _path(path: str) -> ss.Path:
    return tuple(int(k) if k.isdigit() else k for k in path.split("/"))


def _broken(path: str, value: Any) -> dict[str, Any]:
    """The base scenario with the field at ``path`` (``a/b/0``) set to ``value``."""
    scenario = ss.base_scenario()
    ss.set_at(scenario, _path(path), value)
    return scenario


def _without(path: str) -> dict[str, Any]:
    """The base scenario without the field at ``path``."""
    scenario = ss.base_scenario()
    ss.delete_at(scenario, _path(path))
    return scenario


def _refusal(source: Any) -> MedtransportError:
    """The error that loading or preparing ``source`` raises (it must raise one)."""
    with pytest.raises(MedtransportError) as info:
        prepare(_runnable(load_scenario(source)))
    assert not isinstance(info.value, ModelError), info.value
    return info.value


def _assert_names(source: Any, field: str, *fragments: str) -> None:
    exc = _refusal(source)
    message = str(exc)
    if isinstance(exc, ScenarioError):
        paths = [p for p, _ in exc.problems]
        assert field in paths, f"{field!r} not among {paths}: {message}"
    assert f"{field}:" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message


# Each row: (scenario, the field path the message must name, fragments it must contain).
WRONG_DIMENSION = [
    (_broken("parameters/diffusivity", "5 mL"), "parameters.diffusivity",
     ("[length] ** 2 / [time]", "'5 mL'")),
    (_broken("parameters/decay_rate", "1 m"), "parameters.decay_rate", ("1 / [time]",)),
    (_broken("parameters/initial/amount", "2 mg"), "parameters.initial.amount",
     ("per unit face area", "'2 mg'")),
    (_broken("time/step", "1 mL"), "time.step", ("[time]",)),
    (_broken("domain/size/0", "1 s"), "domain.size.0", ("[length]",)),
    (_broken("boundaries/x+/transfer_coefficient", "1 m^2/s"),
     "boundaries.x+.transfer_coefficient", ("transfer coefficient",)),
    (_broken("boundaries/x+/ambient", "1 degC"), "boundaries.x+.ambient", ("[temperature]",)),
    (_broken("patient/weight", "70 cm"), "patient.weight", ("[mass]",)),
]

WRONG_TYPE = [
    (_broken("parameters/diffusivity", [1, 2]), "parameters.diffusivity", ("list",)),
    (_broken("parameters/diffusivity", True), "parameters.diffusivity", ("boolean",)),
    (_broken("parameters/diffusivity", None), "parameters.diffusivity", ("None",)),
    (_broken("parameters/diffusivity", {"value": 1}), "parameters.diffusivity",
     ("'magnitude' and 'units'",)),
    (_broken("parameters/diffusivity", {"magnitude": "x", "units": "m^2/s"}),
     "parameters.diffusivity", ("number for 'magnitude'",)),
    (_broken("parameters/diffusivity", 1e-9), "parameters.diffusivity", ("bare number",)),
    (_broken("parameters/initial", "uniform"), "parameters.initial", ("mapping",)),
    (_broken("domain/cells/0", "forty"), "domain.cells.0", ()),
    (_broken("domain/cells/0", True), "domain.cells.0", ()),
    (_broken("domain/cells", 40), "domain.cells", ("list",)),
    (_broken("time", "20 s"), "time", ("mapping",)),
    (_broken("boundaries", ["x+"]), "boundaries", ()),
    (_broken("boundaries/x+", "robin"), "boundaries.x+", ()),
    (_broken("name", 5), "name", ("string",)),
    (_broken("seed", "one"), "seed", ()),
    (_broken("seed", True), "seed", ()),
    (_broken("events/0/count", True), "events.0.count", ()),
    (_broken("audit/rtol", "tight"), "audit.rtol", ()),
    (_broken("solver/method", 5), "solver.method", ()),
    (_broken("solver/method", "rk4"), "solver.method", ("crank_nicolson",)),
]

MISSING = [
    (_without("name"), "name", ("required",)),
    (_without("model"), "model", ("required",)),
    (_without("time"), "time", ("required",)),
    (_without("time/step"), "time.step", ("required",)),
    (_without("time/stop"), "time.stop", ("required",)),
    (_without("parameters/diffusivity"), "parameters.diffusivity", ("required",)),
    (_without("parameters/initial"), "parameters.initial", ("required",)),
    (_without("parameters/initial/amount"), "parameters.initial.amount", ("required",)),
    (_without("parameters/initial/kind"), "parameters.initial.kind", ("required",)),
    (_without("domain"), "domain", ("needs a domain",)),
    (_without("domain/shape"), "domain.shape", ("required",)),
    (_without("domain/cells"), "domain", ("'cells'",)),
    (_without("boundaries/x+/ambient"), "boundaries.x+.ambient", ("required",)),
    (_without("patient/weight"), "patient.weight", ("required",)),
    (_without("events/0/type"), "events.0.type", ("required",)),
]

UNKNOWN_FIELD = [
    (_broken("colour", "red"), "colour", ("unknown field",)),
    (_broken("parameters/diffusivty", "1e-9 m^2/s"), "parameters.diffusivty",
     ("unknown field",)),
    (_broken("parameters/initial/colour", "red"), "parameters.initial.colour",
     ("unknown field",)),
    (_broken("domain/cell", [40]), "domain.cell", ("unknown field",)),
    (_broken("boundaries/x+/ambiant", "0 mol/m^3"), "boundaries.x+.ambiant",
     ("unknown field",)),
    (_broken("time/stpe", "1 s"), "time.stpe", ("unknown field",)),
    (_broken("patient/mass", "70 kg"), "patient.mass", ("unknown field",)),
    (_broken("audit/tol", 1e-9), "audit.tol", ("unknown field",)),
    (_broken("output/file", "x.nc"), "output.file", ("unknown field",)),
    # Keys that look like pydantic's own path tags (a boundary kind, brackets) are still named.
    (_broken("robin", {"kind": "robin"}), "robin", ("unknown field",)),
    (_broken("x[1]", 1), "x[1]", ("unknown field",)),
    (_broken("boundaries/absorbing", {"kind": "absorbing", "x": 1}), "boundaries.absorbing.x",
     ("unknown field",)),
    (_broken("boundaries/x+/robin", 1), "boundaries.x+.robin", ("unknown field",)),
]

NONFINITE = [
    (_broken("parameters/diffusivity", "nan m^2/s"), "parameters.diffusivity", ("finite",)),
    (_broken("parameters/diffusivity", "inf m^2/s"), "parameters.diffusivity", ("finite",)),
    (_broken("parameters/initial/amount", "inf umol/cm^2"), "parameters.initial.amount",
     ("finite",)),
    (_broken("parameters/initial/amount", "1e400 umol/cm^2"), "parameters.initial.amount",
     ("finite",)),
    (_broken("time/stop", "inf s"), "time.stop", ("finite",)),
    (_broken("time/step", "nan s"), "time.step", ("finite",)),
    (_broken("domain/size/0", "nan mm"), "domain.size.0", ("finite",)),
    (_broken("boundaries/x+/ambient", "-inf mol/m^3"), "boundaries.x+.ambient", ("finite",)),
    (_broken("boundaries/x+/transfer_coefficient", {"magnitude": float("nan"), "units": "m/s"}),
     "boundaries.x+.transfer_coefficient", ("finite",)),
    (_broken("events/0/amount", "inf mg"), "events.0", ("'amount' must be finite",)),
    (_broken("audit/rtol", float("nan")), "audit.rtol", ()),
    (_broken("patient/weight", "nan kg"), "patient.weight", ("finite",)),
]

NEGATIVE = [
    (_broken("parameters/initial/amount", "-1 umol/cm^2"), "parameters.initial.amount",
     (">= 0",)),
    (_broken("parameters/diffusivity", "-1e-9 m^2/s"), "parameters.diffusivity", ("> 0",)),
    (_broken("parameters/decay_rate", "-1 1/s"), "parameters.decay_rate", (">= 0",)),
    (_broken("domain/size/0", "-1 mm"), "domain.size.0", (">= 1e-09 m",)),
    (_broken("domain/size/0", "0 mm"), "domain.size.0", (">= 1e-09 m",)),
    (_broken("domain", {"shape": "compartments", "compartments": ["plasma"],
                        "volumes": ["-3 L"]}), "domain.volumes.0", ("> 0",)),
    (_broken("domain", {"shape": "sphere", "radius": "-1 mm", "cells": [10]}), "domain.radius",
     (">= 1e-09 m",)),
    (_broken("time/step", "-1 s"), "time.step", ("> 0",)),
    (_broken("time/output_every", "-5 s"), "time.output_every", ("> 0",)),
    (_broken("events/0/at", "-1 s"), "events.0.at", (">= 0",)),
    (_broken("patient/weight", "-70 kg"), "patient.weight", ("> 0",)),
    (_broken("boundaries/x+/transfer_coefficient", "-1e-6 m/s"), "boundaries.x+",
     ("cannot be negative",)),
]

GRIDS = [
    (_broken("domain/cells", []), "domain.cells", ("at least 1",)),
    (_broken("domain/size", []), "domain.size", ("at least 1",)),
    (_broken("domain/cells", [0]), "domain.cells.0", ("greater than or equal to 1",)),
    (_broken("domain/cells", [-5]), "domain.cells.0", ()),
    (_broken("domain/cells", [40, 40]), "domain", ("'cells' has 2",)),
    (_broken("domain/cells", [1, 1, 1, 1]), "domain.cells", ("at most 3",)),
    (_broken("domain", {"shape": "box", "size": ["1 m"] * 3, "cells": [10 ** 6] * 3}), "domain",
     (f"more than the {MAX_CELLS}",)),
    (_broken("domain/cells", [10 ** 400]), "domain", (f"more than the {MAX_CELLS}",)),
    (_broken("time/step", "1e-9 s"), "time", (f"limit of {MAX_STEPS}", "'step' (1e-09 s)")),
    (_broken("time/start", "-1e9 s"), "time", ("'start' (-1000000000 s)", "1e+09 steps")),
    (_broken("time/stop", "0 s"), "time", ("'stop'",)),
]

HUGE_NUMBERS = [
    (_broken("parameters/diffusivity", 10 ** 400), "parameters.diffusivity", ("too large",)),
    (_broken("parameters/diffusivity", {"magnitude": 10 ** 400, "units": "m^2/s"}),
     "parameters.diffusivity", ("too large",)),
    (_broken("time/stop", 10 ** 400), "time.stop", ("too large",)),
    (_broken("events/0/at", 10 ** 400), "events.0.at", ("too large",)),
    (_broken("seed", 10 ** 400), "seed", ()),
    (_broken("events/0/count", 10 ** 400), "events.0.count", ()),
]

BOUNDARIES = [
    (_broken("boundaries/x+", {"kind": "wall"}), "boundaries.x+", ("unknown kind 'wall'",)),
    (_broken("boundaries/x+", {"kind": None}), "boundaries.x+", ()),
    (_broken("boundaries/x+", {}), "boundaries.x+", ()),
    (_broken("boundaries/[x]", {"kind": "wall"}), "boundaries.[x]", ("unknown kind 'wall'",)),
    (_broken("boundaries/y+", {"kind": "no_flux"}), "boundaries.y+", ("no such face", "x-, x+")),
    (_broken("boundaries/r+", {"kind": "absorbing"}), "boundaries.r+", ("no such face",)),
    (_broken("boundaries/left", {"kind": "absorbing"}), "boundaries.left", ("no such face",)),
    (_broken("boundaries/x+", {"kind": "periodic"}), "boundaries.x+", ("periodic needs x-",)),
    (_broken("boundaries/x+", {"kind": "clearance", "clearance": "1 L/h"}), "boundaries.x+",
     ("compartments",)),
    (_broken("boundaries/x+", {"kind": "neumann", "flux": "1 mol/m^3"}), "boundaries.x+.flux",
     ("a flux",)),
    (_broken("solver", {"method": "lattice_walk"}), "boundaries.x+.kind",
     ("absorbing, no_flux",)),
]

UNITS_TEXT = [
    (_broken("parameters/diffusivity", "1 ∂"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "1 𝔪"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "1 m/0"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "1 (m"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "1 \x00"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "1 10**400 m^2/s"), "parameters.diffusivity",
     ("unknown or malformed unit",)),
    (_broken("parameters/diffusivity", "fast"), "parameters.diffusivity",
     ("a number followed by a unit",)),
    (_broken("time/stop", "1 m**1e400"), "time.stop", ()),
    # A field of any dimension took m**inf, which then could not be stored and loaded back.
    (_broken("boundaries/x+/ambient", "1 m**1e400"), "boundaries.x+.ambient",
     ("non-finite exponent",)),
    (_broken("parameters/initial/amount", {"magnitude": 1, "units": ["mol"]}),
     "parameters.initial.amount", ("unit string",)),
]

OTHER = [
    (_broken("model", "pk.nope"), "model", ("no model 'pk.nope'",)),
    (_broken("model", "fick"), "model", ("is not a model id",)),
    (_broken("parameters/initial/kind", "gaussian"), "parameters.initial", ("'width'",)),
    (_broken("parameters/initial/region/x", ["1 mm", "0 mm"]), "parameters.initial",
     ("region.x",)),
    (_broken("domain/shape", "sphere"), "domain", ("'radius'",)),
    (_broken("time/output_every", "2.5 s"), "time", ("whole multiple of 'step'",)),
]


@pytest.mark.parametrize(
    ("scenario", "field", "fragments"),
    [pytest.param(*row, id=f"{group}:{row[1]}:{i}")
     for group, rows in (("dimension", WRONG_DIMENSION), ("type", WRONG_TYPE),
                         ("missing", MISSING), ("unknown", UNKNOWN_FIELD),
                         ("nonfinite", NONFINITE), ("negative", NEGATIVE), ("grid", GRIDS),
                         ("huge", HUGE_NUMBERS), ("boundary", BOUNDARIES),
                         ("units", UNITS_TEXT), ("other", OTHER))
     for i, row in enumerate(rows)])
def test_regression_error_names_the_field(scenario: dict[str, Any], field: str,
                                          fragments: tuple[str, ...]) -> None:
    _assert_names(copy.deepcopy(scenario), field, *fragments)


def test_a_looser_audit_tolerance_is_refused_by_prepare() -> None:
    with pytest.raises(ScenarioError, match=r"audit\.rtol: .*tighten"):
        prepare(_runnable(load_scenario(_broken("audit/rtol", 0.5))))


def test_event_quantities_are_stored_as_text_and_load_back() -> None:
    # Regression: the parsed extra fields of an event (pint quantities) broke to_json(), so
    # every run of a scenario with a dose event ended in an internal error.
    sc = load_scenario(ss.base_scenario())
    assert sc.events[0].get("amount").m_as("umol") == pytest.approx(1.0)
    stored = json.loads(sc.to_json())
    assert stored["events"][0]["amount"] == "1 µmol"
    assert load_scenario(stored) == sc


@pytest.mark.parametrize("value", ["1.7976931348623151e+308 m/s", "0.30000000000000004 m/s",
                                   "4.5e-10 m/s"])
def test_stored_scenario_loads_back_to_the_same_values(value: str) -> None:
    # Regression: quantities were stored with 15 digits, so the largest float came back as inf
    # (and the scenario could no longer be loaded) and others came back changed.
    sc = load_scenario(_broken("boundaries/x+/transfer_coefficient", value))
    assert load_scenario(json.loads(sc.to_json())) == sc


def test_binary_yaml_values_do_not_break_to_json(tmp_path: Path) -> None:
    # Regression: `!!binary` gives bytes, and bytes that are not UTF-8 broke to_json().
    scenario = _broken("solver/note", b"\xff")
    path = tmp_path / "binary.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert "!!binary" in path.read_text()
    sc = load_scenario(path)
    assert json.loads(sc.to_json())["solver"]["note"]


def test_every_problem_is_reported_at_once() -> None:
    scenario = _broken("time/step", "1 mL")
    scenario["colour"] = "red"
    scenario["domain"]["cells"] = []
    exc = _refusal(scenario)
    assert isinstance(exc, ScenarioError)
    assert {"time.step", "colour", "domain.cells"} <= {p for p, _ in exc.problems}


def test_deeply_nested_values_are_refused_with_a_short_message() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(50_000):
        node.append([])
        node = node[0]
    exc = _refusal(_broken("parameters/diffusivity", deep))
    assert "parameters.diffusivity" in str(exc) and len(str(exc)) < 500


MALFORMED_FILES = [
    ("tab.yaml", "name:\tx\n\tmodel: y\n", "malformed YAML at line"),
    ("unclosed.yaml", "name: x\ndomain: {shape: box\n", "malformed YAML at line"),
    ("colon.yaml", "name: a: b\n", "malformed YAML"),
    ("python.yaml", "name: !!python/object/apply:os.system ['echo pwned']\n", "malformed YAML"),
    ("deep.yaml", "[" * 20_000, "nested too deeply"),
    ("deepmap.yaml", "".join("  " * i + f"k{i}:\n" for i in range(2_000)), "nested too deeply"),
    ("list.yaml", "- name: x\n", "expected a mapping of sections"),
    ("empty.yaml", "", "expected a mapping of sections"),
    ("scalar.yaml", "42\n", "expected a mapping of sections"),
    ("keys.yaml", "1: x\nname: y\n", "section names must be strings"),
    ("bad.json", "{\"name\": ", "malformed JSON at line"),
    ("deep.json", "[" * 20_000, "nested too deeply"),
    ("bad.toml", "name = \n", "malformed TOML"),
    ("scenario.txt", "name: x\n", "unknown scenario format '.txt'"),
]


@pytest.mark.parametrize(("name", "text", "fragment"), MALFORMED_FILES,
                         ids=[m[0] for m in MALFORMED_FILES])
def test_regression_malformed_file(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r".") as info:
        load_scenario(path)
    message = str(info.value)
    assert fragment in message and str(path) in message, message


def test_regression_file_not_utf8_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Jürgen's slab\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"not UTF-8"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=r"no such file"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match=r"no such file"):
        load_scenario(tmp_path)


def test_a_model_refuses_events_it_does_not_interpret() -> None:
    with pytest.raises(ScenarioError, match=r"events\.0\.type: diffusion\.fick does not know "
                                            r"events of type 'bolus'"):
        prepare(ss.base_scenario())


def test_unknown_and_mistyped_solver_options_name_the_option() -> None:
    scenario = ss.base_scenario(runnable=True)
    scenario["solver"] = {"method": "brownian", "walker": 10}
    with pytest.raises(ScenarioError, match=r"solver\.walker: unknown option.*takes walkers"):
        prepare(scenario)
    scenario["solver"] = {"method": "brownian", "walkers": "many"}
    with pytest.raises(ScenarioError, match=r"solver\.walkers"):
        prepare(scenario)


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(ss.base_scenario(runnable=True)) + "name: again\n"
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ScenarioError, match=r"duplicate key 'name'"):
        load_scenario(tmp_path / "s.yaml")


def test_a_run_too_large_for_memory_is_refused_before_it_starts() -> None:
    scenario = ss.base_scenario(runnable=True)
    scenario["domain"] = {"shape": "box", "size": ["1 mm"], "cells": [10_000_000]}
    scenario["time"] = {"stop": "1000 s", "step": "1 s"}
    # Refused before the grid is built (issue 20), naming what to change.
    with pytest.raises(ScenarioError, match=r"domain\.cells: .* GiB of memory.*output less "
                                            r"often \(time\.output_every\)"):
        prepare(scenario)
