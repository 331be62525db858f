"""DWI files in both directions: a phantom acquisition written as NIfTI + bval/bvec is fitted
back from the files into maps with units and audits; the fit's audits catch their mutants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")

from medtransport.images import read_image, write_image
from medtransport_dwi import maps as dwi_maps
from medtransport_dwi.imaging import (
    Tissue,
    audit_fit,
    fit_dwi_files,
    phantom_signal,
    write_acquisition,
)

TISSUES = {1: Tissue(1000.0, 1.7e-3, 0.3e-3, (1, 1, 0)),
           2: Tissue(800.0, 1.0e-3, 0.8e-3, (0, 0, 1), perfusion_fraction=0.1),
           3: Tissue(1200.0, 2.5e-3, 2.5e-3)}


def _scheme() -> tuple[np.ndarray, np.ndarray]:
    n = 20
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    r = np.sqrt(1.0 - z * z)
    g = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    b = np.concatenate([[0.0, 0.0], np.full(n, 1000.0)])
    return b, np.concatenate([np.zeros((2, 3)), g])


def _labels() -> np.ndarray:
    labels = np.zeros((8, 7, 3), dtype=int)
    labels[1:4, 1:6, :] = 1
    labels[4:7, 1:4, :] = 2
    labels[4:7, 4:6, 1:] = 3
    return labels


def test_phantom_files_round_trip_to_maps(tmp_path: Path) -> None:
    b, g = _scheme()
    labels = _labels()
    tissues = {1: TISSUES[1], 3: TISSUES[3]}  # no IVIM: DTI is then exact
    labels[labels == 2] = 0
    signal = phantom_signal(labels, tissues, b, g)
    paths = write_acquisition(tmp_path, "dwi", signal, b, g, (2.0, 2.0, 3.0), dtype=np.float64)
    write_image(tmp_path / "mask.nii.gz", (labels > 0).astype(float),
                read_image(paths["dwi"]).affine, (2.0, 2.0, 3.0))
    (tmp_path / "out").mkdir()
    written = fit_dwi_files("dwi.nii.gz", "dwi.bval", "dwi.bvec", "mask.nii.gz", tmp_path / "out",
                            fits=("dti", "adc"), base=tmp_path)
    md = read_image(written["dti_md"]).data
    fa = read_image(written["dti_fa"]).data
    for label, t in tissues.items():
        lam = np.array([t.axial, t.radial, t.radial])
        fa_true = np.sqrt(1.5) * np.linalg.norm(lam - lam.mean()) / np.linalg.norm(lam)
        assert np.allclose(md[labels == label], lam.mean(), rtol=1e-6)
        assert np.allclose(fa[labels == label], fa_true, atol=1e-6)
    assert np.all(md[labels == 0] == 0)
    side = json.loads((tmp_path / "out" / "dti_md.json").read_text())
    assert side["Units"] == "mm^2/s" and side["AuditPassed"] is True
    audit = json.loads((tmp_path / "out" / "dti_md_audit.json").read_text())
    assert audit["passed"] and {r["name"] for r in audit["results"]} >= {"maps_finite",
                                                                         "b0_reproduced"}
    v1 = read_image(written["dti_v1"])
    assert v1.data.shape == (*labels.shape, 3)
    a = np.array([1, 1, 0]) / np.sqrt(2)
    assert np.allclose(np.abs(v1.data[labels == 1] @ a), 1.0, atol=1e-6)


def test_fit_audits_catch_their_mutants() -> None:
    b, g = _scheme()
    signal = phantom_signal(np.ones((4, 1, 1), int), {1: TISSUES[1]}, b, g).reshape(4, -1)
    good = dwi_maps.dti_maps(signal, b, g)
    s0 = signal[:, 0]
    assert audit_fit("dti", good, s0).passed
    # a NaN leaking into a map
    nan = dict(good, fa=dwi_maps.Map(np.where(np.arange(4) == 2, np.nan, 0.5), "", ""))
    report = audit_fit("dti", nan, s0)
    assert [r.name for r in report.failures] == ["maps_finite"]
    # a fit that did not converge in most voxels
    stuck = dict(good, converged=dwi_maps.Map(np.array([1.0, 0, 0, 0]), "", ""))
    assert [r.name for r in audit_fit("dti", stuck, s0).failures] == ["fit_converged"]
    # an S0 off by 10 % (e.g. the b = 0 volumes taken from the wrong frames)
    off = dict(good, s0=dwi_maps.Map(good["s0"].values * 1.1, "", ""))
    assert [r.name for r in audit_fit("dti", off, s0).failures] == ["b0_reproduced"]


def test_ivim_phantom_with_rician_noise_from_files(tmp_path: Path) -> None:
    """IVIM from files at SNR 200 with Rician noise: the perfusion fraction map of the
    perfused label is within 0.03 of the truth and near 0 elsewhere."""
    from medtransport_noise.magnitude import add_magnitude_noise

    shells_b = [0, 10, 20, 50, 100, 200, 400, 600, 800, 1000]
    g1 = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    b = np.concatenate([[0.0]] + [np.full(3, v) for v in shells_b[1:]])
    g = np.concatenate([np.zeros((1, 3))] + [g1 for _ in shells_b[1:]])
    labels = _labels()
    clean = phantom_signal(labels, TISSUES, b, g)
    noisy = add_magnitude_noise(clean, seed=3, snr=200.0, reference=1000.0)
    paths = write_acquisition(tmp_path, "ivim", noisy.values, b, g, (2.0, 2.0, 3.0))
    write_image(tmp_path / "mask.nii", (labels > 0).astype(float),
                read_image(paths["dwi"]).affine, (2.0, 2.0, 3.0))
    written = fit_dwi_files(paths["dwi"], paths["bval"], paths["bvec"], tmp_path / "mask.nii",
                            tmp_path, fits=("ivim",), rician_sigma=noisy.sigma)
    f = read_image(written["ivim_f"]).data
    assert abs(np.median(f[labels == 2]) - 0.1) < 0.03
    assert np.median(f[labels == 1]) < 0.03
