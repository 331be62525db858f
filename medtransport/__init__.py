"""medtransport: audited transport models in medicine.

No result leaves the framework unless its books balance: every model declares what it counts,
where, what may leave, what is conserved and how much it starts with, and the framework checks
those declarations against the numbers the model returns.

    import medtransport as mt
    sc = mt.load_scenario("examples/scenarios/dye_tissue_slab.yaml")
    ds = mt.run(sc)          # an audited xarray.Dataset, or AuditFailure
    mt.models()              # what is registered
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medtransport.errors import (
    AuditFailure,
    MedtransportError,
    ModelError,
    PluginError,
    ScenarioError,
    UnitError,
)

__version__ = "0.1.0"

__all__ = [
    "AuditFailure",
    "MedtransportError",
    "ModelError",
    "PluginError",
    "ScenarioError",
    "UnitError",
    "__version__",
    "fit",
    "load_scenario",
    "models",
    "open_population",
    "read_netcdf",
    "run",
    "run_population",
    "ureg",
    "write_netcdf",
]

if TYPE_CHECKING:
    from medtransport.batch import run_population
    from medtransport.estimation.fit import fit
    from medtransport.results import read_netcdf, write_netcdf
    from medtransport.runner import run
    from medtransport.scenario import load_scenario
    from medtransport.store import open_population

_LAZY = {
    "load_scenario": "medtransport.scenario",
    "fit": "medtransport.estimation.fit",
    "run": "medtransport.runner",
    "run_population": "medtransport.batch",
    "open_population": "medtransport.store",
    "read_netcdf": "medtransport.results",
    "write_netcdf": "medtransport.results",
    "Model": "medtransport.model",
    "ureg": "medtransport.units",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that `medtransport models` and the pytest plugin stay cheap to import.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medtransport' has no attribute {name!r}")


def models() -> dict[str, dict[str, Any]]:
    """The registered models: id → title, version, plugin, plugin version and tags."""
    from medtransport.plugins import get_registry

    reg = get_registry()
    return {mid: {"title": m.spec.title, "version": m.spec.version, "plugin": m.plugin,
                  "plugin_version": m.plugin_version, "tags": sorted(m.spec.tags)}
            for mid, m in sorted(reg.models.items())}
