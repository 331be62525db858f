"""Map montages: recovered parameter maps beside the truth and their difference, one row per
map, a colour bar with the map's unit on every panel; and residual maps.

Generic (no physics): a map is a 3-D array (x, y, z) with a name and a unit; one slice
(``z``) is shown, transposed so that x runs left → right and y bottom → top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MapPanel", "save_montage"]


@dataclass
class MapPanel:
    """One row: the recovered map, optionally the truth, its name and unit, and a display
    scale (e.g. 1e3 to show mm²/s as µm²/ms: the unit label must then say so)."""

    name: str
    unit: str
    recovered: np.ndarray
    truth: np.ndarray | None = None
    scale: float = 1.0


def save_montage(path: str | Path, panels: Sequence[MapPanel], *, z: int | None = None,
                 title: str = "", mask: np.ndarray | None = None) -> Path:
    """Render the montage to ``path`` (PNG), atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from medtransport.results import write_atomically

    has_truth = any(p.truth is not None for p in panels)
    cols = 3 if has_truth else 1
    fig, axes = plt.subplots(len(panels), cols, figsize=(3.4 * cols, 2.9 * len(panels)),
                             squeeze=False, constrained_layout=True)
    for row, p in enumerate(panels):
        k = p.recovered.shape[2] // 2 if z is None else z

        def show(ax, data: np.ndarray, label: str, *, vmin: float, vmax: float,
                 cmap: str = "viridis", p: MapPanel = p, k: int = k) -> None:
            img = data[:, :, k].T * p.scale
            if mask is not None:
                img = np.ma.masked_where(~mask[:, :, k].T, img)
            im = ax.imshow(img, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            bar = fig.colorbar(im, ax=ax, shrink=0.85)
            bar.set_label(p.unit, fontsize=8)

        ref = p.truth if p.truth is not None else p.recovered
        sel = np.isfinite(ref) if mask is None else mask & np.isfinite(ref)
        lo = float(np.min(ref[sel])) * p.scale if sel.any() else 0.0
        hi = float(np.max(ref[sel])) * p.scale if sel.any() else 1.0
        if hi <= lo:
            hi = lo + 1.0
        show(axes[row, 0], p.recovered, f"{p.name}: fitted", vmin=lo, vmax=hi)
        if has_truth:
            if p.truth is None:
                axes[row, 1].axis("off")
                axes[row, 2].axis("off")
                continue
            show(axes[row, 1], p.truth, f"{p.name}: truth", vmin=lo, vmax=hi)
            diff = p.recovered - p.truth
            d = float(np.nanmax(np.abs(diff[sel]))) * p.scale if sel.any() else 1.0
            show(axes[row, 2], diff, f"{p.name}: fitted − truth", vmin=-d or -1, vmax=d or 1,
                 cmap="RdBu_r")
    if title:
        fig.suptitle(title, fontsize=11)
    target = Path(path)
    with write_atomically(target, target.suffix or ".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return target
