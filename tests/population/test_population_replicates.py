"""Replicates of a data set's subjects (``population.replicates``, for VPCs): every replicate
runs its subject's own records with its own η, chunked like virtual patients, and each
patient's numbers do not depend on the chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medtransport as mt
from medtransport.batch import run_population
from medtransport.errors import ScenarioError
from medtransport.population import sample_population
from medtransport.runner import prepare
from medtransport.scenario import load_scenario

THEOPH = Path(__file__).parents[2] / "examples" / "data" / "theoph.yaml"
SUBJECTS = 12


def replicated(n: int, size: int | None = None, omega: float = 0.3) -> mt.Scenario:
    sc = load_scenario(str(THEOPH))
    return sc.with_changes(population={"size": size or n * SUBJECTS, "replicates": n,
                                       "variability": {"clearance": omega}}, seed=11)


@pytest.mark.slow
def test_replicates_run_each_subject_s_records_with_their_own_eta(tmp_path: Path) -> None:
    sc = replicated(3)
    whole = run_population(sc, chunk_size=36, store=tmp_path / "one.zarr").dataset
    plain = mt.run(load_scenario(str(THEOPH)))  # the data set itself, η = 0
    subject = np.arange(36) % SUBJECTS
    np.testing.assert_array_equal(whole["subject_id"].values, plain["subject_id"].values[
        subject])
    np.testing.assert_array_equal(whole["replicate"].values, np.arange(36) // SUBJECTS)
    # patient i's clearance is its subject's times exp(η_i), η_i drawn at position i
    assert sc.population is not None
    eta = sample_population(sc.population, 11, 0, 36).etas["clearance"]
    np.testing.assert_allclose(np.log(whole["clearance"].values /
                                      plain["clearance"].values[subject]), eta,
                               rtol=0, atol=1e-12)
    assert np.unique(np.round(whole["clearance"].values, 12)).size == 36
    # without variability every replicate is its subject's prediction
    flat = run_population(replicated(2, omega=0.0), chunk_size=5,
                          store=tmp_path / "flat.zarr").dataset
    np.testing.assert_allclose(
        flat["grid_concentration"].sel(tissue="central").values,
        plain["grid_concentration"].sel(tissue="central").values[:, np.arange(24) % 12],
        rtol=1e-12, atol=1e-12)


def test_replicates_do_not_depend_on_the_chunking(tmp_path: Path) -> None:
    sc = replicated(3)
    one = run_population(sc, chunk_size=36, store=tmp_path / "a.zarr").dataset
    many = run_population(sc, chunk_size=7, store=tmp_path / "b.zarr").dataset
    assert many.sizes["chunk"] == 6
    for name, var in one.data_vars.items():
        if "chunk" in var.dims:
            continue
        np.testing.assert_array_equal(many[name].values, var.values, err_msg=str(name))


def test_replicates_are_refused_without_a_data_set_or_with_the_wrong_size() -> None:
    with pytest.raises(ScenarioError, match=r"population\.size.*expected 36"):
        prepare(replicated(3, size=30))
    events = {"name": "x", "model": "pk.one_compartment",
              "parameters": {"clearance": "4 L/h", "central_volume": "30 L"},
              "events": [{"type": "bolus", "amount": "100 mg"}],
              "population": {"size": 4, "replicates": 2, "variability": {"clearance": 0.2}},
              "time": {"stop": "4 h", "step": "1 h"}}
    with pytest.raises(ScenarioError, match=r"population\.replicates.*data set"):
        prepare(events)
