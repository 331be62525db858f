#!/usr/bin/env python
"""Benchmark medtransport's compartment solver on a virtual population, against peers, in one run.

    bench/.venv/bin/python bench/bench_pk.py            # full run (a few minutes)
    bench/.venv/bin/python bench/bench_pk.py --quick    # smoke run (100 patients, no 100 000)

The problem: a two-compartment model, IV bolus of 1000 mg at t = 0, sampled every minute for
24 h (1441 output times), in a seeded virtual population with log-normal CL (4.6 L/h, ω 0.3),
V1 (30 L, ω 0.2), Q (6.9 L/h, ω 0.2) and V2 (40 L, ω 0.2). States: central, peripheral and an
explicit eliminated state, so the rate matrix's columns sum to zero.

Rows, all solving the same patients on the same grid:

1. medtransport (audited): build K (P, 3, 3), ``compartments.amounts`` with the dose as an
   ``Addition``, then the audit the framework does (stored amount Σ body states per patient and
   time, |stored + eliminated − dose| ≤ 1e-9·dose at every time) and C = central/V1.
2. ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-8, atol 1e-10·dose, t_eval = the grid), one
   call per patient; a subset is timed and extrapolated when the whole loop would take > 60 s.
3. chi-drm (``chi.PKPDModel`` from an SBML two-compartment model written here; myokit compiles
   it and integrates with CVODES), one ``simulate`` per patient; the bolus is the initial amount
   in the central compartment. With our tolerances and with myokit's defaults.
4. The bare numpy closed form C(t) = A e^{−αt} + B e^{−βt} for (P, T) by broadcasting: the
   reference for every row's accuracy.

Then 100 000 patients with medtransport (audited), each configuration in a fresh child process
(its peak RSS is the run's): in chunks of patients and in one call on warm memory (the child
first maps and releases what the run will hold, untimed), then in chunks on cold memory.

Writes a markdown table to stdout and to pk-latest.md in ``--out`` (default
bench/results/local/; header from bench/machine.py), the raw numbers to pk-latest.json (each
written to a temporary file, then renamed); ``--quick``
writes pk-latest-quick.{md,json}.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import machine
import numpy as np
from bench_diffusion import LoadMonitor, log, now, reason, write_atomic

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

try:  # an editable install is preferred; fall back to the checkout this script lives in
    import medtransport  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

DOSE = 1000.0  # mg, IV bolus into central at t = 0
TIMES = np.arange(1441) / 60.0  # h: every minute for 24 h
# name: (typical value, ω of the log-normal)
POPULATION = {"CL": (4.6, 0.3), "V1": (30.0, 0.2), "Q": (6.9, 0.2), "V2": (40.0, 0.2)}
SEED = 20261123
RTOL = 1e-8
ATOL = 1e-10 * DOSE
LEDGER_TOL = 1e-9  # |stored + eliminated − dose| ≤ LEDGER_TOL · dose
IVP_BUDGET_S = 60.0
IVP_SUBSET = 50
LARGE = 100_000
CHUNKS = (1_000, 10_000)  # patients per chunk in the large run; one call for all is run too
REPEATS = 5  # ours and the closed form: median of 5 (the peers' loops run once)


# ------------------------------------------------------------------------------- problem


def population(p: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded log-normal parameters; the first p patients are the same for any larger p."""
    z = np.random.default_rng(seed).standard_normal((p, len(POPULATION)))
    return {name: tv * np.exp(omega * z[:, i])
            for i, (name, (tv, omega)) in enumerate(POPULATION.items())}


def subset(pop: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: v[sl] for k, v in pop.items()}


def rate_matrices(pop: dict[str, np.ndarray]) -> np.ndarray:
    """K (P, 3, 3) for states (central, peripheral, eliminated); columns sum to zero."""
    k10 = pop["CL"] / pop["V1"]
    k12 = pop["Q"] / pop["V1"]
    k21 = pop["Q"] / pop["V2"]
    kmat = np.zeros((k10.size, 3, 3))
    kmat[:, 0, 0] = -(k10 + k12)
    kmat[:, 0, 1] = k21
    kmat[:, 1, 0] = k12
    kmat[:, 1, 1] = -k21
    kmat[:, 2, 0] = k10
    return kmat


def closed_form(pop: dict[str, np.ndarray], t: np.ndarray) -> np.ndarray:
    """Central concentration (P, T), bi-exponential from the micro-constants."""
    v1 = pop["V1"]
    k10 = pop["CL"] / v1
    k12 = pop["Q"] / v1
    k21 = pop["Q"] / pop["V2"]
    s = k10 + k12 + k21
    alpha = 0.5 * (s + np.sqrt(s * s - 4.0 * k10 * k21))
    beta = k10 * k21 / alpha  # αβ = k10·k21, free of the cancellation in (s − √…)/2
    c0 = DOSE / v1
    a = c0 * (alpha - k21) / (alpha - beta)
    b = c0 * (k21 - beta) / (alpha - beta)
    return (a[:, None] * np.exp(-alpha[:, None] * t[None, :])
            + b[:, None] * np.exp(-beta[:, None] * t[None, :]))


def max_rel_error(conc: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(conc - ref) / np.abs(ref)))


# ------------------------------------------------------------------------------- solvers


def ours_audited(pop: dict[str, np.ndarray], t: np.ndarray, buffer: np.ndarray | None = None,
                 conc_out: np.ndarray | None = None) -> dict[str, Any]:
    """Build K, solve exactly, audit the books, return concentrations; each phase timed.
    ``buffer`` (P, T, 3), when given, receives the amounts (reused across chunks); ``conc_out``
    (P, T), when given, the concentrations (a chunked caller's slice of its result)."""
    from medtransport.domain import Compartments
    from medtransport.numerics.compartments import Addition, amounts

    t0 = now()
    kmat = rate_matrices(pop)
    t1 = now()
    amt = amounts(kmat, t, additions=[Addition(0.0, np.array([DOSE, 0.0, 0.0]))], out=buffer)
    t2 = now()
    # the stored amount recomputed from the states as the framework's mass-balance audit does
    # (Domain.integrate over the body compartments), then stored + eliminated − dose, in place
    body = Compartments(names=("central", "peripheral"))
    books = body.integrate(amt[..., :2], "mg").magnitude  # (P, T)
    books += amt[..., 2]
    books -= DOSE
    residual = float(max(books.max(), -books.min())) / DOSE
    balanced = residual <= LEDGER_TOL
    t3 = now()
    conc = np.divide(amt[..., 0], pop["V1"][:, None], out=conc_out)
    t4 = now()
    return {"conc": conc, "residual": residual, "balanced": balanced, "wall_s": t4 - t0,
            "phases_s": {"build K": t1 - t0, "amounts": t2 - t1, "audit": t3 - t2,
                         "concentration": t4 - t3}}


def ours_runs(pop: dict[str, np.ndarray], ref: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """``repeats`` runs of ours, sorted by wall time; each run's concentrations are checked
    against ``ref`` and dropped before the next run (fresh pages cost a fault each here, so a
    run must not pay for the memory its predecessors kept)."""
    runs = []
    for _ in range(repeats):
        r = ours_audited(pop, TIMES)
        r["max_rel_error"] = max_rel_error(r.pop("conc"), ref)
        runs.append(r)
    return sorted(runs, key=lambda r: r["wall_s"])


def profile_ours(pop: dict[str, np.ndarray], t: np.ndarray) -> dict[str, Any]:
    """Where ``amounts`` spends its time (cProfile, one call): the compiled propagation loop,
    the batched matrix exponentials, and the rest (planning, allocation, Python)."""
    from medtransport.numerics.compartments import Addition, amounts

    kmat = rate_matrices(pop)
    prof = cProfile.Profile()
    prof.enable()
    amounts(kmat, t, additions=[Addition(0.0, np.array([DOSE, 0.0, 0.0]))])
    prof.disable()
    st = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    out: dict[str, Any] = {"total_s": 0.0, "kernel_s": 0.0, "kernel_calls": 0,
                           "expm_s": 0.0, "expm_calls": 0}
    for (file, _line, name), (_cc, nc, _tt, ct, _callers) in st.items():
        if name == "amounts" and file.endswith("compartments.py"):
            out["total_s"] = ct
        elif name.startswith("propagate"):
            out["kernel_s"] += ct
            out["kernel_calls"] += nc
        elif name == "expm_batched":
            out["expm_s"] += ct
            out["expm_calls"] += nc
    total = out["total_s"] or float("nan")
    out["kernel_pct"] = 100 * out["kernel_s"] / total
    out["expm_pct"] = 100 * out["expm_s"] / total
    out["patients"] = int(kmat.shape[0])
    return out


def scenario_of(n: int, **extra: Any) -> dict[str, Any]:
    """The bench problem as a medtransport scenario: the same model, dose, grid and ω, with
    the framework's own seeded patients."""
    return {"name": "bench population", "model": "pk.two_compartment",
            "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                           "intercompartmental_clearance": "6.9 L/h",
                           "peripheral_volume": "40 L"},
            "events": [{"type": "bolus", "amount": f"{DOSE:g} mg"}],
            "time": {"stop": "24 h", "step": "1 min"},
            "population": {"size": n, "variability": {
                "clearance": 0.3, "central_volume": 0.2, "intercompartmental_clearance": 0.2,
                "peripheral_volume": 0.2}},
            "seed": SEED, **extra}


def full_run(n: int, repeats: int) -> dict[str, Any]:
    """``medtransport.run``: scenario → prepared model → exact solve → every core audit
    (units, finiteness, normalization, mass balance, non-negativity) → an xarray Dataset
    ready for NetCDF. Median of ``repeats`` warm runs."""
    import medtransport as mt

    mt.run(scenario_of(n))  # warm-up (imports, compiled kernels)
    walls, residual = [], float("nan")
    for _ in range(repeats):
        t0 = now()
        ds = mt.run(scenario_of(n))
        walls.append(now() - t0)
        residual = float(np.max(np.abs(ds["drug_residual"].values))) / DOSE
        del ds
    return {"wall_s": statistics.median(walls), "repeats_s": walls, "residual": residual}


# Saturable elimination (one compartment, IV bolus): Lambert-W closed form per patient.
MM = {"V": (40.0, 0.2), "Vmax": (30.0, 0.3), "Km": (5.0, 0.2)}
MM_DOSE = 800.0  # mg
MM_TIMES = np.arange(0, 24 * 6 + 1) / 6.0  # h: every 10 min for 24 h


def mm_reference(v: np.ndarray, vmax: np.ndarray, km: np.ndarray, t: np.ndarray) -> np.ndarray:
    """C(t) = Km·W((C0/Km)·exp((C0 − Vmax·t/V)/Km)) (Schnell & Mendoza 1997), (P, T)."""
    from scipy.special import lambertw

    c0 = (MM_DOSE / v)[:, None]
    arg = c0 / km[:, None] * np.exp((c0 - vmax[:, None] * t[None, :] / v[:, None])
                                    / km[:, None])
    return km[:, None] * lambertw(arg).real


def mm_rows(n: int) -> list[dict[str, Any]]:
    """Ours (the event engine's saturable path: one stacked DOP853 solve for the population,
    audited) against a per-patient ``solve_ivp`` loop (Radau, analytic Jacobian, same
    tolerances), both checked against the Lambert-W solution."""
    from scipy.integrate import solve_ivp

    import medtransport as mt

    sc = {"name": "saturable", "model": "pk.one_compartment",
          "parameters": {"clearance": "0 L/h", "central_volume": f"{MM['V'][0]:g} L",
                         "michaelis_menten": {"vmax": f"{MM['Vmax'][0]:g} mg/h",
                                              "km": f"{MM['Km'][0]:g} mg/L"}},
          "events": [{"type": "bolus", "amount": f"{MM_DOSE:g} mg"}],
          "time": {"stop": "24 h", "step": "10 min"},
          "population": {"size": n, "variability": {"central_volume": MM["V"][1],
                                                    "vmax": MM["Vmax"][1],
                                                    "km": MM["Km"][1]}},
          "seed": SEED}
    from medtransport.runner import prepare

    model = prepare(sc)
    v = np.asarray(model._kinetics()["central_volume"])
    vmax = MM["Vmax"][0] * model._eta_factor("vmax")
    km = MM["Km"][0] * model._eta_factor("km")
    ref = mm_reference(v, vmax, km, MM_TIMES)
    mt.run({**sc, "population": {**sc["population"], "size": 2}})  # warm-up
    t0 = now()
    ds = mt.run(sc)
    wall = now() - t0
    conc = ds["concentration"].sel(tissue="central").transpose("patient", "time").values
    ours = {"key": "mm_ours", "method": "medtransport `run`, the event engine's saturable "
                                         "path (one stacked DOP853 solve), audited",
            "patients_run": n, "wall_s": wall, "max_rel_error": max_rel_error(conc, ref),
            "residual": float(np.max(np.abs(ds["drug_residual"].values))) / MM_DOSE}

    def solve(i: int) -> np.ndarray:
        vi, vm, k = v[i], vmax[i], km[i]

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            flux = vm * (y[0] / vi) / (k + y[0] / vi)
            return np.array([-flux, flux])

        def jac(_t: float, y: np.ndarray) -> np.ndarray:
            d = vm * k / (vi * (k + y[0] / vi) ** 2)
            return np.array([[-d, 0.0], [d, 0.0]])

        sol = solve_ivp(rhs, (0.0, MM_TIMES[-1]), [MM_DOSE, 0.0], method="Radau",
                        t_eval=MM_TIMES, rtol=1e-10, atol=1e-14 * MM_DOSE, jac=jac)
        return sol.y

    n_sub = min(IVP_SUBSET, n)
    t0 = now()
    ys = [solve(i) for i in range(n_sub)]
    wall_sub = now() - t0
    y = np.stack(ys)
    loop = {"key": "mm_ivp", "method": "scipy `solve_ivp` loop (Radau, analytic Jacobian, "
                                       "same tolerances)",
            "patients_run": n_sub, "wall_s": wall_sub * n / n_sub,
            "max_rel_error": max_rel_error(y[:, 0, :] / v[:n_sub, None], ref[:n_sub]),
            "residual": float(np.max(np.abs(y.sum(axis=1) - MM_DOSE))) / MM_DOSE,
            "notes": f"first {n_sub} patients timed, wall extrapolated to {n:,}"}
    return [ours, loop]


def ivp_loop(pop: dict[str, np.ndarray], t: np.ndarray, n_total: int) -> dict[str, Any]:
    """One LSODA solve per patient; time a subset first, finish the loop if it fits."""
    from scipy.integrate import solve_ivp

    kmat = rate_matrices(pop)
    y0 = np.array([DOSE, 0.0, 0.0])

    def solve(i: int) -> np.ndarray:
        k = kmat[i]
        sol = solve_ivp(lambda _t, y: k @ y, (t[0], t[-1]), y0, method="LSODA", t_eval=t,
                        rtol=RTOL, atol=ATOL, jac=lambda _t, _y: k)
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed for patient {i}: {sol.message}")
        return sol.y

    n_sub = min(IVP_SUBSET, n_total)
    ys = []
    t0 = now()
    for i in range(n_sub):
        ys.append(solve(i))
    wall_sub = now() - t0
    projected = wall_sub * n_total / n_sub
    if projected <= IVP_BUDGET_S:
        for i in range(n_sub, n_total):
            ys.append(solve(i))
        wall, n_run, extrapolated = now() - t0, n_total, False
    else:
        wall, n_run, extrapolated = projected, n_sub, True
    y = np.stack(ys)  # (n_run, 3, T)
    conc = y[:, 0, :] / pop["V1"][:n_run, None]
    residual = float(np.max(np.abs(y.sum(axis=1) - DOSE))) / DOSE
    return {"conc": conc, "n_run": n_run, "wall_s": wall, "extrapolated": extrapolated,
            "residual": residual}


# Two compartments with volumes V1 (central.size) and V2 (peripheral.size) and a sink for the
# eliminated drug; species are concentrations (hasSubstanceUnits false), so the myokit model
# chi imports has amount states <species>_amount and rates CL·C1 and Q·(C1 − C2).
SBML_TWO_COMPARTMENT = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
  <model id="two_compartment_iv" timeUnits="hour">
    <listOfUnitDefinitions>
      <unitDefinition id="hour"><listOfUnits>
        <unit kind="second" exponent="1" scale="0" multiplier="3600"/>
      </listOfUnits></unitDefinition>
    </listOfUnitDefinitions>
    <listOfCompartments>
      <compartment id="central" size="30" constant="true"/>
      <compartment id="peripheral" size="40" constant="true"/>
      <compartment id="sink" size="1" constant="true"/>
    </listOfCompartments>
    <listOfSpecies>
      <species id="drug_c" compartment="central" initialAmount="0"
               hasSubstanceUnits="false" boundaryCondition="false" constant="false"/>
      <species id="drug_p" compartment="peripheral" initialAmount="0"
               hasSubstanceUnits="false" boundaryCondition="false" constant="false"/>
      <species id="drug_e" compartment="sink" initialAmount="0"
               hasSubstanceUnits="false" boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="CL" value="4.6" constant="true"/>
      <parameter id="Q" value="6.9" constant="true"/>
    </listOfParameters>
    <listOfReactions>
      <reaction id="elimination" reversible="false">
        <listOfReactants>
          <speciesReference species="drug_c" stoichiometry="1" constant="true"/>
        </listOfReactants>
        <listOfProducts>
          <speciesReference species="drug_e" stoichiometry="1" constant="true"/>
        </listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci> CL </ci><ci> drug_c </ci></apply>
        </math></kineticLaw>
      </reaction>
      <reaction id="distribution" reversible="true">
        <listOfReactants>
          <speciesReference species="drug_c" stoichiometry="1" constant="true"/>
        </listOfReactants>
        <listOfProducts>
          <speciesReference species="drug_p" stoichiometry="1" constant="true"/>
        </listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci> Q </ci>
            <apply><minus/><ci> drug_c </ci><ci> drug_p </ci></apply></apply>
        </math></kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>
"""

CHI_OUTPUTS = ["central.drug_c_amount", "peripheral.drug_p_amount", "sink.drug_e_amount"]


def import_chi():
    with warnings.catch_warnings():  # arviz announces its refactor on import
        warnings.simplefilter("ignore")
        import chi
        import myokit
    return chi, myokit


def chi_build() -> tuple[Any, float]:
    """chi.PKPDModel from the SBML above; myokit generates and compiles the CVODES code."""
    chi, _ = import_chi()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "two_compartment_iv.xml"
        path.write_text(SBML_TWO_COMPARTMENT)
        t0 = now()
        model = chi.PKPDModel(str(path))
        model.set_outputs(CHI_OUTPUTS)
        build = now() - t0
    return model, build


def chi_loop(model: Any, pop: dict[str, np.ndarray], t: np.ndarray,
             tolerances: tuple[float, float] | None) -> dict[str, Any]:
    """One ``simulate`` per patient: initial central amount = dose (the bolus), then CL, Q,
    V1, V2 as the model's constants. ``tolerances`` = (abs, rel) for CVODES, or None for
    myokit's defaults."""
    if tolerances is not None:
        # chi keeps its myokit.Simulation as ``_simulator`` ("intentionally public property").
        model._simulator.set_tolerance(*tolerances)
    names = model.parameters()
    p = pop["CL"].size
    params = np.zeros((p, len(names)))
    columns = {"central.drug_c_amount": np.full(p, DOSE), "central.size": pop["V1"],
               "peripheral.size": pop["V2"], "global.CL": pop["CL"], "global.Q": pop["Q"],
               "sink.size": np.ones(p)}
    for j, name in enumerate(names):
        params[:, j] = columns.get(name, 0.0)
    out = np.empty((p, 3, t.size))
    t0 = now()
    for i in range(p):
        out[i] = model.simulate(params[i], t)
    wall = now() - t0
    conc = out[:, 0, :] / pop["V1"][:, None]
    residual = float(np.max(np.abs(out.sum(axis=1) - DOSE))) / DOSE
    return {"conc": conc, "wall_s": wall, "residual": residual, "parameters": list(names)}


# ----------------------------------------------------------------------- 100 000 patients


def rss_mb() -> float:
    """Current resident set size (MB), from /proc/self/status."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def warm_memory(nbytes: int) -> float:
    """Map, write and release ``nbytes``; returns the seconds it took.

    On this virtual machine the first touch of memory the host has not backed yet costs up to
    30× the usual page fault, at random (1 GiB measured 0.065 s warm, 0.6–2.2 s cold in fresh
    processes); memory released by the process is handed back to it warm. Warming the
    process first makes the timed run measure the solver, not the hypervisor; the cold rows
    show what a fresh process pays."""
    t0 = now()
    block = np.ones(nbytes // 8)
    del block
    return now() - t0


def large_child(n: int, chunk: int, warm: bool) -> dict[str, Any]:
    """Ours (audited) for n patients in chunks; keeps every concentration (n, T) float64.
    ``warm``: first map and release as much memory as the run will hold (not timed)."""
    pop = population(n)
    ours_audited(population(10), TIMES[:3])  # import and first-call costs, not timed
    # kept output + amounts buffer + the audit's and a last partial chunk's (P, T) arrays
    need = 8 * TIMES.size * (n + 3 * chunk + 2 * chunk)
    warmup = warm_memory(need) if warm else None
    base = rss_mb()
    t0 = now()
    conc = np.empty((n, TIMES.size))
    residual, balanced = 0.0, True
    buffer = np.empty((chunk, TIMES.size, 3))  # one amounts buffer, reused by every chunk
    for lo in range(0, n, chunk):
        size = min(chunk, n - lo)
        r = ours_audited(subset(pop, slice(lo, lo + chunk)), TIMES,
                         buffer if size == chunk else None, conc[lo:lo + chunk])
        residual = max(residual, r["residual"])
        balanced = balanced and r["balanced"]
        del r
    wall = now() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    check = slice(0, n, max(1, n // 1000))  # accuracy on every (n/1000)-th patient
    err = max_rel_error(conc[check], closed_form(subset(pop, check), TIMES))
    return {"patients": n, "chunk": chunk, "warm": warm, "warmup_s": warmup,
            "warmup_GiB": need / 2**30 if warm else None, "wall_s": wall, "peak_rss_MB": peak,
            "baseline_rss_MB": base, "residual": residual, "balanced": balanced,
            "max_rel_error_sampled": err, "output_MB": conc.nbytes / 2**20,
            "amounts_array_MB": chunk * TIMES.size * 3 * 8 / 2**20}


def run_large(n: int, chunk: int, warm: bool, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--large-child",
           json.dumps({"n": n, "chunk": chunk, "warm": warm})]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"patients": n, "chunk": chunk, "status": f"timeout after {timeout:g} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"patients": n, "chunk": chunk,
                "status": f"failed (exit {proc.returncode}): {tail[:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- environment


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": machine.cpu_model(), "cores": os.cpu_count(), "numpy": np.__version__,
        "versions": {d: version(d) for d in ("scipy", "chi-drm", "myokit", "medtransport")},
    }
    try:
        _, myokit = import_chi()
        info["versions"]["sundials (myokit's)"] = str(myokit.Sundials.version())
    except Exception as exc:
        info["versions"]["sundials (myokit's)"] = f"unavailable: {reason(exc)}"
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "architecture")}
                        for p in threadpool_info()]
    except Exception as exc:
        info["blas"] = f"unavailable: {reason(exc)}"
    return info


# --------------------------------------------------------------------------------- report


def fmt(x: Any, spec: str = ".3g") -> str:
    if isinstance(x, (int, float)) and x == x:  # not NaN
        return format(x, spec)
    return "—"


def ratio(ours: float, other: float) -> str:
    return "—" if not (ours > 0 and other > 0) else f"{ours / other:.3g}×"


def goals(res: dict[str, Any]) -> list[dict[str, str]]:
    rows = {r["key"]: r for r in res["rows"]}
    ours = rows["ours"]["patients_per_s"]
    out = []

    def speed_goal(key: str, factor: float, text: str) -> None:
        r = rows.get(key)
        if r is None or "patients_per_s" not in r:
            out.append({"goal": text, "measured": r["status"] if r else "not run",
                        "met": "not measured"})
            return
        q = ours / r["patients_per_s"]
        out.append({"goal": text, "measured": f"{q:.3g}×", "met": "yes" if q >= factor
                    else "**no**"})

    speed_goal("ivp", 100, "≥ 100× the solve_ivp loop")
    speed_goal("chi_tight", 10, "≥ 10× chi-drm (same tolerances)")
    speed_goal("chi_default", 10, "≥ 10× chi-drm (myokit's default tolerances)")
    speed_goal("closed", 0.5, "within 2× of the bare closed form (ours ÷ it ≥ 0.5×)")
    full, closed = rows.get("ours_full"), rows.get("closed")
    if full and closed and "patients_per_s" in full and "patients_per_s" in closed:
        out.append({"goal": "(not a goal) the whole `medtransport.run` against the bare "
                            "closed form",
                    "measured": f"{closed['patients_per_s'] / full['patients_per_s']:.3g}× "
                                "the closed form's time",
                    "met": "—"})
    for big in res.get("large", []):
        if "wall_s" in big:
            how = ("one call" if big["chunk"] >= big["patients"] else
                   f"chunks of {big['chunk']:,}") + (", warm memory" if big.get("warm") else
                                                      ", fresh process, cold memory")
            out.append({"goal": f"{big['patients']:,} patients < 3 s ({how})",
                        "measured": f"{big['wall_s']:.3g} s, peak RSS "
                                    f"{big['peak_rss_MB'] / 1024:.2f} GiB",
                        "met": "yes" if big["wall_s"] < 3 else "**no**"})
    return out


def render(res: dict[str, Any]) -> str:
    env = res["environment"]
    v = env["versions"]
    lines = [
        f"{res['date']}, {env['cpu']}, {env['cores']} cores, Python {env['python']}, "
        f"numpy {env['numpy']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Total wall time of this run: {res['total_s']:.0f} s.",
        *([machine.header(res["machine"])] if "machine" in res else []),
    ]
    if isinstance(env.get("blas"), list):
        lines.append("Thread pools (threadpoolctl): " + "; ".join(
            f"{p['internal_api']} {p['version']} ({p['architecture']}, {p['num_threads']} "
            "threads)" for p in env["blas"]) + ".")
    load = {k: x for k, x in res["other_load_cores"].items() if x is not None}
    if load:
        bad = [f"{k} ({x:.2f})" for k, x in load.items() if x > 0.15]
        lines.append("CPU used by other processes (mean busy cores per section, from "
                     f"/proc/stat): at most {max(load.values()):.2f}"
                     + (f"; **timings disturbed in: {', '.join(bad)}**." if bad else "."))
    p = res["patients"]
    lines += [
        "",
        f"### {p:,} patients, 2-compartment IV bolus, {TIMES.size} output times",
        "",
        f"Dose {DOSE:g} mg at t = 0, every minute for 24 h. Error = max over patients and "
        "times of |C − C_closed| / C_closed (central concentration). Ledger residual = max "
        "|Σ states − dose| / dose (central + peripheral + eliminated). Ours ÷ this = our "
        "patients/s over the row's.",
        "",
        "| method | patients run | wall s | patients/s | ours ÷ this | max rel. error "
        "| max ledger residual | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    ours = next(r for r in res["rows"] if r["key"] == "ours")["patients_per_s"]
    for r in res["rows"]:
        if "patients_per_s" not in r:
            lines.append(f"| {r['method']} | — | — | — | — | — | — | {r['status']} |")
            continue
        lines.append(
            f"| {r['method']} | {r['patients_run']:,} | {fmt(r['wall_s'])} "
            f"| {fmt(r['patients_per_s'])} | {ratio(ours, r['patients_per_s'])} "
            f"| {fmt(r.get('max_rel_error'), '.1e')} | {fmt(r.get('residual'), '.1e')} "
            f"| {r.get('notes', '')} |")
    lines += ["", f"solve_ivp: the first {IVP_SUBSET} patients are timed; the loop goes on "
              f"to all {p:,} when that projects to ≤ {IVP_BUDGET_S:g} s, else the wall time is "
              f"extrapolated. chi-drm: the bolus is the initial central amount; chi integrates "
              "each patient to the last time + 1 (its `simulate`)."]
    ph = res.get("ours_phases")
    if ph:
        total = sum(ph.values())
        lines += ["", "Ours (audited), phases of the warm run: "
                  + ", ".join(f"{k} {x:.3g} s ({100 * x / total:.0f} %)"
                              for k, x in ph.items()) + "."]
    pr = res.get("profile")
    if pr and pr.get("total_s"):
        lines += [
            "",
            f"Profile of one `amounts` call ({pr['patients']:,} patients, cProfile): "
            f"{pr['total_s']:.3g} s, of which the compiled propagation loop "
            f"{pr['kernel_s']:.3g} s ({pr['kernel_pct']:.0f} %, {pr['kernel_calls']} calls: "
            "first touch of the output's pages included) and the batched matrix exponentials "
            f"{pr['expm_s']:.3g} s ({pr['expm_pct']:.0f} %, {pr['expm_calls']} calls); the "
            "rest is planning the intervals and the Python around them.",
        ]
    mm = res.get("mm_rows")
    if mm:
        lines += [
            "",
            f"### Saturable (Michaelis–Menten) elimination, {p:,} patients",
            "",
            f"One compartment, IV bolus {MM_DOSE:g} mg, every 10 min for 24 h; log-normal V "
            f"(ω {MM['V'][1]}), Vmax (ω {MM['Vmax'][1]}), Km (ω {MM['Km'][1]}). Error = max "
            "|C − C_LambertW| / C_LambertW over patients and times.",
            "",
            "| method | patients run | wall s | patients/s | ours ÷ this | max rel. error "
            "| max ledger residual | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        ours_mm = mm[0].get("wall_s")
        for r in mm:
            if "wall_s" not in r:
                lines.append(f"| {r['method']} | — | — | — | — | — | — | {r['status']} |")
                continue
            lines.append(
                f"| {r['method']} | {r['patients_run']:,} | {fmt(r['wall_s'])} "
                f"| {fmt(p / r['wall_s'])} | {ratio(p / ours_mm, p / r['wall_s'])} "
                f"| {fmt(r.get('max_rel_error'), '.1e')} | {fmt(r.get('residual'), '.1e')} "
                f"| {r.get('notes', '')} |")
    large = res.get("large", [])
    if large:
        lines += [
            "",
            "### 100 000 patients, ours (audited)",
            "",
            "Each row in a fresh child process (peak RSS = `getrusage` max RSS of that "
            "process). All concentrations (P × T float64) are kept, written by each chunk "
            "into its slice; the amounts (chunk × T × 3 float64) of every chunk go into one "
            "reused buffer (`amounts(..., out=buffer)`). Memory: *warm* rows first map and "
            "release as much memory as the run holds (the warm-up column, not timed), because "
            "on this virtual machine the first touch of memory the host has not backed yet "
            "costs up to 30× a normal page fault, at random; *cold* rows do not (a fresh "
            "process as a user would start it).",
            "",
            "| patients | chunk | memory | wall s | patients/s | peak RSS GiB | RSS before GiB "
            "| amounts array GiB | kept output GiB | max ledger residual | max rel. error "
            "(sampled) |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for b in large:
            if "wall_s" not in b:
                lines.append(f"| {b['patients']:,} | {b['chunk']:,} | | {b['status']} "
                             "| | | | | | | |")
                continue
            memory = (f"warm (warm-up {b['warmup_GiB']:.2f} GiB in {b['warmup_s']:.2g} s)"
                      if b.get("warm") else "cold")
            lines.append(
                f"| {b['patients']:,} | {b['chunk']:,} | {memory} | {b['wall_s']:.3g} "
                f"| {b['patients'] / b['wall_s']:.3g} | {b['peak_rss_MB'] / 1024:.2f} "
                f"| {b['baseline_rss_MB'] / 1024:.2f} | {b['amounts_array_MB'] / 1024:.2f} "
                f"| {b['output_MB'] / 1024:.2f} | {b['residual']:.1e} "
                f"| {b['max_rel_error_sampled']:.1e} |")
    lines += ["", "### Goals", "", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {g['met']} |" for g in res["goals"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 100 patients, no 100 000-patient run")
    ap.add_argument("--patients", type=int, default=None,
                    help="population of the side-by-side table (default 1000; quick 100)")
    ap.add_argument("--large", type=int, default=None,
                    help=f"patients of the large run (default {LARGE}; quick: none)")
    ap.add_argument("--chunks", default=",".join(map(str, CHUNKS)),
                    help="comma-separated chunk sizes (patients) for the large run, each run "
                         "after the other; one call for all patients is always added "
                         f"(default {','.join(map(str, CHUNKS))})")
    machine.add_out_argument(ap)
    ap.add_argument("--large-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.large_child:
        spec = json.loads(args.large_child)
        print(json.dumps(large_child(spec["n"], spec["chunk"], spec["warm"])))
        return 0

    info = machine.announce(quick=args.quick)
    t_start = now()
    quick = args.quick
    n = args.patients or (100 if quick else 1000)
    n_large = args.large if args.large is not None else (0 if quick else LARGE)
    res: dict[str, Any] = {"quick": quick, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "patients": n, "times": TIMES.size, "dose_mg": DOSE,
                           "population": POPULATION, "seed": SEED,
                           "tolerances": {"rtol": RTOL, "atol": ATOL}, "machine": info}
    log("environment …")
    res["environment"] = environment()
    load = LoadMonitor()
    pop = population(n)
    rows: list[dict[str, Any]] = []

    t0 = now()
    import medtransport.numerics.compartments  # noqa: F401 (the cold row excludes the import)

    res["import_compartments_s"] = now() - t0
    log("closed form …")
    with load.section("closed form"):
        closed_form(pop, TIMES)  # warm-up
        walls = []
        for _ in range(REPEATS):
            t0 = now()
            ref = closed_form(pop, TIMES)
            walls.append(now() - t0)
    closed_row = {"key": "closed", "method": "bare numpy closed form (A e^−αt + B e^−βt)",
                  "patients_run": n, "wall_s": statistics.median(walls),
                  "max_rel_error": 0.0, "residual": None,
                  "notes": f"reference for the error column; no ledger; median of {REPEATS}",
                  "repeats_s": walls}

    log("ours …")
    with load.section("ours"):
        cold = ours_runs(pop, ref, 1)[0]
        warm = ours_runs(pop, ref, REPEATS)
    best = warm[REPEATS // 2]  # the median run
    for key, r, label, note in (
            ("ours", best, "medtransport `amounts` + audit", f"warm, median of {REPEATS}"),
            ("ours_cold", cold, "medtransport `amounts` + audit",
             f"cold: first call in the process (after the import, "
             f"{res['import_compartments_s']:.2g} s, not counted)")):
        rows.append({"key": key, "method": label, "patients_run": n, "wall_s": r["wall_s"],
                     "max_rel_error": r["max_rel_error"], "residual": r["residual"],
                     "notes": note + ("" if r["balanced"] else "; **books do not close**"),
                     "balanced": r["balanced"], "phases_s": r["phases_s"]})
    try:  # the same with numpy's BLAS pools held to one thread (scipy's expm calls BLAS per
        # 4 × 4 matrix; with 2 threads and a core busy elsewhere each call waits for a thread)
        from threadpoolctl import threadpool_limits

        with load.section("ours, BLAS 1 thread"), threadpool_limits(limits=1):
            one = ours_runs(pop, ref, REPEATS)[REPEATS // 2]
        rows.append({"key": "ours_blas1", "method": "medtransport `amounts` + audit, BLAS "
                                                    "held to 1 thread (threadpoolctl)",
                     "patients_run": n, "wall_s": one["wall_s"],
                     "max_rel_error": one["max_rel_error"],
                     "residual": one["residual"], "notes": f"warm, median of {REPEATS}",
                     "balanced": one["balanced"], "phases_s": one["phases_s"]})
        del one
    except Exception as exc:
        rows.append({"key": "ours_blas1", "method": "medtransport, BLAS held to 1 thread",
                     "status": f"unavailable: {reason(exc)}"})
    log("medtransport.run …")
    with load.section("full run"):
        try:
            fr = full_run(n, REPEATS)
            rows.append({"key": "ours_full", "method": "medtransport `run` (scenario → audited "
                                                       "Dataset, every core audit)",
                         "patients_run": n, "wall_s": fr["wall_s"], "max_rel_error": None,
                         "residual": fr["residual"],
                         "notes": f"warm, median of {REPEATS}; its own seeded patients (same "
                                  "model, dose, grid, ω), so no error column",
                         "repeats_s": fr["repeats_s"]})
        except Exception as exc:
            traceback.print_exc()
            rows.append({"key": "ours_full", "method": "medtransport `run`",
                         "status": f"failed: {reason(exc)}"})
    res["ours_phases"] = best["phases_s"]
    res["ours_repeats_s"] = [r["wall_s"] for r in warm]
    del cold, warm, best
    with load.section("profile"):
        res["profile"] = profile_ours(pop, TIMES)

    log("solve_ivp loop …")
    with load.section("solve_ivp"):
        try:
            iv = ivp_loop(pop, TIMES, n)
            note = (f"timed {iv['n_run']} patients, wall extrapolated to {n:,}"
                    if iv["extrapolated"] else "every patient solved")
            rows.append({"key": "ivp", "method": "scipy `solve_ivp` loop (LSODA)",
                         "patients_run": iv["n_run"], "wall_s": iv["wall_s"],
                         "max_rel_error": max_rel_error(iv["conc"], ref[:iv["n_run"]]),
                         "residual": iv["residual"], "notes": note,
                         "extrapolated": iv["extrapolated"]})
        except Exception as exc:
            traceback.print_exc()
            rows.append({"key": "ivp", "method": "scipy `solve_ivp` loop (LSODA)",
                         "status": f"unavailable: {reason(exc)}"})

    log("chi-drm …")
    try:
        res["chi_build_s"] = []
        for key, tol, label in (("chi_tight", (ATOL, RTOL), f"rtol {RTOL:g}, atol {ATOL:g}"),
                                ("chi_default", None, "myokit's default tolerances")):
            model, build_s = chi_build()  # a fresh model: tolerances stay with a simulation
            res["chi_build_s"].append(build_s)
            with load.section(key):
                c = chi_loop(model, pop, TIMES, tol)
            rows.append({"key": key, "method": f"chi-drm `PKPDModel.simulate` loop (CVODES), "
                                               f"{label}",
                         "patients_run": n, "wall_s": c["wall_s"],
                         "max_rel_error": max_rel_error(c["conc"], ref),
                         "residual": c["residual"],
                         "notes": f"model build + C compile {build_s:.2g} s, not counted"})
        del model
    except Exception as exc:
        traceback.print_exc()
        rows.append({"key": "chi_tight", "method": "chi-drm (CVODES)",
                     "status": f"unavailable: {reason(exc)}"})

    rows.append(closed_row)
    for r in rows:
        if "wall_s" in r:
            r["patients_per_s"] = n / r["wall_s"]  # an extrapolated wall is for n patients
    res["rows"] = rows

    log("saturable elimination …")
    with load.section("saturable"):
        try:
            res["mm_rows"] = mm_rows(n)
        except Exception as exc:
            traceback.print_exc()
            res["mm_rows"] = [{"key": "mm_ours", "method": "saturable population",
                               "status": f"failed: {reason(exc)}"}]

    res["large"] = []
    if n_large:
        chunks = sorted({min(int(c), n_large) for c in args.chunks.split(",")} | {n_large})
        # every chunk size on warm memory, then the largest chunk below all patients cold,
        # three times (fresh processes: the hypervisor's first-touch cost varies run to run)
        cold = max((c for c in chunks if c < n_large), default=n_large)
        for chunk, warm in [(c, True) for c in chunks] + [(cold, False)] * 3:
            log(f"{n_large:,} patients, chunk {chunk:,}, {'warm' if warm else 'cold'} …")
            with load.section(f"large, chunk {chunk}"):
                res["large"].append(run_large(n_large, chunk, warm, timeout=1200))
    res["other_load_cores"] = load.sections
    res["goals"] = goals(res)
    res["total_s"] = now() - t_start

    text = render(res)
    print(text)
    stem = "pk-latest-quick" if quick else "pk-latest"  # a smoke run never replaces a full one
    out = machine.output_dir(args.out)
    write_atomic(out / f"{stem}.md", text + "\n")
    write_atomic(out / f"{stem}.json", json.dumps(res, indent=1, default=str) + "\n")
    log(f"written {out / stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
