"""How many threads a threaded kernel uses: the count asked for, or the cores nobody else is using.

A kernel that shares its work among ``n`` threads is only faster while it has ``n`` cores to
itself. On a machine that other processes keep busy, a thread that has to wait for a core holds
up the others at every barrier (numba's parallel loops) or spins for as long as the call
lasts (OpenBLAS's workers): measured on a shared 2-core machine, a saturable-PK run of
1,000 patients took 27 s with OpenBLAS's two threads and 5.5 s with one (CPU 8.5 s vs 1.4 s).
So each threaded call asks :func:`choose` first:

    n = requested                                       if the user set a count
    n = clamp(round(cores − busy), 1, cores)            otherwise ("auto")
    busy = min over 3 samples of (runnable tasks − 1)   (other processes' running threads)

``cores`` is the CPUs this process may run on (its affinity), capped by numba's
``NUMBA_NUM_THREADS``; ``runnable tasks`` is the instantaneous count in ``/proc/loadavg`` (the
calling thread counts itself once; sleeping thread-pool workers are not runnable); where that is
missing, the 1-minute load average stands in. The smallest of three samples 1 ms apart is used,
so a passing daemon does not take a core away but a process that computes does. A decision is
kept for a second, so a run calling many short kernels does not sample each time. Calls smaller
than the kernel's own threshold (``serial_below`` work units) always take one thread.

The count is set by, in order: :func:`set_requested` / :func:`requested_for` (the CLI's
``medtransport run|audit --threads N``), the
environment variable ``MEDTRANSPORT_THREADS`` (a positive integer or ``auto``), else ``auto``.

:func:`limited` applies a count to numba's threads (only if numba is loaded; the setting is per
calling thread) and to the BLAS/OpenMP pools threadpoolctl finds, for the duration of a block.

A process forked from one whose numba thread pool runs on GNU OpenMP cannot start that pool
again (numba stops the child: GNU OpenMP is not fork-safe), so such a child takes one thread
for every call, whatever was requested: the serial kernels give the same bits.

Used by the FTCS stencil (:mod:`medtransport.numerics.ftcs`), the PK propagation loop
(:mod:`medtransport.numerics.propagate`) and the saturable-PK ODE solve (its BLAS pools). Their
results do not depend on the count: they split independent work (rows of a stencil step,
patients) and reduce in a fixed order (tested bit for bit with 1 and 2 threads).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ENV", "busy_cores", "choose", "cores", "limited", "requested", "requested_for",
           "set_requested"]

#: Environment variable with the thread count: a positive integer, or ``auto``.
ENV = "MEDTRANSPORT_THREADS"

_requested: int | None = None
_lock = threading.Lock()
_cache: tuple[float, int] | None = None  # (monotonic time, threads) of the last auto decision
_KEEP_S = 1.0
_forked_from_gnu_omp = False


def _after_fork_in_child() -> None:
    """Remember, in a forked child, that the parent's numba pool was GNU OpenMP's."""
    global _forked_from_gnu_omp, _cache
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        layer = numba.threading_layer()
    except (ValueError, AttributeError):  # the pool was never started: nothing to inherit
        return
    if layer == "omp":
        _forked_from_gnu_omp = True
        _cache = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_requested(n: int | None) -> None:
    """Use ``n`` threads for every threaded kernel from now on (``None``: back to the
    environment / ``auto``). ``n`` must be a positive integer."""
    global _requested, _cache
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads: expected a positive integer or None, got {n!r}")
    with _lock:
        _requested = n
        _cache = None


@contextlib.contextmanager
def requested_for(n: int | None) -> Iterator[None]:
    """:func:`set_requested` for the duration of a block, then the previous request again."""
    before = _requested
    set_requested(n)
    try:
        yield
    finally:
        set_requested(before)


def requested() -> int | None:
    """The thread count the user asked for (:func:`set_requested`, else ``MEDTRANSPORT_THREADS``),
    or ``None`` for ``auto``. A malformed environment value is an error naming the variable."""
    if _requested is not None:
        return _requested
    raw = os.environ.get(ENV, "").strip()
    if raw == "" or raw.lower() == "auto":
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        from medtransport.errors import MedtransportError

        raise MedtransportError(f"environment variable {ENV}={raw!r}: expected a positive "
                                "integer or 'auto'")
    return n


def cores() -> int:
    """CPUs this process may run on, capped by numba's thread pool size when numba is loaded
    or ``NUMBA_NUM_THREADS`` is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    numba = sys.modules.get("numba")
    cap: Any = getattr(getattr(numba, "config", None), "NUMBA_NUM_THREADS", None)
    if cap is None:
        cap = os.environ.get("NUMBA_NUM_THREADS")
    try:
        if cap is not None:
            n = min(n, int(cap))
    except ValueError:
        pass
    return max(1, n)


def _runnable_others() -> float | None:
    """Other runnable threads right now (``/proc/loadavg``'s running count, minus this one)."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return float(max(running - 1, 0))


def busy_cores(samples: int = 3, gap_s: float = 1e-3) -> float:
    """How many cores other processes keep busy: the least of a few instantaneous samples of
    the runnable-task count, else the 1-minute load average, else 0."""
    seen = []
    for k in range(samples):
        x = _runnable_others()
        if x is None:
            break
        seen.append(x)
        if k + 1 < samples:
            time.sleep(gap_s)
    if seen:
        return min(seen)
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def choose(work: float = math.inf, serial_below: float = 0.0) -> int:
    """Threads for a call of ``work`` units whose kernel needs ``serial_below`` units to repay
    a second thread: 1 below that; the requested count if one was set; else the cores that
    other processes leave free (at least 1). Only the main thread shares work out: a caller
    already running in a worker thread (a dask or executor thread) keeps to one."""
    global _cache
    if work < serial_below or threading.current_thread() is not threading.main_thread() or \
            _forked_from_gnu_omp:
        return 1
    n = requested()
    total = cores()
    if n is not None:
        return n
    if total == 1:
        return 1
    now = time.monotonic()
    with _lock:
        if _cache is not None and now - _cache[0] < _KEEP_S:
            return _cache[1]
    free = total - busy_cores()
    n = int(min(total, max(1, math.floor(free + 0.5))))
    with _lock:
        _cache = (now, n)
    return n


_controller_of: tuple[int, Any] | None = None


def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS/OpenMP pools, rebuilt only when modules were
    imported since (finding the pools walks the loaded libraries: ~1 ms)."""
    global _controller_of
    loaded = len(sys.modules)
    if _controller_of is None or _controller_of[0] != loaded:
        from threadpoolctl import ThreadpoolController

        _controller_of = (loaded, ThreadpoolController())
    return _controller_of[1]


@contextlib.contextmanager
def limited(n: int, blas: bool = True) -> Iterator[int]:
    """Run the block with ``n`` numba threads (if numba is loaded) and, when ``blas``, at most
    ``n`` threads in each BLAS/OpenMP pool; restore both afterwards. Yields ``n``."""
    numba = sys.modules.get("numba")
    before = None
    if numba is not None:
        before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        if blas:
            with _controller().limit(limits=n):
                yield n
        else:
            yield n
    finally:
        if numba is not None and before is not None:
            numba.set_num_threads(before)
