"""Audits: independent checks of a model's declarations against the numbers it returns.

Before the run: :mod:`~medtransport.audit.stability` (margins such as FTCS r ≤ 1/(2d)) and
:mod:`~medtransport.audit.truncation` (series terms and tail bounds). After the run:
:mod:`~medtransport.audit.mass_balance`, :mod:`~medtransport.audit.normalization`,
:mod:`~medtransport.audit.finiteness`, :mod:`~medtransport.audit.nonnegativity` and
:mod:`~medtransport.audit.units`, then the model's and the plugins' own audits. One file each.
"""

from medtransport.audit.report import AuditContext, AuditReport, AuditResult
from medtransport.audit.stability import StabilityMargin

__all__ = ["AuditContext", "AuditReport", "AuditResult", "StabilityMargin"]
