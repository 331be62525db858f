"""Generate the SYNTHETIC vancomycin data set ``examples/data/vancomycin.csv``, once.

No patient's data: eight invented adults, each given a loading dose of 25 mg/kg (rounded to
250 mg, over 2 h) then a maintenance dose of 15 mg/kg (rounded to 250 mg) every 12 h from 12 h,
infused at 1000 mg/h (so 1 g runs 1 h, 1.5 g 1.5 h); subject 8's maintenance is cut to 750 mg
over 1 h at 60 h. Sampled at a trough (30 min before the 4th maintenance dose), a peak (1 h after
that infusion ends) and a trough 30 min before the 6th. Columns: WT (kg), AGE (year), SEX
(0 male, 1 female), SCR (serum creatinine, mg/dL).

Concentrations follow a two-compartment model with today's covariate models (the parameters of
``examples/scenarios/vancomycin_infusion_q12h.yaml``): CL = 4.6 L/h·(WT/70)^0.75·(0.1 +
0.9·CrCl/(100 mL/min)) with Cockcroft–Gault CrCl, V1 = 30 L·WT/70, Q = 6.9 L/h·(WT/70)^0.75,
V2 = 40 L·WT/70; each subject's CL and V1 times exp(η), η ~ N(0, 0.2²) and N(0, 0.1²); DV =
C·(1 + 0.1·ε), ε ~ N(0, 1), rounded to 0.1 mg/L. Solved exactly (matrix exponential of the
rate matrix augmented with the infusion input), independently of medtransport's engine.

Run from the repository root: ``python examples/data/make_vancomycin.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.linalg import expm

TARGET = Path(__file__).resolve().parent / "vancomycin.csv"
SEED = 20261203
#            WT    AGE  SEX  SCR
SUBJECTS = [(72.0, 45, 0, 0.9), (58.5, 67, 1, 1.1), (95.0, 38, 0, 0.8), (81.0, 72, 0, 1.6),
            (64.0, 29, 1, 0.7), (110.0, 55, 0, 1.2), (49.5, 81, 1, 1.3), (77.0, 60, 0, 2.4)]


def crcl(wt: float, age: float, sex: int, scr: float) -> float:
    """Cockcroft–Gault, mL/min."""
    return (140.0 - age) * wt / (72.0 * scr) * (0.85 if sex == 1 else 1.0)


def rounded(dose: float) -> float:
    return 250.0 * round(dose / 250.0)


def central(times: list[float], infusions: list[tuple[float, float, float]], k: np.ndarray,
            v1: float) -> list[float]:
    """Central concentrations at ``times`` for infusions (start, duration, rate), superposed."""
    out = []
    for t in times:
        total = 0.0
        for start, dur, rate in infusions:
            if t <= start:
                continue
            on = min(t - start, dur)
            # exact: the state after `on` hours of input r from zero, then free decay
            aug = np.zeros((3, 3))
            aug[:2, :2] = k
            aug[0, 2] = rate
            a = expm(aug * on)[:2, 2]
            a = expm(k * (t - start - on)) @ a
            total += a[0]
        out.append(total / v1)
    return out


def main() -> None:
    rng = np.random.default_rng(SEED)
    lines = ["# SYNTHETIC vancomycin data (invented subjects; see make_vancomycin.py and "
             "README.md)",
             "ID TIME EVID AMT RATE II ADDL CMT DV MDV WT AGE SEX SCR"]
    for i, (wt, age, sex, scr) in enumerate(SUBJECTS, start=1):
        eta_cl, eta_v = rng.normal(0.0, 0.2), rng.normal(0.0, 0.1)
        cl = 4.6 * (wt / 70) ** 0.75 * (0.1 + 0.9 * crcl(wt, age, sex, scr) / 100) * np.exp(eta_cl)
        v1 = 30.0 * wt / 70 * np.exp(eta_v)
        q, v2 = 6.9 * (wt / 70) ** 0.75, 40.0 * wt / 70
        k = np.array([[-(cl + q) / v1, q / v2], [q / v1, -q / v2]])
        load = rounded(25 * wt)
        maint = rounded(15 * wt)
        cov = f"{wt:g} {age} {sex} {scr:g}"
        records = [(0.0, f"{i} 0 1 {load:g} {load / 2:g} . . 1 . 1 {cov}")]
        infusions = [(0.0, 2.0, load / 2)]
        n_maint = 6
        if i == 8:  # the dose is cut at 60 h: four doses, then a new regimen
            records.append((12.0, f"{i} 12 1 {maint:g} 1000 12 3 1 . 1 {cov}"))
            records.append((60.0, f"{i} 60 1 750 750 12 1 1 . 1 {cov}"))
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(4)]
            infusions += [(60.0 + 12 * j, 1.0, 750.0) for j in range(2)]
        else:
            records.append((12.0, f"{i} 12 1 {maint:g} 1000 12 {n_maint - 1} 1 . 1 {cov}"))
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(n_maint)]
        dur4 = next(d for s, d, _ in infusions if s == 48.0)
        samples = [47.5, 48.0 + dur4 + 1.0, 71.5]
        conc = central(samples, infusions, k, v1)
        for t, c in zip(samples, conc, strict=True):
            dv = round(c * (1 + 0.1 * rng.normal()), 1)
            records.append((t, f"{i} {t:g} 0 . . . . 1 {dv:g} 0 {cov}"))
        lines += [text for _, text in sorted(records, key=lambda r: r[0])]
    TARGET.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
