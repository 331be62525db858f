"""The conservation ledger: what a model claims entered, left and was made or destroyed.

Per conserved species, over the time coordinate, cumulative amounts since the start:

    residual(t) = stored(t) − (initial + inflow(t) + source(t) − outflow(t) − sink(t))

``stored`` is never taken from the model: the framework recomputes it from the returned states
with the domain's quadrature (:meth:`medtransport.domain.Domain.integrate`), plus the amount a
species keeps beyond the domain's cells when it declares one (:attr:`Species.outside`).
``initial`` is the amount the model *declares* before it runs (from the scenario: a dose, an
initial field), so a unit slip in the initial state shows up both in the normalization audit
and here.

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
    ``dimension`` says in words what the amount is (``"amount of drug"``). ``outside``
    optionally names a per-time data variable holding the amount kept beyond the domain's cells
    (a histogram's paths past its last cell): it is part of what is stored, not a flow, since
    it can come back — stored = Σ w·u + outside.
    """

    name: str
    variable: str
    dimension: str
    description: str = ""
    capacity: str | None = None
    outside: str | None = None


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

    def total(self, term: str, n_times: int, *, new: bool = True) -> np.ndarray:
        """The sum over routes of one term (zeros when the model claims none): shape (T,), or
        (T, P) when any route is given per patient. ``new=False``: a lone route may be
        returned itself rather than copied (for a caller that keeps it read-only)."""
        out = self._sum(term, n_times, new=new)
        if out is None:
            return np.zeros(n_times)
        return out[:, 0] if out.shape[1] == 1 else out

    def _sum(self, term: str, n_times: int, *, new: bool = True) -> np.ndarray | None:
        """Σ routes of ``term`` as a (T, 1) or (T, P) array, or None without routes: a new
        array, or with ``new=False`` possibly a route itself (for a caller that only reads)."""
        routes = []
        for name, values in getattr(self, term).items():
            if values.ndim not in (1, 2) or values.shape[0] != n_times:
                raise ValueError(f"ledger {self.species}.{term}.{name} has shape {values.shape}, "
                                 f"expected ({n_times},) or ({n_times}, patients) — one value "
                                 "per output time")
            routes.append(values.reshape(n_times, -1))
        if not routes:
            return None
        if len(routes) == 1:
            # in its own memory order; a reader needs no copy of a batch's (T, P) route
            return routes[0].copy(order="K") if new else routes[0]
        # the first two added into a new array (one pass, the bits of copy-then-add), the
        # others into it
        out = np.add(routes[0], routes[1])
        for route in routes[2:]:
            out = _accumulate(out, route, 1.0)
        return out

    def signed_terms(self, n_times: int) -> list[tuple[np.ndarray, float]]:
        """(Σ routes, ±1) of each term with routes, in the order the expected amount adds
        them — inflow, source, outflow, sink; each (T, 1) or (T, P), possibly a route itself
        (read only)."""
        return [(total, sign) for term, sign in (("inflow", 1.0), ("source", 1.0),
                                                 ("outflow", -1.0), ("sink", -1.0))
                if (total := self._sum(term, n_times, new=False)) is not None]

    def expected_stored(self, initial: float | np.ndarray, n_times: int) -> np.ndarray:
        """initial + inflow + source − outflow − sink: (T,) or (T, P)."""
        init = np.reshape(np.asarray(initial, dtype=float), (1, -1))
        signed = self.signed_terms(n_times)
        shape = np.broadcast_shapes((n_times, 1), init.shape, *(t.shape for t, _ in signed))
        # laid out like a per-patient term when there is one (a solver's patient-major output)
        like = next((t for t, _ in signed if t.shape == shape), None)
        out = np.empty(shape) if like is None else np.empty_like(like)
        if signed and signed[0][0].shape == shape:
            # initial ± the first term straight into ``out`` (the bits of filling it with
            # initial first, one pass fewer)
            (np.add if signed[0][1] > 0 else np.subtract)(init, signed[0][0], out=out)
            signed = signed[1:]
        else:
            out[...] = init
        for total, sign in signed:
            out = _accumulate(out, total, sign)
        return out[:, 0] if out.shape[1] == 1 else out


def _accumulate(acc: np.ndarray, term: np.ndarray, sign: float) -> np.ndarray:
    """acc ± term: into ``acc`` (a new array the caller owns) when the shapes allow, else a new
    array. In place, a batch's books cost one pass per route instead of a fresh array each."""
    if np.broadcast_shapes(acc.shape, term.shape) != acc.shape:
        return acc + term if sign > 0 else acc - term
    (np.add if sign > 0 else np.subtract)(acc, term, out=acc)
    return acc
