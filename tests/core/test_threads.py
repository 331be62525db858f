"""Thread counts: asked for (CLI, environment) or backed off to the free cores, and results that
do not depend on them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import medtransport as mt
from medtransport.cli import main
from medtransport.errors import MedtransportError
from medtransport.numerics import threads


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(threads.ENV, raising=False)
    threads.set_requested(None)
    yield
    threads.set_requested(None)


def test_requested_count_from_the_call_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert threads.requested() is None
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.requested() == 3
    monkeypatch.setenv(threads.ENV, "auto")
    assert threads.requested() is None
    threads.set_requested(2)  # the CLI's --threads wins over the environment
    monkeypatch.setenv(threads.ENV, "5")
    assert threads.requested() == 2
    with threads.requested_for(1):
        assert threads.requested() == 1
    assert threads.requested() == 2


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                    raw: str) -> None:
    monkeypatch.setenv(threads.ENV, raw)
    with pytest.raises(MedtransportError, match=threads.ENV):
        threads.requested()


@pytest.mark.parametrize("bad", [0, -2, True, 1.0])
def test_set_requested_refuses_what_is_not_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        threads.set_requested(bad)  # type: ignore[arg-type]


def test_auto_backs_off_to_the_cores_others_leave_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "cores", lambda: 2)
    for busy, expected in [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (7.0, 1)]:
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        monkeypatch.setattr(threads, "_cache", None)
        assert threads.choose() == expected, busy
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 3.0)
    monkeypatch.setattr(threads, "_cache", None)
    assert threads.choose() == 5


def test_small_work_other_threads_and_a_request_override_auto(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    monkeypatch.setattr(threads, "_cache", None)
    assert threads.choose(work=10, serial_below=100) == 1
    assert threads.choose(work=100, serial_below=100) == 2
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(threads.choose()))
    worker.start()
    worker.join()
    assert seen == [1]
    monkeypatch.setattr(threads, "busy_cores", lambda: 5.0)  # a request is not backed off
    threads.set_requested(2)
    assert threads.choose() == 2


def test_busy_cores_reads_the_runnable_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = iter([3.0, 1.0, 2.0])
    monkeypatch.setattr(threads, "_runnable_others", lambda: next(samples))
    assert threads.busy_cores(gap_s=0.0) == 1.0  # the least of the samples
    monkeypatch.setattr(threads, "_runnable_others", lambda: None)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert threads.busy_cores() == 1.5


def test_limited_sets_and_restores_numba_and_blas_pools() -> None:
    import numba
    from threadpoolctl import threadpool_info

    before = numba.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    with threads.limited(1) as n:
        assert n == 1
        assert numba.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert numba.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == blas_before


# ------------------------------------------------------------ results independent of the count


def _both_counts(run):  # type: ignore[no-untyped-def]
    out = []
    for n in (1, 2):
        with threads.requested_for(n):
            out.append(run())
    return out


def test_pk_propagation_gives_the_same_bits_on_1_and_2_threads() -> None:
    from medtransport.numerics import propagate
    from medtransport.numerics.compartments import Addition, amounts

    rng = np.random.default_rng(4)
    patients, n = 800, 3
    k = np.zeros((patients, n, n))
    k10, k12, k21 = (rng.uniform(0.05, 0.3, patients) for _ in range(3))
    k[:, 0, 0] = -(k10 + k12)
    k[:, 1, 0] = k12
    k[:, 0, 1] = k21
    k[:, 1, 1] = -k21
    k[:, 2, 0] = k10
    t = np.linspace(0, 24, 1441)
    assert patients * t.size * n >= propagate.PARALLEL_WORK  # the threaded kernel's size
    one, two = _both_counts(lambda: amounts(k, t, additions=[Addition(0.0, [100.0, 0, 0])]))
    assert one.tobytes() == two.tobytes()


def test_saturable_pk_gives_the_same_bits_on_1_and_2_threads() -> None:
    sc = {"name": "saturable", "model": "pk.one_compartment",
          "parameters": {"clearance": "0 L/h", "central_volume": "40 L",
                         "michaelis_menten": {"vmax": "30 mg/h", "km": "5 mg/L"}},
          "events": [{"type": "bolus", "amount": "800 mg"}],
          "time": {"stop": "6 h", "step": "30 min"},
          "population": {"size": 40, "variability": {"central_volume": 0.2, "vmax": 0.3}},
          "seed": 3}
    one, two = _both_counts(lambda: mt.run(sc)["concentration"].values)
    assert one.tobytes() == two.tobytes()


def test_ftcs_run_gives_the_same_bits_on_1_and_2_threads() -> None:
    from medtransport.boundary import BoundaryCondition
    from medtransport.domain import Grid
    from medtransport.numerics.finite_volume import DiffusionProblem, ftcs_stability, solve

    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, (48, 44, 40))
    problem = DiffusionProblem(grid, 1.0, {"x-": BoundaryCondition("x-", "dirichlet",
                                                                   value=1.0)})
    u0 = np.random.default_rng(9).uniform(0, 1, grid.cells)
    dt = ftcs_stability(problem, 1.0).max_stable_dt
    runs = _both_counts(lambda: solve(problem, u0, dt, 6, output_every=3, method="ftcs"))
    assert all(r.compiled for r in runs)
    assert runs[0].states.tobytes() == runs[1].states.tobytes()
    assert runs[0].outflow["x-"].tobytes() == runs[1].outflow["x-"].tobytes()


# ------------------------------------------------------------------------------------ the CLI


def _scenario(tmp_path: Path) -> Path:
    path = tmp_path / "pk.yaml"
    path.write_text(yaml.safe_dump({
        "name": "one compartment", "model": "pk.one_compartment",
        "parameters": {"clearance": "5 L/h", "central_volume": "40 L"},
        "events": [{"type": "bolus", "amount": "100 mg"}],
        "time": {"stop": "2 h", "step": "30 min"}}))
    return path


def test_cli_threads_option_is_held_for_the_command(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []
    real = mt.run

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(threads.requested())
        return real(*args, **kwargs)

    import medtransport.runner as runner

    monkeypatch.setattr(runner, "run", spy)
    scenario = _scenario(tmp_path)
    result = CliRunner().invoke(main, ["run", str(scenario), "-q", "--threads", "1",
                                       "-o", str(tmp_path / "out.nc")])
    assert result.exit_code == 0, result.output
    assert threads.requested() is None  # released when the command ended
    assert seen == [1]  # held while the model ran


@pytest.mark.parametrize(("args", "env"), [(["--threads", "0"], None),
                                           (["--threads", "many"], None),
                                           ([], "-3")])
def test_cli_refuses_a_bad_thread_count_with_exit_2(tmp_path: Path, args: list[str],
                                                    env: str | None) -> None:
    scenario = _scenario(tmp_path)
    result = CliRunner().invoke(main, ["run", str(scenario), "-q", *args],
                                env={threads.ENV: env} if env else {})
    assert result.exit_code == 2, result.output
    assert "threads" in result.output.lower() or threads.ENV in result.output
    assert "Traceback" not in result.output


def test_a_child_forked_after_the_parallel_pool_started_computes_on_one_thread() -> None:
    """GNU OpenMP is not fork-safe: numba stops a forked child that enters a parallel region
    its parent's pool ran. The child must take the serial kernels and get the same bits."""
    import os

    from medtransport.numerics import normal

    n = 8 * normal.PARALLEL_MIN
    with threads.requested_for(2):
        expected = normal.standard_normal(n, 5, dtype=np.float64)  # starts the parallel pool
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                same = np.array_equal(normal.standard_normal(n, 5, dtype=np.float64), expected)
                code = 0 if same and threads.choose(n, 1) in (1, 2) else 3
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child was stopped by signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 0
