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


# ----------------------------------------------------------------------------- clock and date

def read(tmp_path: Path, text: str, units: dict[str, str] | None = None) -> Any:
    from medtransport_pk.dataset import compartment_numbers, read_nonmem

    path = tmp_path / "clock.csv"
    path.write_text(text)
    return read_nonmem(path, {"path": "clock.csv", "units": units or {"AMT": "mg",
                                                                      "DV": "mg/L"}},
                       compartments=compartment_numbers(0, True))


@pytest.mark.parametrize(("item", "dates"), [
    ("DATE", ["03/30/2024", "03/30/2024", "3-31-2024", "04/01/24", "12/31/99", "01/01/00",
              "02/28/2024", "02/29/2024"]),
    ("DAT1", ["30/03/2024", "30/03/2024", "31-3-2024", "01/04/24", "31/12/99", "01/01/00",
              "28/02/2024", "29/02/2024"]),
    ("DAT2", ["2024/03/30", "2024/03/30", "2024-3-31", "24/04/01", "99/12/31", "00/01/01",
              "2024/02/28", "2024/02/29"]),
    ("DAT3", ["2024/30/03", "2024/30/03", "2024-31-3", "24/01/04", "99/31/12", "00/01/01",
              "2024/28/02", "2024/29/02"]),
])
def test_clock_times_with_each_date_item_are_hours_since_the_first_record(
        tmp_path: Path, item: str, dates: list[str]) -> None:
    """Hand-computed: 30 Mar 08:00 → 20:30 is 12.5 h, → 31 Mar 08:15 is 24.25 h, → 1 Apr 07:45
    is 47.75 h (a month boundary); ID 2 from 31 Dec 1999 23:00 to 1 Jan 2000 01:00 is 2 h (a
    two-digit year: 99 → 1999, 00 → 2000); ID 3 from 28 Feb 2024 23:30 to 29 Feb 2024 00:15 is
    0.75 h (a leap day)."""
    clocks = ["08:00", "20:30", "08:15", "07:45", "23:00", "01:00", "23:30", "00:15"]
    ids = [1, 1, 1, 1, 2, 2, 3, 3]
    amt = ["100", ".", ".", ".", "100", ".", "100", "."]
    dv = [".", "2.0", "1.0", "0.5", ".", "3.0", ".", "1.0"]
    text = f"ID,{item},TIME,AMT,DV\n" + "".join(
        f"{i},{d},{c},{a},{v}\n" for i, d, c, a, v in zip(ids, dates, clocks, amt, dv,
                                                          strict=True))
    t = read(tmp_path, text)
    np.testing.assert_allclose(t.time, [0.0, 12.5, 24.25, 47.75, 0.0, 2.0, 0.0, 0.75],
                               rtol=0, atol=1e-12)
    assert item not in t.covariates  # a date is not a covariate


def test_clock_times_without_a_date_and_a_date_without_a_year(tmp_path: Path) -> None:
    t = read(tmp_path, "ID,TIME,AMT,DV\n1,08:00,100,.\n1,09:30,.,2\n1,14:05:30,.,1\n")
    np.testing.assert_allclose(t.time, [0.0, 1.5, 6.0 + 5 / 60 + 30 / 3600], atol=1e-12)
    t = read(tmp_path, "ID,DATE,TIME,AMT,DV\n1,12/31,22:00,100,.\n1,12/31,23:00,.,2\n")
    np.testing.assert_allclose(t.time, [0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize(("row", "message"), [
    ("1,03/30/2024,25:10,.,2", "data row 3 (ID 1): TIME '25:10' is not a clock time"),
    ("1,03/30/2024,08:61,.,2", "data row 3 (ID 1): TIME '08:61' is not a clock time"),
    ("1,03/30/2024,ab:cd,.,2", "data row 3 (ID 1): TIME 'ab:cd' is not a clock time"),
    ("1,02/30/2024,09:00,.,2", "data row 3 (ID 1): DATE '02/30/2024' is not a date "
                               "month/day/year"),
    ("1,13/01/2024,09:00,.,2", "data row 3 (ID 1): DATE '13/01/2024' is not a date"),
    ("1,02/29/2023,09:00,.,2", "DATE '02/29/2023' is not a date"),
    ("1,.,09:00,.,2", "data row 3 (ID 1): DATE '.' is not a date"),
])
def test_malformed_clock_times_and_dates_are_refused_naming_the_row(
        tmp_path: Path, row: str, message: str) -> None:
    from medtransport.errors import ScenarioError

    with pytest.raises(ScenarioError) as info:
        read(tmp_path, f"ID,DATE,TIME,AMT,DV\n1,03/30/2024,08:00,100,.\n{row}\n")
    assert message in str(info.value), str(info.value)


def test_a_clock_past_midnight_without_a_date_is_refused(tmp_path: Path) -> None:
    from medtransport.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"data row 3 .*TIME goes backwards"):
        read(tmp_path, "ID,TIME,AMT,DV\n1,23:00,100,.\n1,01:00,.,2\n")


def test_a_clock_time_in_other_units_than_hours_is_refused(tmp_path: Path) -> None:
    from medtransport.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"data\.units\.TIME: clock times"):
        read(tmp_path, "ID,TIME,AMT,DV\n1,08:00,100,.\n1,09:00,.,2\n",
             units={"AMT": "mg", "DV": "mg/L", "TIME": "min"})


def test_a_clock_time_data_set_runs_like_its_elapsed_hours(tmp_path: Path) -> None:
    clock = ("ID,DATE,TIME,AMT,CMT,DV\n1,03/30/2024,22:00,100,1,.\n1,03/31/2024,00:30,.,2,3\n"
             "1,03/31/2024,06:00,.,2,1\n")
    hours = "ID,TIME,AMT,CMT,DV\n1,0,100,1,.\n1,2.5,.,2,3\n1,8,.,2,1\n"
    a = run(str(scenario(tmp_path / "clock", clock)))
    b = run(str(scenario(tmp_path / "hours", hours)))
    np.testing.assert_array_equal(a["TIME"].values, [0.0, 2.5, 8.0])
    np.testing.assert_array_equal(a["concentration"].values, b["concentration"].values)
