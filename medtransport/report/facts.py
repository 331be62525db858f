"""What the report needs of the model, recorded with the result when the run ends.

A report made later from the file (``medtransport report RESULT``) reads these facts instead
of rebuilding the model: reading a result never builds its model, reads the inputs its
scenario names, or runs a scenario nested in it. The attribute ``report_model`` holds JSON::

    {"answers": [[question, answer], ...],   # the rows of ``medtransport explain``
     "answers_note": "",                     # why there are none, if so
     "display_units": {name: unit},          # the model class's customary units
     "ledger_units": {species: unit},
     "conserved": [[species, state variable, dimension], ...]}

Results written before this attribute existed are reported without the five answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtransport.model import Model

__all__ = ["ATTRIBUTE", "NOT_RECORDED", "RecordedModel", "explain_rows", "for_population",
           "model_facts", "read_facts"]

ATTRIBUTE = "report_model"

NOT_RECORDED = ("the five answers are not shown: this result was written before results "
                "recorded them, and a report made from a file never rebuilds the model (that "
                "would read the inputs its scenario names); run the scenario again, or "
                "`medtransport explain SCENARIO`")


def explain_rows(model: Model) -> tuple[list[tuple[str, str]], str]:
    """The rows of ``medtransport explain`` for ``model``, or none and why."""
    try:
        from medtransport.explain import explain

        table = explain(model)
        questions = [str(c) for c in table.columns[0].cells]
        answers = [str(c) for c in table.columns[1].cells]
        return list(zip(questions, answers, strict=True)), ""
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin's explain must not cost the run its result
        from medtransport.isolation import describe

        return [], f"the five answers could not be computed: {describe(exc)[:300]}"


def model_facts(model: Model) -> str:
    """The ``report_model`` attribute's JSON for a model that has just run."""
    answers, note = explain_rows(model)
    try:
        ledger_units = {str(k): str(v) for k, v in dict(model.ledger_units()).items()}
    except Exception:
        ledger_units = {}
    declared = getattr(model, "display_units", None) or {}
    try:
        conserved = [[str(s.name), str(s.variable), str(s.dimension)] for s in model.conserved]
    except Exception:
        conserved = []
    return json.dumps({"answers": [list(row) for row in answers], "answers_note": note,
                       "display_units": {str(k): str(v) for k, v in dict(declared).items()},
                       "ledger_units": ledger_units, "conserved": conserved})


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def read_facts(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorded facts of a result's attributes (plain strings only: a forged file
    gets its text shown, escaped, and nothing else); None when the result has none."""
    text = attrs.get(ATTRIBUTE)
    if text is None:
        return None
    try:
        data = json.loads(str(text))
    except ValueError:
        return {"answers": [], "answers_note": f"the recorded five answers (attribute "
                f"{ATTRIBUTE!r}) are not readable JSON", "display_units": {},
                "ledger_units": {}}
    if not isinstance(data, Mapping):
        data = {}
    rows = data.get("answers")
    answers = [(str(r[0]), str(r[1])) for r in rows
               if isinstance(r, list | tuple) and len(r) == 2] if isinstance(rows, list) else []
    species = data.get("conserved")
    conserved = [tuple(str(x) for x in s) for s in species
                 if isinstance(s, list | tuple) and len(s) == 3] if isinstance(species, list) \
        else []
    return {"answers": answers, "answers_note": str(data.get("answers_note") or ""),
            "display_units": _strings(data.get("display_units")),
            "ledger_units": _strings(data.get("ledger_units")), "conserved": conserved}


def for_population(text: Any, size: int) -> str:
    """The facts a population store keeps: those of the one-patient probe the store was laid
    out from, without its five answers (they would describe one patient, not ``size``)."""
    facts = read_facts({ATTRIBUTE: text}) if text is not None else None
    facts = facts or {"display_units": {}, "ledger_units": {}, "conserved": []}
    facts["answers"] = []
    facts["answers_note"] = (f"the five answers are not shown: this population store of {size} "
                             "patients records none (its runs are chunks of patients); "
                             "`medtransport explain SCENARIO` gives them for the population")
    facts["conserved"] = [list(c) for c in facts.get("conserved") or []]
    return json.dumps(facts)


class _Scenario(dict[str, Any]):
    """The recorded scenario (a mapping) with the ``name`` the default plot titles with."""

    @property
    def name(self) -> str:
        return str(self.get("name", ""))


class RecordedModel:
    """What the default plot (:func:`medtransport.plotting.default_plot`) asks of a model,
    from a result's recorded facts: its conserved species, display units and scenario. It
    runs nothing and reads nothing."""

    def __init__(self, facts: Mapping[str, Any], scenario: Mapping[str, Any],
                 attrs: Mapping[str, Any]) -> None:
        from types import SimpleNamespace

        self.conserved = [SimpleNamespace(name=n, variable=v, dimension=d)
                          for n, v, d in facts.get("conserved") or []]
        self.display_units = dict(facts.get("display_units") or {})
        self.scenario = _Scenario(scenario)
        self.id = str(attrs.get("model_id") or scenario.get("model", ""))
        self.title = str(attrs.get("model_title", ""))
        self.version = str(attrs.get("model_version", ""))
