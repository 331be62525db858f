"""The audits' details in words use the units the run is shown in (the scenario's, or the
model's declared ones), while measured and tolerance stay canonical for the report JSON."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from medtransport.audit import AuditReport
from medtransport.audit.wording import amount, difference_in_words
from medtransport.runner import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _scenario(name: str, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(yaml.safe_load((EXAMPLES / name).read_text()))
    data.update(changes)
    return data


def _results(ds: Any) -> dict[str, Any]:
    return {r.name: r for r in AuditReport.from_json(ds.attrs["audit_report"]).results}


def test_a_1000_mg_dose_is_declared_as_1000_mg_not_1_g() -> None:
    ds = run(_scenario("theophylline_oral.yaml",
                       events=[{"type": "oral", "amount": "1000 mg", "every": "12 h",
                                "count": 1}],
                       time={"stop": "2 h", "step": "10 min"}))
    results = _results(ds)
    normalization = results["normalization[drug]"]
    assert "declared 1000 mg, represented at t0 1000 mg" in normalization.detail
    assert "1 g" not in normalization.detail
    assert "scale 1000 mg" in results["mass_balance[drug]"].detail


def test_a_diffusion_runs_details_use_its_written_unit_and_pretty_spellings() -> None:
    ds = run(_scenario("dye_tissue_slab.yaml",  # amount: 1 umol/cm^2
                       time={"stop": "1 min", "step": "1 s", "output_every": "30 s"}))
    results = _results(ds)
    # 1 µmol/cm² = 0.01 mol/m², the canonical unit the numbers keep
    assert "declared 1 µmol/cm²" in results["normalization[solute]"].detail
    assert results["normalization[solute]"].units == "mol/m**2"
    assert "scale 1 µmol/cm²" in results["mass_balance[solute]"].detail
    nonneg = results["nonnegativity[concentration]"].detail
    assert "**" not in nonneg and "mol/m³" in nonneg


def test_amount_and_difference_follow_a_given_display_unit() -> None:
    assert amount(2.53, "mol") == "2.53 mol"
    assert amount(2.53, "mol", "mmol") == "2530 mmol"
    text = difference_in_words(1.001, 1.0, "g", 1e-4, "mg")
    assert text.startswith("differs by 1 mg") and "0.1 mg allowed" in text
