"""The error classes of medtransport.

One base class, :class:`MedtransportError`; every error the package raises on purpose derives
from it, so a caller (and the CLI) can tell a user's mistake from a bug.
"""

from __future__ import annotations

from typing import Any


class MedtransportError(Exception):
    """Base class of every error medtransport raises on purpose."""


class ScenarioError(MedtransportError, ValueError):
    """Bad input: the message names the field path and what was expected.

    ``problems`` holds ``(field_path, message)`` pairs, one per problem found.
    """

    def __init__(self, problems: list[tuple[str, str]] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = problems
        self.source = source
        lines = [f"{path}: {msg}" if path else msg for path, msg in problems]
        head = f"invalid scenario {source}" if source else "invalid scenario"
        if len(lines) == 1:
            super().__init__(f"{head}: {lines[0]}")
        else:
            super().__init__(head + ":\n" + "\n".join(f"  - {line}" for line in lines))


class UnitError(MedtransportError, ValueError):
    """A quantity with the wrong dimension or an unparseable unit."""


class PluginError(MedtransportError):
    """A plugin failed to load, registered a malformed model, or raised inside a hook."""


class ModelError(MedtransportError):
    """A model failed while simulating; the message names the model and its plugin."""


class AuditFailure(MedtransportError):
    """A result whose books do not balance.

    Carries the full audit ``report`` and the raw ``dataset`` (marked ``audit_status =
    "failed"`` in its attributes) so that an auditor can see why. It is never returned as a
    normal result.
    """

    def __init__(self, message: str, report: Any = None, dataset: Any = None):
        super().__init__(message)
        self.report = report
        self.dataset = dataset
