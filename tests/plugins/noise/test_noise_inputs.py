"""Inputs of the forward process: NetCDF arrays (with time and extra-dimension selection),
another scenario run in-process, image files, the phantom — and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml

from medtransport.errors import ScenarioError
from medtransport.results import write_netcdf
from medtransport.runner import run
from medtransport_noise.phantom import shepp_logan

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "scenarios"


def _scenario(tmp_path: Path, inp: dict[str, Any], name: str = "noise.yaml",
              **params: Any) -> Path:
    sc = {"name": "input test", "model": "noise.forward",
          "parameters": {"input": inp, "output_steps": [1, 100, 1000], **params},
          "time": {"stop": "1 s", "step": "1 ms"}, "seed": 1}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sc, allow_unicode=True))
    return path


def _temperature_file(path: Path) -> xr.Dataset:
    rng = np.random.default_rng(0)
    t = 310.0 + rng.standard_normal((3, 2, 12, 10))
    ds = xr.Dataset({"temperature": (("time", "z", "y", "x"), t, {"units": "K",
                                                                   "long_name": "temperature"}),
                     "count": (("y", "x"), np.ones((12, 10)), {"long_name": "no units"})},
                    coords={"time": ("time", [0.0, 60.0, 120.0], {"units": "s"}),
                            "x": ("x", np.arange(10) * 1e-3, {"units": "m"})})
    write_netcdf(ds, path)
    return ds


def test_netcdf_array_with_time_and_selection(tmp_path: Path) -> None:
    src = _temperature_file(tmp_path / "heat.nc")
    ds = run(_scenario(tmp_path, {"kind": "netcdf", "path": "heat.nc",
                                  "variable": "temperature", "time": "1 min",
                                  "select": {"z": 1}}))
    assert ds.attrs["audit_status"] == "passed"
    picked = src["temperature"].values[1, 1]
    expected = (picked - picked.mean()) / picked.std()
    np.testing.assert_allclose(ds["clean"].values, expected, rtol=1e-6, atol=1e-6)
    assert ds["data_offset"].attrs["units"] == "K"
    assert float(ds["data_offset"]) == pytest.approx(picked.mean())
    assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["units"] == "dimensionless"


@pytest.mark.parametrize(("inp", "field"), [
    ({"kind": "netcdf", "path": "missing.nc", "variable": "temperature"},
     "parameters.input.path"),
    ({"kind": "netcdf", "path": "heat.nc", "variable": "pressure"},
     "parameters.input.variable"),
    ({"kind": "netcdf", "path": "heat.nc", "variable": "temperature", "time": 7,
      "select": {"z": 0}}, "parameters.input.time"),
    ({"kind": "netcdf", "path": "heat.nc", "variable": "temperature", "select": {"w": 0}},
     "parameters.input.select.w"),
    ({"kind": "netcdf", "path": "heat.nc", "variable": "count"}, "parameters.input.variable"),
])
def test_bad_netcdf_inputs_name_the_field(tmp_path: Path, inp: dict[str, Any],
                                          field: str) -> None:
    _temperature_file(tmp_path / "heat.nc")
    with pytest.raises(ScenarioError) as err:
        run(_scenario(tmp_path, inp))
    paths = [p for p, _ in err.value.problems]
    assert field in paths, err.value.problems


def test_scenario_input_runs_the_other_scenario_in_process(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "dye_tissue_slab.yaml", tmp_path / "dye.yaml")
    ds = run(_scenario(tmp_path, {"kind": "scenario", "scenario": "dye.yaml",
                                  "variable": "concentration", "time": "last"}))
    assert ds.attrs["audit_status"] == "passed"
    assert ds["clean"].dims == ("x",) and ds.sizes["x"] == 200
    assert ds["data_scale"].attrs["units"] == "mol/m**3"


def test_a_scenario_taking_its_input_from_itself_is_refused(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"kind": "scenario", "scenario": "noise.yaml",
                                "variable": "image"})
    with pytest.raises(ScenarioError, match="cycle"):
        run(path)


def test_image_file_input(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phantom = shepp_logan(48, 64)
    plt.imsave(tmp_path / "head.png", phantom, cmap="gray", vmin=0, vmax=1)
    ds = run(_scenario(tmp_path, {"kind": "image", "path": "head.png",
                                  "pixel_spacing": "0.5 mm"}))
    assert ds.attrs["audit_status"] == "passed"
    assert ds["clean"].shape == (48, 64)
    assert ds["x"].attrs["units"] == "m" and float(ds["x"][1]) == pytest.approx(5e-4)
    # grey PNG → luma equals the grey level (8-bit), so standardized values agree closely
    expected = (phantom - phantom.mean()) / phantom.std()
    assert np.corrcoef(ds["clean"].values.ravel(), expected.ravel())[0, 1] > 0.999


def test_phantom_is_the_shepp_logan_head() -> None:
    img = shepp_logan(256, 256)
    # background 0, skull 1, brain 0.2, ventricles 0, three small tumours 0.3 (Toft 1996)
    assert img[0, 0] == 0.0
    assert img[128, 128] == pytest.approx(0.2)
    assert img[128, 100] == pytest.approx(0.0)  # left ventricle (x = −0.22)
    assert img[83, 128] == pytest.approx(0.3)   # ellipse at y = 0.35
    assert set(np.round(np.unique(img), 6)) <= {0.0, 0.1, 0.2, 0.3, 0.4, 1.0}


def test_normalize_none_refuses_an_input_with_units(tmp_path: Path) -> None:
    _temperature_file(tmp_path / "heat.nc")
    with pytest.raises(ScenarioError) as err:
        run(_scenario(tmp_path, {"kind": "netcdf", "path": "heat.nc",
                                 "variable": "temperature", "select": {"z": 0}},
                      normalize="none"))
    assert [p for p, _ in err.value.problems] == ["parameters.normalize"]


def test_normalize_none_converts_a_dimensionless_unit(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frac = rng.uniform(-100, 100, (40, 50))
    write_netcdf(xr.Dataset({"change": (("y", "x"), frac, {"units": "percent",
                                                           "long_name": "relative change"})}),
                 tmp_path / "change.nc")
    ds = run(_scenario(tmp_path, {"kind": "netcdf", "path": "change.nc", "variable": "change"},
                       normalize="none"))
    np.testing.assert_allclose(ds["clean"].values, frac / 100, rtol=1e-6)
    # the declared budget is the data's own mean square, not 1
    assert ds["variance_stored"].values[0] == pytest.approx(np.mean((frac / 100) ** 2),
                                                            rel=1e-6)


def test_too_many_outputs_are_refused_before_allocating(tmp_path: Path) -> None:
    from medtransport.testing import build_model
    from medtransport_noise.reverse_model import ReverseDiffusion

    sc = {"name": "huge", "model": "noise.reverse",
          "parameters": {"data": [{"mean": [0.0, 0.0]}], "samples": 2_000_000},
          "time": {"stop": "1 s", "step": "1 ms"}}
    with pytest.raises(ScenarioError) as err:
        build_model(ReverseDiffusion, sc)
    assert [p for p, _ in err.value.problems] == ["parameters.output_steps"]
