"""`medtransport new-plugin NAME`: a complete plugin package that installs, registers and passes
the conformance suite straight away — checked end to end as a new user would run it."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_env import LayeredEnv, describe

import medtransport
from medtransport.scaffold import ScaffoldError, scaffold
from medtransport.testing import build_model, run_checks


@pytest.fixture
def scaffolded(tmp_path: Path) -> Path:
    return scaffold("tumour", tmp_path / "medtransport-tumour").directory


def test_new_plugin_writes_a_complete_package(tmp_path: Path,
                                              medtransport_cli: Callable[..., Any]) -> None:
    target = tmp_path / "pkg"
    result = medtransport_cli("new-plugin", "tumour", "--directory", target)
    assert result.exit_code == 0, result.output
    assert "model tumour.slab_uptake" in result.output and "pip install -e ." in result.output
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "medtransport-tumour"
    assert meta["project"]["entry-points"]["medtransport"] == {
        "tumour": "medtransport_tumour.plugin"}
    assert any(d.startswith("medtransport") for d in meta["project"]["dependencies"])
    model = (target / "medtransport_tumour" / "model.py").read_text()
    for part in ("class TumourSlabUptakeParams(Params)", "conserved = (Species(",
                 "def build_domain", "def build_boundaries", "def initial_amounts",
                 "def simulate", "Ledger.of(", "def example_scenarios",
                 "def invalid_parameters"):
        assert part in model, part
    assert "parametrize_with_checks([\"tumour.slab_uptake\"])" in \
        (target / "tests" / "test_tumour_conformance.py").read_text()
    assert (target / "scenarios" / "tumour_example.yaml").is_file()
    assert "pip install -e ." in (target / "README.md").read_text()
    assert not [p for p in target.rglob("*") if "{{" in p.name or
                (p.is_file() and "{{" in p.read_text())]


def test_every_template_is_package_data() -> None:
    """A wheel of medtransport must carry the templates `new-plugin` writes from."""
    import fnmatch

    import medtransport

    root = Path(medtransport.__file__).parent
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["medtransport"]
    templates = [p.relative_to(root).as_posix()
                 for p in (root / "templates" / "plugin").rglob("*") if p.is_file()]
    assert len(templates) == 9
    for path in templates:
        assert any(fnmatch.fnmatch(path, pat) and path.count("/") == pat.count("/")
                   for pat in patterns), f"{path} is not package data"


@pytest.mark.parametrize(("name", "fragment"), [
    ("Tumour", "lower-case Python identifier"),
    ("tumour-uptake", "lower-case Python identifier"),
    ("1tumour", "lower-case Python identifier"),
    ("a" * 25, "at most 24 characters"),
    ("class", "keyword"),
    ("medtransport_x", "start with 'medtransport'"),
    ("diffusion", "already uses it"),
])
def test_bad_names_are_refused_with_the_reason(name: str, fragment: str, tmp_path: Path,
                                               medtransport_cli: Callable[..., Any]) -> None:
    result = medtransport_cli("new-plugin", name, "-d", tmp_path / "x")
    assert result.exit_code == 2
    assert fragment in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_a_non_empty_directory_is_refused(scaffolded: Path) -> None:
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        scaffold("tumour", scaffolded)


@pytest.mark.parametrize("name", ["tumour", "a" * 24])  # the longest name makes the longest lines
def test_the_scaffolded_code_is_ruff_clean(name: str, tmp_path: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    package = scaffold(name, tmp_path / "pkg").directory
    out = subprocess.run([ruff, "check", "--no-cache", "."], cwd=package,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def scaffolded_module(scaffolded: Path) -> Iterator[Any]:
    sys.path.insert(0, str(scaffolded))
    try:
        yield importlib.import_module("medtransport_tumour.model")
    finally:
        sys.path.remove(str(scaffolded))
        for name in [m for m in sys.modules if m.startswith("medtransport_tumour")]:
            del sys.modules[name]


def test_the_scaffolded_model_passes_every_check_before_it_is_installed(
        scaffolded_module: Any, scaffolded: Path) -> None:
    cls = scaffolded_module.TumourSlabUptake
    results = run_checks(cls)
    assert {r.name for r in results} >= {"contract", "examples_pass_audits",
                                        "mass_balance_can_fail", "outflow_by_face"}
    assert [(r.name, r.detail) for r in results if r.outcome != "passed"] == []
    # Its example scenario file too: the slab loses solute through x+ and to uptake.
    ds = medtransport.run(build_model(cls, scaffolded / "scenarios" / "tumour_example.yaml"))
    assert ds.attrs["audit_status"] == "passed"
    assert ds["solute_outflow"].values[-1] > 0 and ds["solute_sink"].values[-1] > 0


def test_scaffold_install_list_and_test_as_a_new_user_would(tmp_path: Path) -> None:
    """The transcript of the issue: new-plugin → pip install -e → models → pytest (its example
    scenario file runs in the test above; a plugin's scenario through the CLI in
    test_plugin_oxygen)."""
    env = LayeredEnv(tmp_path / "env")
    work = tmp_path / "work"
    work.mkdir()
    steps = []

    def step(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        result = env.run(*args, cwd=cwd)
        steps.append(describe(result))
        assert result.returncode == 0, "\n\n".join(steps)
        return result

    step("-m", "medtransport", "new-plugin", "tumour", cwd=work)
    package = work / "medtransport-tumour"
    result = env.pip_install_editable(package)
    assert result.returncode == 0, describe(result)
    listed = step("-m", "medtransport", "models", cwd=package)
    assert "tumour.slab_uptake" in listed.stdout and "broken" not in listed.stdout
    tested = step("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert " passed" in tested.stdout and "failed" not in tested.stdout
    # Every check is reported by name in the session summary.
    summary = tested.stdout.split("medtransport conformance", 1)[1]
    assert "tumour.slab_uptake: 11 passed" in summary, summary
    named = set(re.findall(r"\w+", summary.split("passed:", 1)[1].split("====")[0]))
    assert {"contract", "examples_pass_audits", "mass_balance_can_fail",
            "normalization_can_fail", "outflow_by_face"} <= named, summary
    # The test environment itself was not changed: the model is not registered here.
    from importlib.metadata import entry_points

    assert "tumour" not in {ep.name for ep in entry_points(group="medtransport")}
