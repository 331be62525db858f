"""FOCE with interaction: the population objective, its minimisation and the covariance step.

At each subject's conditional mode η̂_i (:mod:`medtransport.estimation.map`), with the
predictions linearised in η (J_i = ∂f/∂η at η̂_i) and the residual variance V evaluated at the
individual prediction (interaction), the first-order conditional estimate of −2 ln L_i is
(Wang 2007, J Pharmacokinet Pharmacodyn 34:575, the FOCE-I form; NONMEM's OFV convention,
without the constant N·ln 2π):

    OFV_i = Σ_k [ln V_k + (T(y_k) − T(f_k))²/V_k] + η̂ᵀΩ⁻¹η̂ + ln|Ω| + ln|Ω⁻¹ + Σ_k w_k J_kᵀJ_k|

with w_k = T′(f_k)²/V_k (and, for an M3 record, half its expected curvature). OFV = Σ_i OFV_i.

Estimation minimises OFV over ψ = (ln θ, ln ω, ln σ) of the items being estimated (so that
every parameter stays positive) — or, when the given Ω has correlations (a block), over the
Cholesky factor of the whole Ω (ln of its diagonal, its lower triangle as is) so that every
step gives a positive-definite Ω — by BFGS with finite-difference gradients; each evaluation
re-solves every subject's mode, warm-started at the last one.

The covariance step (NONMEM's $COV): R = ∂²OFV/∂ψ², S = Σ_i ∇OFV_i ∇OFV_iᵀ (central
differences), and Cov(ψ̂) = R⁻¹SR⁻¹ — the sandwich, since R is twice and S four times the
information in −ln L's scale. When S is singular (fewer subjects than parameters) NONMEM's
alternative is used, Cov = 2R⁻¹. The estimates' SEs follow by the delta method, J·Cov·Jᵀ with
J = ∂(θ, Ω entries, σ)/∂ψ (e.g. SE(θ) = θ·SE(ln θ), SE(ω²) = 2ω²·SE(ln ω)); RSE = SE/estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from medtransport.estimation.map import MapResult, estimate_map, record_terms
from medtransport.estimation.problem import Problem

__all__ = ["CovarianceStep", "FoceResult", "estimate_foce", "foce_objective"]

#: R counts as singular when its smallest eigenvalue is below this fraction of its largest
R_RCOND = 1e-7

FloatArray = NDArray[np.float64]


def foce_objective(problem: Problem, modes: MapResult) -> FloatArray:
    """OFV_i of every subject at the conditional modes ``modes`` (see the module docstring)."""
    dv = np.where(problem.observed, problem.dv, np.nan)
    f = modes.ipred
    g, _, c = record_terms(problem.residual, dv, f, problem.counted, problem.blq, problem.lloq)
    var = problem.residual.variance(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        dtf = 1.0 / f if problem.residual.log_scale else np.ones_like(f)
        w = np.where(problem.counted, dtf ** 2 / var, 0.0)
    if problem.blq is not None:
        w = np.where(problem.blq, 0.5 * c, w)
    info = np.einsum("nkq,nk,nkr->nqr", modes.jacobian, w, modes.jacobian)
    omega = problem.omega
    omega_inv = np.linalg.inv(omega)
    prior = np.einsum("ni,ij,nj->n", modes.eta, omega_inv, modes.eta)
    # ln|Ω| + ln|Ω⁻¹ + I_i| = ln|I + Ω·I_i|, which needs no inverse of a near-singular Ω
    _, logdet = np.linalg.slogdet(np.eye(len(omega))[None] + omega[None] @ info)
    return g.sum(axis=1) + prior + logdet


@dataclass
class Parametrisation:
    """Which items are estimated, and the map ψ ↔ (θ, Ω, σ).

    Diagonal mode: ψ holds ln ω of the free η (their correlations stay as given). Block mode
    (``block``, when the given Ω has correlations and all of it is estimated): ψ holds the
    Cholesky factor L of Ω = L·Lᵀ, ln L_ii on the diagonal and L_ij below it, so that every
    ψ gives a positive-definite Ω."""

    problem: Problem
    theta_free: NDArray[np.int64]
    omega_free: NDArray[np.int64]
    sigma_free: NDArray[np.int64]
    block: bool = False
    correlation: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        sd = np.sqrt(np.diag(self.problem.omega))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.correlation = np.nan_to_num(self.problem.omega / np.outer(sd, sd))
        np.fill_diagonal(self.correlation, 1.0)

    def _pairs(self) -> list[tuple[int, int]]:
        q = len(self.problem.eta_names)
        return [(i, j) for i in range(q) for j in range(i + 1)]

    @property
    def n_omega(self) -> int:
        return len(self._pairs()) if self.block else len(self.omega_free)

    @property
    def names(self) -> list[str]:
        """``theta:<parameter>``, ``omega2:<η>`` (the variance ω², as NONMEM's $OMEGA),
        ``omega:<η>,<η>`` (a covariance, block mode) and ``sigma:<kind>`` (residual SD)."""
        p = self.problem
        eta = p.eta_names
        omega = ([f"omega2:{eta[i]}" if i == j else f"omega:{eta[i]},{eta[j]}"
                  for i, j in self._pairs()] if self.block
                 else [f"omega2:{eta[i]}" for i in self.omega_free])
        return ([f"theta:{p.parameter_names[i]}" for i in self.theta_free] + omega
                + [f"sigma:{p.residual.names[i]}" for i in self.sigma_free])

    def pack(self, problem: Problem) -> FloatArray:
        if self.block:
            chol = np.linalg.cholesky(problem.omega)
            omega = np.array([np.log(chol[i, i]) if i == j else chol[i, j]
                              for i, j in self._pairs()])
        else:
            omega = np.log(np.sqrt(np.diag(problem.omega))[self.omega_free])
        return np.concatenate([np.log(problem.theta[self.theta_free]), omega,
                               np.log(problem.residual.values[self.sigma_free])])

    def unpack(self, psi: FloatArray) -> Problem:
        p = self.problem
        a, b = len(self.theta_free), self.n_omega
        theta = p.theta.copy()
        theta[self.theta_free] = np.exp(np.clip(psi[:a], -700, 700))
        if self.block:
            q = len(p.eta_names)
            chol = np.zeros((q, q))
            for (i, j), value in zip(self._pairs(), psi[a:a + b], strict=True):
                chol[i, j] = np.exp(np.clip(value, -700, 700)) if i == j else value
            omega = chol @ chol.T
        else:
            sd = np.sqrt(np.diag(p.omega)).copy()
            sd[self.omega_free] = np.exp(np.clip(psi[a:a + b], -700, 700))
            omega = self.correlation * np.outer(sd, sd)
        sigma = p.residual.values.copy()
        sigma[self.sigma_free] = np.exp(np.clip(psi[a + b:], -700, 700))
        return p.with_population(theta=theta, omega=omega,
                                 residual=p.residual.with_values(sigma))

    def natural(self, psi: FloatArray) -> FloatArray:
        """θ, the Ω entries named by :attr:`names` (variances, covariances) and σ."""
        q = self.unpack(psi)
        omega = ([q.omega[i, j] for i, j in self._pairs()] if self.block
                 else list(np.diag(q.omega)[self.omega_free]))
        return np.concatenate([q.theta[self.theta_free], np.asarray(omega, dtype=float),
                               q.residual.values[self.sigma_free]])


@dataclass
class CovarianceStep:
    """The covariance step's outcome on ψ (ln scale) and on the natural scale."""

    succeeded: bool
    method: str                      # "sandwich" (R⁻¹SR⁻¹), "R" (2R⁻¹) or "" when failed
    message: str
    names: list[str]
    covariance: FloatArray | None    # of ψ
    estimates: FloatArray            # natural scale: θ, ω², σ
    se: FloatArray | None            # natural scale
    correlation: FloatArray | None
    r_eigenvalues: FloatArray | None = None
    r_matrix: FloatArray | None = None

    @property
    def rse(self) -> FloatArray | None:
        return None if self.se is None else self.se / np.abs(self.estimates)


@dataclass
class FoceResult:
    """A FOCE-I fit: the final problem (estimates in it), modes, OFV and the optimiser's
    record."""

    problem: Problem
    modes: MapResult
    ofv: float
    ofv_per_subject: FloatArray
    initial_ofv: float
    parametrisation: Parametrisation
    optimiser: dict[str, Any]
    covariance: CovarianceStep | None = None


def _evaluate(par: Parametrisation, psi: FloatArray, state: dict[str, Any]
              ) -> tuple[FloatArray, MapResult, Problem]:
    problem = par.unpack(psi)
    # Tight: the OFV depends on η̂ through J (first order), and the covariance step takes
    # second differences of it.
    modes = estimate_map(problem, state.get("eta"), gtol=1e-9, dtol=1e-16)
    ofv_i = foce_objective(problem, modes)
    if np.all(np.isfinite(ofv_i)):
        state["eta"] = modes.eta
    state["calls"] = state.get("calls", 0) + 1
    return ofv_i, modes, problem


def estimate_foce(problem: Problem, *, theta: list[str] | None = None,
                  omega: bool | list[str] = True, sigma: bool = True,
                  evaluate_only: bool = False, max_iter: int = 200, gtol: float = 1e-3,
                  covariance: bool = True) -> FoceResult:
    """Estimate θ (the named parameters; all by default), the ω of the η's and the residual
    SDs by FOCE-I; ``evaluate_only`` gives the OFV at the initial values (MAXEVAL=0)."""
    names = list(problem.parameter_names) if theta is None else list(theta)
    unknown = [n for n in names if n not in problem.parameter_names]
    if unknown:
        from medtransport.errors import ScenarioError
        raise ScenarioError([("estimate.parameters", f"{unknown} are not parameters of this "
                              f"model; expected some of {list(problem.parameter_names)}")])
    omega_names = (list(problem.eta_names) if omega is True
                   else [] if omega is False else list(omega))
    off_diagonal = np.any(problem.omega[~np.eye(len(problem.omega), dtype=bool)] != 0)
    par = Parametrisation(
        problem,
        np.array([problem.parameter_names.index(n) for n in names], dtype=np.int64),
        np.array([problem.eta_names.index(n) for n in omega_names], dtype=np.int64),
        np.arange(len(problem.residual.names)) if sigma else np.zeros(0, dtype=np.int64),
        block=bool(off_diagonal and omega is True))
    state: dict[str, Any] = {}
    psi0 = par.pack(problem)
    ofv0_i, modes0, _ = _evaluate(par, psi0, state)
    ofv0 = float(ofv0_i.sum())
    if evaluate_only or psi0.size == 0:
        result = FoceResult(problem, modes0, ofv0, ofv0_i, ofv0, par,
                            {"evaluate_only": True, "iterations": 0, "success": True,
                             "message": "objective evaluated at the initial values "
                                        "(MAXEVAL=0)", "gradient_norm": float("nan"),
                             "delta_ofv": 0.0, "gradient": np.zeros(0)})
        if covariance and psi0.size:
            result.covariance = covariance_step(par, psi0, state)
        return result

    def fun(psi: FloatArray) -> float:
        ofv_i, _, _ = _evaluate(par, psi, state)
        total = float(ofv_i.sum())
        return total if np.isfinite(total) else 1e300

    history: list[float] = []
    opt = optimize.minimize(fun, psi0, method="BFGS",
                            options={"maxiter": max_iter, "gtol": gtol, "eps": 1e-5},
                            callback=lambda xk: history.append(fun(xk)))
    psi = opt.x
    ofv_i, modes, final = _evaluate(par, psi, state)
    grad = _gradient(par, psi, state)
    delta = float(history[-2] - history[-1]) if len(history) >= 2 else float("nan")
    result = FoceResult(final, modes, float(ofv_i.sum()), ofv_i, ofv0, par,
                        {"evaluate_only": False, "iterations": int(opt.nit),
                         "success": bool(opt.success), "message": str(opt.message),
                         "gradient_norm": float(np.max(np.abs(grad))), "delta_ofv": delta,
                         "gradient": grad,
                         "objective_evaluations": int(state["calls"])})
    if covariance:
        result.covariance = covariance_step(par, psi, state)
    return result


def _gradient(par: Parametrisation, psi: FloatArray, state: dict[str, Any],
              step: float = 1e-4) -> FloatArray:
    """∂OFV/∂ψ by central differences (the convergence audit's own measurement)."""
    out = np.zeros(psi.size)
    for j in range(psi.size):
        e = np.zeros(psi.size)
        e[j] = step
        out[j] = (_evaluate(par, psi + e, state)[0].sum()
                  - _evaluate(par, psi - e, state)[0].sum()) / (2 * step)
    return out


def covariance_step(par: Parametrisation, psi: FloatArray, state: dict[str, Any],
                    step: float = 5e-3) -> CovarianceStep:
    """R, S and Cov(ψ̂) at ``psi``; see the module docstring."""
    p = psi.size
    base = _evaluate(par, psi, state)[0]
    plus, minus = np.zeros((p, base.size)), np.zeros((p, base.size))
    for j in range(p):
        e = np.zeros(p)
        e[j] = step
        plus[j] = _evaluate(par, psi + e, state)[0]
        minus[j] = _evaluate(par, psi - e, state)[0]
    r = np.zeros((p, p))
    for j in range(p):
        r[j, j] = (plus[j].sum() - 2 * base.sum() + minus[j].sum()) / step ** 2
        for k in range(j):
            ej, ek = np.zeros(p), np.zeros(p)
            ej[j], ek[k] = step, step
            pp = _evaluate(par, psi + ej + ek, state)[0].sum()
            mm = _evaluate(par, psi - ej - ek, state)[0].sum()
            # f(x+h_j+h_k) + f(x−h_j−h_k) − f(x+h_j) − f(x−h_j) − f(x+h_k) − f(x−h_k) + 2f(x)
            r[j, k] = r[k, j] = (pp + mm - plus[j].sum() - minus[j].sum() - plus[k].sum()
                                 - minus[k].sum() + 2 * base.sum()) / (2 * step ** 2)
    scores = (plus - minus) / (2 * step)                     # (p, n): ∇OFV_i
    s = scores @ scores.T
    estimates = _natural(par, psi)
    names = par.names
    r = 0.5 * (r + r.T)
    eig = np.linalg.eigvalsh(r)
    # Below this ratio of its eigenvalues R is singular within the finite differences' noise:
    # some combination of the parameters is not determined by the data.
    if not np.all(np.isfinite(r)) or eig[0] <= R_RCOND * abs(eig[-1]):
        return CovarianceStep(False, "", f"R matrix is singular or not positive definite "
                              f"(eigenvalues {eig[0]:.3g} … {eig[-1]:.3g}): the OFV surface is "
                              "flat in some direction or the minimum is a saddle; the model may "
                              "be over-parameterised", names, None, estimates, None, None, eig,
                              r)
    r_inv = np.linalg.inv(r)
    s_eig = np.linalg.eigvalsh(0.5 * (s + s.T))
    if s_eig[0] > 1e-10 * max(s_eig[-1], 1e-300):
        cov, method, msg = r_inv @ s @ r_inv, "sandwich", "R⁻¹SR⁻¹"
    else:
        cov, method = 2.0 * r_inv, "R"
        msg = (f"S matrix is singular ({base.size} subjects for {p} parameters): "
               "Cov = 2R⁻¹ used instead of R⁻¹SR⁻¹")
    jac = _natural_jacobian(par, psi)
    cov_nat = jac @ cov @ jac.T
    se = np.sqrt(np.diag(cov_nat))
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    return CovarianceStep(True, method, msg, names, cov, estimates, se, corr, eig, r)


def _natural(par: Parametrisation, psi: FloatArray) -> FloatArray:
    """θ, Ω entries (variances, as NONMEM's $OMEGA; covariances in block mode) and σ."""
    return par.natural(psi)


def _natural_jacobian(par: Parametrisation, psi: FloatArray) -> FloatArray:
    """d(natural)/dψ by central differences of the (cheap, closed-form) map ψ → natural."""
    step = 1e-6
    cols = []
    for j in range(psi.size):
        e = np.zeros(psi.size)
        e[j] = step
        cols.append((par.natural(psi + e) - par.natural(psi - e)) / (2 * step))
    return np.stack(cols, axis=1)


def audit_fit(result: FoceResult) -> list[Any]:
    """Every audit of a FOCE-I fit: the MAP audits at the final modes, the likelihood's
    normalisation, convergence (unless only evaluated) and the covariance step."""
    from medtransport.estimation.audits import audit_foce, audit_likelihood, audit_map

    out = audit_map(result.problem, result.modes)
    out += audit_likelihood(result.problem.residual, _quantiles(result.modes.ipred))
    cov = result.covariance
    if result.optimiser["evaluate_only"]:
        if cov is not None:
            out += audit_foce(np.zeros(0), None, 0.0, cov.succeeded, cov.message)[1:]
        return out
    out += audit_foce(np.asarray(result.optimiser["gradient"]),
                      None if cov is None else cov.r_matrix, result.optimiser["delta_ofv"],
                      None if cov is None else cov.succeeded,
                      "" if cov is None else cov.message)
    return out


def _quantiles(pred: FloatArray) -> FloatArray:
    """A few representative positive predictions (where the density is checked)."""
    pos = pred[np.isfinite(pred) & (pred > 0)]
    return np.quantile(pos, [0.05, 0.5, 0.95]) if pos.size else np.array([1.0])
