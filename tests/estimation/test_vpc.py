"""VPC: data simulated from the model sit inside their bands; data that are not, do not."""

from __future__ import annotations

import numpy as np
from helpers import simulated_oral

from medtransport.estimation.problem import Problem
from medtransport.estimation.vpc import save_vpc_plot, vpc


def _inside(ds) -> np.ndarray:
    obs = ds["observed"].values
    return (obs >= ds["simulated_low"].values) & (obs <= ds["simulated_high"].values)


def test_data_from_the_model_lie_within_the_vpc_bands(tmp_path) -> None:
    # Each band is a 95 % interval: of the 3 × 8 observed percentiles at most a few miss.
    problem, _ = simulated_oral(100, seed=21)
    ds = vpc(problem, replicates=200, seed=4)
    assert ds.sizes["bin"] == 8
    assert _inside(ds).sum() >= 21, _inside(ds)
    save_vpc_plot(ds, problem, str(tmp_path / "vpc.png"))
    assert (tmp_path / "vpc.png").stat().st_size > 5_000


def test_data_from_another_model_fall_outside_the_bands() -> None:
    # Levels 60 % higher than the model predicts (a wrong volume): the medians miss.
    problem, _ = simulated_oral(100, seed=21)
    wrong = Problem(**{**problem.__dict__, "dv": problem.dv * 1.6})
    ds = vpc(wrong, replicates=200, seed=4)
    assert not _inside(ds)[:, 1].any()


def test_the_vpc_is_seeded() -> None:
    problem, _ = simulated_oral(30, seed=2)
    a, b = vpc(problem, replicates=50, seed=9), vpc(problem, replicates=50, seed=9)
    np.testing.assert_array_equal(a["simulated_high"].values, b["simulated_high"].values)
