"""`medtransport run` on DWI image files (dwi.maps): the maps come out as NIfTI with units after
the audits; a DTI fit of perfused tissue does not hold the measured b = 0 spins and is refused;
bad files exit 2 without a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("nibabel")

from medtransport.cli import main
from medtransport.images import read_image
from medtransport_dwi.maps_model import DWIMaps, _example_files


def _scenario(tmp: Path, perfused: bool, fits: list[str], **changes: object) -> Path:
    for f in _example_files(perfused).iterdir():
        shutil.copy(f, tmp / f.name)
    sc = DWIMaps.example_scenarios()[0]
    params = {"dwi": "ex.nii.gz", "bval": "ex.bval", "bvec": "ex.bvec", "mask": "mask.nii.gz",
              "fits": fits, "maps_directory": "maps"}
    path = tmp / "dwi.yaml"
    path.write_text(yaml.safe_dump({**sc, "parameters": params, **changes}))
    return path


def test_run_exports_dti_maps_with_units(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, False, ["dti", "adc"])),
                                       "-o", str(tmp_path / "r.nc")])
    assert result.exit_code == 0, result.output
    md = read_image(tmp_path / "maps" / "dti_md.nii.gz").data[:, :, 0]
    assert np.allclose(md[:2], (1.7e-3 + 0.8e-3) / 3, rtol=1e-5)
    assert np.allclose(md[2:], (1.0e-3 + 1.6e-3) / 3, rtol=1e-5)
    v1 = read_image(tmp_path / "maps" / "dti_v1.nii.gz").data
    assert v1.shape == (4, 3, 1, 3) and np.allclose(np.abs(v1[0, 0, 0]), [1, 0, 0], atol=1e-6)
    assert json.loads((tmp_path / "maps" / "dti_md.json").read_text())["Units"] == "mm^2/s"


def test_dti_of_perfused_tissue_does_not_hold_the_measured_spins(tmp_path: Path) -> None:
    """DTI's S0 misses the pseudo-diffusion (f = 0.1, 0.05): 2–5 % fewer spins than measured at
    b = 0 — the normalization audit refuses the maps (exit 1) and none is exported."""
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, True, ["dti"]))])
    assert result.exit_code == 1
    assert "normalization[spins]" in result.output
    assert not (tmp_path / "maps").exists()
    ivim = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, True, ["ivim"]))])
    assert ivim.exit_code == 0, ivim.output
    # IVIM sees the direction average: of anisotropic tensors it is not quite mono-exponential
    # (FA 0.65 and 0.2 here), which the fit takes partly for perfusion — within 0.01
    f = read_image(tmp_path / "maps" / "ivim_f.nii.gz").data[:, :, 0]
    assert np.allclose(f[:2], 0.1, atol=0.01) and np.allclose(f[2:], 0.05, atol=0.01)


def test_mismatched_bval_is_refused_by_name(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, False, ["dti"])
    b = (tmp_path / "ex.bval").read_text().split()
    (tmp_path / "ex.bval").write_text(" ".join(b[:-1]) + "\n")
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2
    assert "parameters.bvec: ex.bvec has 29 directions but ex.bval has 28 b-values" in result.output
    assert "Traceback" not in result.output


def test_maps_directory_outside_the_scenario_tree_is_refused(tmp_path: Path) -> None:
    """A scenario cannot make the CLI write maps where it was not told (issue: hardening)."""
    inner = tmp_path / "study"
    inner.mkdir()
    outside = tmp_path / "elsewhere"
    scenario = _scenario(inner, False, ["adc"])
    doc = yaml.safe_load(scenario.read_text())
    doc["parameters"]["maps_directory"] = str(outside)
    scenario.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2, result.output
    assert "parameters.maps_directory" in result.output and "outside" in result.output
    assert not outside.exists()
