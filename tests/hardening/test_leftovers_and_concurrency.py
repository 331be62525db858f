"""Crash leftovers and concurrency (issue 20): temporaries named recognisably and cleaned
after a kill, Zarr store creation that a kill cannot leave half-done, one run per store at a
time, and no empty store when the scheduler cannot be reached."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
from click.testing import CliRunner

from medtransport.batch import run_population
from medtransport.cli import main
from medtransport.errors import MedtransportError
from medtransport.results import PARTIAL, write_atomically, write_netcdf
from medtransport.store import PopulationStore, store_lock

POP: dict[str, Any] = {
    "name": "small population",
    "model": "pk.one_compartment",
    "parameters": {"clearance": "4 L/h", "central_volume": "30 L"},
    "events": [{"type": "bolus", "amount": "500 mg"}],
    "population": {"size": 40, "variability": {"clearance": 0.3}},
    "time": {"stop": "12 h", "step": "1 h"},
    "seed": 5,
}
DS = xr.Dataset({"x": ("t", [1.0, 2.0], {"units": "m", "long_name": "x"})},
                attrs={"medtransport_version": "test"})


def _dead_pid() -> int:
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    assert proc.pid is not None
    return proc.pid


def _killed_while_writing(target: Path) -> None:
    with write_atomically(target, ".nc.tmp") as tmp:
        tmp.write_bytes(b"\0" * 100_000)  # half a file
        os.kill(os.getpid(), signal.SIGKILL)


def _in_child(fn: Any, *args: Any) -> int | None:
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=fn, args=args)
    proc.start()
    proc.join(120)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return proc.exitcode


def _partials(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if PARTIAL in p.name)


def test_a_kill_while_writing_leaves_a_recognisable_temporary_that_the_next_write_removes(
        tmp_path: Path) -> None:
    target = tmp_path / "out.nc"
    for _ in range(3):
        assert _in_child(_killed_while_writing, target) == -signal.SIGKILL
        # each write removes what the killed one before it left: never two
        left = _partials(tmp_path)
        assert len(left) == 1 and left[0].name.startswith(".out.nc.")
    write_netcdf(DS, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nc"]


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "out.nc"
    live = tmp_path / f".out.nc.{os.getppid()}.abcd{PARTIAL}.nc.tmp"
    dead = tmp_path / f".out.nc.{_dead_pid()}.efgh{PARTIAL}.nc.tmp"
    other = tmp_path / f".other.nc.{_dead_pid()}.ijkl{PARTIAL}.nc.tmp"
    for p in (live, dead, other):
        p.write_bytes(b"partial")
    write_netcdf(DS, target)
    assert live.exists() and other.exists() and not dead.exists()


def _killed_while_creating_store(path: Path) -> None:
    import medtransport.store

    def die(*args: Any, **kw: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    medtransport.store._write_json_atomically = die  # the manifest is the last thing written
    run_population(POP, store=path)


def test_a_kill_while_creating_a_store_leaves_nothing_that_blocks_the_next_run(
        tmp_path: Path) -> None:
    store = tmp_path / "pop.zarr"
    assert _in_child(_killed_while_creating_store, store) == -signal.SIGKILL
    assert not store.exists()
    result = run_population(POP, store=store)
    assert result.size == 40 and PopulationStore(store).exists()
    assert _partials(tmp_path) == []


def test_an_incomplete_store_left_by_an_older_version_is_replaced_with_overwrite(
        tmp_path: Path) -> None:
    store = tmp_path / "pop.zarr"
    store.mkdir()
    (store / "zarr.json").write_text(json.dumps({
        "zarr_format": 3, "node_type": "group",
        "attributes": {"audit_status": "incomplete", "population_size": 40}}))
    scenario = tmp_path / "pop.yaml"
    scenario.write_text(json.dumps(POP))
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(scenario), "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "--overwrite" in result.output
    result = runner.invoke(main, ["run", str(scenario), "--store", str(store), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert PopulationStore(store).exists()


def test_a_second_run_on_a_store_in_use_fails_cleanly(tmp_path: Path) -> None:
    store = tmp_path / "pop.zarr"
    scenario = tmp_path / "pop.yaml"
    scenario.write_text(json.dumps(POP))
    with store_lock(store):
        result = CliRunner().invoke(main, ["run", str(scenario), "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "in use" in result.output
    assert not store.exists()


def _run_and_report(store: Path, queue: Any) -> None:
    try:
        run_population(POP, store=store)
        queue.put("ok")
    except MedtransportError as exc:
        queue.put("in use" if "in use" in str(exc) else f"other: {exc}")
    except BaseException as exc:
        queue.put(f"crash: {type(exc).__name__}: {exc}")


def test_four_runs_started_at_once_on_one_new_store(tmp_path: Path) -> None:
    store = tmp_path / "pop.zarr"
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_run_and_report, args=(store, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    assert all(o in ("ok", "in use") for o in outcomes), outcomes
    assert "ok" in outcomes
    assert PopulationStore(store).exists()
    assert _partials(tmp_path) == []


def test_an_unreachable_scheduler_leaves_no_store(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import distributed

    def refuse(address: str, **kw: Any) -> Any:
        raise OSError(f"Timed out trying to connect to {address}")

    monkeypatch.setattr(distributed, "Client", refuse)
    scenario = tmp_path / "pop.yaml"
    scenario.write_text(json.dumps(POP))
    store = tmp_path / "pop.zarr"
    result = CliRunner().invoke(main, ["run", str(scenario), "--store", str(store),
                                       "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "cannot reach the scheduler" in result.output
    assert not store.exists()
