"""MkDocs hook: the gallery page, built from ``examples/scenarios/`` at build time.

Every example is listed (its title and model read from the scenario file); the quick ones are
run through the framework — audited like any run — and their plots embedded, so a picture on
the site is what the code draws today. The slower examples are listed with the command that
draws theirs, which keeps the site's build well under a minute.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
#: Examples quick enough to run at every build (a few seconds at most each).
DRAWN = ("dye_tissue_slab", "implant_sphere_release", "theophylline_oral",
         "contrast_brain_tumour_extended_tofts", "bioheat_burn_cooling",
         "dialysis_thrice_weekly_hd", "dialysis_two_pool_rebound", "noise_mixture_reverse")


def _png(path: Path) -> bytes:
    """Run one example (its audits must pass) and draw its model's plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import medtransport as mt
    from medtransport.runner import prepare

    model = prepare(str(path))
    dataset = mt.run(model)
    figure = Figure(figsize=(11.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    model.plot(dataset, figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    return buffer.getvalue()


def _page(drawn: set[str]) -> str:
    lines = ["# Gallery", "",
             "Every scenario in `examples/scenarios/`, as `medtransport run FILE --plot "
             "out.png` draws it. The plots below are drawn from the code when this site is "
             "built, each after its run passed every audit; for the others, run the command "
             "shown. Where the numbers come from: [the examples](examples.md).", ""]
    for path in sorted(EXAMPLES.glob("*.yaml")):
        scenario = yaml.safe_load(path.read_text(encoding="utf-8"))
        lines += [f"## {scenario.get('name', path.stem)}", "",
                  f"`{path.name}` — model `{scenario['model']}`", ""]
        if path.stem in drawn:
            lines += [f"![{path.stem}](gallery/{path.stem}.png)", ""]
        else:
            lines += ["```bash",
                      f"medtransport run examples/scenarios/{path.name} --plot "
                      f"{path.stem}.png", "```", ""]
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    for stem in DRAWN:
        files.append(File.generated(config, f"gallery/{stem}.png",
                                    content=_png(EXAMPLES / f"{stem}.yaml")))
    files.append(File.generated(config, "gallery.md", content=_page(set(DRAWN))))
    return files
