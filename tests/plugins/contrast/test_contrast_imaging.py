"""DCE files in both directions: a brain-tumour phantom written as NIfTI + BIDS sidecars + an
AIF table is fitted back from the files (VFA T1 → concentration → extended Tofts) into maps
with units and audits; the audits catch their mutants; bad files are refused by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")

from medtransport.images import ImageError, read_image, write_image
from medtransport_contrast.aif import parker_blood, plasma_from_blood
from medtransport_contrast.imaging import (
    DCETissue,
    audit_fit,
    fit_dce_files,
    phantom_signals,
    write_dce_acquisition,
)
from medtransport_contrast.maps import fit_maps
from medtransport_contrast.signal import r1_of

TR, FLIP = 0.005, math.radians(15)
ANGLES = np.radians([2.0, 5.0, 10.0, 15.0, 20.0])
TISSUES = {1: DCETissue(1.2, 1000.0, 0.05, 0.15, 0.02),   # normal brain-like
           2: DCETissue(1.6, 1100.0, 0.4, 0.45, 0.08)}    # enhancing tumour


def _acquire(tmp: Path) -> tuple[dict[str, Path], np.ndarray]:
    times = np.arange(0, 240.0, 2.0)
    cp = plasma_from_blood(parker_blood(np.clip(times - 20, 0, None)) * (times >= 20), 0.42)
    labels = np.zeros((6, 5, 2), int)
    labels[1:5, 1:4] = 1
    labels[2:4, 2, :] = 2
    vfa, dce, _ = phantom_signals(labels, TISSUES, times, cp, tr=TR, flip=FLIP,
                                  vfa_angles=ANGLES, relaxivity=r1_of("gadobutrol", 3.0))
    paths = write_dce_acquisition(tmp, "sub", vfa, dce, times, cp, tr=TR, flip=FLIP,
                                  vfa_angles=ANGLES, voxel_size_mm=(1.0, 1.0, 2.0))
    write_image(tmp / "mask.nii.gz", (labels > 0).astype(float), read_image(paths["dce"]).affine,
                (1.0, 1.0, 2.0))
    return paths, labels


def test_phantom_files_round_trip_to_maps(tmp_path: Path) -> None:
    paths, labels = _acquire(tmp_path)
    written = fit_dce_files(paths["dce"], paths["vfa"], "mask.nii.gz", tmp_path,
                            aif_csv=paths["aif"], agent="gadobutrol", field_strength=3.0,
                            base=tmp_path, prefix="fit_")
    maps = {k: read_image(p).data for k, p in written.items()}
    for label, t in TISSUES.items():
        sel = labels == label
        # float32 images: T1 and the kinetic parameters to ~1e-4
        assert np.allclose(maps["t1"][sel], t.t1, rtol=1e-4)
        assert np.allclose(maps["ktrans"][sel], t.ktrans, rtol=2e-3)
        assert np.allclose(maps["ve"][sel], t.ve, rtol=2e-3)
        assert np.allclose(maps["vp"][sel], t.vp, rtol=2e-3, atol=2e-4)
    side = json.loads((tmp_path / "fit_ktrans.json").read_text())
    assert side["Units"] == "1/min" and side["AuditPassed"] is True
    assert json.loads((tmp_path / "fit_t1.json").read_text())["Units"] == "s"
    audit = json.loads((tmp_path / "fit_ktrans_audit.json").read_text())
    assert audit["passed"]


def test_mislabelled_relaxivity_or_sidecar_is_refused_or_biased(tmp_path: Path) -> None:
    paths, labels = _acquire(tmp_path)
    # the 1.5 T relaxivity for a 3 T acquisition: Ktrans off by the ratio, not silently right
    written = fit_dce_files(paths["dce"], paths["vfa"], tmp_path / "mask.nii.gz", tmp_path,
                            aif_csv=paths["aif"], agent="gadobutrol", field_strength=1.5,
                            prefix="wrong_")
    kt = read_image(written["ktrans"]).data[labels == 2]
    assert not np.allclose(kt, TISSUES[2].ktrans, rtol=0.02)
    side = json.loads(paths["dce_json"].read_text())
    paths["dce_json"].write_text(json.dumps(dict(side, RepetitionTime=5.0 * 1000)))
    with pytest.raises(ImageError, match=r"RepetitionTime.*implausible.*milliseconds"):
        fit_dce_files(paths["dce"], paths["vfa"], tmp_path / "mask.nii.gz", tmp_path,
                      aif_csv=paths["aif"], agent="gadobutrol", field_strength=3.0)
    paths["dce_json"].write_text(json.dumps(side))
    vside = json.loads(paths["vfa_json"].read_text())
    paths["vfa_json"].write_text(json.dumps(dict(vside, FlipAngle=vside["FlipAngle"][:3])))
    with pytest.raises(ImageError, match=r"3 flip angles for 5 volumes of sub_vfa\.nii\.gz"):
        fit_dce_files(paths["dce"], paths["vfa"], tmp_path / "mask.nii.gz", tmp_path,
                      aif_csv=paths["aif"], agent="gadobutrol", field_strength=3.0)


def test_dce_audits_catch_their_mutants() -> None:
    t = np.arange(0, 100.0, 2.0)
    cp = plasma_from_blood(parker_blood(t), 0.42)
    from medtransport_contrast import kinetics as kin

    c = kin.tofts(t, cp, np.array([0.1, 0.2]) / 60, np.array([0.2, 0.3]))
    good = fit_maps("tofts", t, c, cp)
    assert audit_fit("tofts", good, 1.0).passed
    assert [r.name for r in audit_fit("tofts", good, 0.97).failures] == ["concentration_valid"]
    from medtransport_contrast.maps import Map

    nan = dict(good, ve=Map(np.array([0.2, np.nan]), "", ""))
    assert [r.name for r in audit_fit("tofts", nan, 1.0).failures] == ["maps_finite"]
    stuck = dict(good, converged=Map(np.array([1.0, 0.0]), "", ""))
    assert [r.name for r in audit_fit("tofts", stuck, 1.0).failures] == ["fit_converged"]
