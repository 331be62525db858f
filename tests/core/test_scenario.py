"""Scenario loading from YAML, TOML and JSON; derived patient quantities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtransport import ScenarioError, load_scenario
from medtransport.scenario import Patient

EXAMPLES = Path(__file__).parents[2] / "examples" / "scenarios"

SLAB = {
    "name": "slab",
    "model": "diffusion.fick",
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [10]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 umol/cm^2"}},
    "time": {"stop": "10 s", "step": "1 s"},
}


def test_the_same_scenario_loads_from_yaml_toml_and_json(tmp_path: Path) -> None:
    import tomli_w  # noqa: F401  (only to be sure TOML writing works in the test env)

    yaml_text = (EXAMPLES / "dye_tissue_slab.yaml").read_text()
    a = load_scenario(EXAMPLES / "dye_tissue_slab.yaml")
    (tmp_path / "s.json").write_text(a.to_json())
    b = load_scenario(tmp_path / "s.json")
    import tomli_w as tw

    (tmp_path / "s.toml").write_text(tw.dumps(json.loads(a.to_json())))
    c = load_scenario(tmp_path / "s.toml")
    assert a == b == c
    assert "diffusivity" in yaml_text


def test_yaml_loader_is_safe(tmp_path: Path) -> None:
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ScenarioError, match=r"malformed YAML"):
        load_scenario(p)


def test_errors_name_every_bad_field() -> None:
    bad = {**SLAB, "time": {"stop": "10 s", "step": "1 mL"}, "colour": "red"}
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    paths = dict(info.value.problems)
    assert "time.step" in paths and "[time]" in paths["time.step"]
    assert paths["colour"].startswith("unknown field")


def test_time_grid_ends_exactly_at_stop() -> None:
    sc = load_scenario({**SLAB, "time": {"stop": "10 s", "step": "3 s"}})
    t = sc.time.output_times()
    assert t[0] == 0 and t[-1] == pytest.approx(10.0) and sc.time.dt <= 3.0
    with pytest.raises(ScenarioError, match=r"whole multiple"):
        load_scenario({**SLAB, "time": {"stop": "10 s", "step": "2 s", "output_every": "3 s"}})


def test_repeated_events_expand() -> None:
    sc = load_scenario({**SLAB, "events": [{"type": "infusion", "amount": "1 g",
                                            "duration": "1 h", "every": "12 h", "count": 3}]})
    ev = sc.events[0]
    assert list(ev.times()) == [0.0, 43200.0, 86400.0]
    assert ev.get("amount").m_as("mg") == 1000.0
    with pytest.raises(ScenarioError, match=r"events.0"):
        load_scenario({**SLAB, "events": [{"type": "bolus", "count": 3}]})


def test_audit_section_may_only_tighten() -> None:
    from medtransport.runner import prepare

    model = prepare({**SLAB, "audit": {"rtol": 1e-12}})
    assert model.tolerance.rtol == 1e-12
    with pytest.raises(ScenarioError, match=r"audit.rtol: a scenario may tighten"):
        _ = prepare({**SLAB, "audit": {"rtol": 1e-3}}).tolerance


# Reference values computed by hand from the cited formulas for a 70 kg, 175 cm, 45-year-old
# man with serum creatinine 0.9 mg/dL.
def test_patient_derived_quantities() -> None:
    p = Patient(weight="70 kg", height="175 cm", age="45 year", sex="male",
                serum_creatinine="0.9 mg/dL")
    assert p.body_surface_area.m_as("m^2") == pytest.approx((175 * 70 / 3600) ** 0.5)
    assert p.body_surface_area.m_as("m^2") == pytest.approx(1.8447, abs=1e-4)
    assert p.body_surface_area_dubois.m_as("m^2") == pytest.approx(1.8481, abs=1e-3)
    assert p.body_mass_index.m_as("kg/m^2") == pytest.approx(22.857, abs=1e-3)
    assert p.ideal_body_weight.m_as("kg") == pytest.approx(70.46, abs=0.05)
    assert p.creatinine_clearance.m_as("mL/min") == pytest.approx(95 * 70 / (72 * 0.9))
    # the same creatinine in µmol/L (×88.42) gives the same clearance
    q = p.model_copy(update={"serum_creatinine": Patient(
        weight="1 kg", serum_creatinine="79.58 umol/L").serum_creatinine})
    assert q.creatinine_clearance.m_as("mL/min") == pytest.approx(102.6, rel=1e-3)
    with pytest.raises(ScenarioError, match=r"patient.height"):
        _ = Patient(weight="70 kg").body_surface_area


def test_relative_paths_resolve_against_the_file_and_survive_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario read from a file resolves its relative paths against the file's directory,
    also after ``with_changes`` (a population run sets its size and seed that way); a mapping
    resolves against ``base_dir`` if given, else the working directory."""
    project = tmp_path / "project"
    project.mkdir()
    data = {"name": "s", "model": "diffusion.fick", "time": {"stop": "1 s", "step": "1 s"}}
    (project / "s.yaml").write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    sc = load_scenario(project / "s.yaml")
    assert sc.source_dir == project.resolve()
    assert sc.with_changes(seed=4).source_dir == project.resolve()
    assert load_scenario(data).source_dir == tmp_path.resolve()
    assert load_scenario(data, base_dir=project).source_dir == project.resolve()
    assert load_scenario(data, base_dir=project).with_changes(seed=1).source_dir == \
        project.resolve()
