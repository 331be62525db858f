"""The hook specifications of medtransport — the whole plugin API, in one file.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named like the hooks
below, registered through the ``medtransport`` entry-point group::

    # pyproject.toml of your package
    [project.entry-points.medtransport]
    oxygen = "medtransport_oxygen.plugin"

The built-in plugins register exactly this way. The hook API has a version,
:data:`HOOK_API_VERSION`; hooks evolve by adding arguments, never by changing them (pluggy passes
only the arguments an implementation names, so old implementations keep working).

When each hook is called:

``medtransport_define_units(registry)``
    Once per process, when plugins are loaded, before any scenario is parsed. Define units your
    models need (``registry.define("...")``). Return nothing.

``medtransport_models()``
    When the plugin manager collects the registered models (``medtransport models``, the first
    :func:`medtransport.run`). Return a list of :class:`ModelSpec`. Keep it cheap: name the class
    as ``"module:Class"``; it is imported only when a scenario uses the model.

``medtransport_audits(model)``
    After a run, once the core audits are done, with the model instance. Return a list of audit
    functions ``audit(context) -> list[AuditResult]`` that apply to it (check ``model.id`` or
    ``model.tags``), or an empty list. Added audits can fail a run; nothing a plugin returns can
    remove or weaken the core's audits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from medtransport.audit import AuditContext, AuditResult
    from medtransport.model import Model

__all__ = ["HOOK_API_VERSION", "ModelSpec", "hookimpl", "hookspec"]

#: The version of this hook API; a plugin may check it. Bumped in the minor place when a hook or
#: an argument is added, in the major place if one ever had to change (never so far).
HOOK_API_VERSION = "1.0"

PROJECT = "medtransport"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin registers: its id (``"<plugin>.<name>"``), where its class lives
    (``"package.module:Class"``), a title, a version and tags. Cheap to create."""

    id: str
    target: str
    title: str = ""
    version: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)


@hookspec
def medtransport_define_units(registry: Any) -> None:
    """Define extra units in the shared pint ``registry``. Called once, at plugin loading."""


@hookspec
def medtransport_models() -> list[ModelSpec]:
    """Return the :class:`ModelSpec` of every model this plugin provides."""
    return []


@hookspec
def medtransport_audits(model: Model) -> list[Callable[[AuditContext], list[AuditResult]]]:
    """Return extra post-run audits that apply to ``model`` (possibly none)."""
    return []
