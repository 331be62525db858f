"""Whole-volume map fitting: medtransport against its peers, side by side.

1. DCE, 128×128×32 voxels × 600 time points (0.5 s frames, Parker AIF at Hct 0.42, bolus at
   10 s), Tofts and extended Tofts with Gaussian noise of 0.01 mM:
   - **medtransport** ``medtransport_contrast.maps.fit_maps`` (linearised start + batched
     Levenberg–Marquardt), in chunks of voxels (the 315 million-value volume is never held at
     once; each chunk is simulated, then timed while fitted);
   - **scipy curve_fit loop**: ``scipy.optimize.curve_fit`` per voxel on our forward model, on a
     voxel subset, extrapolated to the volume;
   - **osipy**: reported unavailable with the reason (its releases need Python >= 3.12);
   - **dcmri** (if installed): ``dcmri.Tissue(kinetics='WV'|'HF').train`` per voxel on the
     noise-free SPGR *signal* dcmri itself predicts for the same subset's parameters (its fit
     includes the signal model), extrapolated; reported "unavailable" otherwise.
   The goal: < 60 s for each model on the whole volume.
2. DTI, 96×96×60 voxels, b = 0 + 64 directions at b = 1000 s/mm², Rician noise (SNR 30):
   ``medtransport_dwi.maps.dti_maps`` (WLS) against DIPY's ``TensorModel(gtab, "WLS").fit``
   on the same array; goal ≤ 1× DIPY's time. FA/MD agreement is reported.

``--quick``: the DCE volume reduced to 16 384 voxels (4 slices of 64×64) and extrapolated
linearly in voxels, the DTI volume to 48×48×30; the table says what was measured and what
extrapolated. The machine may be shared: the CPU time other processes took during each section
(from /proc/stat) is recorded beside it.

Run:  .venv/bin/python bench/bench_imaging.py [--quick] [--out bench/results]
(writes imaging-latest* into --out, default bench/results/local/; header from bench/machine.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine
from bench_diffusion import _busy_cpu_s, _own_cpu_s, write_atomic

from medtransport_contrast import kinetics as kin
from medtransport_contrast.aif import parker_blood, plasma_from_blood
from medtransport_contrast.maps import fit_maps
from medtransport_dwi.maps import dti_maps

HCT = 0.42
NOISE_MM = 0.01
CHUNK = 16384
#: fit_maps threads (the machine's 2 cores)
THREADS = 2


def dce_grid() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(600) * 0.5
    cp = np.where(t >= 10.0, plasma_from_blood(parker_blood(t - 10.0), HCT), 0.0)
    return t, cp


def dce_chunk(model: str, n: int, seed: int, t: np.ndarray, cp: np.ndarray
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    p = {"ktrans": rng.uniform(0.02, 0.5, n), "ve": rng.uniform(0.1, 0.6, n),
         "vp": rng.uniform(0.005, 0.1, n)}
    c = kin.tofts(t, cp, p["ktrans"] / 60, p["ve"])
    if model == "extended_tofts":
        c = c + p["vp"][:, None] * cp
    return c + rng.normal(0, NOISE_MM, c.shape), p


def others_cpu(busy0: float | None, own0: float) -> float | None:
    """CPU seconds other processes used since (busy0, own0): the machine's busy time minus
    ours."""
    busy = _busy_cpu_s()
    if busy is None or busy0 is None:
        return None
    return max(0.0, busy - busy0 - (_own_cpu_s() - own0))


def bench_dce(model: str, voxels: int, subset: int) -> dict[str, Any]:
    t, cp = dce_grid()
    total = 128 * 128 * 32
    # warm-up (numba compilation) outside the timing
    c, _ = dce_chunk(model, 64, 0, t, cp)
    fit_maps(model, t, c, cp)
    elapsed, cpu, errors, busy0, own0 = 0.0, 0.0, [], _busy_cpu_s(), _own_cpu_s()
    for i, lo in enumerate(range(0, voxels, CHUNK)):
        n = min(CHUNK, voxels - lo)
        c, p = dce_chunk(model, n, 100 + i, t, cp)
        t0, c0 = time.perf_counter(), time.process_time()
        m = fit_maps(model, t, c, cp, threads=THREADS)
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        errors.append(np.median(np.abs(m["ktrans"].values - p["ktrans"]) / p["ktrans"]))
    others = others_cpu(busy0, own0)
    ours = elapsed * total / voxels
    # peers on a subset
    c, p = dce_chunk(model, subset, 999, t, cp)
    rows = {"medtransport fit_maps": {"measured_voxels": voxels, "seconds_measured": elapsed,
                                      "seconds_volume": ours, "cpu_seconds_measured": cpu,
                                      "cpu_seconds_volume": cpu * total / voxels,
                                      "median_rel_error_ktrans": float(np.median(errors))}}
    rows["scipy curve_fit loop"] = _curve_fit_loop(model, t, cp, c, total)
    rows["dcmri Tissue.train loop"] = _dcmri_loop(model, t, cp, p, min(subset, 8), total)
    rows["osipy"] = _osipy_row()
    return {"model": model, "volume_voxels": total, "times": t.size, "rows": rows,
            "other_processes_cpu_s": others}


def _curve_fit_loop(model: str, t: np.ndarray, cp: np.ndarray, c: np.ndarray,
                    total: int) -> dict[str, Any]:
    from scipy.optimize import curve_fit

    def f_tofts(tt: np.ndarray, ktrans: float, ve: float) -> np.ndarray:
        return kin.tofts(tt, cp, ktrans / 60, max(ve, 1e-6))

    def f_ext(tt: np.ndarray, ktrans: float, ve: float, vp: float) -> np.ndarray:
        return kin.extended_tofts(tt, cp, ktrans / 60, max(ve, 1e-6), vp)

    f, p0 = (f_tofts, (0.6, 0.2)) if model == "tofts" else (f_ext, (0.6, 0.2, 0.01))
    hi = (5.0, 1.0) if model == "tofts" else (5.0, 1.0, 1.0)
    t0, c0 = time.perf_counter(), time.process_time()
    for row in c:
        curve_fit(f, t, row, p0=p0, bounds=((0,) * len(p0), hi))
    s, cs = time.perf_counter() - t0, time.process_time() - c0
    return {"measured_voxels": c.shape[0], "seconds_measured": s,
            "seconds_volume": s / c.shape[0] * total, "cpu_seconds_measured": cs,
            "cpu_seconds_volume": cs / c.shape[0] * total}


def _dcmri_loop(model: str, t: np.ndarray, cp: np.ndarray, p: dict[str, np.ndarray], n: int,
                total: int) -> dict[str, Any]:
    try:
        import dcmri
    except ImportError as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
    # dcmri's Tofts is 'WV' (Ktrans, vi), its extended Tofts 'HF' (Ktrans, vi, vb = vp/(1 − H))
    kinetics = "WV" if model == "tofts" else "HF"
    try:
        from importlib.metadata import version as _version

        version = _version("dcmri")
        aif = cp * (1 - HCT)  # dcmri's AIF is the blood concentration (M)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            truth = dcmri.Tissue(kinetics=kinetics, aif=aif * 1e-3, t=t, H=HCT,
                                 Ktrans=float(p["ktrans"][i]) / 60, vi=float(p["ve"][i]),
                                 **({} if model == "tofts" else
                                    {"vb": float(p["vp"][i]) / (1 - HCT)}))
            sig = truth.signal()
            fitter = dcmri.Tissue(kinetics=kinetics, aif=aif * 1e-3, t=t, H=HCT)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitter.train(t, sig)
        s, cs = time.perf_counter() - t0, time.process_time() - c0
        return {"measured_voxels": n, "seconds_measured": s, "seconds_volume": s / n * total,
                "cpu_seconds_measured": cs, "cpu_seconds_volume": cs / n * total,
                "version": version,
                "note": f"kinetics {kinetics!r}, fitting its own noise-free signal"}
    except Exception as exc:  # a peer's API drift is reported, not fatal
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _osipy_row() -> dict[str, Any]:
    """osipy (OSIPI's library) is a peer we cannot run here: every release on PyPI (0.0.2 to
    0.1.4) declares Requires-Python >= 3.12. Where it imports, its version is recorded and a
    row is still to be written against its API."""
    try:
        import osipy
    except ImportError as exc:
        need = "" if sys.version_info >= (3, 12) else (
            f"; its releases require Python >= 3.12, this is {platform.python_version()}")
        return {"unavailable": f"{type(exc).__name__}: {exc}{need}"}
    return {"unavailable": f"osipy {getattr(osipy, '__version__', '?')} imports, but this "
                           f"bench has no osipy fitting row yet"}


def bench_dti(shape: tuple[int, int, int]) -> dict[str, Any]:
    n = 64
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    g = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
    b = np.concatenate([[0.0], np.full(n, 1000.0)])
    g = np.concatenate([np.zeros((1, 3)), g])
    rng = np.random.default_rng(1)
    p = int(np.prod(shape))
    lam = np.sort(rng.uniform(0.2e-3, 2.0e-3, (p, 3)), axis=1)
    q, _ = np.linalg.qr(rng.normal(size=(p, 3, 3)))
    adc = np.einsum("ni,pij,pj,pkj,nk->pn", g, q, lam, q, g, optimize=True)
    clean = 1000.0 * np.exp(-b * adc)
    del adc, q
    sigma = 1000.0 / 30
    data = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
    del clean
    out: dict[str, Any] = {"shape": list(shape), "volumes": b.size}
    dti_maps(data[:1000], b, g)  # warm-up
    busy0, own0 = _busy_cpu_s(), _own_cpu_s()
    t0, c0 = time.perf_counter(), time.process_time()
    ours = dti_maps(data, b, g)
    out["medtransport dti_maps (WLS)"] = {"seconds": time.perf_counter() - t0,
                                          "cpu_seconds": time.process_time() - c0}
    try:
        import dipy
        from dipy.core.gradients import gradient_table
        from dipy.reconst.dti import TensorModel

        gtab = gradient_table(b, bvecs=g, b0_threshold=50)
        model = TensorModel(gtab, fit_method="WLS")
        vol = data.reshape(*shape, b.size)
        t0, c0 = time.perf_counter(), time.process_time()
        fit = model.fit(vol)
        fa, md = np.asarray(fit.fa).reshape(-1), np.asarray(fit.md).reshape(-1)
        out["DIPY TensorModel WLS"] = {"seconds": time.perf_counter() - t0,
                                       "cpu_seconds": time.process_time() - c0,
                                       "version": dipy.__version__}
        out["max_abs_fa_difference"] = float(np.max(np.abs(fa - ours["fa"].values)))
        out["max_rel_md_difference"] = float(np.max(np.abs(md - ours["md"].values) /
                                                    np.abs(md)))
    except Exception as exc:
        out["DIPY TensorModel WLS"] = {"unavailable": f"{type(exc).__name__}: {exc}"}
    out["other_processes_cpu_s"] = others_cpu(busy0, own0)
    return out


def table(res: dict[str, Any]) -> str:
    lines = [f"# bench_imaging ({'quick' if res['quick'] else 'full'}) — {res['when']}", "",
             f"CPU: {res['cpu']}; {res['cores']} cores; python {res['python']}", "",
             machine.header(res["machine"]), "",
             "## DCE, 128×128×32 voxels × 600 times", "",
             "| model | fitter | voxels measured | s measured (wall / CPU) | s for the volume "
             "(wall / CPU) | note |",
             "|---|---|---|---|---|---|"]
    for d in res["dce"]:
        for name, r in d["rows"].items():
            if "unavailable" in r:
                lines.append(f"| {d['model']} | {name} | – | – | – | unavailable: "
                             f"{r['unavailable'][:160]} |")
                continue
            note = "measured" if r["measured_voxels"] == d["volume_voxels"] else "extrapolated"
            if "median_rel_error_ktrans" in r:
                note += f"; median rel. Ktrans error {r['median_rel_error_ktrans']:.2g}"
            lines.append(f"| {d['model']} | {name} | {r['measured_voxels']} | "
                         f"{r['seconds_measured']:.2f} / {r['cpu_seconds_measured']:.2f} | "
                         f"{r['seconds_volume']:.1f} / {r['cpu_seconds_volume']:.1f} | {note} |")
        lines.append(f"| {d['model']} | (other processes' CPU during the section) | | | "
                     f"{d['other_processes_cpu_s'] or 0:.1f} s | |")
    dti = res["dti"]
    lines += ["", f"## DTI, {'×'.join(map(str, dti['shape']))} voxels × {dti['volumes']} "
                  "volumes", "", "| fitter | s (wall / CPU) | note |", "|---|---|---|"]
    o = dti["medtransport dti_maps (WLS)"]
    ours = o["seconds"]
    lines.append(f"| medtransport dti_maps (WLS) | {ours:.2f} / {o['cpu_seconds']:.2f} | |")
    d = dti["DIPY TensorModel WLS"]
    if "seconds" in d:
        lines.append(f"| DIPY {d['version']} TensorModel WLS | {d['seconds']:.2f} / "
                     f"{d['cpu_seconds']:.2f} | ours/DIPY = {ours / d['seconds']:.2f} (wall), "
                     f"{o['cpu_seconds'] / d['cpu_seconds']:.2f} (CPU); "
                     f"max |ΔFA| {dti['max_abs_fa_difference']:.1e}, "
                     f"max rel ΔMD {dti['max_rel_md_difference']:.1e} |")
    else:
        lines.append(f"| DIPY | – | unavailable: {d['unavailable'][:80]} |")
    lines.append(f"| (other processes' CPU during the section) | "
                 f"{dti['other_processes_cpu_s'] or 0:.1f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    machine.add_out_argument(ap)
    args = ap.parse_args()
    info = machine.announce(quick=args.quick)
    voxels = 16384 if args.quick else 128 * 128 * 32
    subset = 16 if args.quick else 64
    dti_shape = (48, 48, 30) if args.quick else (96, 96, 60)
    res: dict[str, Any] = {"quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                      time.gmtime()),
                           "cpu": platform.processor() or platform.machine(),
                           "cores": os.cpu_count(), "python": platform.python_version(),
                           "machine": info}
    res["dce"] = [bench_dce(m, voxels, subset) for m in ("tofts", "extended_tofts")]
    res["dti"] = bench_dti(dti_shape)
    text = table(res)
    print(text)
    stem = "imaging-latest" + ("-quick" if args.quick else "")
    out = machine.output_dir(args.out)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.json", json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
