"""contrast.vessel_diffusion against the erfc solution, the well-mixed (Tofts) limit, and
equilibrium."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy.special import erfc

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport_contrast import kinetics as kin
from medtransport_contrast.aif import ParkerAIF, plasma_from_blood

STEP = {"kind": "measured", "medium": "plasma", "times": [0.0, 1e6],
        "concentrations": [1.0, 1.0]}


def _scenario(domain: dict[str, Any], *, d: str, p: str, aif: dict[str, Any] | None = None,
              time: dict[str, str] | None = None, ve: float = 0.3) -> dict[str, Any]:
    return {"name": "vessel", "model": "contrast.vessel_diffusion", "domain": domain,
            "parameters": {"diffusivity": d, "permeability": p, "ve": ve,
                           "aif": aif or STEP},
            "time": time or {"stop": "20 s", "step": "0.05 s", "output_every": "1 s"}}


def test_slab_with_a_leaky_wall_follows_erfc() -> None:
    """P → ∞, C_p = 1 mM from t = 0, a slab deep enough to be semi-infinite over 20 s:
    C_e(x, t) = erfc(x/(2√(Dt))) (Crank, *The Mathematics of Diffusion*, eq. 2.45)."""
    ds = mt.run(_scenario({"shape": "box", "size": ["200 um"], "cells": [400]},
                          d="1e-10 m^2/s", p="1 m/s"))
    x = ds["x"].values
    for t in (5.0, 20.0):
        exact = erfc(x / (2 * np.sqrt(1e-10 * t)))
        np.testing.assert_allclose(ds["concentration"].sel(time=t).values, exact, atol=5e-3)


def test_fast_diffusion_reduces_to_tofts_with_ktrans_ps_over_v() -> None:
    """D large: the EES is well mixed and C_t,EES = Ktrans·(e^{−kep t} ∗ C_p) with
    Ktrans = P·S/V, S/V = 2R_v/(R_t² − R_v²) per unit volume of the annulus."""
    rv, rt, perm, ve = 4e-6, 60e-6, 5e-7, 0.3
    sc = _scenario({"shape": "cylinder", "inner_radius": "4 um", "radius": "60 um",
                    "cells": [20]}, d="1e-7 m^2/s", p=f"{perm} m/s",
                   aif={"kind": "parker", "delay": "5 s"}, ve=ve,
                   time={"stop": "180 s", "step": "0.1 s", "output_every": "1 s"})
    ds = mt.run(sc)
    area = np.pi * (rt ** 2 - rv ** 2)
    weights = np.pi * (np.diff(np.linspace(rv, rt, 21) ** 2))
    ees = (ds["concentration"].values * weights).sum(axis=1) * ve / area
    ktrans = perm * 2 * rv / (rt ** 2 - rv ** 2)
    t = np.arange(0.0, 180.0 + 1e-9, 0.1)
    cp = plasma_from_blood(ParkerAIF(kind="parker", delay="5 s").blood(t), 0.42)
    tofts = kin.tofts(t, cp, ktrans, ve)[::10]
    np.testing.assert_allclose(ees, tofts, atol=2e-3 * tofts.max())


def test_constant_plasma_fills_the_ees_to_equilibrium() -> None:
    ds = mt.run(_scenario({"shape": "cylinder", "inner_radius": "5 um", "radius": "30 um",
                           "cells": [15]}, d="2e-10 m^2/s", p="1e-5 m/s",
                          time={"stop": "60 s", "step": "0.5 s", "output_every": "10 s"}))
    np.testing.assert_allclose(ds["concentration"].isel(time=-1).values, 1.0, atol=1e-3)
    # the ledger's inflow through the wall is what fills the EES
    assert float(ds["agent_residual"].max()) <= 1e-9 * float(ds["agent_stored"].max())


def test_vessel_needs_an_annulus_or_a_slab() -> None:
    with pytest.raises(ScenarioError, match="domain"):
        mt.run(_scenario({"shape": "sphere", "radius": "30 um", "cells": [10]},
                         d="1e-10 m^2/s", p="1e-6 m/s"))


def test_convection_diffusion_front_follows_ogata_banks() -> None:
    """Slab, constant pore velocity v, wall held at C_p = 1 mM (P → ∞): C/C0 =
    ½[erfc((x − vt)/(2√(Dt))) + e^{vx/D}·erfc((x + vt)/(2√(Dt)))] (Ogata & Banks, USGS Prof
    Paper 411-A, 1961). The upwind numerical diffusion (vΔx/2 = 0.5 % of D) is reported and
    passes; the drainage route carries what reaches the far face."""
    d, v = 1e-10, 2e-6
    sc = _scenario({"shape": "box", "size": ["300 um"], "cells": [600]}, d=f"{d} m^2/s",
                   p="1 m/s", time={"stop": "20 s", "step": "0.02 s", "output_every": "10 s"})
    sc["parameters"]["interstitial_velocity"] = f"{v} m/s"
    ds = mt.run(sc)
    x = ds["x"].values
    t = 20.0
    s = 2 * np.sqrt(d * t)
    exact = 0.5 * (erfc((x - v * t) / s) + np.exp(v * x / d) * erfc((x + v * t) / s))
    np.testing.assert_allclose(ds["concentration"].sel(time=t).values, exact, atol=1e-2)
    report = {r["name"]: r for r in json.loads(ds.attrs["audit_report"])["results"]}
    nd = report["numerical_diffusion"]
    assert nd["passed"] and nd["measured"] == pytest.approx(v * 0.5e-6 / 2, rel=1e-9)


def test_coarse_grid_with_fast_convection_is_refused_for_numerical_diffusion() -> None:
    """Δx = 10 µm, v = 50 µm/s: D_num = vΔx/2 = 2.5e-10 m²/s > D = 1e-10 m²/s."""
    sc = _scenario({"shape": "box", "size": ["200 um"], "cells": [20]}, d="1e-10 m^2/s",
                   p="1e-6 m/s", time={"stop": "2 s", "step": "0.1 s"})
    sc["parameters"]["interstitial_velocity"] = "50 um/s"
    with pytest.raises(mt.AuditFailure, match="numerical_diffusion"):
        mt.run(sc)


def test_convection_books_close_with_drainage() -> None:
    """The drainage route's cumulative amount equals ∫ q·A·C_e(last cell) dt, estimated here
    by the trapezoid rule over the 1 s outputs (to 1 %), and the run passes its audits."""
    from medtransport.testing import build_model
    from medtransport_contrast.vessel_model import VesselDiffusion

    sc = VesselDiffusion.example_scenarios()[2]
    sc["time"] = {**sc["time"], "output_every": "1 s"}
    model = build_model(VesselDiffusion, sc)
    traj = model.simulate()
    drained = traj.ledgers["agent"].outflow["drainage r+"]
    rt, rv = 60e-6, 4e-6
    q_out = 0.3 * 0.5e-6 * rv / rt  # Darcy flux ve·v_w·R_v/R_t at the outer face
    last = traj.states["concentration"].isel(r=-1).values
    t = traj.states["time"].values
    estimate = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (last[1:] + last[:-1]))]) \
        * q_out * 2 * np.pi * rt
    assert drained[-1] > 0
    np.testing.assert_allclose(drained, estimate, rtol=0.01, atol=1e-3 * drained[-1])
    assert mt.run(sc).attrs["audit_status"] == "passed"
