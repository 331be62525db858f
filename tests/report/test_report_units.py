"""The report's audit table spells units as the CLI's table does (mol/m³, not mol/m**3)."""

from __future__ import annotations

from medtransport.audit.report import AuditReport, AuditResult
from medtransport.report.content import _audit_rows


def test_the_units_column_is_spelled_for_people() -> None:
    report = AuditReport([
        AuditResult("nonnegativity[concentration]", True, 0.0, -5e-8, "mol/m**3"),
        AuditResult("mass_balance[solute]", True, 1e-14, 1e-11, "mol/m**2"),
        AuditResult("units", True, 0.0, 0.0, "dimensionless"),
    ])
    rows = _audit_rows(report, None)
    assert [r.units for r in rows] == ["mol/m³", "mol/m²", ""]
    # the numbers stay those of the canonical unit
    assert rows[0].tolerance == -5e-8


def test_a_boundarys_description_spells_its_units_for_people() -> None:
    from medtransport.boundary import BoundaryCondition

    robin = BoundaryCondition("x+", "robin", value=0.0, coefficient=1e-6,
                              field_units="mol/m**3", flux_units="mol/m**2/s")
    text = robin.describe()
    assert "ambient 0 mol/m³" in text and "**" not in text
    held = BoundaryCondition("x-", "dirichlet", value=2.0, field_units="mol/m**3")
    assert held.describe() == "held at 2 mol/m³"
