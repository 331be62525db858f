"""`schemas/` holds the JSON Schemas generated from the pydantic models, and stays in sync."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from medtransport.schema import expected_files

ROOT = Path(__file__).parents[1]


def test_schemas_directory_is_up_to_date() -> None:
    """Fails when a model or the scenario changed without `medtransport schema --write`."""
    expected = expected_files()
    present = {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert present == set(expected), "run `medtransport schema --write`"
    for name, text in expected.items():
        assert (ROOT / "schemas" / name).read_text(encoding="utf-8") == text, \
            f"schemas/{name} is stale: run `medtransport schema --write`"


@pytest.mark.parametrize("path", sorted([*(ROOT / "examples" / "scenarios").glob("*.yaml"),
                                         *(ROOT / "examples" / "data").glob("*.yaml"),
                                         *(ROOT / "examples" / "estimation").glob("*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_scenarios_validate_against_the_published_schemas(path: Path) -> None:
    scenario = yaml.safe_load(path.read_text())
    schema = json.loads((ROOT / "schemas" / "scenario.schema.json").read_text())
    jsonschema.validate(scenario, schema)
    params = json.loads((ROOT / "schemas" / f"{scenario['model']}.params.schema.json")
                        .read_text())
    jsonschema.validate(scenario["parameters"], params)


def test_the_schema_rejects_what_the_loader_rejects() -> None:
    schema = json.loads((ROOT / "schemas" / "scenario.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "model": "diffusion.fick", "time": {"stop": "1 s"}},
                            schema)


def validate_with_neighbours(instance: object, schema_path: Path) -> None:
    """Validate against a schema whose ``$ref``s name files beside it, as an editor resolves
    them."""
    from referencing import Registry, Resource

    resources = [(p.name, Resource.from_contents(json.loads(p.read_text(encoding="utf-8"))))
                 for p in schema_path.parent.glob("*.json")]
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(
        schema, registry=Registry().with_resources(resources)).validate(instance)


@pytest.mark.parametrize("path", sorted([*(ROOT / "examples" / "scenarios").glob("*.yaml"),
                                         *(ROOT / "examples" / "data").glob("*.yaml"),
                                         *(ROOT / "examples" / "estimation").glob("*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_names_its_model_schema_for_editors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    model = yaml.safe_load(text)["model"]
    assert first == (f"# yaml-language-server: $schema=../../schemas/{model}"
                     ".scenario.schema.json")
    target = (path.parent / first.split("$schema=")[1]).resolve()
    validate_with_neighbours(yaml.safe_load(text), target)
    # examples cite what a user has: not the design notes kept outside the repository
    assert "DESIGN.md" not in text and "REFERENCES.md" not in text


def test_a_model_scenario_schema_checks_the_parameters_and_the_model() -> None:
    schema = ROOT / "schemas" / "pk.one_compartment.scenario.schema.json"
    good = yaml.safe_load((ROOT / "examples" / "scenarios" / "theophylline_oral.yaml")
                          .read_text(encoding="utf-8"))
    validate_with_neighbours(good, schema)
    misspelt = {**good, "parameters": {**good["parameters"], "clearence": "1 L/h"}}
    with pytest.raises(jsonschema.ValidationError, match="clearence"):
        validate_with_neighbours(misspelt, schema)
    with pytest.raises(jsonschema.ValidationError):
        validate_with_neighbours({**good, "model": "pk.two_compartment"}, schema)
    with pytest.raises(jsonschema.ValidationError):  # the scenario part is checked too
        validate_with_neighbours({**good, "tim": good["time"]}, schema)
