"""Which files a scenario may read and write, and when a scenario named in a file may run.

A scenario is input, and input may come from someone else (a shared project, a forged result
file). So:

- **inputs** a scenario names (a NetCDF file, an image, another scenario) resolve against the
  scenario's directory and must lie in that directory's tree, or under a directory the command
  line allows (``--allow-path DIR``). A path outside is refused with the same words whether or
  not the file exists, so the error cannot be used to probe the file system;
- **output.path** resolves against the scenario's directory too and must lie in it or in the
  working directory; anywhere else only when the command line names the file (``-o``). An
  existing file is replaced only if it is a result medtransport wrote, unless ``--overwrite``;
- **nested scenarios** (a scenario whose input is another scenario's result) run only inside
  ``medtransport run``/``audit``, at most :data:`MAX_NESTING` deep; reading a result
  (``report``) or describing a scenario (``explain``) never runs one (:func:`reading_result`,
  :func:`describing`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medtransport.errors import ScenarioError

__all__ = ["MAX_NESTING", "allow_paths", "describing", "input_path", "is_our_result",
           "nested_run", "output_path", "reading_result"]

#: How deep scenarios may take their input from other scenarios' runs.
MAX_NESTING = 3

_allowed: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar(
    "medtransport_allowed_paths", default=())
# None: nested runs allowed; otherwise what the command is doing (and why it runs nothing).
_no_runs: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "medtransport_no_nested_runs", default=None)
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("medtransport_nesting", default=0)


@contextlib.contextmanager
def allow_paths(directories: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Inputs may also be read from under these directories (``--allow-path``)."""
    token = _allowed.set(_allowed.get() + tuple(Path(d).resolve() for d in directories))
    try:
        yield
    finally:
        _allowed.reset(token)


@contextlib.contextmanager
def describing(command: str) -> Iterator[None]:
    """No nested scenario runs inside the block (``explain``: "no run")."""
    token = _no_runs.set(command)
    try:
        yield
    finally:
        _no_runs.reset(token)


@contextlib.contextmanager
def reading_result() -> Iterator[None]:
    """Rebuilding a model from a scenario recorded in a result file (for the report's five
    answers): no scenario named in it is run. Data inputs (a NetCDF map, an image) are still
    read, confined like any input to the recorded scenario directory's tree."""
    token = _no_runs.set("report")
    try:
        yield
    finally:
        _no_runs.reset(token)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def input_path(base: str | os.PathLike[str], name: str, field: str) -> Path:
    """The file an input field names, resolved against the scenario's directory ``base``;
    refused (:class:`ScenarioError` naming ``field``) when it lies outside the allowed
    directories, or does not exist."""
    root = Path(base).resolve()
    if "\x00" in name:
        raise ScenarioError([(field, "a path cannot contain a NUL character")])
    path = (root / name).resolve()
    if not any(_within(path, r) for r in (root, *_allowed.get())):
        # The same words whether or not the file exists.
        raise ScenarioError([(field, f"{name!r} is outside the scenario's directory; inputs "
                                     "are read only from the scenario's directory tree unless "
                                     "the command allows more (--allow-path DIR)")])
    if not path.is_file():
        where = "" if Path(name).is_absolute() else " (relative to the scenario's directory)"
        raise ScenarioError([(field, f"no such file: {name}{where}")])
    return path


@contextlib.contextmanager
def nested_run(field: str) -> Iterator[None]:
    """Around running a scenario named by another scenario's input ``field``."""
    doing = _no_runs.get()
    if doing is not None:
        raise ScenarioError([(field, f"names a scenario to run, and `{doing}` runs no "
                                     "scenario named in a file (only `run` and `audit` do)")])
    depth = _depth.get()
    if depth >= MAX_NESTING:
        raise ScenarioError([(field, f"scenarios take their input from other scenarios more "
                                     f"than {MAX_NESTING} deep; the limit is {MAX_NESTING}")])
    token = _depth.set(depth + 1)
    try:
        yield
    finally:
        _depth.reset(token)


def is_our_result(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a NetCDF (HDF5) file medtransport wrote: it carries the
    ``medtransport_version`` and ``model_id`` attributes :func:`medtransport.results.stamp`
    sets, or a population summary's ``medtransport_version``; or a CSV table it wrote (its
    first line is :data:`medtransport.export.CSV_MARK`'s)."""
    from medtransport.export import is_our_csv

    if is_our_csv(path):
        return True
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "medtransport_version" in f.attrs
    except Exception:
        return False


def output_directory(path: str, *, field: str, scenario_dir: Path | None) -> Path:
    """A directory a scenario names for files it writes (``field`` names it in errors):
    resolved against ``scenario_dir`` and confined to it or the working directory, like
    ``output.path``; created when missing."""
    root = (scenario_dir or Path.cwd()).resolve()
    target = (root / path).resolve()
    if not any(_within(target, r) for r in (root, Path.cwd().resolve())):
        raise ScenarioError([(field, f"{path!r} is outside the scenario's directory and the "
                                     "working directory; files are written only there")])
    if target.exists() and not target.is_dir():
        raise ScenarioError([(field, f"{path!r} exists and is not a directory")])
    target.mkdir(parents=True, exist_ok=True)
    return target


def output_path(path: str, *, option: str, scenario_dir: Path | None,
                overwrite: bool) -> Path:
    """Where a result goes. ``option`` is ``"output.path"`` (the scenario named it: resolved
    against ``scenario_dir``, confined to it or the working directory) or the command-line
    option that named it (written where it says). An existing file that is not one of our
    results is refused unless ``overwrite``."""
    target = Path(path)
    from_scenario = option == "output.path"
    if from_scenario:
        root = (scenario_dir or Path.cwd()).resolve()
        target = (root / target).resolve()
        if not any(_within(target, r) for r in (root, Path.cwd().resolve())):
            raise ScenarioError([(option, f"{path!r} is outside the scenario's directory and "
                                          "the working directory; name a file elsewhere on the "
                                          "command line (-o) to write there")])
    if target.exists() and not target.is_dir() and not overwrite and \
            not is_our_result(target):
        problem = (f"{path} exists and is not a medtransport result; refusing to replace it "
                   "(give --overwrite to replace it anyway)")
        if from_scenario:
            raise ScenarioError([(option, problem)])
        import click

        raise click.BadParameter(problem, param_hint=f"'{option}'")
    return target
