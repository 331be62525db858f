"""Memory, work and event limits (issue 20): what would exhaust memory or run for minutes is
refused before anything is allocated, with the estimate and what to change.

Each case runs in a forked child allowed 1.5 GiB more address space and 120 s: a
case that allocated the grid or stepped the run would fail there (MemoryError, or the
timeout) instead of the refusal the test expects."""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from medtransport.limits import MAX_EVENT_OCCURRENCES, memory_limit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plugin_fixtures import SLAB

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def _address_space() -> int:
    """This process's virtual memory now (bytes): the cap is set above it, since a test
    process that loaded dask, numba and zarr already maps gigabytes it never touches."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(scenario: dict[str, Any], queue: Any) -> None:
    cap = _address_space() + 3 * 2**29
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from medtransport.errors import ScenarioError
    from medtransport.runner import prepare

    try:
        prepare(scenario)
        queue.put(("accepted", ""))
    except ScenarioError as exc:
        queue.put(("refused", str(exc)))
    except BaseException as exc:
        queue.put((type(exc).__name__, str(exc)[:500]))


def _prepare_capped(scenario: dict[str, Any]) -> tuple[str, str]:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(scenario, queue))
    proc.start()
    try:
        # Read before joining: a child blocks on exit until its queued result is taken.
        return queue.get(timeout=120)
    except Exception:
        return ("hung" if proc.is_alive() else "died", str(proc.exitcode))
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()


def test_a_grid_that_would_not_fit_is_refused_before_it_is_built() -> None:
    sc = _example("bioheat_litt_liver.yaml")
    sc["domain"]["cells"] = [300, 300, 300]
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "domain.cells" in message and "GiB" in message and "fewer cells" in message


def test_few_outputs_do_not_hide_the_solvers_working_memory() -> None:
    # Just under the limit for the saved states alone (2 outputs), not for the solver.
    n = int((memory_limit() / 256) ** (1 / 3)) + 20
    sc = {**SLAB, "domain": {"shape": "box", "size": ["1 mm"] * 3, "cells": [n, n, n]},
          "time": {"stop": "2 s", "step": "1 s", "output_every": "2 s"}}
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "domain.cells" in message


def test_an_in_memory_population_too_large_points_to_the_store() -> None:
    sc = _example("vancomycin_population.yaml")
    sc["population"]["size"] = 10_000_000
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "population.size" in message and "--store" in message and "GiB" in message


def test_an_oral_dose_every_second_a_million_times_is_refused() -> None:
    sc = _example("theophylline_oral.yaml")
    sc["events"] = [{**sc["events"][0], "at": "0 s", "every": "1 s", "count": 1_000_000}]
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "events" in message and str(MAX_EVENT_OCCURRENCES) in message


def test_twenty_thousand_events_are_refused() -> None:
    sc = _example("theophylline_oral.yaml")
    dose = {k: v for k, v in sc["events"][0].items() if k not in ("every", "count")}
    sc["events"] = [{**dose, "at": f"{i} min"} for i in range(20_000)]
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "20000 events" in message


def test_fifty_million_steps_with_two_outputs_are_refused_with_the_estimate() -> None:
    sc = {**SLAB, "time": {"stop": "5e7 s", "step": "1 s", "output_every": "2.5e7 s"}}
    verdict, message = _prepare_capped(sc)
    assert verdict == "refused", (verdict, message)
    assert "time.step" in message and "minutes of work" in message


def test_every_example_is_within_the_limits() -> None:
    from medtransport.limits import estimate_seconds
    from medtransport.runner import prepare

    for path in sorted(EXAMPLES.glob("*.yaml")):
        if "kind: scenario" in path.read_text(encoding="utf-8"):
            continue  # runs another example to build; covered by that example
        assert estimate_seconds(prepare(path)) < 60, path.name


def test_a_scenario_file_is_parsed_once_per_run(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import medtransport.scenario
    from medtransport.cli import main

    calls = []
    real = medtransport.scenario._parse
    monkeypatch.setattr(medtransport.scenario, "_parse",
                        lambda text, path: calls.append(path) or real(text, path))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SLAB))
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "o.nc"),
                                       "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    import xarray as xr

    with xr.open_dataset(tmp_path / "o.nc", engine="h5netcdf") as ds:
        assert ds.attrs["scenario_source"] == path.read_text()


def test_running_out_of_memory_anyway_is_bad_input_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from medtransport.cli import main
    from medtransport_diffusion.model import FickDiffusion

    def simulate(self: Any, progress: Any = None) -> Any:
        raise MemoryError

    monkeypatch.setattr(FickDiffusion, "simulate", simulate)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SLAB))
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "o.nc")])
    assert result.exit_code == 2, result.output
    assert "out of memory" in result.output and "domain.cells" in result.output
    assert not (tmp_path / "o.nc").exists()
