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


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "scenarios").glob("*.yaml")),
                         ids=lambda p: p.name)
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
