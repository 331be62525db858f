"""A Shepp–Logan head phantom: the sum of ten ellipses of constant intensity.

Geometry of Shepp & Logan (1974, IEEE Trans. Nucl. Sci. 21:21, Table 1); intensities of the
"modified" phantom of Toft (1996, PhD thesis, DTU, §B.3), which shows the inner structures with
better contrast. In coordinates scaled to [−1, 1] over the field of view, ellipse j adds A_j
where ((x'−x_j)cos φ_j + (y'−y_j)sin φ_j)²/a_j² + (−(x'−x_j)sin φ_j + (y'−y_j)cos φ_j)²/b_j² ≤ 1.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ELLIPSES", "shepp_logan"]

#: (A, a, b, x0, y0, φ in degrees)
ELLIPSES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    (0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    (0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    (0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    (0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
)


def shepp_logan(ny: int, nx: int) -> np.ndarray:
    """The phantom sampled at pixel centres on an (ny, nx) grid, row 0 at the top (y = +1)."""
    x = (np.arange(nx) + 0.5) / nx * 2.0 - 1.0
    y = 1.0 - (np.arange(ny) + 0.5) / ny * 2.0
    xx, yy = np.meshgrid(x, y)
    image = np.zeros((ny, nx))
    for amp, a, b, x0, y0, phi in ELLIPSES:
        c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        dx, dy = xx - x0, yy - y0
        inside = ((dx * c + dy * s) / a) ** 2 + ((-dx * s + dy * c) / b) ** 2 <= 1.0
        image[inside] += amp
    return image
