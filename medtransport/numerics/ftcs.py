"""Compiled explicit (FTCS) diffusion steps on a uniform Cartesian grid with constant coefficients.

The hot path of :func:`medtransport.numerics.finite_volume.solve`: for a Cartesian grid with
constant transport coefficient ``D``, constant capacity ``c`` and no decay or source, one
forward-Euler step of ``c·∂u/∂t = D∇²u`` on cell-centred finite volumes is

    u_i ← u_i + Σ_axes r_a·[(u_{i+1} − u_i) + (u_{i−1} − u_i)] − Σ_faces (k_α·u_i − k_β)

with ``r_a = D·Δt/(c·Δx_a²)`` (REFERENCES §0) and, on a cell touching a boundary face whose
outward flux per unit area is ``J = α·u_b − β`` (:meth:`BoundaryCondition.flux_coefficients`),
``k_α = Δt·α/(c·Δx_a)`` and ``k_β = Δt·β/(c·Δx_a)`` (face area over cell measure is ``1/Δx_a``).

Each neighbour difference is the face flux: ``(u_j − u_i)`` is exactly ``−(u_i − u_j)`` in
floating point, so what one cell gains through an interior face the other loses, and the sum of
the states changes only through the boundary terms (plus round-off of the additions). A wall
without flux uses the cell itself as its neighbour, which makes its difference exactly zero; a
periodic axis uses the cell on the opposite face.

Layout and speed. Grids of 1 or 2 axes run as 3-D grids with leading axes of one cell and zero
coefficients. The state is seen as rows along the contiguous last axis; a row's update is
branch-free in its interior, so it vectorises. Several steps run per call, ping-ponging between
two buffers, in parallel over blocks of rows. Large grids are limited by memory bandwidth, so
two steps are fused (temporal blocking): each thread computes the intermediate state of its
rows into a small ring buffer that stays in cache and the second step from there, which halves
the traffic to memory. The arithmetic per row is the same either way, so fused and unfused runs
agree bit for bit. While a step reads a state it also sums the boundary layers of the faces that
let something through, so the caller integrates the outflow at the state the update uses and
the explicit ledger is exact.

numba is imported here, and this module only when an FTCS run takes this path, so that
``import medtransport`` stays fast.
"""

from __future__ import annotations

import os

# An OpenMP thread that spins at the barrier closing each step keeps a core busy; when another
# process wants that core, the barrier waits out a scheduler time slice (measured on a shared
# 2-core machine: ~8 ms per step, 100× slower). Waiting passively costs a few µs per step. A
# value the user set is kept; this only acts if OpenMP is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba
import numpy as np
from numba import prange

__all__ = ["ftcs_steps"]

# Face slots in the coefficient arrays: x-, x+, y-, y+, z-, z+ of the padded 3-D grid.


@numba.njit(inline="always", cache=True)
def _neighbours(row: int, nx: int, ny: int, px: bool, py: bool, ka: np.ndarray,
                kb: np.ndarray) -> tuple[int, int, int, int, float, float, int, int]:
    """Rows beside ``row`` (a closed wall points back at the row, whose difference with
    itself is exactly 0) and the boundary terms of the x and y faces it touches."""
    i = row // ny
    j = row - i * ny
    if i + 1 < nx:
        ip = row + ny
    elif px:
        ip = j
    else:
        ip = row
    if i > 0:
        im = row - ny
    elif px:
        im = (nx - 1) * ny + j
    else:
        im = row
    if j + 1 < ny:
        jp = row + 1
    elif py:
        jp = row - j
    else:
        jp = row
    if j > 0:
        jm = row - 1
    elif py:
        jm = row + ny - 1
    else:
        jm = row
    a_row = 0.0
    b_row = 0.0
    if i == 0:
        a_row += ka[0]
        b_row += kb[0]
    if i == nx - 1:
        a_row += ka[1]
        b_row += kb[1]
    if j == 0:
        a_row += ka[2]
        b_row += kb[2]
    if j == ny - 1:
        a_row += ka[3]
        b_row += kb[3]
    return ip, im, jp, jm, a_row, b_row, i, j


@numba.njit(inline="always", cache=True)
def _update_row(out: np.ndarray, o: int, a: np.ndarray, r: int, ip: int, im: int, jp: int,
                jm: int, nz: int, cx: float, cy: float, cz: float, a_row: float, b_row: float,
                ka: np.ndarray, kb: np.ndarray, pz: bool) -> None:
    """One FTCS step of row ``r`` of ``a`` (neighbour rows ``ip``…``jm``, ``nz`` cells) into
    row ``o`` of ``out``. Rows are indexed rather than sliced: a slice would touch a reference
    count that all threads share."""
    for k in range(1, nz - 1):
        c = a[r, k]
        out[o, k] = (c + cx * ((a[ip, k] - c) + (a[im, k] - c))
                     + cy * ((a[jp, k] - c) + (a[jm, k] - c))
                     + cz * ((a[r, k + 1] - c) + (a[r, k - 1] - c)) - a_row * c + b_row)
    # The two ends of the row carry the z faces.
    c = a[r, 0]
    if nz == 1:
        dz = 0.0
        a_z = ka[4] + ka[5]
        b_z = kb[4] + kb[5]
    else:
        zm = a[r, nz - 1] if pz else c
        dz = (a[r, 1] - c) + (zm - c)
        a_z = ka[4]
        b_z = kb[4]
    out[o, 0] = (c + cx * ((a[ip, 0] - c) + (a[im, 0] - c))
                 + cy * ((a[jp, 0] - c) + (a[jm, 0] - c))
                 + cz * dz - (a_row + a_z) * c + (b_row + b_z))
    if nz > 1:
        k = nz - 1
        c = a[r, k]
        zp = a[r, 0] if pz else c
        dz = (zp - c) + (a[r, k - 1] - c)
        out[o, k] = (c + cx * ((a[ip, k] - c) + (a[im, k] - c))
                     + cy * ((a[jp, k] - c) + (a[jm, k] - c))
                     + cz * dz - (a_row + ka[5]) * c + (b_row + kb[5]))


@numba.njit(inline="always", cache=True)
def _layer_sums(part: np.ndarray, row: int, a: np.ndarray, r: int, nz: int, i: int, j: int,
                nx: int, ny: int, need_rows: bool, need_z: bool) -> None:
    """Add row ``r`` of ``a`` (``nz`` cells) — grid row ``row`` — to the boundary-layer sums
    in ``part``."""
    if need_z:
        part[row, 1] += a[r, 0]
        part[row, 2] += a[r, nz - 1]
    if need_rows and (i == 0 or i == nx - 1 or j == 0 or j == ny - 1):
        s = 0.0
        for k in range(nz):
            s += a[r, k]
        part[row, 0] += s


@numba.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
def ftcs_steps(u: np.ndarray, v: np.ndarray, n_steps: int, coef: np.ndarray,
               periodic: np.ndarray, ka: np.ndarray, kb: np.ndarray,
               face_sum: np.ndarray, fuse: bool, nblocks: int) -> int:  # pragma: no cover
    """Advance ``u`` by ``n_steps`` FTCS steps, using ``v`` as the second buffer.

    ``u`` and ``v`` are C-contiguous 3-D arrays of the same shape. Returns 0 if the result is
    in ``u``, 1 if in ``v``. ``coef`` holds ``r_a`` per axis, ``periodic`` (int, per axis)
    whether an axis wraps around, ``ka``/``kb`` the boundary terms per face (zero for no-flux
    and periodic faces). For every face with ``ka[f] != 0``, ``face_sum[f]`` is increased by the
    sum over steps of the boundary layer's states before each step. ``fuse`` allows fusing
    pairs of steps (done where the row pipeline is local: not across a periodic x axis), with
    the rows split into ``nblocks`` blocks (one per thread).
    """
    nx, ny, nz = u.shape
    nrows = nx * ny
    src = u.reshape((nrows, nz))
    dst = v.reshape((nrows, nz))
    cx = coef[0]
    cy = coef[1]
    cz = coef[2]
    px = periodic[0] != 0
    py = periodic[1] != 0
    pz = periodic[2] != 0
    need_rows = ka[0] != 0.0 or ka[1] != 0.0 or ka[2] != 0.0 or ka[3] != 0.0
    need_z = ka[4] != 0.0 or ka[5] != 0.0
    # Row pipeline of a fused pair: the second step of row s needs the first step of rows
    # s - lag .. s + lag.
    lag = ny if nx > 1 else 1
    fuse = fuse and not px and not (nx == 1 and py) and nrows > 2 * lag
    nblocks = max(1, min(nblocks, nrows))
    ring_rows = 2 * lag + 1
    # Ring rows padded by 64 bytes: rows a multiple of 4 KiB apart alias in the load/store
    # unit (measured: a third slower on 64³).
    ring = np.empty((nblocks if fuse else 0, ring_rows, nz + 8))
    # Per-row partial sums of the boundary layers, reduced serially in a fixed order, so the
    # result does not depend on the number of threads.
    part = np.zeros((nrows, 3))
    in_v = 0
    done = 0
    while done < n_steps:
        if fuse and n_steps - done >= 2:
            for blk in prange(nblocks):
                b = np.int64(blk)  # prange may hand out an unsigned index
                r0 = b * nrows // nblocks
                r1 = (b + 1) * nrows // nblocks
                lo = max(r0 - lag, 0)
                hi = min(r1 + lag, nrows)
                buf = ring[b]
                for r in range(lo, hi + lag):
                    if r < hi:  # first step of row r into the ring
                        ip, im, jp, jm, a_row, b_row, i, j = _neighbours(r, nx, ny, px, py,
                                                                         ka, kb)
                        _update_row(buf, r % ring_rows, src, r, ip, im, jp, jm, nz, cx, cy,
                                    cz, a_row, b_row, ka, kb, pz)
                        if r0 <= r < r1:
                            _layer_sums(part, r, src, r, nz, i, j, nx, ny, need_rows, need_z)
                    s = r - lag
                    if r0 <= s < r1:  # second step of row s from the ring
                        ip, im, jp, jm, a_row, b_row, i, j = _neighbours(s, nx, ny, px, py,
                                                                         ka, kb)
                        _update_row(dst, s, buf, s % ring_rows, ip % ring_rows,
                                    im % ring_rows, jp % ring_rows, jm % ring_rows, nz, cx, cy,
                                    cz, a_row, b_row, ka, kb, pz)
                        _layer_sums(part, s, buf, s % ring_rows, nz, i, j, nx, ny, need_rows,
                                    need_z)
            done += 2
        else:
            for blk in prange(nrows):
                r = np.int64(blk)
                ip, im, jp, jm, a_row, b_row, i, j = _neighbours(r, nx, ny, px, py, ka, kb)
                _update_row(dst, r, src, r, ip, im, jp, jm, nz, cx, cy, cz, a_row, b_row, ka,
                            kb, pz)
                _layer_sums(part, r, src, r, nz, i, j, nx, ny, need_rows, need_z)
            done += 1
        src, dst = dst, src
        in_v = 1 - in_v
    # Reduce the layer sums (a fixed order: independent of the thread count).
    if need_rows:
        for jj in range(ny):
            face_sum[0] += part[jj, 0] if ka[0] != 0.0 else 0.0
            face_sum[1] += part[(nx - 1) * ny + jj, 0] if ka[1] != 0.0 else 0.0
        for ii in range(nx):
            face_sum[2] += part[ii * ny, 0] if ka[2] != 0.0 else 0.0
            face_sum[3] += part[ii * ny + ny - 1, 0] if ka[3] != 0.0 else 0.0
    if need_z:
        for rr in range(nrows):
            face_sum[4] += part[rr, 1] if ka[4] != 0.0 else 0.0
            face_sum[5] += part[rr, 2] if ka[5] != 0.0 else 0.0
    return in_v
