"""The processes with their statistics computed while the paths run (``statistics:
in_kernel``, no stored path): the same variables as with stored paths, in agreement with them
and with the exact law, the audits still catching their mutants, and the choice made by
``auto`` and refused where it does not apply (walls)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from sde_mutants import half_noise

import medtransport
from medtransport.errors import ScenarioError
from medtransport.numerics import sde as engine
from medtransport.plugins import get_registry
from medtransport.testing import build_model, failed_audits

PROCESSES = [("sde.ornstein_uhlenbeck", 0), ("sde.geometric_brownian", 0),
             ("sde.geometric_brownian", 1), ("sde.cox_ingersoll_ross", 0),
             ("sde.cox_ingersoll_ross", 1), ("sde.jacobi_mixing", 0), ("sde.jacobi_mixing", 1),
             ("sde.drifted_brownian", 0)]


def cls_of(model_id: str) -> Any:
    return get_registry().model_class(model_id)


def example(model_id: str, i: int, statistics: str, paths: int = 20_000) -> dict[str, Any]:
    sc = copy.deepcopy(cls_of(model_id).example_scenarios()[i])
    sc["solver"] = {**sc["solver"], "statistics": statistics, "paths": paths}
    return sc


@pytest.mark.slow
@pytest.mark.parametrize(("model_id", "i"), PROCESSES)
def test_in_kernel_statistics_agree_with_stored_paths_and_pass_every_audit(
        model_id: str, i: int) -> None:
    fused = medtransport.run(example(model_id, i, "in_kernel"))
    paths = medtransport.run(example(model_id, i, "paths"))
    assert fused.attrs["statistics"].startswith("in_kernel")
    assert paths.attrs["statistics"].startswith("paths")
    assert set(fused.data_vars) == set(paths.data_vars)
    for name in fused.data_vars:
        assert fused[name].attrs["units"] == paths[name].attrs["units"], name
    later = slice(1, None)  # t = 0: every path at x₀
    for name in ("mean", "variance"):
        a, b = fused[name].values[later], paths[name].values[later]
        se = np.hypot(fused[f"{name}_se"].values[later], paths[f"{name}_se"].values[later])
        assert np.all(np.abs(a - b) < 5 * se), (name, (a - b) / se)
    qa, qb = fused["quantiles"].values[later], paths["quantiles"].values[later]
    qse = np.hypot(fused["quantiles_se"].values[later], paths["quantiles_se"].values[later])
    assert np.all(np.abs(qa - qb) < 5 * qse + 1e-12)
    # the density integrates to the survivors, as with stored paths
    centres = fused["state"].values
    w = np.full(centres.size, centres[1] - centres[0])
    total = fused["density"].values @ w + fused["beyond_histogram"].values
    np.testing.assert_allclose(total, 1.0, rtol=1e-9)
    assert np.all(fused["alive"].values == 20_000)


def test_auto_computes_in_the_kernel_when_the_paths_would_be_large(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransport_sde.processes as processes

    sc = example("sde.ornstein_uhlenbeck", 0, "auto", paths=2000)
    assert medtransport.run(sc).attrs["statistics"].startswith("paths")
    monkeypatch.setattr(processes, "IN_KERNEL_ABOVE", 1000)
    assert medtransport.run(sc).attrs["statistics"].startswith("in_kernel")
    walled = example("sde.drifted_brownian", 1, "auto", paths=2000)
    assert medtransport.run(walled).attrs["statistics"].startswith("paths")


def test_in_kernel_is_refused_with_walls_naming_the_field() -> None:
    with pytest.raises(ScenarioError, match=r"solver\.statistics.*walls"):
        build_model(cls_of("sde.drifted_brownian"), example("sde.drifted_brownian", 1,
                                                            "in_kernel"))


def test_twenty_million_paths_need_no_path_memory_in_the_kernel() -> None:
    sc = example("sde.ornstein_uhlenbeck", 0, "auto", paths=20_000_000)
    sc["time"] = {**sc["time"], "output_every": sc["time"]["step"]}
    model = build_model(cls_of("sde.ornstein_uhlenbeck"), sc)  # not refused
    assert model.statistics_mode() == "in_kernel"


# ----------------------------------------------------------------------------- mutants

def test_in_kernel_mutants_are_caught() -> None:
    ou, cir, bm = (cls_of(m) for m in ("sde.ornstein_uhlenbeck", "sde.cox_ingersoll_ross",
                                       "sde.drifted_brownian"))

    class TwiceAsFast(ou):  # type: ignore[misc, valid-type]
        def sde(self) -> engine.AffineSDE:
            right = super().sde()
            return engine.AffineSDE.scalar(2 * float(right.drift_constant[0]),
                                           2 * float(right.drift_matrix[0, 0]),
                                           c0=float(right.noise[0, 0]))

        def exact_moments(self, elapsed: np.ndarray) -> Any:  # the declared process's
            declared = ou.sde
            mean, var = engine_moments(declared(self), self.x0(), elapsed)
            return mean, var

    class NoFix(cir):  # type: ignore[misc, valid-type]
        @property
        def bounds_fix(self) -> str:
            return "none"

    narrow = half_noise(bm)

    class LosesDensity(ou):  # type: ignore[misc, valid-type]
        def _dataset_in_kernel(self, run: Any, times: np.ndarray) -> Any:
            ds, ledger = super()._dataset_in_kernel(run, times)
            attrs = dict(ds["density"].attrs)
            ds["density"] = ds["density"] * 0.9
            ds["density"].attrs.update(attrs)
            return ds, ledger

    assert "moments[mean]" in failed_audits(TwiceAsFast, example("sde.ornstein_uhlenbeck", 0,
                                                                 "in_kernel", 4000))
    hard = {"name": "CIR near zero", "model": "sde.cox_ingersoll_ross",
            "parameters": {"initial": "0.05 mg/L", "reversion_rate": "1 1/h",
                           "long_term_mean": "0.05 mg/L",
                           "volatility": "0.5 (mg/L)**0.5/h**0.5"},
            "solver": {"method": "euler_maruyama", "paths": 2000, "statistics": "in_kernel"},
            "time": {"stop": "2 h", "step": "0.01 h", "output_every": "0.5 h"}, "seed": 4}
    assert "state_space" in failed_audits(NoFix, hard)
    assert "fokker_planck" in failed_audits(narrow, example("sde.drifted_brownian", 0,
                                                               "in_kernel", 4000))
    assert "density_normalization" in failed_audits(
        LosesDensity, example("sde.ornstein_uhlenbeck", 0, "in_kernel", 4000))
    ds = medtransport.run(hard)  # the sound model truncates and reports the count
    assert ds.attrs["statistics"].startswith("in_kernel")


def engine_moments(sde: engine.AffineSDE, x0: float, elapsed: np.ndarray) -> Any:
    from medtransport.numerics.sde_moments import exact_moments

    mean, var = exact_moments(sde, [x0], elapsed)
    return mean[:, 0], var[:, 0]
