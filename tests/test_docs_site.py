"""The documentation site builds from the code with warnings as errors, and every page and link
a reader follows from README.md exists.

The build runs ``mkdocs build --strict`` (mkdocs.yml at the root: mkdocs-material, mkdocstrings
for the API reference, a hook that runs the quick examples and embeds their plots). No network:
the theme's web fonts are switched off and nothing else is fetched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _config() -> dict:
    # mkdocs.yml holds no custom tags; safe_load reads it.
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = _nav_pages(_config()["nav"])
    generated = {"gallery.md"}  # written by docs/_hooks/gallery.py at build time
    missing = [p for p in nav if p not in generated and not (ROOT / "docs" / p).is_file()]
    assert missing == [], f"nav entries without a file: {missing}"
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    orphans = sorted(pages - set(nav))
    assert orphans == [], f"docs pages no reader can reach from the nav: {orphans}"


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "README.md links to no documentation page"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_readme_starts_with_the_quickstart_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"),
                        flags=re.S)
    assert blocks[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    # .ci/run runs exactly this test command
    assert blocks[1].strip() == ".venv/bin/python -m pytest -q"
    assert blocks[1].strip() in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_api_reference_covers_every_public_core_module() -> None:
    """Each module of the core (its private ``_`` modules aside) has a ``::: module`` entry
    on an API page; the package itself is documented through ``medtransport.models`` and the
    short names listed beside it."""
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"),
                                     flags=re.M))
    modules = set()
    for path in (ROOT / "medtransport").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        modules.add(".".join(parts))
    modules.discard("medtransport")
    assert "medtransport.models" in documented
    assert sorted(modules - documented) == []
    # the plugin API: the hooks, the registry, the conformance suite and the scaffold
    assert {"medtransport.hookspecs", "medtransport.plugins", "medtransport.testing",
            "medtransport.scaffold"} <= documented


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    # not --quiet: it silences the warnings strict mode counts, and the build then passes
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    site = tmp_path / "site"
    # one page per model family, the API reference rendered, the gallery's plots drawn
    for page in ("models/diffusion", "models/pk", "models/contrast", "models/bioheat",
                 "models/dwi", "models/noise", "dialysis", "sde", "images", "plugins"):
        assert (site / page / "index.html").is_file(), page
    api = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    assert "medtransport.scenario" in api and "doc-heading" in api
    plugin_api = (site / "api" / "plugins" / "index.html").read_text(encoding="utf-8")
    for name in ("medtransport.hookspecs.medtransport_models", "medtransport.testing.check_model",
                 "medtransport.testing.parametrize_with_checks"):
        assert f'id="{name}"' in plugin_api, name
    # the docstrings' Sphinx roles are read as code, not printed (":func:run")
    pages = "".join(p.read_text(encoding="utf-8") for p in (site / "api").rglob("*.html"))
    assert not re.search(r":(func|class|mod|meth|attr|data):<code>", pages)
    pngs = sorted((site / "gallery").glob("*.png"))
    assert len(pngs) >= 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    gallery = (site / "gallery" / "index.html").read_text(encoding="utf-8")
    examples = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))
    assert all(p.name in gallery for p in examples)


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The mutant: the same theme and strictness refuse a page linking to a missing page, so a
    clean build above means no warning, not a check that cannot fail."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the models](models/missing.md).\n",
                                   encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: mutant\nstrict: true\ntheme:\n  name: material\n  font: false\n",
        encoding="utf-8")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "models/missing.md" in done.stdout + done.stderr
