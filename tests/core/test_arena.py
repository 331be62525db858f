"""Reused memory for a population batch's large arrays (:mod:`medtransport.numerics.arena`):
handed out again only once nothing refers to it, laid out like the array it mirrors, plain
allocations outside its context, and a whole audited population batch gives the same bits
in reused and poisoned memory as in fresh memory."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr

from medtransport.numerics import arena

BIG = (600, 400)  # 1.9 MB of float64: above MIN_BYTES


@pytest.fixture(autouse=True)
def fresh_pool() -> Any:
    arena.clear()
    yield
    arena.clear()
    arena.poison(False)


def test_a_buffer_is_reused_only_when_nothing_refers_to_it() -> None:
    with arena.reusing():
        a = arena.empty(BIG)
        held = xr.Dataset({"x": (("t", "p"), a[:, ::2])})  # a view kept by a result
        del a
        arena.reclaim()
        b = arena.empty(BIG)
        assert not np.shares_memory(b, held["x"].values)  # still held: not handed out
        b[:] = 1.0
        del b
        arena.reclaim()
        c = arena.empty(BIG)
        assert c.base is not None and not np.shares_memory(c, held["x"].values)
        del held, c
        arena.reclaim()
        d = arena.empty(BIG)
        e = arena.empty(BIG)
        # both earlier buffers were free again: one of them each
        assert d.base is not e.base


def test_a_freed_buffer_is_handed_out_again() -> None:
    with arena.reusing():
        a = arena.empty(BIG)
        address = a.__array_interface__["data"][0]
        del a
        arena.reclaim()
        b = arena.empty((BIG[0] - 10, BIG[1]))  # a little smaller fits the same buffer
        assert b.__array_interface__["data"][0] == address


def test_outside_the_context_it_is_np_empty_and_small_requests_are_too() -> None:
    a = arena.empty(BIG)
    assert a.base is None and a.flags.c_contiguous
    with arena.reusing():
        small = arena.empty((10, 10))
        assert small.base is None
        assert not arena._pool().lent


def test_empty_like_keeps_the_memory_order() -> None:
    with arena.reusing():
        patient_major = np.zeros((400, 600)).T  # (time, patient), patients' rows in memory
        out = arena.empty_like(patient_major)
        assert out.shape == patient_major.shape
        assert out.strides == patient_major.strides


def test_poison_fills_floats_with_nan_and_integers_with_minus_one() -> None:
    arena.poison(True)
    assert np.isnan(arena.empty((3, 2))).all()
    assert (arena.empty(BIG, dtype=np.int16) == -1).all()


def test_a_population_batch_gives_the_same_bits_in_reused_and_poisoned_memory() -> None:
    import medtransport.batch as batch
    from medtransport.scenario import load_scenario

    sc = load_scenario("examples/scenarios/vancomycin_population_virtual_trial.yaml")
    sc = sc.with_changes(population={**batch.json_section(sc.population), "size": 2000,
                                     "output": {"curves": "none"}})
    keep = batch._keep(sc)

    def chunk(index: int, start: int, stop: int) -> dict[str, np.ndarray]:
        task = batch.ChunkTask(sc.to_json(), index, start, stop, "unused", None, None, keep,
                               None, 400)
        record, out = batch.compute_chunk(task)
        assert record["status"] == "passed", record["reason"]
        assert out is not None
        return {str(k): np.asarray(v.values) for k, v in out.variables.items()}

    reference = chunk(0, 0, 800)  # two batches of 400: the second reuses the first's memory
    assert arena._pool().free  # the batches' buffers are kept for the next
    arena.clear()
    arena.poison(True)
    poisoned = chunk(0, 0, 800)
    arena.poison(False)
    arena.clear()
    with arena.reusing():
        stale = arena.empty((1441, 400, 2))
        stale[:] = 1e300  # what a batch before left
        del stale
    again = chunk(0, 0, 800)
    for name, values in reference.items():
        for other in (poisoned, again):
            np.testing.assert_array_equal(other[name].view(np.uint8)
                                          if other[name].dtype.kind == "f"
                                          else other[name],
                                          values.view(np.uint8) if values.dtype.kind == "f"
                                          else values, err_msg=name)
