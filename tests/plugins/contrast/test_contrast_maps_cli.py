"""`medtransport run` on a scenario whose inputs are image files (contrast.maps): the audited run
writes the NetCDF result and, after its audits, every map as NIfTI with its unit; bad files and
a time grid that is not the image's are refused with exit code 2 and no traceback."""

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
from medtransport.images import read_image, write_image
from medtransport.results import read_netcdf
from medtransport_contrast.maps_model import ContrastMaps, _example_files


def _scenario(tmp: Path, **changes: object) -> Path:
    for f in _example_files().iterdir():
        shutil.copy(f, tmp / f.name)
    sc = ContrastMaps.example_scenarios()[0]
    params = {k: (Path(v).name if isinstance(v, str) and "/" in v else v)
              for k, v in sc["parameters"].items()}
    params["aif"] = {"csv": "ex_aif.csv"}
    params["maps_directory"] = "maps"
    sc = {**sc, "parameters": params, **changes}
    path = tmp / "maps.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def test_run_fits_the_files_and_exports_the_maps(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "r.nc")])
    assert result.exit_code == 0, result.output
    ds = read_netcdf(tmp_path / "r.nc")
    assert ds.attrs["audit_status"] == "passed"
    names = {r["name"] for r in json.loads(ds.attrs["audit_report"])["results"]}
    assert {"mass_balance[agent]", "normalization[agent]", "fit_converged", "maps_finite",
            "concentration_valid"} <= names
    # the phantom: labels 1 (x < 2) and 2 (x ≥ 2), Ktrans 0.1 and 0.3 /min
    ktrans = read_image(tmp_path / "maps" / "ktrans.nii.gz").data[:, :, 0]
    assert np.allclose(ktrans[:2], 0.1, rtol=2e-3) and np.allclose(ktrans[2:], 0.3, rtol=2e-3)
    side = json.loads((tmp_path / "maps" / "ktrans.json").read_text())
    assert side["Units"] == "1/min" and side["AuditPassed"] is True
    assert json.loads((tmp_path / "maps" / "t1.json").read_text())["Units"] == "s"
    assert "maps/ktrans.nii.gz" in result.output.replace("\n", "")


def test_time_grid_not_the_images_is_refused(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, time={"stop": "120 s", "step": "1 s"})
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2
    assert "time: the time grid must be the DCE image's 60 frames" in result.output
    assert "Traceback" not in result.output


def test_a_2d_mask_is_refused_by_name(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    affine = read_image(tmp_path / "ex_dce.nii.gz").affine
    write_image(tmp_path / "mask.nii.gz", np.ones((4, 3)), affine, (2.0, 2.0))
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2
    assert "parameters.mask: mask.nii.gz is a 2-D mask" in result.output
    assert "Traceback" not in result.output


def test_an_unreported_washout_fails_the_mass_balance() -> None:
    """Mutant: the fitted system's EES washout dropped from the ledger — the books no longer
    close and the mass-balance audit refuses the maps."""
    from medtransport.testing import failed_audits

    class Leaky(ContrastMaps):
        def simulate(self, progress=None):  # type: ignore[no-untyped-def]
            traj = super().simulate(progress)
            traj.ledgers["agent"].outflow.clear()
            return traj

    assert any(n.startswith("mass_balance") for n in
               failed_audits(Leaky, ContrastMaps.example_scenarios()[0]))
