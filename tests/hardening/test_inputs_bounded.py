"""Inputs that hung, blew up or slipped through (issue 20): each is refused quickly, as bad
input naming the field, with the valid range where there is one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtransport.errors import UnitError
from medtransport.units import MAX_QUANTITY_CHARS, parse_quantity


def _bounded(fn: Any, *args: Any) -> None:
    """Call ``fn`` in a forked child killed after 20 s: a hang fails the test instead of
    stalling the suite (no wall-clock assertion: 20 s is a generous hang detector)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    proc = ctx.Process(target=fn, args=args)
    proc.start()
    proc.join(20)
    hung = proc.is_alive()
    if hung:
        proc.kill()
        proc.join()
    assert not hung, f"{fn.__name__}{args!r} did not finish in 20 s"
    assert proc.exitcode == 0, f"{fn.__name__} failed in the child (exit {proc.exitcode})"


def _refused(text: str) -> None:
    try:
        parse_quantity(text, field="f")
    except UnitError:
        return
    raise AssertionError(f"{text[:40]!r} was accepted")


@pytest.mark.parametrize("text", [
    "1" * 1000 + " " * 1000 + "x\nx",      # cubic backtracking in the old number pattern
    "1" * 3000,
    "1 " + "m" * 3000,
    "1 m**2**2**2**2**2**2**2**2",         # an exponent tower pint would evaluate exactly
    "1 m^2^2^2^2^2^2^2^2",
    "1 m ** (2) ** 2 ** 2 ** 2 ** 2 ** 2 ** 2",
])
def test_pathological_quantity_strings_are_refused_promptly(text: str) -> None:
    _bounded(_refused, text)


def test_the_length_bound_is_stated() -> None:
    with pytest.raises(UnitError, match=f"at most {MAX_QUANTITY_CHARS} characters"):
        parse_quantity("1" * (MAX_QUANTITY_CHARS + 1) + " m", field="f")


@pytest.mark.parametrize(("text", "magnitude", "unit"), [
    ("5 mg/L", 5.0, "milligram / liter"), ("  -1.5e3  s ", -1500.0, "second"),
    ("37 degC", 37.0, "degree_Celsius"), (".5 m", 0.5, "meter"), ("5.", 5.0, "dimensionless"),
    ("1eV", 1.0, "electron_volt"), ("2e-3 m**2", 2e-3, "meter ** 2"),
])
def test_ordinary_quantities_still_parse(text: str, magnitude: float, unit: str) -> None:
    q = parse_quantity(text)
    assert q.magnitude == magnitude and str(q.units) == unit


@pytest.mark.parametrize("text", ["nan m", "inf s", "-infinity K", "+Inf"])
def test_non_finite_words_parse_as_numbers(text: str) -> None:
    import math

    assert not math.isfinite(parse_quantity(text).magnitude)


# ------------------------------------------------------------------ absurd but accepted

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _example(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return data


@pytest.mark.parametrize(("example", "path", "value", "field", "says"), [
    ("bioheat_burn_cooling.yaml", "boundaries.x-.ambient", "-300 degC",
     "boundaries.x-.ambient", "below absolute zero"),
    ("bioheat_litt_liver.yaml", "parameters.arterial_temperature", "1e300 degC",
     "parameters.arterial_temperature", "expected 0 K to"),
    ("bioheat_litt_liver.yaml", "parameters.initial_temperature", "-1 K",
     "parameters.initial_temperature", ""),
    ("contrast_brain_tumour_extended_tofts.yaml", "parameters.ve", True, "parameters.ve",
     "boolean"),
    ("vancomycin_population.yaml", "population.variability.clearance", True,
     "population.variability.clearance", "boolean"),
    ("noise_phantom_linear.yaml", "parameters.output_steps", [True, 10],
     "parameters.output_steps.0", "boolean"),
    ("dye_tissue_slab.yaml", "time.step", "1000 h", "time", "longer than the whole run"),
    ("dye_tissue_slab.yaml", "time.output_every", "1e300 s", "time",
     "longer than the whole run"),
    ("dye_tissue_slab.yaml", "solver.method", "", "solver.method", ""),
])
def test_absurd_values_are_refused_naming_the_field(example: str, path: str, value: Any,
                                                    field: str, says: str) -> None:
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare

    with pytest.raises(ScenarioError) as info:
        prepare(_set(_example(example), path, value))
    assert f"{field}:" in str(info.value) and says in str(info.value)


def test_json_with_a_duplicate_key_is_refused(tmp_path: Any) -> None:
    from medtransport.errors import ScenarioError
    from medtransport.scenario import load_scenario

    path = tmp_path / "s.json"
    path.write_text('{"name": "a", "name": "b", "model": "diffusion.fick", '
                    '"time": {"stop": "1 s", "step": "1 s"}}')
    with pytest.raises(ScenarioError, match="duplicate key 'name'"):
        load_scenario(path)


def test_temperature_differences_are_not_taken_for_temperatures() -> None:
    from medtransport.units import Qty

    spec = Qty("delta_degC").__metadata__[0]
    assert spec.validate("-300 delta_degC").magnitude == -300


@pytest.mark.parametrize(("example", "path", "value", "field"), [
    ("implant_sphere_release.yaml", "domain.radius", "1e300 mm", "domain.radius"),
    ("implant_sphere_release.yaml", "domain.radius", "1e-300 mm", "domain.radius"),
    ("contrast_capillary_krogh_cylinder.yaml", "domain.radius", "1e300 um", "domain.radius"),
    ("dye_tissue_slab.yaml", "parameters.diffusivity", "1e300 m^2/s",
     "parameters.diffusivity"),
    ("dye_tissue_slab.yaml", "name", "slab\x00", "name"),
    ("dye_tissue_slab.yaml", "name", "slab\ud800", "name"),
])
def test_values_that_crashed_the_solver_are_bad_input_with_the_range(
        example: str, path: str, value: Any, field: str) -> None:
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare

    with pytest.raises(ScenarioError) as info:
        prepare(_set(_example(example), path, value))
    assert f"{field}:" in str(info.value)


@pytest.mark.parametrize("radius", ["1e-300 mm", "1e300 mm"])
def test_dwi_restriction_sizes_are_bounded(radius: str) -> None:
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare

    sc = _example("dwi_prostate_tumour.yaml")
    sc["parameters"]["compartments"][0]["radius"] = radius
    with pytest.raises(ScenarioError, match=r"parameters\.compartments\.0.*radius: expected a "
                                            r"value"):
        prepare(sc)


# ------------------------------------------------------------------ property


_PIECES = st.sampled_from(["1", "0", ".", "e", "E", "-", "+", " ", "\n", "\t", "m", "s", "**",
                           "^", "/", "*", "(", ")", "degC", "nan", "inf", "mg", "L", "2", "9"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(_PIECES, max_size=120).map("".join)))
def test_any_string_parses_or_is_a_unit_error(text: str) -> None:
    try:
        parse_quantity(text, field="f")
    except UnitError as exc:
        assert str(exc).startswith("f: ")


@pytest.mark.parametrize(("example", "path", "value", "field"), [
    ("bioheat_litt_liver.yaml", "events.0.source", {"a": 1}, "events.0.source"),
    ("dwi_prostate_tumour.yaml", "parameters.protocol.pulse_duration", "1e-300 ms",
     "parameters.protocol.pulse_duration"),
    ("implant_sphere_release.yaml", "parameters.diffusivity", "1e-30 m^2/s", "solver.method"),
])
def test_model_crashes_on_bad_input_are_now_bad_input(example: str, path: str, value: Any,
                                                      field: str) -> None:
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare, run

    with pytest.raises(ScenarioError) as info:
        run(prepare(_set(_example(example), path, value)))
    assert f"{field}:" in str(info.value)


def test_a_huge_mixture_covariance_is_bad_input() -> None:
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare

    sc = _example("noise_mixture_reverse.yaml")
    sc["parameters"]["data"][0]["covariance"] = [1e300, 1e300]
    with pytest.raises(ScenarioError, match=r"parameters\.data\.0\.covariance"):
        prepare(sc)
