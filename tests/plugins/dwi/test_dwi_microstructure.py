"""VERDICT-style maps on the plugin's exact sphere signal: a noise-free round trip on the
VERDICT prostate protocol recovers the fractions and the radius (off the table's grid) to the
spline's accuracy."""

from __future__ import annotations

import numpy as np

from medtransport_dwi.gaussian_phase import restricted
from medtransport_dwi.microstructure import D_EES, D_IC, D_VASC, verdict_maps
from medtransport_dwi.sequence import pgse_gradient, pgse_shape

# Panagiotaki et al. 2015 (VERDICT prostate): b (s/mm²), δ, Δ (ms); 3 directions each + b = 0
PROTOCOL = [(90, 3.9, 23.8), (500, 11.4, 31.3), (1500, 23.9, 43.8), (2000, 14.4, 34.3),
            (3000, 18.9, 38.8)]


def _acquisition() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b, d, sep = [0.0], [3.9e-3], [23.8e-3]
    for bb, dd, ss in PROTOCOL:
        b += [bb] * 3
        d += [dd * 1e-3] * 3
        sep += [ss * 1e-3] * 3
    return np.array(b), np.array(d), np.array(sep)


def _signal(f_ic: float, f_vasc: float, radius: float, b: np.ndarray, d: np.ndarray,
            sep: np.ndarray) -> np.ndarray:
    """Direct evaluation — the plugin's exact (Gaussian-phase) sphere signal at this radius,
    no table, and the closed forms of ball and astro-sticks."""
    from scipy.special import erf

    out = np.empty(b.size)
    for n, (bb, dd, ss) in enumerate(zip(b, d, sep, strict=True)):
        bsi = bb * 1e6
        e_sph = 1.0 if bb == 0 else float(np.real(restricted(
            "sphere", radius, D_IC, pgse_shape(dd, ss), np.array([pgse_gradient(bsi, dd, ss)]))[0]))
        x = bsi * D_VASC
        astro = 1.0 if bb == 0 else np.sqrt(np.pi / (4 * x)) * erf(np.sqrt(x))
        out[n] = f_ic * e_sph + (1 - f_ic - f_vasc) * np.exp(-bsi * D_EES) + f_vasc * astro
    return 1000.0 * out


def test_verdict_round_trip() -> None:
    b, d, sep = _acquisition()
    truth = [(0.5, 0.1, 7.53e-6), (0.3, 0.05, 10.27e-6), (0.7, 0.15, 5.31e-6)]  # off-grid
    signal = np.stack([_signal(*t, b, d, sep) for t in truth])
    maps = verdict_maps(signal, b, d, sep)
    for i, (f_ic, f_vasc, radius) in enumerate(truth):
        assert abs(maps["f_ic"].values[i] - f_ic) < 1e-6
        assert abs(maps["f_vasc"].values[i] - f_vasc) < 1e-6
        assert abs(maps["radius"].values[i] - radius * 1e6) < 1e-4  # µm: the spline's error
    assert maps["converged"].values.all() and np.max(maps["rms"].values) < 1e-8


def test_verdict_from_files_reads_the_timing_from_the_sidecar(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pytest

    from medtransport.images import ImageError, read_image, write_image
    from medtransport_dwi.imaging import fit_dwi_files, write_acquisition

    b, d, sep = _acquisition()
    g = np.tile([1.0, 0.0, 0.0], (b.size, 1))
    g[0] = 0.0
    g[1::3], g[2::3], g[3::3] = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    voxels = np.stack([_signal(0.5, 0.1, 7.53e-6, b, d, sep),
                       _signal(0.3, 0.05, 10.27e-6, b, d, sep)]).reshape(2, 1, 1, -1)
    paths = write_acquisition(tmp_path, "verdict", voxels, b, g, (2.0, 2.0, 3.0),
                              dtype=np.float64)
    write_image(tmp_path / "mask.nii", np.ones((2, 1, 1)), read_image(paths["dwi"]).affine,
                (2.0, 2.0, 3.0))
    with pytest.raises(ImageError, match=r"needs the diffusion timing: no sidecar verdict\.json"):
        fit_dwi_files(paths["dwi"], paths["bval"], paths["bvec"], tmp_path / "mask.nii",
                      tmp_path, fits=("verdict",))
    (tmp_path / "verdict.json").write_text(json.dumps({"SmallDelta": list(d),
                                                       "LargeDelta": list(sep)}))
    written = fit_dwi_files(paths["dwi"], paths["bval"], paths["bvec"], tmp_path / "mask.nii",
                            tmp_path, fits=("verdict",))
    radius = read_image(written["verdict_radius"]).data[:, 0, 0]
    assert np.allclose(radius, [7.53, 10.27], atol=1e-3)
    assert json.loads((tmp_path / "verdict_radius.json").read_text())["Units"] == "um"
