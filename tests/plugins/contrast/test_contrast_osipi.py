"""OSIPI DCE reference data: forward models reproduce the curves, least-squares fits recover the
DRO parameters at OSIPI's own tolerances (tests/data/osipi, README there)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from contrast_osipi_data import delayed_variant, load_dce

from medtransport_contrast import kinetics as kin
from medtransport_contrast.fitting import fit

# OSIPI DCE-model tolerances: parameter → (atol, rtol)
TOL = {"ktrans": (0.005, 0.10), "ve": (0.05, 0.0), "vp": (0.025, 0.0),
       "plasma_flow": (5.0, 0.10), "delay": (1.0, 0.0)}


def _close(name: str, measured: float, reference: float) -> bool:
    atol, rtol = TOL[name]
    return abs(measured - reference) <= atol + rtol * abs(reference)


# -------------------------------------------------------------------------- forward models

def test_tofts_forward_reproduces_qiba_dro() -> None:
    rows = [r for r in load_dce("dce_DRO_data_tofts") if "highSNR" in r["label"]]
    assert len(rows) == 5
    for r in rows:
        ct = kin.tofts(r["t"], r["ca"], r["Ktrans"] / 60.0, r["ve"])
        rms = float(np.sqrt(np.mean((ct - r["C"]) ** 2)))
        assert rms <= 5e-4, (r["label"], rms)


def test_extended_tofts_forward_reproduces_anthropomorphic_dro() -> None:
    rows = [r for r in load_dce("dce_DRO_data_extended_tofts") if "highSNR" in r["label"]]
    assert len(rows) == 3
    for r in rows:
        ct = kin.extended_tofts(r["t"], r["ca"], r["Ktrans"] / 60.0, r["ve"], r["vp"])
        rms = float(np.sqrt(np.mean((ct - r["C"]) ** 2)))
        assert rms <= 2e-4, (r["label"], rms)


@pytest.mark.parametrize("name", ["patlak_sd_0.02_delay_0", "patlak_sd_0.02_delay_5"])
def test_patlak_forward_leaves_only_the_noise(name: str) -> None:
    """Noise SD 0.02 mM: residual mean within 3 SE of 0 and SD within 10 % of 0.02."""
    for r in load_dce(name):
        cp = kin.shift(r["t"], r["cp_aif"], r["arterial_delay"])
        res = kin.patlak(r["t"], cp, r["ps"] / 60.0, r["vp"]) - r["C_t"]
        assert abs(res.mean()) <= 3 * 0.02 / np.sqrt(res.size), r["label"]
        assert 0.018 <= res.std() <= 0.022, r["label"]


@pytest.mark.parametrize("name", ["2cxm_sd_0.001_delay_0", "2cxm_sd_0.001_delay_5"])
def test_two_compartment_exchange_forward_leaves_only_the_noise(name: str) -> None:
    """Noise SD 0.001 mM; Fp in the file is mL/min/100 mL, i.e. /100 for 1/min."""
    for r in load_dce(name):
        cp = kin.shift(r["t"], r["cp_aif"], r["arterial_delay"])
        res = kin.two_compartment_exchange(r["t"], cp, r["fp"] / 100 / 60, r["ps"] / 60,
                                           r["vp"], r["ve"]) - r["C_t"]
        assert abs(res.mean()) <= 4 * 0.001 / np.sqrt(res.size), r["label"]
        assert 0.0009 <= res.std() <= 0.0011, r["label"]


def test_flow_unit_slip_is_caught_by_the_reference_data() -> None:
    """Mutant: Fp in mL/min/100 mL coded as mL/min/mL (100× too large) — the curves leave
    the noise band by far."""
    for r in load_dce("2cxm_sd_0.001_delay_0"):
        res = kin.two_compartment_exchange(r["t"], r["cp_aif"], r["fp"] / 60, r["ps"] / 60,
                                           r["vp"], r["ve"]) - r["C_t"]
        # at least 10× the noise SD everywhere, and 80× at the peak
        assert res.std() > 10 * 0.001 and np.abs(res).max() > 80 * 0.001, r["label"]


# -------------------------------------------------------------------------- fits

def _fit_rows(rows: list[dict[str, Any]], model: str, names: dict[str, str],
              c_key: str, cp_key: str, delay_key: str) -> list[str]:
    failures = []
    for r in rows:
        delayed = r[delay_key] > 0
        res = fit(model, r["t"], r[c_key], r[cp_key], fit_delay=delayed)
        for ours, theirs in names.items():
            unit = {"ktrans": "1/min", "permeability_surface": "1/min", "plasma_flow": "1/min",
                    "ve": "", "vp": ""}[ours]
            value = res.value(ours, unit) * (100.0 if ours == "plasma_flow" else 1.0)
            key = "ktrans" if ours == "permeability_surface" else ours
            if not _close(key, value, r[theirs]):
                failures.append(f"{r['label']}: {ours} {value:.4g} vs {r[theirs]:.4g}")
        if delayed and not _close("delay", res.value("delay", "s"), r[delay_key]):
            failures.append(f"{r['label']}: delay {res.value('delay', 's'):.3g}")
    return failures


def test_tofts_fits_recover_qiba_parameters() -> None:
    """All 25 QIBA rows (5 regions × 5 SNRs) and their OSIPI delay variants (5 s)."""
    rows = load_dce("dce_DRO_data_tofts")
    rows = rows + [delayed_variant(r, 10) for r in rows]
    assert len(rows) == 50
    assert _fit_rows(rows, "tofts", {"ktrans": "Ktrans", "ve": "ve"}, "C", "ca",
                     "arterialdelay") == []


def test_extended_tofts_fits_recover_anthropomorphic_parameters() -> None:
    rows = load_dce("dce_DRO_data_extended_tofts")
    rows = rows + [delayed_variant(r, 5) for r in rows]
    assert len(rows) == 30
    assert _fit_rows(rows, "extended_tofts", {"ktrans": "Ktrans", "ve": "ve", "vp": "vp"},
                     "C", "ca", "arterialdelay") == []


def test_patlak_fits_recover_parameters() -> None:
    rows = load_dce("patlak_sd_0.02_delay_0") + load_dce("patlak_sd_0.02_delay_5")
    assert len(rows) == 18
    assert _fit_rows(rows, "patlak", {"ktrans": "ps", "vp": "vp"}, "C_t", "cp_aif",
                     "arterial_delay") == []


def test_two_compartment_exchange_fits_recover_parameters() -> None:
    """47 of 48 within OSIPI's tolerances. case_8_delayed (Fp 5 mL/min/100 mL, PS 0.15 /min:
    strongly flow-limited, so PS is barely identifiable) fits PS 0.128 against the tolerance
    0.15 ± 0.020; its fitted cost is *below* the cost at the true parameters, so the miss is
    the noise realisation's, not the optimiser's — shown here rather than hidden."""
    rows = load_dce("2cxm_sd_0.001_delay_0") + load_dce("2cxm_sd_0.001_delay_5")
    assert len(rows) == 48
    names = {"plasma_flow": "fp", "permeability_surface": "ps", "vp": "vp", "ve": "ve"}
    failures = _fit_rows(rows, "two_compartment_exchange", names, "C_t", "cp_aif",
                         "arterial_delay")
    assert len(failures) == 1 and failures[0].startswith("case_8_delayed: "
                                                         "permeability_surface"), failures
    r = next(r for r in rows if r["label"] == "case_8_delayed")
    res = fit("two_compartment_exchange", r["t"], r["C_t"], r["cp_aif"], fit_delay=True)

    def cost(fp: float, ps: float, vp: float, ve: float, delay: float) -> float:
        cp = kin.shift(r["t"], r["cp_aif"], delay)
        c = kin.two_compartment_exchange(r["t"], cp, fp / 60, ps / 60, vp, ve)
        return float(np.sum((c - r["C_t"]) ** 2))

    fitted = cost(*(res.value(n, u) for n, u in (("plasma_flow", "1/min"),
                                                 ("permeability_surface", "1/min"),
                                                 ("vp", ""), ("ve", ""), ("delay", "s"))))
    truth = cost(r["fp"] / 100, r["ps"], r["vp"], r["ve"], r["arterial_delay"])
    assert fitted < truth
