"""The third-party example `examples/plugin_oxygen`: installed with pip into (a layer over) the
test environment, it registers `oxygen.krogh`, runs its scenario through the CLI with every
audit passing, publishes its schema beside the built-in ones, and passes its own test suite —
the conformance suite and the Krogh–Erlang validation."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml
from plugin_env import LayeredEnv, copy_package, describe

from medtransport.results import read_netcdf
from medtransport.schema import expected_files

SOURCE = Path(__file__).parents[1] / "examples" / "plugin_oxygen"


# One process in the layer runs the commands a user would type, through the `medtransport`
# command's entry function, then the package's own pytest suite (one interpreter start instead
# of four, on a shared machine), and reports each exit code and output.
DRIVER = """
import contextlib, io, json, sys
import pytest
from click.testing import CliRunner
from medtransport.cli import main
out = {}
for key, args in json.loads(sys.argv[1]).items():
    result = CliRunner().invoke(main, args)
    out[key] = [result.exit_code, result.output]
buffer = io.StringIO()
with contextlib.redirect_stdout(buffer):
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--color=no"])
out["pytest"] = [int(code), buffer.getvalue()]
print("RESULTS" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("oxygen")
    env = LayeredEnv(root / "env")
    package = copy_package(SOURCE, root / "plugin_oxygen")
    result = env.pip_install_editable(package)
    assert result.returncode == 0, describe(result)
    # The scenario runs as a user runs it: the `medtransport` command in its own process.
    ran = env.run("-m", "medtransport", "run", "scenarios/krogh_muscle.yaml", "-o",
                  root / "o2.nc", "--plot", root / "o2.png", cwd=package)
    commands = {
        "models": ["models"],
        "explain": ["explain", "scenarios/krogh_muscle.yaml"],
        "schema": ["schema", "--write", "--dir", str(root / "schemas")],
    }
    result = env.run("-c", DRIVER, json.dumps(commands), cwd=package)
    assert result.returncode == 0 and "RESULTS" in result.stdout, describe(result)
    outputs = json.loads(result.stdout.split("RESULTS", 1)[1])
    outputs["run"] = [ran.returncode, describe(ran)]
    return {"env": env, "package": package, "root": root, **outputs}


def test_pip_install_registers_the_model(installed: dict[str, Any]) -> None:
    code, output = installed["models"]
    assert code == 0, output
    line = next(x for x in output.splitlines() if "oxygen.krogh" in x)
    assert "oxygen 0.1.0" in line and "broken" not in output


def test_its_scenario_runs_through_the_cli_and_matches_krogh(installed: dict[str, Any]) -> None:
    code, output = installed["run"]
    assert code == 0, output
    root = installed["root"]
    assert "mass_balance[oxygen]" in output and (root / "o2.png").stat().st_size > 0
    ds = read_netcdf(root / "o2.nc")
    assert ds.attrs["audit_status"] == "passed" and ds.attrs["plugin"] == "oxygen"
    assert float(np.max(np.abs(ds["oxygen_residual"].values))) <= \
        1e-9 * float(np.max(ds["oxygen_stored"].values))
    # Krogh–Erlang (Krogh 1919), zero-order consumption M0, written out here independently:
    # P = Pc + M0/(4K)(r² − rc²) − M0 R²/(2K) ln(r/rc), K = D·α. Consuming at most M0, the
    # Michaelis–Menten tissue (P50 = 1 mmHg, P ≥ 23 mmHg: ≤ 4 % less) lies just above it.
    r = ds["r"].values
    k = 2e-9 * 1.34e-3
    krogh = 40 + 0.02 / (4 * k) * (r ** 2 - 5e-6 ** 2) - 0.02 * 50e-6 ** 2 / (2 * k) * \
        np.log(r / 5e-6)
    steady = ds["oxygen_tension"].isel(time=-1).values
    assert np.all(steady >= krogh - 0.05)
    assert np.all(steady - krogh <= 0.04 * (40 - krogh) + 0.05)
    assert int(np.argmin(steady)) == len(r) - 1  # the "lethal corner" is at the outer radius


def test_explain_answers_the_five_questions(installed: dict[str, Any]) -> None:
    code, output = installed["explain"]
    assert code == 0, output
    assert "consumption by the tissue" in output and "cylinder" in output


def test_its_schema_is_published_beside_the_unchanged_builtin_ones(
        installed: dict[str, Any]) -> None:
    code, output = installed["schema"]
    assert code == 0, output
    directory = installed["root"] / "schemas"
    written = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    assert written.pop("oxygen.krogh.params.schema.json")
    # its per-model scenario schema (for editors) names the model and takes its parameters
    model_scenario = json.loads(written.pop("oxygen.krogh.scenario.schema.json"))
    assert model_scenario["properties"]["model"]["const"] == "oxygen.krogh"
    assert written == expected_files()  # installing a plugin changes no other schema
    scenario = yaml.safe_load((installed["package"] / "scenarios" / "krogh_muscle.yaml")
                              .read_text())
    jsonschema.validate(scenario, json.loads((directory / "scenario.schema.json").read_text()))
    params = json.loads((directory / "oxygen.krogh.params.schema.json").read_text())
    jsonschema.validate(scenario["parameters"], params)
    assert model_scenario["properties"]["parameters"] == {
        "$ref": "oxygen.krogh.params.schema.json"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scenario["parameters"], "colour": "red"}, params)


def test_its_own_suite_passes_installed(installed: dict[str, Any]) -> None:
    code, output = installed["pytest"]
    assert code == 0, output
    assert " passed" in output and "failed" not in output.split("medtransport conformance")[0]
    summary = output.split("medtransport conformance", 1)[1]
    assert "oxygen.krogh:" in summary and "failed" not in summary
    assert "mass_balance_can_fail" in summary.split("passed:", 1)[1]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


@pytest.mark.parametrize("path", sorted((SOURCE / "medtransport_oxygen").glob("*.py")),
                         ids=lambda p: p.name)
def test_it_uses_only_the_public_api(path: Path) -> None:
    """Only names in a medtransport module's ``__all__``, from modules without a leading
    underscore (every name without one when a module has no ``__all__``): what a third party
    can rely on."""
    for module, names in _imports(path):
        if module != "medtransport" and not module.startswith("medtransport."):
            continue
        assert not any(part.startswith("_") for part in module.split(".")), module
        mod = importlib.import_module(module)
        public = getattr(mod, "__all__", None)
        private = [n for n in names if n.startswith("_") or
                   (public is not None and n not in public)]
        assert not private, f"{path.name}: {module} does not export {private}"

