"""The estimation problem: data, a batched prediction function and the statistical model.

Subject i has individual parameters (log-normal inter-individual variability, NONMEM's
exponential model, Sheiner & Beal 1980)

    φ_ij = θ_j · c_ij · exp(η_ij),       η_i ~ N(0, Ω),

where θ are the typical values (fixed effects), c_ij a known covariate factor (1 without
covariates) and η_ij = 0 for parameters without variability. Its observations y_ik at records k
scatter about the model's prediction f_ik(φ_i) by the residual error model
(:mod:`medtransport.estimation.residual`).

The problem is generic: ``predict(phi, subjects)`` takes the individual parameters of some
subjects (rows of ``phi``, natural scale, the subjects' indices in ``subjects``) and returns
their predictions at every one of their records, ``(len(subjects), n_records)``, padded with
anything where ``observed`` is False. One call is one batched, audited solve of all those
subjects; the estimators only ever call it with whole batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medtransport.errors import ScenarioError
from medtransport.estimation.residual import ResidualError

__all__ = ["Predict", "Problem"]

FloatArray = NDArray[np.float64]
#: ``predict(phi, subjects) -> predictions`` (see the module docstring)
Predict = Callable[[FloatArray, NDArray[np.int64]], FloatArray]


@dataclass(frozen=True)
class Problem:
    """Everything an estimator needs; plain float64 arrays in consistent units.

    ``dv`` and ``observed`` are ``(n_subjects, n_records)``; ``omega`` is over
    ``eta_names`` (a subset of ``parameter_names``). ``blq``/``lloq`` (same shape) mark records
    below the limit of quantification, fitted with the M3 likelihood.
    """

    predict: Predict
    dv: FloatArray
    observed: NDArray[np.bool_]
    parameter_names: tuple[str, ...]
    theta: FloatArray
    eta_names: tuple[str, ...]
    omega: FloatArray
    residual: ResidualError
    subject_ids: NDArray[Any] | None = None
    covariate_factor: FloatArray | None = None
    blq: NDArray[np.bool_] | None = None
    lloq: FloatArray | None = None
    #: units of the parameters (for results), and of DV
    parameter_units: dict[str, str] = field(default_factory=dict)
    #: the record times (n_subjects, n_records), for diagnostics; optional
    time: FloatArray | None = None

    def __post_init__(self) -> None:
        shape = self.dv.shape
        if self.observed.shape != shape:
            raise ValueError(f"observed has shape {self.observed.shape}, dv {shape}")
        unknown = [n for n in self.eta_names if n not in self.parameter_names]
        if unknown:
            raise ScenarioError([("population.variability", f"{unknown} are not parameters "
                                  f"of this model; expected some of {list(self.parameter_names)}")])
        n_eta = len(self.eta_names)
        if self.omega.shape != (n_eta, n_eta):
            raise ValueError(f"omega must be {n_eta}×{n_eta}, got {self.omega.shape}")
        if self.theta.shape != (len(self.parameter_names),):
            raise ValueError("theta must have one value per parameter")
        counted = self.observed | (self.blq if self.blq is not None else False)
        empty = np.flatnonzero(~counted.any(axis=1))
        if empty.size:
            ids = self.ids[empty]
            raise ScenarioError(
                f"subject ID {ids[0]} has no observations ({empty.size} such subject(s)): its "
                "MAP estimate would be the prior (η = 0, the typical values) and it adds "
                "nothing to a fit; remove it or give it levels")
        self.residual.check_observations(
            self.dv[self.observed],
            where=lambda i: self._where_flat(i))

    def _where_flat(self, i: int) -> str:
        s, k = np.argwhere(self.observed)[i]
        when = f", TIME {self.time[s, k]:g} h" if self.time is not None else ""
        return f"subject ID {self.ids[s]} (record {k + 1}{when})"

    # ------------------------------------------------------------------ sizes and indices

    @property
    def n_subjects(self) -> int:
        return int(self.dv.shape[0])

    @property
    def ids(self) -> NDArray[Any]:
        return (np.asarray(self.subject_ids) if self.subject_ids is not None
                else np.arange(1, self.n_subjects + 1))

    @property
    def eta_index(self) -> NDArray[np.int64]:
        """Column of each η among the parameters."""
        return np.array([self.parameter_names.index(n) for n in self.eta_names], dtype=np.int64)

    @property
    def n_observations(self) -> int:
        """Records that enter the likelihood (observed or below the limit)."""
        return int(self.counted.sum())

    @property
    def counted(self) -> NDArray[np.bool_]:
        return self.observed | (self.blq if self.blq is not None else np.zeros_like(self.observed))

    # ------------------------------------------------------------------ parameters

    def typical(self, theta: FloatArray | None = None,
                subjects: NDArray[np.int64] | None = None) -> FloatArray:
        """θ_j·c_ij for the given subjects (all by default), ``(n, n_parameters)``."""
        theta = self.theta if theta is None else theta
        sel = np.arange(self.n_subjects) if subjects is None else subjects
        factor = (self.covariate_factor[sel] if self.covariate_factor is not None
                  else np.ones((sel.size, theta.size)))
        return theta[None, :] * factor

    def individual(self, eta: FloatArray, theta: FloatArray | None = None,
                   subjects: NDArray[np.int64] | None = None) -> FloatArray:
        """φ = θ·c·exp(η) for the given subjects; ``eta`` is ``(n, n_eta)``."""
        phi = self.typical(theta, subjects)
        phi[:, self.eta_index] *= np.exp(eta)
        return phi

    def with_population(self, theta: FloatArray | None = None, omega: FloatArray | None = None,
                        residual: ResidualError | None = None) -> Problem:
        """The same data and model with other population parameters (no re-validation)."""
        out = object.__new__(Problem)
        object.__setattr__(out, "__dict__", dict(self.__dict__))
        updates = {k: v for k, v in (("theta", theta), ("omega", omega),
                                     ("residual", residual)) if v is not None}
        out.__dict__.update(updates)
        return out

    def subset(self, subjects: Sequence[int]) -> Problem:
        """A problem of some subjects only (indices into this one)."""
        sel = np.asarray(subjects, dtype=np.int64)
        parent = self.predict

        def predict(phi: FloatArray, idx: NDArray[np.int64]) -> FloatArray:
            return parent(phi, sel[idx])

        def pick(a: Any) -> Any:
            return None if a is None else np.asarray(a)[sel]

        return replace(self, predict=predict, dv=self.dv[sel], observed=self.observed[sel],
                       subject_ids=self.ids[sel], covariate_factor=pick(self.covariate_factor),
                       blq=pick(self.blq), lloq=pick(self.lloq), time=pick(self.time))
