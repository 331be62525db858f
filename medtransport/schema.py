"""JSON Schemas generated from the pydantic models: one for scenarios, one per registered
model's parameters. ``medtransport schema --write`` regenerates ``schemas/``; a test fails
when the files there are out of date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pint
from pydantic.json_schema import GenerateJsonSchema

from medtransport.results import write_atomically
from medtransport.units import format_quantity

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    """Writes quantity defaults as the strings a scenario would use (``"0 s"``)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, pint.Quantity):
            return format_quantity(dft)
        return super().encode_default(dft)


def scenario_schema() -> dict[str, Any]:
    from medtransport.scenario import Scenario

    schema = Scenario.model_json_schema(mode="validation", schema_generator=_Generator)
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = "medtransport scenario"
    return schema


def params_schema(cls: Any) -> dict[str, Any]:
    """The JSON Schema of a model class's ``Params``."""
    return cls.Params.model_json_schema(mode="validation", schema_generator=_Generator)


def model_schema(model_id: str) -> dict[str, Any]:
    from medtransport.plugins import get_registry

    cls = get_registry().model_class(model_id)
    schema = params_schema(cls)
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = f"parameters of {model_id}"
    schema["description"] = cls.description
    return schema


def model_scenario_schema(model_id: str) -> dict[str, Any]:
    """The scenario schema with ``model`` fixed to ``model_id`` and ``parameters`` checked
    against that model's parameters — what an editor needs to complete and check a scenario
    (``# yaml-language-server: $schema=…/<model>.scenario.schema.json``). It refers to the two
    files beside it rather than copying them, so it stays right when either changes."""
    return {"$schema": SCHEMA_DIALECT,
            "title": f"medtransport scenario for {model_id}",
            "allOf": [{"$ref": "scenario.schema.json"}],
            "properties": {"model": {"const": model_id},
                           "parameters": {"$ref": f"{model_id}.params.schema.json"}}}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def expected_files() -> dict[str, str]:
    """File name → content of every schema file that should be in ``schemas/``."""
    from medtransport.plugins import get_registry

    files = {"scenario.schema.json": render(scenario_schema())}
    for model_id in sorted(get_registry().models):
        files[f"{model_id}.params.schema.json"] = render(model_schema(model_id))
        files[f"{model_id}.scenario.schema.json"] = render(model_scenario_schema(model_id))
    return files


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files().items():
        with write_atomically(directory / name, ".json.tmp") as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(directory / name)
    return written
