"""``medtransport new-plugin NAME``: scaffold a third-party plugin package that passes the suite.

The package is written from the templates in ``medtransport/templates/plugin`` (package data),
with these names derived from ``NAME`` (a lower-case Python identifier, say ``oxygen``):

- distribution ``medtransport-oxygen`` in the directory ``medtransport-oxygen/`` (an
  underscore in NAME becomes a hyphen in both);
- import package ``medtransport_oxygen``; entry point ``oxygen`` in the ``medtransport`` group;
- one model ``oxygen.slab_uptake`` (class ``OxygenSlabUptake``): a solute diffusing in a 1-D
  slab with first-order uptake, on medtransport's shared finite volumes — Params, a conserved
  species, domain, boundaries, simulate with its ledger, example scenarios and invalid
  parameters — plus an example scenario, tests (the conformance suite and a closed-form
  validation) and a README.

Straight after scaffolding, ``pip install -e <dir>`` registers the model, ``medtransport models``
lists it and ``pytest`` in the directory passes.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from medtransport.errors import MedtransportError

__all__ = ["ScaffoldError", "Scaffolded", "scaffold", "validate_name"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,23}$")

#: Template (relative to the templates directory, without ``.tmpl``) → path in the package,
#: with ``{package}`` and ``{name}`` filled in.
_LAYOUT = {
    "pyproject.toml": "pyproject.toml",
    "README.md": "README.md",
    "gitignore": ".gitignore",
    "package/__init__.py": "{package}/__init__.py",
    "package/plugin.py": "{package}/plugin.py",
    "package/model.py": "{package}/model.py",
    "tests/test_conformance.py": "tests/test_{name}_conformance.py",
    "tests/test_validation.py": "tests/test_{name}_validation.py",
    "scenarios/example.yaml": "scenarios/{name}_example.yaml",
}


class ScaffoldError(MedtransportError):
    """A plugin name or target directory that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Scaffolded:
    """What :func:`scaffold` wrote."""

    name: str
    directory: Path
    package: str
    model_id: str
    files: tuple[Path, ...]


def validate_name(name: str) -> str:
    """Check a plugin name: a lower-case identifier that is not a keyword and does not clash
    with an installed plugin. Returns it."""
    if not _NAME.match(name):
        raise ScaffoldError(f"plugin name {name!r}: expected a lower-case Python identifier of "
                            "at most 24 characters starting with a letter (e.g. 'oxygen', "
                            "'tumour_uptake')")
    if keyword.iskeyword(name) or name.startswith("medtransport"):
        raise ScaffoldError(f"plugin name {name!r}: cannot be a Python keyword or start with "
                            "'medtransport'")
    from medtransport.plugins import get_registry

    registry = get_registry()
    taken = set(registry.versions) | {m.split(".", 1)[0] for m in registry.models}
    if name in taken:
        raise ScaffoldError(f"plugin name {name!r}: an installed plugin already uses it "
                            f"(installed: {', '.join(sorted(taken))}); choose another")
    return name


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def scaffold(name: str, directory: str | Path | None = None) -> Scaffolded:
    """Write the plugin package for ``name`` into ``directory`` (default: the distribution
    name, ``./medtransport-<name>`` with ``_`` as ``-``), which must not exist or be empty."""
    from medtransport import __version__

    validate_name(name)
    dist = f"medtransport-{name.replace('_', '-')}"
    target = Path(directory) if directory is not None else Path(dist)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty directory; choose "
                            "another with --directory")
    package = f"medtransport_{name}"
    values = {
        "name": name,
        "package": package,
        "dist": dist,
        "cls": f"{_camel(name)}SlabUptake",
        "model_id": f"{name}.slab_uptake",
        "title": f"{_camel(name)}: diffusion with first-order uptake in a tissue slab",
        "medtransport_version": __version__,
    }
    templates = files("medtransport") / "templates" / "plugin"
    written = []
    for source, dest in _LAYOUT.items():
        text = (templates / f"{source}.tmpl").read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        if "{{" in text:  # a placeholder without a value is a bug in the templates
            raise ScaffoldError(f"template {source} has an unknown placeholder")
        path = target / dest.format(package=package, name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return Scaffolded(name, target, package, values["model_id"], tuple(written))
