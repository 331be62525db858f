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

import contextlib
import importlib
import os
import re
import reprlib
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy
from pydantic import BaseModel

from medtransport import hookspecs
from medtransport.errors import PluginError, ScenarioError
from medtransport.hookspecs import ModelSpec
from medtransport.isolation import describe, plugin_boundary, quiet_import

__all__ = ["BrokenPlugin", "PluginRegistry", "get_registry", "register_plugin", "reset_registry"]

ENTRY_POINT_GROUP = "medtransport"
DISABLE_ENV = "MEDTRANSPORT_DISABLE_PLUGIN_AUTOLOAD"
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
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
                with quiet_import():
                    cls = getattr(importlib.import_module(module), attr)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit at import too
                raise PluginError(f"plugin {self.plugin} {self.plugin_version}: cannot import "
                                  f"model {self.spec.id} from {self.spec.target!r}: "
                                  f"{describe(exc)}") from exc
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
    #: model id → the plugins refused for registering it again (the first holder keeps it)
    collisions: dict[str, list[str]] = field(default_factory=dict)
    #: plugin → why its ``medtransport_audits`` hook was skipped (seen during this process)
    broken_hooks: dict[str, str] = field(default_factory=dict)
    #: what a run should tell the user (a plugin's hook skipped for a model not its own)
    warnings: list[str] = field(default_factory=list)

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
        """``(plugin, audit)`` pairs from every plugin's ``medtransport_audits`` hook.

        A hook that raises (anything, ``SystemExit`` included) or returns something other than
        a list of callables is broken: for a model of its own plugin that fails the run
        (:class:`PluginError` naming the plugin); for any other model the hook is skipped, and
        the skip is recorded in :attr:`warnings` and :attr:`broken_hooks`."""
        out = []
        owner = self.models[model.id].plugin if getattr(model, "id", None) in self.models \
            else None
        for impl in self.manager.hook.medtransport_audits.get_hookimpls():
            name = impl.plugin_name
            try:
                audits = _checked_audits(self, impl, model)
            except PluginError as exc:
                self.broken_hooks[name] = str(exc)
                if name == owner:
                    raise
                self.warnings.append(f"{exc}; skipped for {getattr(model, 'id', model)}")
                continue
            out += [(name, a) for a in audits]
        return out

    def probe_audit_hooks(self) -> dict[str, str]:
        """Ask each plugin's ``medtransport_audits`` hook about every registered model (a
        stand-in with the model's ``id``, ``tags``, ``version`` and ``title``): the hooks that
        raise or return something other than a list of callables, and why — for
        ``medtransport models``."""
        problems = dict(self.broken_hooks)
        for impl in self.manager.hook.medtransport_audits.get_hookimpls():
            for entry in self.models.values():
                stand_in = _ModelStandIn(entry.spec.id, frozenset(entry.spec.tags),
                                         entry.spec.version, entry.spec.title)
                try:
                    _checked_audits(self, impl, stand_in)
                except PluginError as exc:
                    problems.setdefault(impl.plugin_name, str(exc))
                    break
        return problems

    def plugin_of(self, model_id: str) -> tuple[str, str]:
        entry = self.models[model_id]
        return entry.plugin, entry.plugin_version

    def _collect(self, name: str, plugin: Any, version: str) -> None:
        """Register one plugin object, validate its hooks and collect its model specs."""
        try:
            self.manager.register(plugin, name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the isolation promise
            self.broken.append(BrokenPlugin(name, version, f"cannot register: {describe(exc)}"))
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

                    with plugin_boundary(name, version, "medtransport_define_units",
                                         PluginError):
                        impl.function(registry=ureg)
            for impl in self.manager.hook.medtransport_models.get_hookimpls():
                if impl.plugin is plugin:
                    with plugin_boundary(name, version, "medtransport_models", PluginError):
                        specs = impl.function()
                    found += self._validate_specs(name, specs)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # the isolation promise
            with contextlib.suppress(Exception):
                self.manager.unregister(plugin)
            reason = str(exc) if isinstance(exc, PluginError) else describe(exc)
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
            if spec.id in self.models or any(o.id == spec.id for o in out):
                other = self.models[spec.id].plugin if spec.id in self.models else name
                self.collisions.setdefault(spec.id, []).append(name)
                raise PluginError(f"model id {spec.id!r} is already registered by {other}; "
                                  f"the plugin registering it again is refused")
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
            for ep in _ordered(entry_points(group=ENTRY_POINT_GROUP)):
                version = ep.dist.version if ep.dist is not None else "unknown"
                name = ep.name
                try:
                    with quiet_import() as printed:
                        plugin = ep.load()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # SystemExit, argparse too
                    said = printed.getvalue().strip().splitlines()
                    registry.broken.append(BrokenPlugin(
                        name, version, f"import failed: {describe(exc)}"
                        + (f" (it printed: {said[-1][:200]!r})" if said else "")))
                    continue
                if printed.getvalue():
                    sys.stderr.write(printed.getvalue())
                registry._collect(name, plugin, version)
        _registry = registry
    return _registry


def _ordered(eps: Any) -> list[Any]:
    """Entry points in an order that does not depend on how they were installed: the
    built-in plugins (of the ``medtransport`` distribution) first, so that a model id they
    define can never be taken over, then the others by name."""
    def key(ep: Any) -> tuple[int, str, str]:
        dist = (ep.dist.metadata["Name"] or "") if ep.dist is not None else ""
        builtin = dist.lower().replace("_", "-") == "medtransport"
        return (0 if builtin else 1, ep.name, ep.value)

    return sorted(eps, key=key)


@dataclass(frozen=True)
class _ModelStandIn:
    """What ``medtransport models`` passes to an audits hook to see whether it works."""

    id: str
    tags: frozenset[str]
    version: str
    title: str


def _checked_audits(registry: PluginRegistry, impl: Any, model: Any) -> list[Any]:
    """Call one ``medtransport_audits`` hookimpl; its result must be a list of callables."""
    name = impl.plugin_name
    version = registry.versions.get(name, "unknown")
    with plugin_boundary(name, version, "medtransport_audits", PluginError):
        audits = impl.function(model=model)
    if audits is None:
        return []
    if not isinstance(audits, list | tuple) or not all(callable(a) for a in audits):
        raise PluginError(f"plugin {name} {version}: medtransport_audits returned "
                          f"{_REPR.repr(audits)}, expected a list of audit functions")
    return list(audits)


def register_plugin(plugin: Any, name: str, version: str = "0") -> None:
    """Register a plugin object by hand (tests, notebooks); it goes through the same checks."""
    get_registry()._collect(name, plugin, version)


def reset_registry() -> None:
    """Forget every loaded plugin; the next :func:`get_registry` loads them afresh."""
    global _registry
    _registry = None
