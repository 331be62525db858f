"""Individuals as NONMEM counts them (a new one whenever ID changes from the previous record)
and NONMEM's clock-time and date items, through whole data-set runs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medtransport.runner import run
from medtransport_pk.dataset import RepeatedIDWarning

HEAD = "ID,TIME,EVID,AMT,CMT,DV\n"
BLOCKS = ["{id},0,1,100,1,.\n{id},1,0,.,2,3.1\n{id},6,0,.,2,1.2\n",
          "{id},0,1,200,1,.\n{id},2,0,.,2,6.0\n",
          "{id},0,1,50,1,.\n{id},3,0,.,2,1.0\n{id},8,0,.,2,0.4\n"]


def scenario(tmp_path: Path, text: str, **extra: Any) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "d.csv").write_text(text)
    sc = {"name": "individuals", "model": "pk.one_compartment",
          "parameters": {"clearance": "2.8 L/h", "central_volume": "32 L",
                         "absorption_rate": "1.2 1/h"},
          "data": {"path": "d.csv", "units": {"AMT": "mg", "DV": "mg/L"}},
          "time": {"stop": "12 h", "step": "1 h"}, **extra}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def test_an_id_that_comes_back_runs_as_a_new_individual(tmp_path: Path) -> None:
    """ID 1, 2, then 1 again: three individuals, the third equal to the same records under a
    new ID 3; the ID value is kept, each has its own index along ``patient``."""
    back = HEAD + "".join(b.format(id=i) for b, i in zip(BLOCKS, (1, 2, 1), strict=True))
    fresh = HEAD + "".join(b.format(id=i) for b, i in zip(BLOCKS, (1, 2, 3), strict=True))
    with pytest.warns(RepeatedIDWarning, match="ID 1 at rows 7–9"):
        ds = run(str(scenario(tmp_path / "back", back)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RepeatedIDWarning)
        ref = run(str(scenario(tmp_path / "fresh", fresh)))
    assert ds.sizes["patient"] == 3
    assert ds["subject_id"].values.tolist() == [1, 2, 1]
    assert ds["ID"].values.tolist() == [1, 1, 1, 2, 2, 1, 1, 1]
    np.testing.assert_array_equal(ds["record_subject"].values, [0, 0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(ds["concentration"].values, ref["concentration"].values)
    # the third individual's books start empty: its first prediction is its own dose only
    assert ds["record_amount"].values[5].sum() == pytest.approx(50.0, rel=1e-14)
    assert ds["observed_cmax"].values.tolist() == ref["observed_cmax"].values.tolist()


def test_a_returning_id_gets_its_own_eta(tmp_path: Path) -> None:
    back = HEAD + "".join(b.format(id=i) for b, i in zip(BLOCKS, (1, 2, 1), strict=True))
    with pytest.warns(RepeatedIDWarning):
        ds = run(str(scenario(tmp_path, back, population={"variability": {"clearance": 0.3}},
                              seed=4)))
    cl = ds["clearance"].values
    assert cl.shape == (3,) and len(set(cl.tolist())) == 3
