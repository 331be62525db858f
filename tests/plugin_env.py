"""A throwaway Python environment layered over the test environment, for installing plugins.

Shared by ``tests/test_scaffold.py`` and ``tests/test_plugin_oxygen.py``. The layer is a virtual
environment without pip of its own whose one ``.pth`` line adds the running environment's
site-packages (and processes their ``.pth`` files, so an editable medtransport is found): it
sees medtransport, numpy, pip and setuptools as installed here, but ``pip install`` writes into
the layer. The test environment is never changed, so a plugin installed for one test cannot
leak into others (its models would, for instance, make ``schemas/`` look stale).

Installs run offline: ``--no-deps --no-build-isolation`` builds with the setuptools installed
here (the ``test`` extra asks for one that builds editable wheels by itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

__all__ = ["LayeredEnv", "copy_package", "describe"]


class LayeredEnv:
    """A virtual environment in ``root`` that sees the running one's packages."""

    def __init__(self, root: Path):
        self.root = root
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(root)
        bindir = "Scripts" if os.name == "nt" else "bin"
        self.python = root / bindir / ("python.exe" if os.name == "nt" else "python")
        purelib = subprocess.run([str(self.python), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
        lines = [f"import site; site.addsitedir({p!r})" for p in parents]
        (Path(purelib) / "_layered_over_test_env.pth").write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "MEDTRANSPORT_DISABLE_PLUGIN_AUTOLOAD",
                            "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["MPLBACKEND"] = "Agg"
        return env

    def run(self, *args: str | Path, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python ARGS...`` in the layer; never raises on a non-zero exit."""
        return subprocess.run([str(self.python), *map(str, args)], cwd=cwd, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def pip_install_editable(self, package: Path) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-input", "--disable-pip-version-check", "-q", "-e", package)


def copy_package(source: Path, target: Path) -> Path:
    """Copy a package's sources (no caches, builds or egg-info), so that installing and
    testing it leaves the checkout untouched."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", ".pytest_cache", "build", "dist", ".ruff_cache"))
    return target


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """The command and its output, for assertion messages."""
    return (f"$ {' '.join(map(str, result.args))}\nexit {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")


