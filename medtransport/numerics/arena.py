"""Memory reused by the large arrays of batches run one after another on one thread.

A population chunk runs batch after batch of the same size on one thread, and each batch's
trajectories are a few hundred MB: as fresh memory, every page is zeroed by the kernel on
first write and every freed array is unmapped again (measured on the PK engine's loop for
2100 patients × 1441 times: 29 ms on fresh arrays, 12 ms on arrays written before). Inside
:func:`reusing`, :func:`empty` and :func:`empty_like` hand out a buffer an earlier batch on
this thread no longer uses; elsewhere they are ``np.empty`` and ``np.empty_like``.

A buffer is handed out again only once nothing refers to it any more: every array made from
it (views, reshapes, the xarray variables that hold them) keeps it alive, and
:func:`reclaim` takes back only buffers whose reference count says no one else holds them.
A result that keeps a view keeps its memory to itself; nothing is ever written under it.

Like ``np.empty``, a buffer holds whatever its last user wrote: callers use this only for
arrays they write in full. Small requests (under :data:`MIN_BYTES`) are plain allocations.
Between batches the pool keeps what the last batch used, and no more.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["clear", "empty", "empty_like", "poison", "reclaim", "reusing"]

#: Requests below this many bytes are plain allocations (numpy's own cache serves them).
MIN_BYTES = 1 << 20
#: A free buffer serves a request of at least this fraction of its size.
MIN_FILL = 0.5

_state = threading.local()


class _Pool:
    """One thread's buffers: ``lent`` (handed out since the last reclaim) and ``free``."""

    def __init__(self) -> None:
        self.lent: list[np.ndarray] = []
        self.free: list[np.ndarray] = []
        self.depth = 0
        self.taken = 0  # buffers handed out since the last reclaim


def _pool() -> _Pool:
    pool = getattr(_state, "pool", None)
    if pool is None:
        pool = _state.pool = _Pool()
    return pool


@contextlib.contextmanager
def reusing() -> Iterator[None]:
    """Hand out reused buffers on this thread while the context is open; on leaving it,
    :func:`reclaim`."""
    pool = _pool()
    pool.depth += 1
    try:
        yield
    finally:
        pool.depth -= 1
        reclaim()


#: References to a lent buffer that nothing else holds, counted in :func:`reclaim`: the
#: pool's list, the loop's name and ``sys.getrefcount``'s argument.
_OWN_REFERENCES = 3


def reclaim() -> int:
    """Take back this thread's lent buffers that nothing refers to any more; drop free
    buffers the last batch did not use. Returns the bytes now free for reuse."""
    pool = _pool()
    free, held = [], []
    for b in pool.lent:
        (free if sys.getrefcount(b) <= _OWN_REFERENCES else held).append(b)
    if not pool.taken:
        free += pool.free  # no batch ran since the last reclaim: nothing to judge them by
    pool.free, pool.lent, pool.taken = free, held, 0
    return sum(b.nbytes for b in free)


def clear() -> None:
    """Forget this thread's buffers (those still in use stay with their users)."""
    _state.pool = _Pool()


def _take(nbytes: int) -> np.ndarray:
    pool = _pool()
    best = None
    for i, b in enumerate(pool.free):
        if nbytes <= b.nbytes and nbytes >= MIN_FILL * b.nbytes and \
                (best is None or b.nbytes < pool.free[best].nbytes):
            best = i
    buf = pool.free.pop(best) if best is not None else np.empty(nbytes, dtype=np.uint8)
    pool.lent.append(buf)
    pool.taken += 1
    return buf


def poison(on: bool = True) -> None:
    """Fill every array :func:`empty` hands out with NaN (floats) or −1 (integers), reused
    or not: a caller that leaves any element unwritten then shows it (tests, debugging)."""
    global _POISON
    _POISON = on


_POISON = os.environ.get("MEDTRANSPORT_ARENA_POISON", "") not in ("", "0")


def empty(shape: Any, dtype: Any = np.float64) -> np.ndarray:
    """An uninitialised C-ordered array, from this thread's pool inside :func:`reusing`."""
    dt = np.dtype(dtype)
    shape = tuple(int(n) for n in np.atleast_1d(shape)) if not isinstance(shape, int) \
        else (int(shape),)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if nbytes < MIN_BYTES or _pool().depth == 0:
        out = np.empty(shape, dtype=dt)
    else:
        out = _take(nbytes)[:nbytes].view(dt).reshape(shape)
    if _POISON:
        out.fill(np.nan if dt.kind in "fc" else -1)
    return out


def empty_like(a: np.ndarray, dtype: Any = None) -> np.ndarray:
    """:func:`empty` shaped like ``a`` and laid out like it in memory (its axes in the same
    order of strides, as ``np.empty_like`` keeps them)."""
    order = sorted(range(a.ndim), key=lambda ax: -abs(a.strides[ax]))
    out = empty(tuple(a.shape[ax] for ax in order), a.dtype if dtype is None else dtype)
    return out.transpose(np.argsort(order))
