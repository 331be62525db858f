"""Entry point of the contrast dye (DCE-MRI / CT tracer kinetics) plugin: registers its models
with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_contrast import __version__

_TAGS = frozenset({"compartments", "deterministic"})


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(id="contrast.whole_body",
                  target="medtransport_contrast.whole_body_model:WholeBody",
                  title="Whole-body contrast agent kinetics", version=__version__, tags=_TAGS),
        ModelSpec(id="contrast.dce", target="medtransport_contrast.dce_model:DCE",
                  title="DCE tracer kinetics with MRI/CT signal", version=__version__,
                  tags=_TAGS),
        ModelSpec(id="contrast.vessel_diffusion",
                  target="medtransport_contrast.vessel_model:VesselDiffusion",
                  title="Contrast agent diffusing from a vessel into tissue", version=__version__,
                  tags=frozenset({"grid", "deterministic"})),
        ModelSpec(id="contrast.maps", target="medtransport_contrast.maps_model:ContrastMaps",
                  title="DCE parameter maps from image files", version=__version__,
                  tags=frozenset({"compartments", "deterministic", "image"})),
    ]
