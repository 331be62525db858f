"""A NONMEM-style record table: the one form every dosing and sampling history takes.

Whether it was read from a data set (``data:`` in a scenario) or written as YAML ``events``, a
subject's history is a table of records in NONMEM's sense, one row per record, in the order of
the data set:

=====  ==========================================================================
ID     subject identifier (integer)
TIME   time of the record, hours
EVID   0 observation, 1 dose, 2 other (output or covariate change), 3 reset, 4 reset and dose
AMT    dose amount in the table's ``amount_unit`` (absolute: mg/kg doses already scaled)
CMT    compartment number as NONMEM's ADVANs count them (1-based); 0 = the model's default
RATE   0 bolus; > 0 infusion rate (``amount_unit`` per hour); −1 modelled rate; −2 modelled
       duration
II     interdose interval, hours (0 when absent)
ADDL   number of additional doses every II after this one
SS     0 none; 1 reset then steady state of this regimen; 2 steady state added to the state
MDV    1 when the record's DV is not an observation
DV     observed value in ``dv_unit`` (NaN where missing)
=====  ==========================================================================

Times, amounts and rates are plain float64 arrays in the canonical units named here; the table
carries those unit names so nothing downstream has to guess. ``row`` keeps the 1-based line of
the source file for every record so any later check can name it
(``data row 17 (ID 3, TIME 24 h): …``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RecordTable"]


@dataclass(frozen=True)
class RecordTable:
    """Records of one or more subjects, columns as 1-D arrays of equal length."""

    id: np.ndarray  # int64
    time: np.ndarray  # float64, h
    evid: np.ndarray  # int64
    amt: np.ndarray  # float64, amount_unit
    cmt: np.ndarray  # int64, 1-based NONMEM numbering, 0 = default compartment
    rate: np.ndarray  # float64, amount_unit/h, or −1 / −2
    ii: np.ndarray  # float64, h
    addl: np.ndarray  # int64
    ss: np.ndarray  # int64
    mdv: np.ndarray  # int64
    dv: np.ndarray  # float64, dv_unit
    row: np.ndarray  # int64, line of the source (1-based)
    amount_unit: str = "mg"
    dv_unit: str | None = None
    #: observed covariates per record, each converted to ``covariate_units[name]``
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    covariate_units: dict[str, str] = field(default_factory=dict)
    #: where the records came from, for messages: a file name or ``"events"``
    source: str = "events"
    #: covariate name → the data set's column it was read from (for messages)
    columns: dict[str, str] = field(default_factory=dict)
    #: the CMT numbering of ``cmt`` (number → compartment name), when the reader knew the model
    compartments: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time.size)

    def individuals(self) -> np.ndarray:
        """Each record's individual, 0, 1, 2 … in the table's order. As in NONMEM, a new
        individual starts whenever ID changes from the previous record, so an ID that comes
        back after other IDs is a new individual (it keeps its ID value)."""
        new = np.ones(self.id.size, bool)
        new[1:] = self.id[1:] != self.id[:-1]
        return (np.cumsum(new) - 1).astype(np.int64)

    def subjects(self) -> np.ndarray:
        """The ID of each individual (:meth:`individuals`), in order; an ID that comes back
        later in the table appears again."""
        new = np.ones(self.id.size, bool)
        new[1:] = self.id[1:] != self.id[:-1]
        return self.id[new]

    def covariate(self, name: str) -> tuple[np.ndarray, str]:
        """A covariate the model uses: its values per record and its unit. Refuses (naming the
        column) one that is absent or was given without a unit."""
        from medtransport.errors import ScenarioError

        column = self.columns.get(name, name)
        if name not in self.covariates:
            known = ", ".join(sorted(self.covariates)) or "none"
            raise ScenarioError([("data.covariates", f"the model needs the covariate {name!r}; "
                                                     f"map a column to it (covariates read: "
                                                     f"{known})")])
        if name not in self.covariate_units:
            raise ScenarioError([(f"data.units.{column}", f"column {column} is used as the "
                                                          f"covariate {name} but has no unit; "
                                                          f"give data.units.{column}")])
        return self.covariates[name], self.covariate_units[name]

    def where(self, i: int) -> str:
        """How a message names record ``i``: ``data row 17 (ID 3, TIME 24 h)``."""
        kind = "data row" if self.source != "events" else "record"
        return f"{kind} {int(self.row[i])} (ID {int(self.id[i])}, TIME {self.time[i]:g} h)"
