"""The audit report: one self-contained HTML page an auditor opens to see whether a model's
books balance.

    medtransport report RESULT.nc -o report.html
    medtransport run SCENARIO --report report.html     (also for a run the audits refuse)

It shows the scenario, patient, model and package versions and seed; the five answers; every
audit with its measured value, tolerance, verdict and — for a failure — where in time and space
it failed; the ledger over time with the residual on its own scale; the model family's plot;
and for a population, percentile bands and a per-block audit summary.
"""

from __future__ import annotations

from medtransport.report.build import (
    population_report,
    render_report,
    report_from_failure,
    report_from_file,
    scenario_source,
    write_report,
)

__all__ = ["population_report", "render_report", "report_from_failure", "report_from_file",
           "scenario_source", "write_report"]
