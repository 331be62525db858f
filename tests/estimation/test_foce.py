"""FOCE-I: recovery of θ, Ω, σ on simulated data; evaluate-only; audits and their mutants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import simulated_oral

from medtransport.estimation.audits import audit_likelihood, audit_map
from medtransport.estimation.foce import audit_fit, estimate_foce, foce_objective
from medtransport.estimation.map import estimate_map
from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError

TRUTH = {"theta": np.array([2.8, 32.0, 1.5]), "omega_sd": np.array([0.3, 0.2, 0.4]),
         "sigma": np.array([0.1, 0.1])}


@pytest.fixture(scope="module")
def fit():
    problem, _ = simulated_oral(60, seed=4)
    start = problem.with_population(theta=problem.theta * np.array([1.3, 0.8, 1.2]),
                                    omega=problem.omega * 1.5,
                                    residual=problem.residual.with_values([0.15, 0.15]))
    return estimate_foce(start)


@pytest.mark.slow
def test_foce_recovers_theta_omega_sigma_within_their_standard_errors(fit) -> None:
    cov = fit.covariance
    assert cov.succeeded and cov.method == "sandwich"
    truth = np.concatenate([TRUTH["theta"], TRUTH["omega_sd"] ** 2, TRUTH["sigma"]])
    z = (cov.estimates - truth) / cov.se
    # 8 estimates from one data set: each within 3 SE (a 0.3 % two-sided miss rate per item).
    assert np.all(np.abs(z) < 3.0), dict(zip(cov.names, z.round(2), strict=True))
    assert np.all(cov.rse[:3] < 0.1)


@pytest.mark.slow
def test_the_fitted_ofv_is_below_the_ofv_at_the_truth_and_the_start(fit) -> None:
    at_truth = fit.problem.with_population(theta=TRUTH["theta"],
                                           omega=np.diag(TRUTH["omega_sd"] ** 2),
                                           residual=fit.problem.residual.with_values(
                                               TRUTH["sigma"]))
    ofv_truth = foce_objective(at_truth, estimate_map(at_truth)).sum()
    assert fit.ofv <= ofv_truth + 1e-6
    assert fit.ofv < fit.initial_ofv
    # the maximum-likelihood OFV drop from the truth is ≈ χ²(8)/… never huge: < 30
    assert ofv_truth - fit.ofv < 30


@pytest.mark.slow
def test_a_converged_fit_passes_every_audit(fit) -> None:
    results = audit_fit(fit)
    assert {r.name for r in results} >= {"map.converged", "map.hessian_positive_definite",
                                         "map.objective_consistent", "likelihood.normalised",
                                         "foce.converged", "foce.covariance_step"}
    failed = [(r.name, r.detail) for r in results if not r.passed]
    assert not failed


def test_evaluate_only_gives_the_ofv_at_the_initial_values_without_moving_them() -> None:
    problem, _ = simulated_oral(10, seed=8)
    result = estimate_foce(problem, evaluate_only=True, covariance=False)
    np.testing.assert_array_equal(result.problem.theta, problem.theta)
    tight = estimate_map(problem, gtol=1e-9, dtol=1e-16)
    assert result.ofv == pytest.approx(foce_objective(problem, tight).sum(), rel=1e-9)
    # the default (looser) modes give the same OFV far inside NONMEM's 0.01 reporting
    assert abs(foce_objective(problem, estimate_map(problem)).sum() - result.ofv) < 1e-3


def test_one_linear_gaussian_subject_ofv_is_the_marginal_likelihood() -> None:
    # For f = a + Bη with additive error FOCE-I is exact: −2 ln p(y) = ln|C| + rᵀC⁻¹r with
    # C = BΩBᵀ + σ²I, r = y − a (minus n·ln 2π).
    design = np.array([[1.0, 0.5], [1.0, 2.0], [0.3, -1.0], [2.0, 1.0]])
    offset = np.array([5.0, 3.0, 1.0, 2.0])
    omega = np.array([[0.09, 0.02], [0.02, 0.16]])
    y = np.array([5.3, 3.9, 0.6, 2.8])
    theta = np.ones(2)

    def predict(phi, subjects):
        return offset[None] + np.log(phi / theta) @ design.T

    problem = Problem(predict=predict, dv=y[None], observed=np.ones((1, 4), bool),
                      parameter_names=("a", "b"), theta=theta, eta_names=("a", "b"),
                      omega=omega, residual=ResidualError(additive=0.4, unit="mg/L"))
    c = design @ omega @ design.T + 0.16 * np.eye(4)
    r = y - offset
    expected = np.linalg.slogdet(c)[1] + r @ np.linalg.solve(c, r)
    assert foce_objective(problem, estimate_map(problem))[0] == pytest.approx(expected,
                                                                              rel=1e-9)


def test_cwres_of_a_linear_gaussian_subject_is_the_whitened_residual() -> None:
    # For f = a + Bη (additive error) the FOCE mean is a and the covariance C = BΩBᵀ + σ²I
    # exactly, so CWRES = C^{−1/2}(y − a) (Hooker et al. 2007), with the symmetric root.
    from medtransport.estimation.diagnostics import diagnostics

    design = np.array([[1.0, 0.5], [1.0, 2.0], [0.3, -1.0], [2.0, 1.0]])
    offset = np.array([5.0, 3.0, 1.0, 2.0])
    omega = np.array([[0.09, 0.02], [0.02, 0.16]])
    y = np.array([5.3, 3.9, 0.6, 2.8])
    theta = np.ones(2)

    def predict(phi, subjects):
        return offset[None] + np.log(phi / theta) @ design.T

    problem = Problem(predict=predict, dv=y[None], observed=np.ones((1, 4), bool),
                      parameter_names=("a", "b"), theta=theta, eta_names=("a", "b"),
                      omega=omega, residual=ResidualError(additive=0.4, unit="mg/L"))
    c = design @ omega @ design.T + 0.16 * np.eye(4)
    w, v = np.linalg.eigh(c)
    expected = v @ np.diag(w ** -0.5) @ v.T @ (y - offset)
    got = diagnostics(problem, estimate_map(problem)).cwres[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- mutants


def test_mutant_map_optimiser_stopped_early_is_caught() -> None:
    problem, _ = simulated_oral(20, seed=9)
    early = estimate_map(problem, max_iter=1)
    verdict = {r.name: r.passed for r in audit_map(problem, early)}
    assert verdict["map.converged"] is False
    assert {r.name: r.passed for r in audit_map(problem, estimate_map(problem))}[
        "map.converged"]


def test_mutant_population_optimiser_stopped_early_is_caught() -> None:
    problem, _ = simulated_oral(30, seed=4)
    start = problem.with_population(theta=problem.theta * np.array([1.5, 0.7, 1.3]))
    early = estimate_foce(start, max_iter=2, covariance=False)
    verdict = {r.name: (r.passed, r.detail) for r in audit_fit(early)}
    assert verdict["foce.converged"][0] is False, verdict["foce.converged"]


class DropsTheJacobian(ResidualError):
    """A mutant exponential error model: the density of y forgets the 1/y of y = f·e^ε."""

    def log_density(self, dv, pred):
        return -0.5 * (self.neg2_log_likelihood(dv, pred) + np.log(2 * np.pi))


def test_mutant_likelihood_dropping_the_lognormal_jacobian_is_caught() -> None:
    good = ResidualError(exponential=0.2)
    bad = DropsTheJacobian(exponential=0.2)
    preds = np.array([0.5, 5.0, 40.0])
    assert audit_likelihood(good, preds)[0].passed
    result = audit_likelihood(bad, preds)[0]
    assert not result.passed and result.measured > 0.4  # ∫ = f·e^{σ²/2} ≠ 1


def test_mutant_optimiser_objective_that_differs_from_the_likelihood_is_caught(
        monkeypatch) -> None:
    # An optimiser whose per-record terms drop ln V (the variance's own log-likelihood term)
    # finds another mode; the objective recomputed from the residual model disagrees there.
    import medtransport.estimation.map as map_module

    problem, _ = simulated_oral(10, seed=6)
    original = map_module.record_terms

    def no_log_variance(residual, dv, f, counted, blq, lloq):
        g, dg, c = original(residual, dv, f, counted, blq, lloq)
        var, dvar = residual.variance(f), residual.dvariance_dpred(f)
        return (np.where(counted, g - np.log(var), 0.0),
                np.where(counted, dg - dvar / var, 0.0), c)

    monkeypatch.setattr(map_module, "record_terms", no_log_variance)
    broken = estimate_map(problem)
    verdict = {r.name: r.passed for r in audit_map(problem, broken)}
    assert verdict["map.objective_consistent"] is False
    assert verdict["map.converged"] is False


def test_foce_objective_through_the_pk_engine_equals_an_independent_implementation() -> None:
    # Two-compartment IV bolus subjects through the plugin's engine-backed problem, against a
    # per-subject implementation written here: closed-form predictions (Gibaldi & Perrier),
    # each mode by scipy BFGS, forward-difference Jacobian, the FOCE-I formula of Wang (2007).
    from scipy import optimize

    import medtransport as mt
    from medtransport.plugins import get_registry
    from medtransport_pk.closed_forms import iv_bolus_two_compartment
    from medtransport_pk.fitting import estimation_problem
    from medtransport_pk.records import RecordTable

    times = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0])
    sc = mt.load_scenario({
        "name": "x", "model": "pk.two_compartment",
        "parameters": {"clearance": "4 L/h", "central_volume": "20 L",
                       "intercompartmental_clearance": "6 L/h", "peripheral_volume": "40 L"},
        "population": {"size": 1, "variability": {"clearance": 0.3, "central_volume": 0.2,
                                                  "peripheral_volume": 0.25}},
        "residual_error": {"additive": "0.2 mg/L", "proportional": 0.1},
        "time": {"stop": "24 h", "step": "1 h"}})
    n, k = 3, times.size
    rng = np.random.default_rng(5)
    true = rng.normal(0, 0.25, (n, 3))
    dv = np.stack([iv_bolus_two_compartment(times, 1000.0, 4 * np.exp(e[0]), 20 * np.exp(e[1]),
                                            6.0, 40 * np.exp(e[2])) for e in true])
    dv *= np.exp(rng.normal(0, 0.1, dv.shape))
    evid = np.tile(np.r_[1, np.zeros(k, int)], n)
    table = RecordTable(
        id=np.repeat(np.arange(1, n + 1), k + 1), time=np.tile(np.r_[0.0, times], n),
        evid=evid, amt=np.where(evid == 1, 1000.0, 0.0), cmt=np.where(evid == 1, 1, 0),
        rate=np.zeros(evid.size), ii=np.zeros(evid.size), addl=np.zeros(evid.size, int),
        ss=np.zeros(evid.size, int), mdv=evid.copy(),
        dv=np.where(evid == 0, np.insert(dv, 0, np.nan, axis=1).ravel(), np.nan),
        row=np.arange(1, evid.size + 1), amount_unit="mg", dv_unit="mg/L")
    params = get_registry().model_class(sc.model).validate_params(sc.parameters)
    problem, _ = estimation_problem(sc, table, params)
    ours = foce_objective(problem, estimate_map(problem, gtol=1e-9, dtol=1e-16))

    omega = problem.omega
    names = problem.parameter_names
    eta_at = [names.index(e) for e in problem.eta_names]

    def conc(eta):
        phi = problem.theta.copy()
        phi[eta_at] *= np.exp(eta)
        cl, v1, q, v2 = phi
        return iv_bolus_two_compartment(times, 1000.0, cl, v1, q, v2)

    def var(f):
        return 0.2 ** 2 + (0.1 * f) ** 2

    expected = []
    for i in range(n):
        def objective(eta, y=dv[i]):
            f = conc(eta)
            return np.sum(np.log(var(f)) + (y - f) ** 2 / var(f)) + eta @ np.linalg.solve(
                omega, eta)

        eta = optimize.minimize(objective, np.zeros(3), method="BFGS",
                                options={"gtol": 1e-9}).x
        eta = optimize.minimize(objective, eta, method="Nelder-Mead",
                                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000}).x
        f = conc(eta)
        jac = np.stack([(conc(eta + 1e-7 * np.eye(3)[j]) - f) / 1e-7 for j in range(3)], 1)
        h = np.linalg.inv(omega) + jac.T @ (jac / var(f)[:, None])
        expected.append(objective(eta) + np.linalg.slogdet(omega)[1] + np.linalg.slogdet(h)[1])
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert np.ptp(expected) > 1  # three different subjects


def test_fixed_items_stay_fixed_and_unknown_ones_are_refused() -> None:
    problem, _ = simulated_oral(20, seed=12)
    start = problem.with_population(theta=problem.theta * np.array([1.2, 1.0, 1.0]))
    result = estimate_foce(start, theta=["clearance"], omega=False, sigma=False,
                           covariance=False)
    np.testing.assert_array_equal(result.problem.theta[1:], start.theta[1:])
    np.testing.assert_array_equal(result.problem.omega, start.omega)
    assert result.problem.residual == start.residual
    assert result.problem.theta[0] != start.theta[0]
    assert result.parametrisation.names == ["theta:clearance"]
    with pytest.raises(Exception, match=r"estimate\.parameters: \['volume'\] are not "
                                        r"parameters"):
        estimate_foce(problem, theta=["volume"])


def test_mutant_over_parameterised_model_fails_the_covariance_step() -> None:
    # Predictions that depend on CL·V only: ln CL − ln V is not determined by any data, R is
    # singular, and the covariance step must say so rather than report SEs.
    from medtransport.estimation.audits import audit_foce

    problem, _ = simulated_oral(20, seed=14)
    inner = problem.predict

    def product_only(phi, subjects):
        mixed = phi.copy()
        mixed[:, 0] = phi[:, 0] * phi[:, 1] / 32.0
        mixed[:, 1] = 32.0
        return inner(mixed, subjects)

    confounded = Problem(**{**problem.__dict__, "predict": product_only,
                            "eta_names": ("absorption_rate",),
                            "omega": problem.omega[2:, 2:]})
    result = estimate_foce(confounded, theta=["clearance", "central_volume"], omega=False,
                           sigma=False)
    assert result.covariance is not None and not result.covariance.succeeded
    assert "singular" in result.covariance.message
    verdict = {r.name: r.passed for r in audit_foce(np.zeros(2), None, 0.0, False,
                                                     result.covariance.message)}
    assert verdict["foce.covariance_step"] is False


@pytest.mark.slow
def test_a_correlated_omega_block_is_estimated_with_its_covariance() -> None:
    # η_CL and η_V correlated 0.6 in the simulation; the fit starts from ρ = 0.2 and must
    # recover Ω's covariance within 3 SE (and keep Ω positive definite throughout).
    from helpers import oral_predict

    rng = np.random.default_rng(31)
    sd = np.array([0.3, 0.25, 0.4])
    corr = np.array([[1, 0.6, 0], [0.6, 1, 0], [0, 0, 1.0]])
    omega = corr * np.outer(sd, sd)
    problem, _ = simulated_oral(80, seed=31, omega_sd=tuple(sd))
    eta = rng.multivariate_normal(np.zeros(3), omega, size=80)
    f = problem.predict(problem.theta * np.exp(eta), np.arange(80))
    dv = problem.residual.simulate(f, rng)
    start_corr = np.array([[1, 0.2, 0], [0.2, 1, 0], [0, 0, 1.0]])
    data = Problem(**{**problem.__dict__, "dv": dv, "predict": oral_predict(problem.time[0]),
                      "omega": start_corr * np.outer(sd, sd)})
    result = estimate_foce(data)
    cov = result.covariance
    assert cov.succeeded
    assert "omega:central_volume,clearance" in cov.names
    k = cov.names.index("omega:central_volume,clearance")
    truth = omega[0, 1]
    assert abs(cov.estimates[k] - truth) < 3 * cov.se[k], (cov.estimates[k], cov.se[k])
    assert np.all(np.linalg.eigvalsh(result.problem.omega) > 0)


def test_mutant_optimiser_stopping_at_a_maximum_fails_the_hessian_audit() -> None:
    # f(η) = c + b·η² with y > c: η = 0 is a stationary point of O and, for b(y − c) large,
    # a local maximum (O''(0) = −4b(y − c)/σ² + 2/ω² < 0). Started there, a gradient method
    # stops at once; the Hessian audit must refuse that "mode".
    theta = np.array([1.0])

    def predict(phi, subjects):
        eta = np.log(phi / theta)
        return np.repeat(5.0 + 3.0 * eta ** 2, 3, axis=1)

    problem = Problem(predict=predict, dv=np.full((1, 3), 6.0),
                      observed=np.ones((1, 3), bool), parameter_names=("a",), theta=theta,
                      eta_names=("a",), omega=np.array([[0.25]]),
                      residual=ResidualError(additive=0.5, unit="mg/L"))
    stuck = estimate_map(problem)
    assert stuck.eta[0, 0] == 0.0
    verdict = {r.name: r.passed for r in audit_map(problem, stuck)}
    assert verdict["map.hessian_positive_definite"] is False
    assert verdict["map.converged"] is True  # the gradient alone cannot tell


def test_mutant_engine_that_leaks_drug_is_caught_by_the_prediction_books(monkeypatch) -> None:
    import medtransport as mt
    import medtransport_pk.fitting as fitting
    from medtransport.errors import AuditFailure
    from medtransport.plugins import get_registry

    sc = mt.load_scenario(Path(__file__).parents[2] / "examples" / "estimation"
                          / "vancomycin_patient.yaml")
    problem, _ = get_registry().model_class(sc.model).estimation_problem(sc)
    original = fitting.simulate

    def leaky(*args, **kwargs):
        result = original(*args, **kwargs)
        result.record_amounts *= 0.999  # 0.1 % of the drug vanishes unbooked
        return result

    monkeypatch.setattr(fitting, "simulate", leaky)
    with pytest.raises(AuditFailure, match="books of a prediction pass do not close"):
        estimate_map(problem)
