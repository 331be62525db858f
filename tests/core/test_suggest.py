"""Errors that help: "did you mean" for model ids, field names, kinds and event types; field
paths as the user wrote them (no pydantic tags); sentences, not regular expressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from medtransport.errors import ScenarioError
from medtransport.runner import prepare
from medtransport.suggest import close_matches, did_you_mean
from medtransport.trust import allow_paths

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def _problems(scenario: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ScenarioError) as info:
        prepare(scenario)
    return dict(info.value.problems)


def test_close_matches_rank_and_refuse_far_guesses() -> None:
    assert close_matches("clearence", ["central_volume", "clearance", "bioavailability"]) == \
        ["clearance"]
    assert did_you_mean("zzz", ["clearance"]) == ""
    assert did_you_mean("stp", ["stop", "step"]) == "; did you mean 'stop' or 'step'?" or \
        did_you_mean("stp", ["stop", "step"]) == "; did you mean 'step' or 'stop'?"


def test_a_misspelt_model_id_gets_a_guess() -> None:
    problems = _problems({**_example("theophylline_oral.yaml"), "model": "pk.two_compartmnt"})
    assert "did you mean 'pk.two_compartment'" in problems["model"]


def test_a_malformed_model_id_gets_a_sentence_not_a_regex() -> None:
    problems = _problems({**_example("theophylline_oral.yaml"), "model": "pk.2cmt"})
    assert "'pk.2cmt' is not a model id" in problems["model"]
    assert "[A-Za-z" not in problems["model"]


def test_a_misspelt_required_parameter_is_named_and_guessed() -> None:
    sc = _example("theophylline_oral.yaml")
    params = dict(sc["parameters"])
    params["clearence"] = params.pop("clearance")
    problems = _problems({**sc, "parameters": params})
    # 'clearance' is also a boundary kind: it must not be mistaken for a pydantic tag
    assert problems["parameters.clearance"] == "required field is missing"
    assert problems["parameters.clearence"] == "unknown field; did you mean 'clearance'?"


def test_a_misspelt_optional_field_inside_a_tagged_union_has_a_clean_path() -> None:
    sc = _example("contrast_brain_tumour_extended_tofts.yaml")
    aif = dict(sc["parameters"]["aif"])
    aif["hemaocrit"] = aif.pop("hematocrit")
    problems = _problems({**sc, "parameters": {**sc["parameters"], "aif": aif}})
    assert problems == {"parameters.aif.hemaocrit": "unknown field; did you mean 'hematocrit'?"}


def test_an_unknown_kind_and_an_unknown_event_type_get_guesses() -> None:
    sc = _example("contrast_brain_tumour_extended_tofts.yaml")
    aif = {**sc["parameters"]["aif"], "kind": "parkr"}
    problems = _problems({**sc, "parameters": {**sc["parameters"], "aif": aif}})
    assert "did you mean 'parker'?" in problems["parameters.aif"]
    sc = _example("theophylline_oral.yaml")
    sc["events"] = [{**sc["events"][0], "type": "orl"}]
    assert "did you mean 'oral'?" in _problems(sc)["events.0.type"]


def test_a_misspelt_scenario_key_is_guessed_but_not_as_a_key_already_written() -> None:
    sc = _example("theophylline_oral.yaml")
    sc["time"] = {"stopp": "72 h", "step": "10 min"}
    assert _problems(sc)["time.stopp"] == "unknown field; did you mean 'stop'?"


def test_an_absolute_input_path_is_not_described_as_relative(tmp_path: Path) -> None:
    sc = _example("noise_heat_temperature_map.yaml")
    missing = tmp_path / "nowhere.nc"
    sc["parameters"]["input"] = {"kind": "netcdf", "path": str(missing),
                                 "variable": "temperature"}
    # allowed (the command's --allow-path), so the path is checked for existence, not confinement
    with allow_paths([tmp_path]), pytest.raises(ScenarioError) as info:
        from medtransport import run

        run(prepare(sc))
    assert f"no such file: {missing}" in str(info.value)
    assert "relative to" not in str(info.value)
