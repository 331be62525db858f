"""Estimation benchmarks: MAP and FOCE-I, ours against a plain scipy implementation.

    .venv/bin/python bench/bench_estimation.py --out bench/results   # full run (minutes)
    .venv/bin/python bench/bench_estimation.py --quick    # smoke run (~1 min)

Cases (two-compartment IV model, CL, V1, Q, V2; η on CL, V1, V2; combined residual error;
records simulated once from the model with a fixed seed):

1. MAP of one subject with 4 levels (median of repeats, after a warm-up that compiles the
   engine): ``estimate_map`` alone, and with the fit's audits.
2. MAP of 1,000 subjects × 4 levels, one batched problem.
3. FOCE-I of 100 subjects × 10 records: our full fit (no covariance step), and one objective
   evaluation (every inner mode from η = 0) side by side with a plain scipy implementation of
   the same objective — per-subject ``solve_ivp`` ODE solves, each mode by ``scipy.optimize.
   minimize`` (BFGS), the Jacobian by forward differences. A full scipy fit would take hours,
   so its fit time is the per-evaluation time × the number of objective evaluations our fit
   needed (stated as an estimate). Both OFVs are printed: they must agree.

Our predictions go through the PK event engine with the books audited on every pass, exactly
as ``medtransport fit`` does. Writes estimation[-quick].json into ``--out`` (default
bench/results/local/), with the machine header of bench/machine.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import machine
import numpy as np
from scipy import integrate, optimize

ROOT = Path(__file__).resolve().parents[1]
THETA = {"clearance": 4.0, "central_volume": 20.0, "intercompartmental_clearance": 6.0,
         "peripheral_volume": 40.0}
OMEGA_SD = {"clearance": 0.3, "central_volume": 0.2, "peripheral_volume": 0.25}
SIGMA = {"additive": 0.2, "proportional": 0.1}
DOSE = 1000.0  # mg IV bolus at 0 h


def build(n_subjects: int, times: np.ndarray, seed: int):
    """The Problem and layout through the PK plugin, with DVs simulated from the model."""
    import medtransport as mt
    from medtransport.plugins import get_registry
    from medtransport_pk.fitting import estimation_problem
    from medtransport_pk.records import RecordTable

    sc = mt.load_scenario({
        "name": "bench", "model": "pk.two_compartment",
        "parameters": {k: f"{v} {'L/h' if 'clearance' in k else 'L'}" for k, v in THETA.items()},
        "population": {"size": 1, "variability": OMEGA_SD},
        "residual_error": {"additive": f"{SIGMA['additive']} mg/L",
                           "proportional": SIGMA["proportional"]},
        "time": {"stop": "24 h", "step": "1 h"}})
    k = times.size
    ids = np.repeat(np.arange(1, n_subjects + 1), k + 1)
    t = np.tile(np.concatenate([[0.0], times]), n_subjects)
    evid = np.tile(np.concatenate([[1], np.zeros(k, int)]), n_subjects)
    table = RecordTable(id=ids, time=t, evid=evid, amt=np.where(evid == 1, DOSE, 0.0),
                        cmt=np.where(evid == 1, 1, 0), rate=np.zeros(t.size),
                        ii=np.zeros(t.size), addl=np.zeros(t.size, int),
                        ss=np.zeros(t.size, int), mdv=evid.copy(),
                        dv=np.where(evid == 0, 1.0, np.nan), row=np.arange(1, t.size + 1),
                        amount_unit="mg", dv_unit="mg/L")
    params = get_registry().model_class(sc.model).validate_params(sc.parameters)
    problem, layout = estimation_problem(sc, table, params)
    rng = np.random.default_rng(seed)
    eta = rng.multivariate_normal(np.zeros(len(problem.eta_names)), problem.omega,
                                  size=n_subjects)
    f = problem.predict(problem.individual(eta), np.arange(n_subjects))
    dv = np.abs(problem.residual.simulate(f, rng))
    problem = type(problem)(**{**problem.__dict__, "dv": dv})
    return problem, layout


# --------------------------------------------------------------------- the scipy peer

def scipy_ofv(problem, times: np.ndarray) -> float:
    """The FOCE-I objective of ``problem`` (same formula as ours), the plain way."""
    names = problem.parameter_names
    eta_idx = [names.index(n) for n in problem.eta_names]
    omega_inv = np.linalg.inv(problem.omega)
    _, logdet_omega = np.linalg.slogdet(problem.omega)
    add, prop = problem.residual.additive, problem.residual.proportional

    def conc(phi: np.ndarray) -> np.ndarray:
        cl, v1, q, v2 = phi

        def rhs(_t, a):
            c1, c2 = a[0] / v1, a[1] / v2
            return [-cl * c1 - q * (c1 - c2), q * (c1 - c2)]

        sol = integrate.solve_ivp(rhs, (0.0, float(times[-1])), [DOSE, 0.0], method="LSODA",
                                  t_eval=times, rtol=1e-8, atol=1e-10)
        return sol.y[0] / v1

    def phi_of(eta: np.ndarray) -> np.ndarray:
        phi = problem.theta.copy()
        phi[eta_idx] *= np.exp(eta)
        return phi

    total = 0.0
    for i in range(problem.n_subjects):
        y = problem.dv[i]

        def objective(eta: np.ndarray, y=y) -> float:
            f = conc(phi_of(eta))
            var = add ** 2 + (prop * f) ** 2
            return float(np.sum(np.log(var) + (y - f) ** 2 / var) + eta @ omega_inv @ eta)

        res = optimize.minimize(objective, np.zeros(len(eta_idx)), method="BFGS",
                                options={"gtol": 1e-6})
        eta = res.x
        f = conc(phi_of(eta))
        var = add ** 2 + (prop * f) ** 2
        jac = np.empty((f.size, eta.size))
        for j in range(eta.size):
            e = eta.copy()
            e[j] += 1e-6
            jac[:, j] = (conc(phi_of(e)) - f) / 1e-6
        info = jac.T @ (jac / var[:, None])
        _, logdet = np.linalg.slogdet(np.linalg.inv(problem.omega) + info)
        total += float(np.sum(np.log(var) + (y - f) ** 2 / var) + eta @ omega_inv @ eta
                       + logdet_omega + logdet)
    return total


# --------------------------------------------------------------------- timing helpers

def timed(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up (compiles the engine's kernels on a first run)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def load() -> float:
    """1-minute load average (the machine is shared; stated with every figure)."""
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller cases, fewer repeats")
    machine.add_out_argument(ap)
    args = ap.parse_args()
    info = machine.announce(quick=args.quick)
    sys.path.insert(0, str(ROOT))
    from medtransport.estimation.audits import audit_map
    from medtransport.estimation.foce import Parametrisation, _evaluate, estimate_foce
    from medtransport.estimation.map import estimate_map

    repeats = 3 if args.quick else 7
    out: dict[str, object] = {"machine": platform.processor() or platform.machine(),
                              "cpus": os.cpu_count(), "quick": args.quick,
                              "machine_header": info}
    four = np.array([1.0, 4.0, 12.0, 24.0])
    ten = np.array([0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 18.0, 24.0])

    one, _ = build(1, four, seed=1)
    t_one, _ = timed(lambda: estimate_map(one), repeats * 5)
    t_one_audited, _ = timed(lambda: audit_map(one, estimate_map(one)), repeats * 5)
    out["map_1_subject_4_levels_s"] = t_one
    out["map_1_subject_4_levels_with_audits_s"] = t_one_audited
    print(f"MAP, 1 subject × 4 levels: {1e3 * t_one:.1f} ms "
          f"({1e3 * t_one_audited:.1f} ms with the audits)  [load {load():.1f}]")

    n_many = 200 if args.quick else 1000
    many, _ = build(n_many, four, seed=2)
    t_many, _ = timed(lambda: estimate_map(many), max(1, repeats // 2))
    out[f"map_{n_many}_subjects_s"] = t_many
    print(f"MAP, {n_many} subjects × 4 levels: {t_many:.2f} s  [load {load():.1f}]")

    n_pop = 20 if args.quick else 100
    pop, _ = build(n_pop, ten, seed=3)
    start_pop = pop.with_population(theta=pop.theta * np.array([1.2, 0.85, 1.1, 0.9]))

    def our_eval() -> float:
        par = Parametrisation(
            start_pop, np.arange(4), np.arange(3), np.arange(2))
        return float(_evaluate(par, par.pack(start_pop), {})[0].sum())

    t_eval, _ = timed(our_eval, repeats)
    ofv_ours = our_eval()
    n_scipy = max(1, min(n_pop, 10 if args.quick else 20))
    sub = start_pop.subset(range(n_scipy))
    start = time.perf_counter()
    ofv_scipy_sub = scipy_ofv(sub, ten)
    t_scipy_sub = time.perf_counter() - start
    t_scipy_eval = t_scipy_sub * n_pop / n_scipy
    par_sub = Parametrisation(sub, np.arange(4), np.arange(3),
                                                           np.arange(2))
    ofv_ours_sub = float(_evaluate(par_sub, par_sub.pack(sub), {})[0].sum())
    print(f"FOCE-I objective, {n_pop} subjects × 10 records, one evaluation from η = 0: "
          f"ours {t_eval:.3f} s; scipy {t_scipy_eval:.1f} s (measured on {n_scipy} subjects, "
          f"scaled) → {t_scipy_eval / t_eval:.0f}×  [load {load():.1f}]")
    print(f"  same objective: OFV of the first {n_scipy} subjects ours {ofv_ours_sub:.4f}, "
          f"scipy {ofv_scipy_sub:.4f} (Δ {ofv_ours_sub - ofv_scipy_sub:.2e})")
    start = time.perf_counter()
    fit = estimate_foce(start_pop, covariance=False,
                        max_iter=30 if args.quick else 200)
    t_fit = time.perf_counter() - start
    evals = int(fit.optimiser["objective_evaluations"])
    print(f"FOCE-I fit, {n_pop} subjects: ours {t_fit:.1f} s ({evals} objective evaluations, "
          f"OFV {fit.ofv:.3f}); scipy estimated {evals * t_scipy_eval / 60:.0f} min at its "
          f"per-evaluation time → {evals * t_scipy_eval / t_fit:.0f}×  [load {load():.1f}]")
    out.update({"foce_eval_ours_s": t_eval, "foce_eval_scipy_s": t_scipy_eval,
                "foce_eval_ratio": t_scipy_eval / t_eval, "foce_fit_ours_s": t_fit,
                "foce_fit_evaluations": evals, "foce_ofv_ours": ofv_ours,
                "ofv_subset_ours": ofv_ours_sub, "ofv_subset_scipy": ofv_scipy_sub,
                "load_end": load()})
    results = machine.output_dir(args.out)
    target = results / ("estimation-quick.json" if args.quick else "estimation.json")
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
