"""Reading NONMEM-format data sets (:mod:`medtransport_pk.dataset`).

Expected values are written out by hand from the file contents (a dose in mg/kg times the
weight, a time in minutes over 60 …), never taken from the reader itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medtransport.errors import ScenarioError
from medtransport.scenario import load_scenario
from medtransport_pk.dataset import (
    MAX_PROBLEMS,
    DataSetError,
    compartment_numbers,
    read_dataset,
    read_nonmem,
)

ORAL = compartment_numbers(0, True)  # 1 depot, 2 central
UNITS = {"AMT": "mg", "DV": "mg/L", "II": "h", "RATE": "mg/h"}

GOOD_CSV = """\
# a small oral study
ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,MDV,DV,WT,AGE
1,0,1,320,1,0,12,1,0,1,.,79.6,30
1,0.5,0,0,2,0,0,0,0,0,4.2,.,30
C this line is ignored, as NONMEM's IGNORE=C does
1,24,0,0,2,0,0,0,0,0,1.1,80.1,30
2,0,1,500,2,250,0,0,0,1,.,60,55
2,3,0,.,2,.,.,.,.,.,7.5,60,55
"""


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read(tmp_path: Path, text: str, **spec: Any):
    spec = {"path": "data.csv", "units": UNITS, **spec}
    return read_nonmem(write(tmp_path, text), spec, compartments=ORAL)


def problems_of(tmp_path: Path, text: str, **spec: Any) -> str:
    with pytest.raises(ScenarioError) as info:
        read(tmp_path, text, **spec)
    return str(info.value)


def test_a_good_file_gives_the_records_in_file_order(tmp_path: Path) -> None:
    t = read(tmp_path, GOOD_CSV, units={**UNITS, "WT": "kg", "AGE": "year"},
             covariates={"WT": "weight", "AGE": "age"})
    assert len(t) == 5
    assert t.id.tolist() == [1, 1, 1, 2, 2]
    assert t.time.tolist() == [0.0, 0.5, 24.0, 0.0, 3.0]
    assert t.evid.tolist() == [1, 0, 0, 1, 0]
    assert t.amt.tolist() == [320.0, 0.0, 0.0, 500.0, 0.0]
    assert t.rate.tolist() == [0.0, 0.0, 0.0, 250.0, 0.0]
    assert t.ii.tolist() == [12.0, 0.0, 0.0, 0.0, 0.0]
    assert t.addl.tolist() == [1, 0, 0, 0, 0]
    assert t.cmt.tolist() == [1, 2, 2, 2, 2]
    assert t.mdv.tolist() == [1, 0, 0, 1, 0]
    assert np.isnan(t.dv[0]) and t.dv[1:3].tolist() == [4.2, 1.1] and t.dv[4] == 7.5
    # the line of the file, comments and the header counted
    assert t.row.tolist() == [3, 4, 6, 7, 8]
    assert t.where(2) == "data row 6 (ID 1, TIME 24 h)"
    # a missing covariate takes the subject's previous value
    assert t.covariates["weight"].tolist() == [79.6, 79.6, 80.1, 60.0, 60.0]
    assert t.covariate_units == {"weight": "kg", "age": "year"}
    assert t.dv_unit == "mg/L" and t.amount_unit == "mg" and t.source == "data.csv"
    assert t.subjects().tolist() == [1, 2]


def test_whitespace_and_csv_forms_read_identically(tmp_path: Path) -> None:
    csv = read(tmp_path, GOOD_CSV, units={**UNITS, "WT": "kg"}, covariates={"WT": "weight"})
    spaced = GOOD_CSV.replace(",", "  ").replace("C this line  is", "C this line is")
    spaced = spaced.replace("\n1  0.5", "\n1\t0.5")  # tabs are whitespace too
    ws = read(tmp_path, spaced, units={**UNITS, "WT": "kg"}, covariates={"WT": "weight"})
    for name in ("id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "mdv", "dv",
                 "row"):
        np.testing.assert_array_equal(getattr(csv, name), getattr(ws, name), err_msg=name)
    assert csv.covariates.keys() == ws.covariates.keys()
    for name in csv.covariates:
        np.testing.assert_array_equal(csv.covariates[name], ws.covariates[name])


def test_column_names_are_case_insensitive_and_evid_mdv_derived(tmp_path: Path) -> None:
    # NONMEM's derivation without EVID/MDV: AMT > 0 is a dose; a record without DV is not an
    # observation
    t = read(tmp_path, "id,time,amt,dv,cmt\n1,0,100,.,2\n1,1,.,3.5,2\n1,2,.,.,2\n")
    assert t.evid.tolist() == [1, 0, 0]
    assert t.mdv.tolist() == [1, 0, 1]


def test_units_convert_to_hours_and_mg(tmp_path: Path) -> None:
    text = "ID TIME AMT RATE II ADDL DV CMT\n1 0 0.5 0.25 720 2 . 2\n1 90 . . . . 2.0 2\n"
    t = read(tmp_path, text, units={"TIME": "min", "AMT": "g", "RATE": "g/h", "II": "min",
                                    "DV": "ug/mL"})
    assert t.time.tolist() == [0.0, 1.5]
    assert t.amt[0] == pytest.approx(500.0, rel=1e-12)
    assert t.rate[0] == pytest.approx(250.0, rel=1e-12)
    assert t.ii[0] == pytest.approx(12.0, rel=1e-12)
    assert t.dv_unit == "ug/mL" and t.dv[1] == 2.0  # DV keeps its unit


def test_mg_per_kg_doses_scale_by_the_subjects_weight(tmp_path: Path) -> None:
    text = ("ID,TIME,AMT,RATE,DV,CMT,WT\n"
            "1,0,4.02,0,.,1,79.6\n1,1,.,.,8,2,79.6\n"
            "2,0,25,12.5,.,2,.\n2,0,.,.,.,2,62\n")  # weight given after the dose: carried back
    t = read(tmp_path, text, units={"AMT": "mg/kg", "RATE": "mg/kg/h", "DV": "mg/L",
                                    "WT": "kg"}, covariates={"WT": "weight"})
    assert t.amt[0] == pytest.approx(4.02 * 79.6, rel=1e-12)
    assert t.amt[2] == pytest.approx(25 * 62, rel=1e-12)
    assert t.rate[2] == pytest.approx(12.5 * 62, rel=1e-12)
    # weight in pounds: converted before scaling
    t = read(tmp_path, text.replace("79.6", "175.486").replace(",62", ",136.686"),
             units={"AMT": "mg/kg", "RATE": "mg/kg/h", "DV": "mg/L", "WT": "lb"},
             covariates={"WT": "weight"})
    assert t.amt[0] == pytest.approx(4.02 * 175.486 * 0.45359237, rel=1e-12)
    assert t.covariates["weight"][0] == pytest.approx(175.486 * 0.45359237, rel=1e-12)


def test_mg_per_m2_doses_scale_by_mosteller_bsa_or_a_bsa_column(tmp_path: Path) -> None:
    text = "ID,TIME,AMT,CMT,WT,HT\n1,0,100,2,81,176\n"
    t = read(tmp_path, text, units={"AMT": "mg/m^2", "WT": "kg", "HT": "cm"},
             covariates={"WT": "weight", "HT": "height"})
    assert t.amt[0] == pytest.approx(100 * np.sqrt(176 * 81 / 3600), rel=1e-12)
    text = "ID,TIME,AMT,CMT,BSA\n1,0,100,2,1.9\n"
    t = read(tmp_path, text, units={"AMT": "mg/m^2", "BSA": "m^2"},
             covariates={"BSA": "body_surface_area"})
    assert t.amt[0] == pytest.approx(190.0, rel=1e-12)


def test_per_kg_dose_without_a_weight_is_refused(tmp_path: Path) -> None:
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT\n1,0,4,1\n", units={"AMT": "mg/kg"})
    assert "data.units.AMT" in msg and "weight" in msg
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT,WT\n1,0,4,1,.\n2,0,4,1,70\n",
                      units={"AMT": "mg/kg", "WT": "kg"}, covariates={"WT": "weight"})
    assert "data row 2 (ID 1, TIME 0 h)" in msg and "weight" in msg and "ID 2" not in msg
    # nor does a weight leak forward from the subject before
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT,WT\n1,0,4,1,70\n2,0,4,1,.\n",
                      units={"AMT": "mg/kg", "WT": "kg"}, covariates={"WT": "weight"})
    assert "data row 3 (ID 2, TIME 0 h)" in msg and "ID 1," not in msg


def test_comment_rows_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    text = ("# header comment\n\nC,first comment\nID,TIME,AMT,CMT,CMTX\nc lower-case c\n"
            "1,0,100,2,5\n   # indented comment\n1,1,.,2,5\n")
    t = read(tmp_path, text)
    assert t.row.tolist() == [6, 8]
    # a header starting with the letter C (CMT first) is a header, not a comment
    t = read(tmp_path, "CMT,ID,TIME,AMT\n2,1,0,100\n")
    assert t.cmt.tolist() == [2] and t.amt.tolist() == [100.0]


def test_a_comment_column_c_as_many_nonmem_files_have(tmp_path: Path) -> None:
    text = "C,ID,TIME,AMT,CMT\n.,1,0,100,2\nC,1,1,999,2\n.,1,2,50,2\n"
    t = read(tmp_path, text)
    assert t.row.tolist() == [2, 4] and t.amt.tolist() == [100.0, 50.0]
    assert "C" not in t.covariates
    # a comment that merely starts with C is still a comment before the header
    t = read(tmp_path, "C data from the ID TIME study\nID,TIME,AMT,CMT\n1,0,100,2\n")
    assert t.row.tolist() == [3]


def test_dot_is_missing(tmp_path: Path) -> None:
    t = read(tmp_path, "ID TIME AMT RATE II ADDL SS CMT DV\n1 0 100 . . . . . .\n"
                       "1 2 . . . . . 2 .\n1 3 . . . . . 2 4.5\n")
    assert t.rate.tolist() == [0, 0, 0] and t.ii.tolist() == [0, 0, 0]
    assert t.addl.tolist() == [0, 0, 0] and t.ss.tolist() == [0, 0, 0]
    assert t.cmt.tolist() == [0, 2, 2]
    assert np.isnan(t.dv[:2]).all() and t.dv[2] == 4.5
    assert t.mdv.tolist() == [1, 1, 0]  # no DV: not an observation


def test_other_numeric_columns_are_covariates_and_text_columns_are_not(tmp_path: Path) -> None:
    t = read(tmp_path, "ID,TIME,AMT,CMT,CRCL,SITE\n1,0,100,2,85,north\n1,2,.,2,.,north\n",
             units={"AMT": "mg", "CRCL": "mL/min"})
    assert t.covariates["CRCL"].tolist() == [85.0, 85.0]
    assert "SITE" not in t.covariates
    values, unit = t.covariate("CRCL")
    assert unit == "mL/min" and values[0] == 85.0


def test_a_covariate_name_that_is_also_a_column_is_refused(tmp_path: Path) -> None:
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT,WT,weight\n1,0,100,2,70,71\n",
                      units={"AMT": "mg", "WT": "kg", "weight": "kg"},
                      covariates={"WT": "weight"})
    assert "data.covariates.WT: the name 'weight' is also a column" in msg


def test_a_covariate_used_without_a_unit_is_refused_naming_its_column(tmp_path: Path) -> None:
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT,WT\n1,0,100,2,70\n",
                      covariates={"WT": "weight"})
    assert "data.units.WT" in msg and "column WT" in msg
    t = read(tmp_path, "ID,TIME,AMT,CMT,SCR\n1,0,100,2,1.1\n")
    with pytest.raises(ScenarioError, match=r"data\.units\.SCR.*column SCR"):
        t.covariate("SCR")
    with pytest.raises(ScenarioError, match="weight"):
        t.covariate("weight")


@pytest.mark.parametrize(("text", "units", "column"), [
    ("ID,TIME,AMT,CMT\n1,0,100,2\n", {}, "AMT"),
    ("ID,TIME,AMT,RATE,CMT\n1,0,100,50,2\n", {"AMT": "mg"}, "RATE"),
    ("ID,TIME,AMT,II,ADDL,CMT\n1,0,100,12,2,2\n", {"AMT": "mg"}, "II"),
    ("ID,TIME,DV,CMT\n1,0,3.2,2\n", {}, "DV"),
])
def test_a_dimensional_column_used_without_a_unit_is_refused(
        tmp_path: Path, text: str, units: dict[str, str], column: str) -> None:
    with pytest.raises(DataSetError) as info:
        read_nonmem(write(tmp_path, text), {"path": "x", "units": units}, compartments=ORAL)
    assert f"data.units.{column}: column {column} is used" in str(info.value)


@pytest.mark.parametrize(("units", "fragment"), [
    ({"AMT": "mg/L"}, "data.units.AMT: mg/l is not"),
    ({"AMT": "mg", "TIME": "kg"}, "data.units.TIME: kg is not [time]"),
    ({"AMT": "mg", "CMT": "mg"}, "data.units.CMT: CMT is a count or code"),
    ({"AMT": "mg", "NOPE": "kg"}, "data.units.NOPE: the file has no column"),
    ({"AMT": "furlongs per fortnight per banana"}, "data.units"),
])
def test_wrong_units_are_refused_naming_the_field(tmp_path: Path, units: dict[str, str],
                                                  fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        read_nonmem(write(tmp_path, "ID,TIME,AMT,CMT\n1,0,100,2\n"),
                    {"path": "x", "units": units}, compartments=ORAL)
    assert fragment in str(info.value)


HEAD = "ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,MDV,DV\n"


@pytest.mark.parametrize(("rows", "expected"), [
    (["3,24,1,0,1,0,0,0,0,1,."], "data row 2 (ID 3, TIME 24 h): EVID 1 needs AMT > 0 or RATE"),
    (["1,0,1,100,1,0,0,0,0,1,.", "1,2,0,0,2,0,0,0,0,0,3", "1,1,0,0,2,0,0,0,0,0,2"],
     "data row 4 (ID 1, TIME 1 h): TIME goes backwards within ID 1"),
    (["1,0,1,100,5,0,0,0,0,1,."], "data row 2 (ID 1, TIME 0 h): CMT 5 is out of range for "
                                  "this model (1 = depot, 2 = central)"),
    (["1,0,1,100,1,0,0,3,0,1,."], "data row 2 (ID 1, TIME 0 h): ADDL 3 needs II > 0"),
    (["1,0,1,100,1,0,0,0,1,1,."], "data row 2 (ID 1, TIME 0 h): SS 1 needs II > 0"),
    (["1,0,1,100,1,0,.,0,2,1,."], "data row 2 (ID 1, TIME 0 h): SS 2 needs II > 0"),
    (["1,0,1,100,1,0,0,0,0,1,6.1"], "data row 2 (ID 1, TIME 0 h): DV 6.1 on a dose record"),
    (["1,0,9,100,1,0,0,0,0,1,."], "EVID 9 is not one of"),
    (["1,0,0,100,2,0,0,0,0,0,4"], "AMT 100 on a record that is not a dose (EVID 0)"),
    (["1,0,1,-5,1,0,0,0,0,1,."], "AMT -5 is negative"),
    (["1,0,1,100,1,-3,0,0,0,1,."], "RATE -3 is not > 0, 0, −1"),
    (["1,0,1,0,2,-2,0,0,0,1,."], "RATE -2 (a modelled duration) needs AMT > 0"),
    (["1,0,1,0,2,10,12,0,1,1,."], "AMT 0 with RATE > 0 is a constant infusion"),
    (["1,0,0,0,2,0,0,0,0,0,."], "MDV 0 needs a DV"),
    (["1,0,1,100,1,0,0,0,0,0,."], "MDV 0 on a record that is not an observation (EVID 1)"),
    (["1,0,1,100,1,0,0,0,3,1,."], "SS 3 is not 0, 1 or 2"),
    (["1,0,1,100,1.5,0,0,0,0,1,."], "CMT 1.5 is not an integer"),
    (["1,0,1,100,1,0,-12,0,0,1,."], "II -12 is negative"),
    (["1,.,1,100,1,0,0,0,0,1,."], "data row 2 (ID 1, TIME ?): TIME is missing"),
    ([".,0,1,100,1,0,0,0,0,1,."], "ID is missing"),
    (["1,0,1,100,1,0,0,0,0,1,.,7"], "data row 2: 12 fields, but the header (line 1) names 11"),
    (["1,0,1,1e500,1,0,0,0,0,1,."], "AMT '1e500' is not a number"),
    (["1,0,1,__import__('os'),1,0,0,0,0,1,."], "is not a number"),
])
def test_each_bad_row_rule_is_refused_with_its_row(tmp_path: Path, rows: list[str],
                                                   expected: str) -> None:
    msg = problems_of(tmp_path, HEAD + "\n".join(rows) + "\n")
    assert expected in msg, msg


def test_an_id_that_comes_back_is_a_new_individual_with_a_warning(tmp_path: Path) -> None:
    """NONMEM starts a new individual whenever ID changes from the previous record: ID 1 after
    ID 2 is a third individual (its time may start again), and the reader says so."""
    from medtransport_pk.dataset import RepeatedIDWarning

    text = HEAD + ("1,0,1,100,1,0,0,0,0,1,.\n1,4,0,0,2,0,0,0,0,0,2\n"
                   "2,0,1,100,1,0,0,0,0,1,.\n"
                   "1,0,1,50,1,0,0,0,0,1,.\n1,1,0,0,2,0,0,0,0,0,3\n")
    with pytest.warns(RepeatedIDWarning, match=r"ID 1 at rows 5–6 \(it had rows 2–3\)"):
        t = read(tmp_path, text)
    assert t.individuals().tolist() == [0, 0, 1, 2, 2]
    assert t.subjects().tolist() == [1, 2, 1]
    assert t.id.tolist() == [1, 1, 2, 1, 1]  # the ID value is kept


def test_constant_infusion_and_a_reset_going_back_in_time_are_accepted(tmp_path: Path) -> None:
    t = read(tmp_path, HEAD + "1,0,1,0,2,10,0,0,1,1,.\n1,5,0,0,2,0,0,0,0,0,3\n"
                              "1,0,4,100,2,0,0,0,0,1,.\n")
    assert t.rate[0] == 10.0 and t.ss[0] == 1 and t.evid[2] == 4


def test_all_problems_are_reported_together_and_bounded(tmp_path: Path) -> None:
    rows = [f"{i},0,1,0,1,0,0,0,0,1,." for i in range(1, 51)]
    msg = problems_of(tmp_path, HEAD + "\n".join(rows) + "\n")
    assert msg.count("EVID 1 needs AMT > 0 or RATE") == MAX_PROBLEMS
    assert f"and {50 - MAX_PROBLEMS} more problems" in msg
    assert "data row 2 (ID 1," in msg  # in file order, from the first


def test_a_compartments_map_renumbers_to_the_models(tmp_path: Path) -> None:
    # the file numbers central 1 and depot 2; the table uses the ADVAN numbering (1 = depot)
    t = read(tmp_path, "ID,TIME,AMT,CMT,DV\n1,0,100,2,.\n1,1,.,1,2.5\n",
             units={"AMT": "mg", "DV": "mg/L"}, compartments={1: "central", 2: "depot"})
    assert t.cmt.tolist() == [1, 2]
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT\n1,0,100,3\n",
                      compartments={1: "central", 2: "depot"})
    assert "CMT 3 is out of range for this model (1 = central, 2 = depot)" in msg
    msg = problems_of(tmp_path, "ID,TIME,AMT,CMT\n1,0,100,1\n", compartments={1: "gut"})
    assert "data.compartments" in msg and "'gut'" in msg


def test_advan_compartment_numbers() -> None:
    assert compartment_numbers(0, False) == {1: "central"}
    assert compartment_numbers(0, True) == {1: "depot", 2: "central"}
    assert compartment_numbers(1, True) == {1: "depot", 2: "central", 3: "peripheral"}
    assert compartment_numbers(2, True) == {1: "depot", 2: "central", 3: "peripheral",
                                            4: "peripheral_2"}
    assert compartment_numbers(2, False) == {1: "central", 2: "peripheral",
                                             3: "peripheral_2"}
    assert compartment_numbers(0, True, {5: "central", 7: "depot"}) == {5: "central",
                                                                        7: "depot"}
    with pytest.raises(ValueError, match="peripheral"):
        compartment_numbers(0, True, {3: "peripheral"})


@pytest.mark.parametrize("text", ["", "# only a comment\n", "ID,TIME\n",
                                  "TIME,AMT\n0,100\n", "ID,TIME,ID\n1,0,1\n"])
def test_files_without_usable_content_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(DataSetError, match=r"data\.path"):
        read(tmp_path, text)


def test_a_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xff\xfe\x00ID,TIME\x00\x81")
    with pytest.raises(DataSetError, match="not UTF-8"):
        read_nonmem(path, {"path": "data.csv"})


# ------------------------------------------------------------------- from a scenario

def scenario(tmp_path: Path, **data: Any) -> Any:
    sc = {"name": "data", "model": "pk.two_compartment",
          "parameters": {"clearance": "4 L/h", "central_volume": "30 L",
                         "intercompartmental_clearance": "6 L/h", "peripheral_volume": "40 L"},
          "time": {"stop": "24 h", "step": "1 h"}}
    if data:
        sc["data"] = data
    return load_scenario(sc, base_dir=tmp_path)


def test_events_beside_a_data_set_with_doses_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "ID,TIME,AMT,CMT\n1,0,100,1\n", "d.csv")
    sc = load_scenario({"name": "both", "model": "pk.one_compartment",
                        "parameters": {"clearance": "4 L/h", "central_volume": "30 L"},
                        "events": [{"type": "bolus", "amount": "100 mg"}],
                        "data": {"path": "d.csv", "units": {"AMT": "mg"}},
                        "time": {"stop": "24 h", "step": "1 h"}}, base_dir=tmp_path)
    with pytest.raises(ScenarioError, match=r"events: the data set d\.csv has dose records"):
        read_dataset(sc)
    # a levels-only data set takes its doses from the events
    write(tmp_path, "ID,TIME,DV\n1,2,3.5\n", "d.csv")
    table = read_dataset(sc.with_changes(data={"path": "d.csv", "units": {"DV": "mg/L"}}))
    assert table is not None and table.evid.tolist() == [1, 0]
    assert table.amt.tolist() == [100.0, 0.0] and table.time.tolist() == [0.0, 2.0]


def test_read_dataset_without_a_data_section_is_none(tmp_path: Path) -> None:
    assert read_dataset(scenario(tmp_path)) is None


def test_read_dataset_resolves_the_path_and_uses_the_models_numbering(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "ID,TIME,AMT,CMT\n1,0,100,2\n", "d.csv")
    t = read_dataset(scenario(tmp_path, path="sub/d.csv", units={"AMT": "mg"}))
    assert t is not None and t.compartments == {1: "central", 2: "peripheral"}
    write(tmp_path / "sub", "ID,TIME,AMT,CMT\n1,0,100,3\n", "d.csv")
    with pytest.raises(DataSetError, match="CMT 3 is out of range for pk.two_compartment "
                                           r"without first-order absorption \(1 = central, "
                                           r"2 = peripheral\)"):
        read_dataset(scenario(tmp_path, path="sub/d.csv", units={"AMT": "mg"}))


@pytest.mark.parametrize(("data", "fragment"), [
    ({"path": "missing.csv"}, "data.path: no such file: missing.csv"),
    ({"path": "d.csv", "format": "excel"}, "data.format"),
    ({"path": "d.csv", "unit": {"AMT": "mg"}}, "data.unit: unknown field"),
    ({"path": "d.csv", "covariates": {"WT": "body weight"}}, "data.covariates"),
    ({"path": "d.csv", "compartments": {0: "central"}}, "data.compartments"),
])
def test_a_bad_data_section_names_the_field(tmp_path: Path, data: dict[str, Any],
                                            fragment: str) -> None:
    write(tmp_path, "ID,TIME,AMT,CMT\n1,0,100,1\n", "d.csv")
    with pytest.raises(ScenarioError) as info:
        read_dataset(scenario(tmp_path, **data))
    assert fragment in str(info.value)


# ------------------------------------------------------------------- fuzzing

_FIELD = st.one_of(st.sampled_from([".", "", "0", "1", "2", "-1", "-2", "12", "1.5", "nan",
                                    "inf", "1e400", "x", "C", "#", "'", '"', "4,5"]),
                   st.floats(allow_nan=False, allow_infinity=False).map(repr),
                   st.text(max_size=4))
_COLUMNS = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "MDV", "DV", "WT"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_FIELD, min_size=len(_COLUMNS), max_size=len(_COLUMNS) + 1),
                     max_size=6),
       comma=st.booleans())
def test_any_file_reads_or_is_refused_as_bad_input(tmp_path: Path, rows: list[list[str]],
                                                   comma: bool) -> None:
    sep = "," if comma else " "
    text = sep.join(_COLUMNS) + "\n" + "\n".join(sep.join(r) for r in rows) + "\n"
    try:
        t = read(tmp_path, text, units={**UNITS, "WT": "kg"}, covariates={"WT": "weight"})
    except ScenarioError:
        return
    # what is accepted is consistent
    assert np.all(np.isfinite(t.time)) and np.all(t.amt >= 0)
    assert set(t.evid.tolist()) <= {0, 1, 2, 3, 4} and set(t.mdv.tolist()) <= {0, 1}
    assert np.all(np.isfinite(t.dv[t.mdv == 0]))
