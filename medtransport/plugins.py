"""The plugin manager: discovery through entry points, strict and isolated loading.

1. The hook specifications (:mod:`medtransport.hookspecs`) are added first.
2. Each entry point of the ``medtransport`` group is loaded inside its own ``try``; a plugin
   that fails to import, implements a hook that does not exist (pluggy's ``check_pending``), or
   returns a malformed model spec becomes a report line and is skipped — the rest load.
3. ``MEDTRANSPORT_DISABLE_PLUGIN_AUTOLOAD=1`` disables entry-point loading (for tests and
   debugging); plugins can then be registered by hand with :func:`register_plugin`.

Model classes are imported lazily, when a scenario uses them, and checked against the contract
then; an import error is reported naming the plugin and its version.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import BaseModel

from medtransport import hookspecs
from medtransport.errors import PluginError, ScenarioError
from medtransport.hookspecs import ModelSpec

__all__ = ["BrokenPlugin", "PluginRegistry", "get_registry", "register_plugin", "reset_registry"]

ENTRY_POINT_GROUP = "medtransport"
DISABLE_ENV = "MEDTRANSPORT_DISABLE_PLUGIN_AUTOLOAD"
_ID = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be used, and why."""

    name: str
    version: str
    reason: str


@dataclass
class RegisteredModel:
    spec: ModelSpec
    plugin: str
    plugin_version: str
    _cls: Any = None

    def load(self) -> Any:
        """Import the model class and check it against the contract."""
        if self._cls is None:
            from medtransport.model import Model  # the contract, imported when first needed

            module, _, attr = self.spec.target.partition(":")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except Exception as exc:
                raise PluginError(f"plugin {self.plugin} {self.plugin_version}: cannot import "
                                  f"model {self.spec.id} from {self.spec.target!r}: "
                                  f"{type(exc).__name__}: {exc}") from exc
            problems = []
            if not (isinstance(cls, type) and issubclass(cls, Model)):
                problems.append("is not a subclass of medtransport.Model")
            else:
                if getattr(cls, "id", None) != self.spec.id:
                    problems.append(f"declares id {getattr(cls, 'id', None)!r}")
                params = getattr(cls, "Params", None)
                if not (isinstance(params, type) and issubclass(params, BaseModel)):
                    problems.append("has no pydantic Params class")
                if not getattr(cls, "conserved", ()):
                    problems.append("declares no conserved species")
                for attr_name in ("title", "version", "description"):
                    if not isinstance(getattr(cls, attr_name, None), str):
                        problems.append(f"has no {attr_name}")
            if problems:
                raise PluginError(f"plugin {self.plugin} {self.plugin_version}: model "
                                  f"{self.spec.id} ({self.spec.target}) " + "; ".join(problems))
            self._cls = cls
        return self._cls


@dataclass
class PluginRegistry:
    """The loaded plugins, the models they register, and the ones that broke."""

    manager: pluggy.PluginManager
    models: dict[str, RegisteredModel] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def model_class(self, model_id: str) -> Any:
        try:
            entry = self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            hint = ""
            if self.broken:
                hint = "; broken plugins: " + ", ".join(b.name for b in self.broken)
            # An unknown id is the scenario's mistake (bad input), not a plugin's.
            from medtransport.suggest import did_you_mean

            guess = did_you_mean(model_id, self.models)
            raise ScenarioError([("model", f"no model {model_id!r} is registered{guess} "
                                           f"(known: {known}{hint})")]) from None
        return entry.load()

    def extra_audits(self, model: Any) -> list[tuple[str, Any]]:
        """``(plugin, audit)`` pairs from every plugin's ``medtransport_audits`` hook; a plugin
        that raises is named in the error."""
        out = []
        for impl in self.manager.hook.medtransport_audits.get_hookimpls():
            try:
                audits = impl.function(model=model) or []
            except Exception as exc:
                version = self.versions.get(impl.plugin_name, "unknown")
                raise PluginError(f"plugin {impl.plugin_name} {version}: medtransport_audits "
                                  f"raised {type(exc).__name__}: {exc}") from exc
            out += [(impl.plugin_name, a) for a in audits]
        return out

    def plugin_of(self, model_id: str) -> tuple[str, str]:
        entry = self.models[model_id]
        return entry.plugin, entry.plugin_version

    def _collect(self, name: str, plugin: Any, version: str) -> None:
        """Register one plugin object, validate its hooks and collect its model specs."""
        try:
            self.manager.register(plugin, name=name)
        except Exception as exc:
            self.broken.append(BrokenPlugin(name, version, f"cannot register: {exc}"))
            return
        try:
            # Strict: a misspelt hook name is an error, reported for this plugin alone.
            hookimpls = self.manager.get_hookcallers(plugin) or []
            known = {h.name for h in hookimpls}
            spec_names = {n for n in dir(hookspecs) if n.startswith("medtransport_")}
            for attr in dir(plugin):
                if not attr.startswith("medtransport_") or attr in known or \
                        not callable(getattr(plugin, attr)):
                    continue
                if attr in spec_names:
                    raise PluginError(f"{attr} is not marked with @hookimpl")
                raise PluginError(f"unknown hook {attr!r} (known: {', '.join(sorted(spec_names))})")
            self.manager.check_pending()
            found: list[ModelSpec] = []
            for impl in self.manager.hook.medtransport_define_units.get_hookimpls():
                if impl.plugin is plugin:
                    # Only now: building the unit registry is the slowest part of start-up.
                    from medtransport.units import ureg

                    impl.function(registry=ureg)
            for impl in self.manager.hook.medtransport_models.get_hookimpls():
                if impl.plugin is plugin:
                    found += self._validate_specs(name, impl.function())
        except Exception as exc:
            self.manager.unregister(plugin)
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self.broken.append(BrokenPlugin(name, version, reason))
            return
        for spec in found:
            self.models[spec.id] = RegisteredModel(spec, name, version)
        self.versions[name] = version

    def _validate_specs(self, name: str, specs: Any) -> list[ModelSpec]:
        if not isinstance(specs, list | tuple):
            raise PluginError(f"medtransport_models returned {type(specs).__name__}, "
                              "expected a list of ModelSpec")
        out = []
        for spec in specs:
            if not isinstance(spec, ModelSpec):
                raise PluginError(f"medtransport_models returned {spec!r}, expected ModelSpec")
            if not _ID.match(spec.id):
                raise PluginError(f"model id {spec.id!r} is not of the form '<plugin>.<name>'")
            if ":" not in spec.target:
                raise PluginError(f"model {spec.id}: target {spec.target!r} is not "
                                  "'module:Class'")
            if spec.id in self.models:
                other = self.models[spec.id].plugin
                raise PluginError(f"model id {spec.id!r} is already registered by {other}")
            out.append(spec)
        return out


_registry: PluginRegistry | None = None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def get_registry() -> PluginRegistry:
    """The process-wide registry, loading entry points on first use."""
    global _registry
    if _registry is None:
        registry = PluginRegistry(_new_manager())
        if os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes"):
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                version = ep.dist.version if ep.dist is not None else "unknown"
                name = ep.name
                try:
                    plugin = ep.load()
                except Exception as exc:
                    registry.broken.append(BrokenPlugin(name, version, f"import failed: "
                                                        f"{type(exc).__name__}: {exc}"))
                    continue
                registry._collect(name, plugin, version)
        _registry = registry
    return _registry


def register_plugin(plugin: Any, name: str, version: str = "0") -> None:
    """Register a plugin object by hand (tests, notebooks); it goes through the same checks."""
    get_registry()._collect(name, plugin, version)


def reset_registry() -> None:
    """Forget every loaded plugin; the next :func:`get_registry` loads them afresh."""
    global _registry
    _registry = None
