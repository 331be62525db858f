"""FSL bval/bvec files: read in either orientation, refused by name when they cannot be right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtransport.images import ImageError
from medtransport_dwi.gradients import read_fsl_gradients, shells

G = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=float)


def _write(tmp: Path, b: np.ndarray, g: np.ndarray) -> tuple[Path, Path]:
    (tmp / "dwi.bval").write_text(" ".join(f"{v:g}" for v in b) + "\n")
    (tmp / "dwi.bvec").write_text("\n".join(" ".join(f"{v:g}" for v in row) for row in g) + "\n")
    return tmp / "dwi.bval", tmp / "dwi.bvec"


def test_fsl_pair_is_read_in_both_orientations(tmp_path: Path) -> None:
    b = np.array([0, 1000, 1000, 1000, 2000.0])
    g = np.vstack([np.zeros(3), G])
    table = read_fsl_gradients(*_write(tmp_path, b, g.T), frames=5)
    assert np.array_equal(table.b_value, b) and np.allclose(table.direction, g)
    table = read_fsl_gradients(*_write(tmp_path, b, g), frames=5)
    assert np.allclose(table.direction, g)
    si = read_fsl_gradients(*_write(tmp_path, b * 1e6, g.T), unit="s/m^2")
    assert np.allclose(si.b_value, b)


def test_refusals_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    b = np.array([0, 1000, 1000, 1000, 2000.0])
    g = np.vstack([np.zeros(3), G]).T
    with pytest.raises(ImageError, match=r"dwi\.bval has 5 b-values but the image has 6"):
        read_fsl_gradients(*_write(tmp_path, b, g), frames=6)
    with pytest.raises(ImageError, match=r"dwi\.bval holds b up to 2e\+09, declared in s/mm²"):
        read_fsl_gradients(*_write(tmp_path, b * 1e6, g))
    with pytest.raises(ImageError, match=r"declared in s/m².*the file is in s/mm²"):
        read_fsl_gradients(*_write(tmp_path, b, g), unit="s/m^2")
    bad = g.copy()
    bad[:, 2] *= 0.9
    with pytest.raises(ImageError, match=r"dwi\.bvec: direction 2 .* norm 0\.9; expected unit"):
        read_fsl_gradients(*_write(tmp_path, b, bad))
    with pytest.raises(ImageError, match=r"dwi\.bvec has 4 directions but dwi\.bval has 5"):
        read_fsl_gradients(*_write(tmp_path, b, g[:, :4]))


def test_shells_group_nominal_b_values() -> None:
    idx = shells(np.array([0, 5, 995, 1000, 1005, 2000, 10, 20]))
    assert list(idx) == [0, 0, 3, 3, 3, 4, 1, 2]
