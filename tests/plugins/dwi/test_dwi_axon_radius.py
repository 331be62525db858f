"""Axon-radius maps (medtransport_dwi.axon_radius): a noise-free round trip on an AxCaliber-
style protocol recovers radii off the table's grid, the restricted fraction and the hindered
diffusivity, with the signal evaluated directly from the plugin's cylinder signal (no table);
gradients along the fibre are refused naming the volume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from medtransport_dwi.axon_radius import D_R, axon_radius_maps
from medtransport_dwi.gaussian_phase import restricted
from medtransport_dwi.sequence import pgse_gradient, pgse_shape

AXIS = np.array([0.0, 0.0, 1.0])


def _protocol() -> tuple[np.ndarray, ...]:
    """b = 0, then b ∈ {1000, 3000, 6000} s/mm² × Δ ∈ {10, 20, 35} ms at δ = 2.5 ms, three
    directions in the plane perpendicular to the fibre."""
    perp = np.array([[1.0, 0.0, 0.0], [0.5, 3 ** 0.5 / 2, 0.0], [-0.5, 3 ** 0.5 / 2, 0.0]])
    b, g, d, sep = [0.0], [[0.0, 0.0, 0.0]], [2.5e-3], [10e-3]
    for bb in (1000.0, 3000.0, 6000.0):
        for ss in (10e-3, 20e-3, 35e-3):
            b += [bb] * 3
            g += perp.tolist()
            d += [2.5e-3] * 3
            sep += [ss] * 3
    return np.array(b), np.array(g), np.array(d), np.array(sep)


def _signal(s0: float, f_r: float, d_h: float, radius: float, b: np.ndarray, d: np.ndarray,
            sep: np.ndarray) -> np.ndarray:
    out = np.empty(b.size)
    for n, (bb, dd, ss) in enumerate(zip(b, d, sep, strict=True)):
        e = 1.0 if bb == 0 else float(np.real(restricted(
            "cylinder", radius, D_R, pgse_shape(dd, ss),
            np.array([pgse_gradient(bb * 1e6, dd, ss)]))[0]))
        out[n] = f_r * e + (1 - f_r) * np.exp(-bb * d_h)
    return s0 * out


def test_axon_radius_noise_free_round_trip() -> None:
    b, g, d, sep = _protocol()
    truth = [(1000.0, 0.6, 0.8e-3, 2.87e-6), (800.0, 0.7, 1.1e-3, 4.41e-6),
             (1200.0, 0.5, 0.6e-3, 3.33e-6)]  # radii off the 0.05 µm grid
    signal = np.stack([_signal(*t, b, d, sep) for t in truth])
    maps = axon_radius_maps(signal, b, g, d, sep, AXIS)
    assert maps["converged"].values.all()
    for i, (s0, f_r, d_h, radius) in enumerate(truth):
        assert abs(maps["radius"].values[i] - radius * 1e6) < 1e-5, i  # µm: the spline's error
        assert abs(maps["f_r"].values[i] - f_r) < 1e-6
        assert abs(maps["d_h"].values[i] - d_h) < 1e-8
        assert abs(maps["s0"].values[i] / s0 - 1) < 1e-6
    assert np.max(maps["rms"].values) < 1e-7


def test_axon_radius_refuses_gradients_along_the_fibre() -> None:
    b, g, d, sep = _protocol()
    g = g.copy()
    g[5] = [0.0, 0.6, 0.8]
    with pytest.raises(ValueError, match="volume 5"):
        axon_radius_maps(np.ones((1, b.size)), b, g, d, sep, AXIS)


def _files(tmp_path: Path) -> Path:
    """Two voxels of the protocol as NIfTI + bval/bvec + timing sidecar + mask, and a dwi.maps
    scenario asking for the axon radius."""
    pytest.importorskip("nibabel")
    from medtransport.images import read_image, write_image
    from medtransport_dwi.imaging import write_acquisition

    b, g, d, sep = _protocol()
    voxels = np.stack([_signal(1000.0, 0.6, 0.8e-3, 2.87e-6, b, d, sep),
                       _signal(900.0, 0.7, 1.1e-3, 4.41e-6, b, d, sep)]).reshape(2, 1, 1, -1)
    paths = write_acquisition(tmp_path, "wm", voxels, b, g, (2.0, 2.0, 2.0), dtype=np.float64)
    (tmp_path / "wm.json").write_text(json.dumps({"SmallDelta": list(d),
                                                  "LargeDelta": list(sep)}))
    write_image(tmp_path / "mask.nii.gz", np.ones((2, 1, 1)), read_image(paths["dwi"]).affine,
                (2.0, 2.0, 2.0))
    scenario = tmp_path / "wm.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "axon radius", "model": "dwi.maps", "time": {"stop": "50 ms", "step": "10 ms"},
        "parameters": {"dwi": "wm.nii.gz", "bval": "wm.bval", "bvec": "wm.bvec",
                       "mask": "mask.nii.gz", "fits": ["axon_radius"], "fibre_axis": [0, 0, 1],
                       "maps_directory": "maps"}}))
    return scenario


def test_axon_radius_maps_through_medtransport_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from medtransport.cli import main
    from medtransport.images import read_image

    scenario = _files(tmp_path)
    result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "r.nc")])
    assert result.exit_code == 0, result.output
    radius = read_image(tmp_path / "maps" / "axon_radius_radius.nii.gz").data[:, 0, 0]
    assert np.allclose(radius, [2.87, 4.41], atol=1e-4)  # µm (files hold float64)
    assert json.loads((tmp_path / "maps" / "axon_radius_radius.json").read_text())["Units"] == "um"
    # without the fibre axis: refused before anything runs, naming the field
    doc = yaml.safe_load(scenario.read_text())
    del doc["parameters"]["fibre_axis"]
    scenario.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["run", str(scenario)])
    assert result.exit_code == 2 and "parameters.fibre_axis" in result.output, result.output
    assert "Traceback" not in result.output
