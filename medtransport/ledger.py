"""The conservation ledger: what a model claims entered, left and was made or destroyed.

Per conserved species, over the time coordinate, cumulative amounts since the start:

    residual(t) = stored(t) − (initial + inflow(t) + source(t) − outflow(t) − sink(t))

``stored`` is never taken from the model: the framework recomputes it from the returned states
with the domain's quadrature (:meth:`medtransport.domain.Domain.integrate`). ``initial`` is the
amount the model *declares* before it runs (from the scenario: a dose, an initial field), so a
unit slip in the initial state shows up both in the normalization audit and here.

The audit passes when ``max |residual| ≤ atol + rtol · scale``, ``scale`` being the largest
amount the ledger saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Ledger", "Species"]


@dataclass(frozen=True)
class Species:
    """A conserved quantity a model counts.

    ``variable`` is the state (data variable) holding its density; ``capacity`` optionally names
    a per-place data variable multiplied in before integrating (ρc for thermal energy).
    ``dimension`` says in words what the amount is (``"amount of drug"``).
    """

    name: str
    variable: str
    dimension: str
    description: str = ""
    capacity: str | None = None


def _as_terms(value: np.ndarray | dict[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): np.asarray(v, dtype=float).reshape(-1) for k, v in value.items()}
    return {"total": np.asarray(value, dtype=float).reshape(-1)}


@dataclass
class Ledger:
    """Cumulative flows a model claims for one species, in ``units`` (an amount unit).

    Each term is an array over the output times, or a mapping route → array (``outflow`` by
    boundary face, ``sink`` by process), so an auditor can see where things went.
    """

    species: str
    units: str
    inflow: dict[str, np.ndarray] = field(default_factory=dict)
    outflow: dict[str, np.ndarray] = field(default_factory=dict)
    sink: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, species: str, units: str, n_times: int, *,
           inflow: np.ndarray | dict[str, np.ndarray] | None = None,
           outflow: np.ndarray | dict[str, np.ndarray] | None = None,
           sink: np.ndarray | dict[str, np.ndarray] | None = None,
           source: np.ndarray | dict[str, np.ndarray] | None = None) -> Ledger:
        return cls(species, units, _as_terms(inflow, n_times), _as_terms(outflow, n_times),
                   _as_terms(sink, n_times), _as_terms(source, n_times))

    def total(self, term: str, n_times: int) -> np.ndarray:
        """The sum over routes of one term (zeros when the model claims none)."""
        routes = getattr(self, term)
        out = np.zeros(n_times)
        for name, values in routes.items():
            if values.shape != (n_times,):
                raise ValueError(f"ledger {self.species}.{term}.{name} has shape {values.shape}, "
                                 f"expected ({n_times},) — one value per output time")
            out = out + values
        return out

    def expected_stored(self, initial: float, n_times: int) -> np.ndarray:
        return (initial + self.total("inflow", n_times) + self.total("source", n_times)
                - self.total("outflow", n_times) - self.total("sink", n_times))
