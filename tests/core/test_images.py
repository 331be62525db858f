"""NIfTI images, masks and sidecars (medtransport.images): orientation and voxel sizes survive
a write/read, maps carry their unit and audit beside them, bad files are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from medtransport.images import (  # noqa: E402
    ImageError,
    read_image,
    read_mask,
    read_sidecar,
    sidecar_quantity,
    write_map,
)

# an oblique, anisotropic, non-RAS voxel grid: what a scanner writes
AFFINE = np.array([[-1.8, 0.1, 0.0, 90.0],
                   [0.05, 1.9, -0.3, -120.0],
                   [0.0, 0.25, 3.5, -40.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _save(path: Path, data: np.ndarray, *, qcode: int = 1, scode: int = 2,
          nifti2: bool = False, tr: float | None = None, time_unit: str = "sec") -> Path:
    cls = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    img = cls(data.astype(np.float32), AFFINE)
    img.set_qform(AFFINE, qcode)
    img.set_sform(AFFINE @ np.diag([1, 1, 1, 1.0]), scode)
    zooms = np.sqrt((AFFINE[:3, :3] ** 2).sum(axis=0))
    img.header.set_zooms((tuple(zooms) + ((tr,) if data.ndim == 4 else ()))[:data.ndim])
    img.header.set_xyzt_units("mm", time_unit)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("nifti2", [False, True])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_map_keeps_orientation_voxel_sizes_and_records_its_unit(tmp_path: Path, nifti2: bool,
                                                                ext: str) -> None:
    src = _save(tmp_path / f"dwi{ext}", np.random.default_rng(0).random((5, 6, 4, 7)),
                nifti2=nifti2, tr=2.5)
    image = read_image(src)
    assert image.shape == (5, 6, 4) and image.frames == 7
    assert image.frame_interval.m_as("s") == pytest.approx(2.5)
    values = np.arange(5 * 6 * 4, dtype=float).reshape(5, 6, 4) * 1e-4
    out = write_map(tmp_path / f"md{ext}", values, image, "mm^2/s", description="mean diffusivity",
                    audit={"passed": True, "checks": ["rms"]})
    back = nib.load(str(out))
    for get in ("get_qform", "get_sform"):
        a, code_a = getattr(back.header, get)(coded=True)
        b, code_b = getattr(image.header, get)(coded=True)
        assert int(code_a) == int(code_b)
        assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(back.header.get_zooms()[:3], image.header.get_zooms()[:3])
    assert np.allclose(read_image(out).voxel_size.m_as("mm"), image.voxel_size.m_as("mm"))
    assert np.allclose(np.asarray(back.dataobj), values, rtol=1e-6)
    stem = out.name.split(".")[0]
    side = json.loads((tmp_path / f"{stem}.json").read_text())
    assert side["Units"] == "mm^2/s" and side["Description"] == "mean diffusivity"
    assert json.loads((tmp_path / f"{stem}_audit.json").read_text())["passed"] is True
    assert isinstance(back, nib.Nifti2Image if nifti2 else nib.Nifti1Image)
    # no temporary files left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_time_unit_from_header(tmp_path: Path) -> None:
    img = read_image(_save(tmp_path / "dce.nii", np.zeros((2, 2, 2, 3)), tr=1500.0,
                           time_unit="msec"))
    assert img.frame_interval.m_as("s") == pytest.approx(1.5)
    assert read_image(_save(tmp_path / "t1.nii", np.zeros((2, 2, 2)))).frame_interval is None


def test_masks_are_checked_against_the_image(tmp_path: Path) -> None:
    image = read_image(_save(tmp_path / "img.nii", np.ones((4, 4, 3))))
    ok = np.zeros((4, 4, 3))
    ok[1:3, 1:3, 1] = 1
    assert read_mask(_save(tmp_path / "m.nii", ok), image).sum() == 4
    with pytest.raises(ImageError, match=r"flat\.nii is a 2-D mask.*expected a 3-D mask"):
        read_mask(_save(tmp_path / "flat.nii", np.ones((4, 4))), image)
    with pytest.raises(ImageError, match=r"small\.nii has shape \(3, 4, 3\) but img\.nii"):
        read_mask(_save(tmp_path / "small.nii", np.ones((3, 4, 3))), image)
    with pytest.raises(ImageError, match="no voxel inside"):
        read_mask(_save(tmp_path / "empty.nii", np.zeros((4, 4, 3))), image)
    shifted = nib.Nifti1Image(np.ones((4, 4, 3), np.float32),
                              AFFINE + np.pad(np.array([[5.0]]), ((0, 3), (3, 0))))
    nib.save(shifted, str(tmp_path / "moved.nii"))
    with pytest.raises(ImageError, match="different affines"):
        read_mask(tmp_path / "moved.nii", image)


def test_bad_files_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "junk.nii").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"image: cannot read junk\.nii as a NIfTI image"):
        read_image(tmp_path / "junk.nii")
    with pytest.raises(ImageError, match=r"no such file: gone\.nii \(relative to"):
        read_image("gone.nii", base=tmp_path)
    with pytest.raises(ImageError, match=r"2-D image .* expected a 3-D or 4-D"):
        read_image(_save(tmp_path / "slice.nii", np.ones((4, 4))))


def test_bids_sidecar_quantities(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"RepetitionTime": 0.005, "FlipAngle": [2, 15],
                                                 "EchoTime": 1.2}))
    side = read_sidecar(tmp_path / "s.json")
    assert sidecar_quantity(side, "RepetitionTime").m_as("ms") == pytest.approx(5.0)
    assert np.allclose(sidecar_quantity(side, "FlipAngle").m_as("rad"), np.radians([2, 15]))
    with pytest.raises(ImageError, match="RepetitionTime"):
        sidecar_quantity({"RepetitionTime": 5000}, "RepetitionTime")  # ms written as s
    with pytest.raises(ImageError, match="has no 'InversionTime'"):
        sidecar_quantity(side, "InversionTime")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ImageError, match=r"list\.json holds a list"):
        read_sidecar(tmp_path / "list.json")


def test_montage_labels_every_colour_bar_with_its_unit(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from medtransport.montage import MapPanel, save_montage

    truth = np.zeros((6, 5, 2))
    truth[2:4, 1:4] = 1.5e-3
    seen: list[str] = []
    original = plt.Figure.colorbar

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        bar = original(self, *args, **kwargs)
        seen.append(bar)
        return bar

    plt.Figure.colorbar = spy  # type: ignore[method-assign]
    try:
        out = save_montage(tmp_path / "m.png", [MapPanel("MD", "µm²/ms", truth * 1.01, truth, 1e3),
                                                MapPanel("rms", "mM", truth)])
    finally:
        plt.Figure.colorbar = original  # type: ignore[method-assign]
    assert [b.ax.get_ylabel() for b in seen] == ["µm²/ms"] * 3 + ["mM"]
    assert plt.imread(out).shape[0] > 100
