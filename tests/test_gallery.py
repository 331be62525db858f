"""The gallery: every example's plot and the report's figures, drawn and checked for what an
expert would reject at a glance — an axis without a label, a raw unit spelling (``kg/m**3``),
titles drawn over one another, a legend covering the curves it explains, a panel that could
not be drawn.

The images are written to ``$MEDTRANSPORT_ARTIFACTS/gallery`` (else pytest's temporary
directory) to be looked at by eye; the list of what was checked that way is in the issue's
closing note. Examples that take more than a few seconds are marked slow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medtransport as mt

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))
#: Quick enough to run by default; the others are marked slow (they still run in CI).
FAST = {"theophylline_oral", "bioheat_burn_cooling", "contrast_brain_tumour_extended_tofts",
        "dye_tissue_slab", "implant_sphere_release"}
#: Share of a curve's points a legend may cover.
LEGEND_COVER = 0.10


def _artifacts(tmp_path: Path) -> Path:
    base = os.environ.get("MEDTRANSPORT_ARTIFACTS")
    target = Path(base) / "gallery" if base else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text and legends with
    return fig


def _is_colorbar(ax: Any) -> bool:
    return ax.get_label() == "<colorbar>"


def _data_axes(fig: Any) -> list[Any]:
    """Axes that show data with ticks (not colour bars, not image strips without ticks)."""
    out = []
    for ax in fig.get_axes():
        if _is_colorbar(ax) or not ax.get_visible() or not ax.axison:
            continue
        if not (ax.lines or ax.collections or ax.patches or ax.images):
            continue
        if not ax.get_xticks().size and not ax.get_yticks().size:
            continue
        out.append(ax)
    return out


def _titles(fig: Any) -> list[Any]:
    texts = [ax.title for ax in fig.get_axes() if ax.get_title()]
    stack = [fig]
    while stack:
        f = stack.pop()
        if getattr(f, "_suptitle", None) is not None and f._suptitle.get_text():
            texts.append(f._suptitle)
        stack.extend(getattr(f, "subfigs", []))
    return texts


def problems_of(fig: Any) -> list[str]:
    """What an expert would reject in a drawn figure, in words."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in _data_axes(fig):
        name = ax.get_title() or "a panel"
        # a twin axis shares its x axis with its host: the host carries the x label
        twin = any(other is not ax and other.bbox.bounds == ax.bbox.bounds
                   for other in fig.get_axes())
        if not ax.get_xlabel() and not twin and ax.get_xticks().size and \
                any(t.get_text() for t in ax.get_xticklabels()):
            found.append(f"{name!r}: x axis without a label")
        if not ax.get_ylabel() and any(t.get_text() for t in ax.get_yticklabels()):
            found.append(f"{name!r}: y axis without a label")
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            if "**" in label:
                found.append(f"{name!r}: raw unit spelling in {label!r}")
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            inside = ax.bbox.contains((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            for line in ax.lines if inside else []:
                xy = line.get_xydata()
                if len(xy) < 10 or not line.get_visible():
                    continue
                pts = line.get_transform().transform(np.asarray(xy, dtype=float))
                pts = pts[np.all(np.isfinite(pts), axis=1)]
                within = (pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & \
                    (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)
                covered = float(np.mean(within)) if len(pts) else 0.0
                if covered > LEGEND_COVER:
                    found.append(f"{name!r}: the legend covers {covered:.0%} of "
                                 f"{line.get_label()!r}")
    titles = _titles(fig)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in titles]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b):
                found.append(f"titles drawn over one another: {a!r} and {b!r}")
    return found


def _params() -> list[Any]:
    return [pytest.param(p, id=p.stem, marks=[] if p.stem in FAST else [pytest.mark.slow])
            for p in EXAMPLES]


@pytest.mark.parametrize("example", _params())
def test_every_example_plot_is_one_an_expert_would_accept(example: Path,
                                                          tmp_path: Path) -> None:
    from medtransport.runner import prepare

    model = prepare(str(example))
    ds = mt.run(model)
    fig = _figure()
    model.plot(ds, fig)
    fig.savefig(_artifacts(tmp_path) / f"{example.stem}.png", dpi=90)
    assert problems_of(fig) == []


@pytest.mark.parametrize("example", [
    pytest.param(EXAMPLES[0].with_name("theophylline_oral.yaml"), id="theophylline_oral"),
    pytest.param(EXAMPLES[0].with_name("bioheat_litt_liver.yaml"), id="bioheat_litt_liver",
                 marks=pytest.mark.slow)])
def test_the_report_draws_every_figure(example: Path, tmp_path: Path) -> None:
    import base64
    import re

    from medtransport.report import render_report
    from medtransport.runner import prepare

    model = prepare(str(example))
    html = render_report(mt.run(model), model=model)
    assert "could not be drawn" not in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2  # the ledger(s) and the family plot
    for k, data in enumerate(images):
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        (_artifacts(tmp_path) / f"report_{example.stem}_{k}.png").write_bytes(png)


def test_the_checker_catches_what_it_is_for() -> None:
    # a mutant figure: no labels, a raw unit, a legend over the data, titles on one another
    fig = _figure()
    ax = fig.subplots()
    x = np.linspace(0.0, 1.0, 50)
    ax.plot(x, np.full_like(x, 0.95), label="a curve under the legend")
    ax.plot(x, x, label="another")
    ax.set_ylabel("concentration [kg/m**3]")
    ax.set_ylim(0.0, 1.0)
    ax.legend(loc="upper left", fontsize=30)
    ax.set_title("title")
    fig.suptitle("title")
    ax.title.set_position((0.5, 1.0))
    found = " | ".join(problems_of(fig))
    assert "x axis without a label" in found
    assert "raw unit spelling" in found
    assert "the legend covers" in found
