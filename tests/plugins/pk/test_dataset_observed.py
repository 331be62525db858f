"""Observed-data NCA per subject, the per-subject summary and the data-set plot.

Expected values come from the source file (R's Theoph, read here with the csv module), from
hand-written trapezoid sums, or from exact exponentials — not from the code under test."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from medtransport.scenario import load_scenario
from medtransport_pk.dataplot import plot_records
from medtransport_pk.dataset import compartment_numbers, read_dataset, read_nonmem
from medtransport_pk.observed import observed_nca, subject_summary

ROOT = Path(__file__).parents[3]
SOURCE = ROOT / "tests" / "data" / "theoph.csv"


def theoph_source() -> dict[int, dict[str, np.ndarray | float]]:
    out: dict[int, dict[str, list[float]]] = {}
    with SOURCE.open(newline="") as f:
        for r in csv.DictReader(f):
            s = out.setdefault(int(r["Subject"]), {"t": [], "c": [], "dose": [], "wt": []})
            s["t"].append(float(r["Time"]))
            s["c"].append(float(r["conc"]))
            s["dose"].append(float(r["Dose"]) * float(r["Wt"]))
    return {k: {"t": np.array(v["t"]), "c": np.array(v["c"]), "dose": v["dose"][0]}
            for k, v in out.items()}


def linear_up_log_down(t: np.ndarray, c: np.ndarray) -> float:
    total = 0.0
    for t1, t2, c1, c2 in zip(t[:-1], t[1:], c[:-1], c[1:], strict=True):
        if c2 < c1 and c2 > 0:
            total += (t2 - t1) * (c1 - c2) / math.log(c1 / c2)
        else:
            total += (t2 - t1) * (c1 + c2) / 2
    return total


@pytest.fixture(scope="module")
def theoph() -> xr.Dataset:
    table = read_dataset(load_scenario(ROOT / "examples" / "data" / "theoph.yaml"))
    assert table is not None
    return observed_nca(table)


def test_theoph_example_has_every_source_sample_and_dose(theoph: xr.Dataset) -> None:
    table = read_dataset(load_scenario(ROOT / "examples" / "data" / "theoph.yaml"))
    assert table is not None
    src = theoph_source()
    assert table.subjects().tolist() == sorted(src)
    for k, s in src.items():
        mine = table.id == k
        obs = mine & (table.evid == 0)
        np.testing.assert_array_equal(table.time[obs], s["t"])
        np.testing.assert_array_equal(table.dv[obs], s["c"])
        # the mg/kg dose times the weight, as the source's note says
        assert table.amt[mine & (table.evid == 1)] == pytest.approx([s["dose"]], rel=1e-12)
        assert table.cmt[mine & (table.evid == 1)].tolist() == [1]  # the depot


def test_observed_cmax_tmax_are_the_sources(theoph: xr.Dataset) -> None:
    for k, s in theoph_source().items():
        i = int(np.argmax(s["c"]))
        row = theoph.sel(subject=k)
        assert float(row["observed_cmax"]) == s["c"][i]
        assert float(row["observed_tmax"]) == s["t"][i]
        assert int(row["observed_n"]) == 11 and int(row["doses"]) == 1
        assert str(row["dose_route"].values) == "extravascular"


def test_observed_auc_and_cl_over_f_of_theoph(theoph: xr.Dataset) -> None:
    assert theoph["observed_auc_last"].attrs["units"] == "h*mg/L"
    assert theoph["observed_clearance"].attrs["units"] == "L/h"
    for k, s in theoph_source().items():
        row = theoph.sel(subject=k)
        assert float(row["observed_auc_last"]) == pytest.approx(
            linear_up_log_down(s["t"], s["c"]), rel=1e-12)
        # CL/F·AUC∞ = dose: the dose reached the NCA scaled by the subject's weight
        assert float(row["observed_clearance"]) * float(row["observed_auc_inf"]) == \
            pytest.approx(s["dose"], rel=1e-12)
        assert float(row["observed_half_life"]) == pytest.approx(
            math.log(2) / float(row["observed_lambda_z"]), rel=1e-12)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def test_an_exact_exponential_gives_exact_clearance_after_a_bolus(tmp_path: Path) -> None:
    # C = 10·exp(−0.2 t) mg/L after 100 mg IV: AUC∞ = 50 h·mg/L, CL = 2 L/h, V = 10 L
    times = [0.5, 1, 2, 4, 6, 8, 12]
    lines = ["ID,TIME,AMT,DV,CMT", "7,0,100,.,1"]
    lines += [f"7,{t},.,{10 * math.exp(-0.2 * t)!r},1" for t in times]
    table = read_nonmem(write(tmp_path, "\n".join(lines) + "\n"),
                        {"path": "d.csv", "units": {"AMT": "mg", "DV": "mg/L"}},
                        compartments=compartment_numbers(0, False))
    ds = observed_nca(table)
    assert str(ds["dose_route"].values[0]) == "iv_bolus"
    assert float(ds["observed_lambda_z"][0]) == pytest.approx(0.2, rel=1e-10)
    assert float(ds["observed_auc_inf"][0]) == pytest.approx(50.0, rel=1e-10)
    assert float(ds["observed_clearance"][0]) == pytest.approx(2.0, rel=1e-10)
    assert float(ds["observed_volume_z"][0]) == pytest.approx(10.0, rel=1e-10)


def test_multiple_doses_keep_only_the_metrics_that_apply(tmp_path: Path) -> None:
    table = read_dataset(load_scenario(ROOT / "examples" / "data" / "vancomycin.yaml"))
    assert table is not None
    ds = observed_nca(table)
    first = ds.sel(subject=1)
    assert int(first["doses"]) == 7 and int(first["observed_n"]) == 3
    assert str(first["dose_route"].values) == "infusion"
    obs = (table.id == 1) & (table.evid == 0)
    assert float(first["observed_cmax"]) == float(np.max(table.dv[obs]))
    for metric in ("auc_last", "auc_inf", "half_life", "clearance"):
        assert np.isnan(float(first[f"observed_{metric}"])), metric


def test_observations_before_the_first_dose_and_subjects_without_doses(tmp_path: Path) -> None:
    text = "ID,TIME,AMT,DV\n1,0,.,9.9\n1,1,100,.\n1,2,.,5\n1,3,.,4\n2,0,.,1\n"
    table = read_nonmem(write(tmp_path, text), {"path": "d.csv",
                                                "units": {"AMT": "mg", "DV": "mg/L"}},
                        compartments=compartment_numbers(0, False))
    ds = observed_nca(table)
    assert float(ds["observed_cmax"].sel(subject=1)) == 5.0  # not the pre-dose 9.9
    assert float(ds["observed_tmax"].sel(subject=1)) == 1.0  # since the dose
    assert np.isnan(float(ds["observed_cmax"].sel(subject=2)))
    assert int(ds["doses"].sel(subject=2)) == 0


def records_dataset(table, pred: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"ID": ("record", table.id), "TIME": ("record", table.time, {"units": "h"}),
                       "EVID": ("record", table.evid), "MDV": ("record", table.mdv),
                       "DV": ("record", table.dv, {"units": table.dv_unit}),
                       "concentration": ("record", pred, {"units": "mg/L"})})


def test_the_summary_compares_predictions_with_observations(tmp_path: Path) -> None:
    text = "ID,TIME,AMT,DV\n1,0,100,.\n1,1,.,5\n1,2,.,4\n2,0,100,.\n2,1,.,2\n"
    table = read_nonmem(write(tmp_path, text), {"path": "d.csv",
                                                "units": {"AMT": "mg", "DV": "mg/L"}},
                        compartments=compartment_numbers(0, False))
    pred = np.array([10.0, 4.0, 5.0, 10.0, 2.5])  # subject 1: +25 % and −20 %; 2: −20 %
    title, columns, rows = subject_summary(table, records_dataset(table, pred))
    assert "d.csv" in title and columns[:3] == ["ID", "doses", "obs"]
    assert columns[-1] == "median (DV−PRED)/PRED"
    assert rows[0][0] == "1" and rows[0][-1] == "+2.5%" and rows[0][-2] == "10"
    assert rows[1][-1] == "-20.0%"
    assert rows[0][3] == "5"  # Cmax observed


@pytest.mark.parametrize("copies", [1, 2])
def test_the_plot_draws_every_observation(copies: int) -> None:
    table = read_dataset(load_scenario(ROOT / "examples" / "data" / "theoph.yaml"))
    assert table is not None
    n = len(table)
    ids = np.concatenate([table.id + 100 * k for k in range(copies)])
    ds = xr.Dataset({"ID": ("record", ids),
                     "TIME": ("record", np.tile(table.time, copies), {"units": "h"}),
                     "EVID": ("record", np.tile(table.evid, copies)),
                     "MDV": ("record", np.tile(table.mdv, copies)),
                     "DV": ("record", np.tile(table.dv, copies), {"units": "mg/L"}),
                     "concentration": ("record", np.ones(n * copies), {"units": "mg/L"})})
    fig = Figure()
    plot_records(ds, fig, "t")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    observed = (table.evid == 0) & (table.mdv == 0)
    if copies == 1:  # one panel per subject, its dots its observations
        assert len(visible) == 12
        dots = visible[0].lines[1].get_ydata()
        np.testing.assert_array_equal(dots, table.dv[observed & (table.id == 1)])
    else:  # spaghetti and DV against PRED
        assert len(visible) == 2
        scatter = visible[1].lines[0]
        assert len(scatter.get_ydata()) == copies * int(observed.sum())


def test_a_data_set_without_observations_runs_and_counts_none(tmp_path: Path) -> None:
    """Doses only (a regimen to simulate, no levels yet): the observed-data NCA has nothing to
    analyse, which must not stop the run (it raised an IndexError on empty masks)."""
    import medtransport as mt
    from medtransport.runner import prepare

    source = ROOT / "examples" / "data"
    lines = (source / "vancomycin.csv").read_text().splitlines()
    header = lines[1].split()
    evid = header.index("EVID")
    kept = lines[:2] + [ln for ln in lines[2:] if ln.split()[evid] != "0"]
    (tmp_path / "vancomycin.csv").write_text("\n".join(kept) + "\n")
    (tmp_path / "vancomycin.yaml").write_text((source / "vancomycin.yaml").read_text())
    table = read_dataset(load_scenario(tmp_path / "vancomycin.yaml"))
    assert table is not None and not np.any(table.evid == 0)
    assert np.all(observed_nca(table)["observed_n"].values == 0)
    ds = mt.run(prepare(str(tmp_path / "vancomycin.yaml")))
    assert ds.sizes["record"] == len(table)
