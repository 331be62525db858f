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
    """Routes as float arrays over time, (T,) or (T, P) for a batch of patients."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        value = {"total": value}
    out = {}
    for k, v in value.items():
        a = np.asarray(v, dtype=float)
        out[str(k)] = a.reshape(-1) if a.ndim <= 1 or a.shape[1:] == (1,) else a
    return out


@dataclass
class Ledger:
    """Cumulative flows a model claims for one species, in ``units`` (an amount unit).

    Each term is an array over the output times — (T,), or (T, P) for a batch of P patients —
    or a mapping route → array (``outflow`` by boundary face, ``sink`` by process), so an
    auditor can see where things went.
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
        """The sum over routes of one term (zeros when the model claims none): shape (T,), or
        (T, P) when any route is given per patient."""
        routes = getattr(self, term)
        out: np.ndarray = np.zeros((n_times, 1))
        for name, values in routes.items():
            if values.ndim not in (1, 2) or values.shape[0] != n_times:
                raise ValueError(f"ledger {self.species}.{term}.{name} has shape {values.shape}, "
                                 f"expected ({n_times},) or ({n_times}, patients) — one value "
                                 "per output time")
            out = out + values.reshape(n_times, -1)
        return out[:, 0] if out.shape[1] == 1 else out

    def expected_stored(self, initial: float | np.ndarray, n_times: int) -> np.ndarray:
        """initial + inflow + source − outflow − sink: (T,) or (T, P)."""
        terms = [self.total(t, n_times).reshape(n_times, -1)
                 for t in ("inflow", "source", "outflow", "sink")]
        out = np.reshape(initial, (1, -1)) + terms[0] + terms[1] - terms[2] - terms[3]
        return out[:, 0] if out.shape[1] == 1 else out
