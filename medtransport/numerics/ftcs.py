"""Compiled explicit (FTCS) diffusion steps on a uniform Cartesian grid with constant coefficients.

The hot path of :func:`medtransport.numerics.finite_volume.solve`: for a Cartesian grid with
constant transport coefficient ``D``, constant capacity ``c`` and no decay or source, one
forward-Euler step of ``c·∂u/∂t = D∇²u`` on cell-centred finite volumes is

    u_i ← u_i + Σ_axes r_a·[(u_{i+1} + u_{i−1}) − (u_i + u_i)] − Σ_faces (k_α·u_i − k_β)

with ``r_a = D·Δt/(c·Δx_a²)`` (REFERENCES §0) and, on a cell touching a boundary face whose
outward flux per unit area is ``J = α·u_b − β`` (:meth:`BoundaryCondition.flux_coefficients`),
``k_α = Δt·α/(c·Δx_a)`` and ``k_β = Δt·β/(c·Δx_a)`` (face area over cell measure is ``1/Δx_a``).

Floating point. Per cell ``u_i + u_i`` is formed once and each axis costs an addition, a
subtraction and a multiply–add (``fastmath={"contract"}`` lets LLVM fuse ``r_a·(…)`` with the
sum it feeds; nothing else is reassociated): 10 operations instead of the 15 of the face-by-face
form ``(u_{i+1} − u_i) + (u_{i−1} − u_i)``, whose speed the 3-D grids that stay in cache are
bound by. What this form guarantees: a uniform field stays exactly uniform under closed walls
without flux and periodic axes, for any number of steps (``u_{i+1} + u_{i−1}`` and
``u_i + u_i`` are then the same sum, so every axis term is exactly 0; tested). What it does not:
the two cells of an interior face no longer see exactly opposite fluxes in floating point, so
the sum of the states changes through the boundary terms and by round-off that accumulates
(measured, closed 32³ box of random states: the total drifts by 3e-15 of itself in 1000
steps, against 1e-16 with the face-by-face form; far inside the ledger's tolerance). A wall
without flux uses the cell itself as its neighbour; a periodic axis uses the cell on the
opposite face. The plane loops are compiled for 512-bit vectors where the CPU has them
(:mod:`~medtransport.numerics.vector_width`).

Layout and speed. Grids of 1 or 2 axes run as 3-D grids with leading axes of one cell and zero
coefficients. A 3-D grid (3 planes or more) runs plane by plane (:func:`_plane`): the interior
rows of a plane are one flat loop over ``j·nz + k`` (neighbours ``± 1``, ``± nz`` and the same
cell of the planes either side), a long branch-free loop of plain loads that LLVM vectorises
(its remarks, and the absence of gathers, are checked by a test). Between closed z walls
without boundary terms (the usual no-flux box) the loop takes the cell itself as the z
neighbour of a row's end cells, a blend chosen by a mask of the plane's row ends, and the rows
on closed y walls without terms get loops of the same kind; otherwise the end cells of the
rows, which carry the z faces, are written again after it, and the rows on the y faces go
through the row code. Several steps go through memory in one pass (temporal blocking,
:func:`_wave_block`): step ``t`` of plane ``q`` is computed as soon as step ``t − 1`` holds
planes ``q − 1 … q + 1``, into rings of three planes per step that stay in cache, for ``DEPTH``
steps and one y tile of ``TILE_BYTES`` at a time; each cell is read and written in memory once
per ``DEPTH`` steps. Blocks of planes are shared among numba's threads; each computes the few
planes (and tile rows) beyond its edges that its later steps need (the same values). Grids of
1 or 2 axes run row by row (:func:`_sweep`, whose row update is the same branch-free loop over
fixed rows), pairs of steps fused through a ring of rows. Every cell gets the same operations
in the same order on every path, so planes and rows, any depth, tile, block or thread count
agree bit for bit (tested; a −0 result may come out as +0). One block runs on the calling
thread without a parallel region (:mod:`medtransport.numerics.threads` chooses how many).
Arrays are handed to helpers per plane or per chunk of rows, never per row: each such call
costs numba atomic reference-count updates (measured: half the speed on 64-cell rows). While
a step reads a state it also sums the boundary layers of the faces that let something
through, so the caller integrates the outflow at the state the update uses and the explicit
ledger is exact.

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
# But a thread that sleeps at once is woken for the next parallel region, which cost 66 µs per
# region on a 2-core virtual machine (one region per DEPTH steps: 20 % of a 64³ run on two
# threads). GNU OpenMP spins this many times (~14 ns each there, ~40 µs) before it sleeps,
# about what a wake-up costs, so a busy core loses at most that much per region.
os.environ.setdefault("GOMP_SPINCOUNT", "3000")

import numba
import numpy as np
from numba import prange

from medtransport.numerics.vector_width import prefer_wide_vectors

__all__ = ["ftcs_steps"]

# Face slots in the coefficient arrays: x-, x+, y-, y+, z-, z+ of the padded 3-D grid.
# "contract": LLVM may fuse a product and the sum it feeds into one FMA (one rounding instead
# of two); no other fast-math licence, so the same expression gives the same bits in the SIMD
# loops and the scalar cells, which the path tests check.
_JIT = {"cache": True, "boundscheck": False, "fastmath": {"contract"}, "nogil": True}


@numba.njit(**_JIT)
def _sweep(out: np.ndarray, a: np.ndarray, part: np.ndarray, s0: int, s1: int, sum0: int,
           sum1: int, nx: int, ny: int, px: bool, py: bool, pz: bool, coef: np.ndarray,
           ka: np.ndarray, kb: np.ndarray) -> None:  # pragma: no cover - compiled
    """One FTCS step of grid rows ``s0`` … ``s1 − 1``, read from ``a`` and written to ``out``.

    Grid row ``s`` lives in row ``s mod a.shape[0]`` of ``a`` and ``s mod out.shape[0]`` of
    ``out``: the whole state (``nx·ny`` rows) or a ring of recent rows. The rows ``sum0`` …
    ``sum1 − 1`` of ``a`` are also added to the boundary-layer sums in ``part``.

    Everything a row needs is in this one loop, on purpose: an array passed to a helper per
    row costs numba reference-count updates (atomic) that halved the speed on 64-cell rows.
    The interior of a row is a branch-free loop over fixed rows of two arrays, which LLVM
    vectorises (its loop-vectorize remarks are checked in tests/core/test_ftcs_kernel.py).
    """
    nz = min(a.shape[1], out.shape[1])  # a ring's rows are padded
    rows_a = a.shape[0]
    rows_out = out.shape[0]
    cx = coef[0]
    cy = coef[1]
    cz = coef[2]
    ka0, ka1, ka2, ka3, ka4, ka5 = ka[0], ka[1], ka[2], ka[3], ka[4], ka[5]
    kb0, kb1, kb2, kb3, kb4, kb5 = kb[0], kb[1], kb[2], kb[3], kb[4], kb[5]
    need_rows = ka0 != 0.0 or ka1 != 0.0 or ka2 != 0.0 or ka3 != 0.0
    need_z = ka4 != 0.0 or ka5 != 0.0
    # the z faces' terms on the two end cells of every row
    if nz == 1:
        a_z0 = ka4 + ka5
        b_z0 = kb4 + kb5
    else:
        a_z0 = ka4
        b_z0 = kb4
    for s in range(s0, s1):
        i = s // ny
        j = s - i * ny
        # neighbour rows in grid numbering (a closed wall: the row itself, whose difference
        # with itself is exactly 0)
        if i + 1 < nx:
            gip = s + ny
        elif px:
            gip = j
        else:
            gip = s
        if i > 0:
            gim = s - ny
        elif px:
            gim = (nx - 1) * ny + j
        else:
            gim = s
        if j + 1 < ny:
            gjp = s + 1
        elif py:
            gjp = s - j
        else:
            gjp = s
        if j > 0:
            gjm = s - 1
        elif py:
            gjm = s + ny - 1
        else:
            gjm = s
        a_row = 0.0
        b_row = 0.0
        if i == 0:
            a_row += ka0
            b_row += kb0
        if i == nx - 1:
            a_row += ka1
            b_row += kb1
        if j == 0:
            a_row += ka2
            b_row += kb2
        if j == ny - 1:
            a_row += ka3
            b_row += kb3
        # the same rows in the storage of a and out
        o = s % rows_out
        r = s % rows_a
        ip = r + (gip - s)
        im = r + (gim - s)
        jp = r + (gjp - s)
        jm = r + (gjm - s)
        if ip >= rows_a:
            ip -= rows_a
        if im < 0:
            im += rows_a
        if jp >= rows_a:
            jp -= rows_a
        elif jp < 0:
            jp += rows_a
        if jm < 0:
            jm += rows_a
        elif jm >= rows_a:
            jm -= rows_a
        if a_row == 0.0 and b_row == 0.0:
            # (− 0·c + 0 would only turn a −0 result into +0)
            for k in range(1, nz - 1):
                c = a[r, k]
                c2 = c + c
                out[o, k] = (c + cx * ((a[ip, k] + a[im, k]) - c2)
                             + cy * ((a[jp, k] + a[jm, k]) - c2)
                             + cz * ((a[r, k + 1] + a[r, k - 1]) - c2))
        else:
            for k in range(1, nz - 1):
                c = a[r, k]
                c2 = c + c
                out[o, k] = (c + cx * ((a[ip, k] + a[im, k]) - c2)
                             + cy * ((a[jp, k] + a[jm, k]) - c2)
                             + cz * ((a[r, k + 1] + a[r, k - 1]) - c2) - a_row * c + b_row)
        # The two ends of the row carry the z faces.
        c = a[r, 0]
        c2 = c + c
        if nz == 1:
            dz = 0.0
        else:
            zm = a[r, nz - 1] if pz else c
            dz = (a[r, 1] + zm) - c2
        out[o, 0] = (c + cx * ((a[ip, 0] + a[im, 0]) - c2)
                     + cy * ((a[jp, 0] + a[jm, 0]) - c2)
                     + cz * dz - (a_row + a_z0) * c + (b_row + b_z0))
        if nz > 1:
            k = nz - 1
            c = a[r, k]
            c2 = c + c
            zp = a[r, 0] if pz else c
            dz = (zp + a[r, k - 1]) - c2
            out[o, k] = (c + cx * ((a[ip, k] + a[im, k]) - c2)
                         + cy * ((a[jp, k] + a[jm, k]) - c2)
                         + cz * dz - (a_row + ka5) * c + (b_row + kb5))
        # boundary-layer sums of the state this step reads
        if sum0 <= s < sum1:
            if need_z:
                part[s, 1] += a[r, 0]
                part[s, 2] += a[r, nz - 1]
            if need_rows and (i == 0 or i == nx - 1 or j == 0 or j == ny - 1):
                t = 0.0
                for k in range(nz):
                    t += a[r, k]
                part[s, 0] += t


@numba.njit(**_JIT)
def _fused_block(src: np.ndarray, dst: np.ndarray, buf: np.ndarray, part: np.ndarray,
                 r0: int, r1: int, lag: int, chunk: int, nx: int, ny: int, px: bool, py: bool,
                 pz: bool, coef: np.ndarray, ka: np.ndarray,
                 kb: np.ndarray) -> None:  # pragma: no cover - compiled
    """Two steps of grid rows ``r0`` … ``r1 − 1`` (temporal blocking): the first step of
    ``chunk`` rows at a time (and of ``lag`` rows either side) into the ring ``buf``, then
    the second step, from the ring into ``dst``, of every row whose neighbours the ring now
    holds. The ring keeps ``2·lag + chunk`` rows, so it stays in cache."""
    nrows = src.shape[0]
    lo = max(r0 - lag, 0)
    hi = min(r1 + lag, nrows)
    c = lo
    done = r0
    while done < r1:
        if c < hi:
            c1 = min(c + chunk, hi)
            _sweep(buf, src, part, c, c1, r0, r1, nx, ny, px, py, pz, coef, ka, kb)
            c = c1
        end = r1 if c >= hi else min(r1, c - lag)
        if end > done:
            _sweep(dst, buf, part, done, end, r0, r1, nx, ny, px, py, pz, coef, ka, kb)
            done = end


@numba.njit(parallel=True, **_JIT)
def _fused_pass(src: np.ndarray, dst: np.ndarray, ring: np.ndarray, part: np.ndarray,
                lag: int, chunk: int, nx: int, ny: int, px: bool, py: bool, pz: bool,
                coef: np.ndarray, ka: np.ndarray,
                kb: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`_fused_block` over ``ring.shape[0]`` blocks of rows, shared by the threads."""
    nblocks = ring.shape[0]
    nrows = src.shape[0]
    for blk in prange(nblocks):
        b = np.int64(blk)  # prange may hand out an unsigned index
        _fused_block(src, dst, ring[b], part, b * nrows // nblocks, (b + 1) * nrows // nblocks,
                     lag, chunk, nx, ny, px, py, pz, coef, ka, kb)


@numba.njit(parallel=True, **_JIT)
def _single_pass(src: np.ndarray, dst: np.ndarray, part: np.ndarray, nblocks: int, nx: int,
                 ny: int, px: bool, py: bool, pz: bool, coef: np.ndarray, ka: np.ndarray,
                 kb: np.ndarray) -> None:  # pragma: no cover - compiled
    """One step, ``nblocks`` blocks of rows shared by the threads."""
    nrows = src.shape[0]
    for blk in prange(nblocks):
        b = np.int64(blk)
        r0 = b * nrows // nblocks
        r1 = (b + 1) * nrows // nblocks
        _sweep(dst, src, part, r0, r1, r0, r1, nx, ny, px, py, pz, coef, ka, kb)


@numba.njit(**_JIT)
def _plane(out: np.ndarray, o: int, a: np.ndarray, am: int, a0: int, ap: int, part: np.ndarray,
           i: int, j0: int, j1: int, s0: int, s1: int, nx: int, ny: int, nz: int, py: bool,
           pz: bool, coef: np.ndarray, ka: np.ndarray, kb: np.ndarray,
           edge: np.ndarray) -> None:  # pragma: no cover - compiled
    """One FTCS step of rows ``j0`` … ``j1 − 1`` of grid plane ``i``: reads rows ``am``,
    ``a0``, ``ap`` of ``a`` (planes i − 1, i, i + 1, each flat, ``j·nz + k``; the plane itself
    for a closed x wall), writes row ``o`` of ``out``; adds the boundary layers of its rows
    ``s0`` … ``s1 − 1`` to ``part``.

    Where the plane has no x-face terms, its interior rows are one flat loop over
    ``j·nz ≤ m < j'·nz`` (neighbours ``m ± 1``, ``m ± nz``): one long SIMD loop instead
    of a short one per row, whose set-up, remainder and index arithmetic cost as much as the
    row's arithmetic on 64-cell rows. Between closed z walls without terms the loop blends in
    the cell itself as the z neighbour where ``edge`` (1 at ``k = 0``, 2 at ``k = nz − 1``)
    marks a row's end; otherwise it writes those cells with wrong z neighbours and the row
    loop after it writes them again with the z faces' terms.
    Every cell gets the same operations, in the same order, as in :func:`_sweep`, so the
    results are the same bits.
    """
    # 512-bit SIMD where the CPU has it: the plane loops are bound by arithmetic, not memory
    prefer_wide_vectors()
    cx = coef[0]
    cy = coef[1]
    cz = coef[2]
    ka0, ka1, ka2, ka3, ka4, ka5 = ka[0], ka[1], ka[2], ka[3], ka[4], ka[5]
    kb0, kb1, kb2, kb3, kb4, kb5 = kb[0], kb[1], kb[2], kb[3], kb[4], kb[5]
    need_rows = ka0 != 0.0 or ka1 != 0.0 or ka2 != 0.0 or ka3 != 0.0
    need_z = ka4 != 0.0 or ka5 != 0.0
    if nz == 1:
        a_z0 = ka4 + ka5
        b_z0 = kb4 + kb5
    else:
        a_z0 = ka4
        b_z0 = kb4
    a_x = 0.0
    b_x = 0.0
    if i == 0:
        a_x += ka0
        b_x += kb0
    if i == nx - 1:
        a_x += ka1
        b_x += kb1
    # the interior rows (in y) of this range
    f0 = max(j0, 1)
    f1 = min(j1, ny - 1)
    flat = a_x == 0.0 and b_x == 0.0 and nz >= 3 and f1 > f0
    # Unsigned indices in the SIMD loops: numba tests a signed index for wrap-around, and
    # where LLVM cannot prove it non-negative (m − nz) it vectorises with gathers, at half
    # the speed; views starting at each neighbour avoid that too, but each costs atomic
    # reference-count updates (measured: 10–20 % of a 64² plane).
    one = np.uint64(1)
    unz = np.uint64(nz)
    # closed z walls without terms: the flat loop writes the end cells of the rows right too
    z_closed = not pz and a_z0 == 0.0 and b_z0 == 0.0 and ka5 == 0.0 and kb5 == 0.0
    if flat and z_closed:
        # A wall's neighbour is the cell itself: both neighbours are loaded (m ± 1 stay in
        # the plane, as f0 ≥ 1 and f1 ≤ ny − 1) and the cell chosen where ``edge`` marks a
        # row's end, a vector blend, so the loop stays branch-free.
        m0 = np.uint64(f0 * nz)
        for t in range((f1 - f0) * nz):
            m = np.uint64(t) + m0
            c = a[a0, m]
            c2 = c + c
            ek = edge[m]
            zp = a[a0, m + one]
            zm = a[a0, m - one]
            zp = c if ek == 2 else zp
            zm = c if ek == 1 else zm
            out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                         + cy * ((a[a0, m + unz] + a[a0, m - unz]) - c2)
                         + cz * ((zp + zm) - c2))
    elif flat:
        m0 = np.uint64(f0 * nz)
        for t in range((f1 - f0) * nz):
            m = np.uint64(t) + m0
            c = a[a0, m]
            c2 = c + c
            out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                         + cy * ((a[a0, m + unz] + a[a0, m - unz]) - c2)
                         + cz * ((a[a0, m + one] + a[a0, m - one]) - c2))
    rows_sum = need_rows and (i == 0 or i == nx - 1)
    if flat and (not z_closed or rows_sum):
        # The two end cells of the interior rows again, with the z faces' terms: a tight
        # loop (as many cells as the flat loop's remainder would have cost, done scalar).
        lo_a = a_x + a_z0
        lo_b = b_x + b_z0
        hi_a = a_x + ka5
        hi_b = b_x + kb5
        for j in range(f0, f1):
            r = j * nz
            e = r + nz - 1
            c = a[a0, r]
            c2 = c + c
            zm_ = a[a0, e] if pz else c
            out[o, r] = (c + cx * ((a[ap, r] + a[am, r]) - c2)
                         + cy * ((a[a0, r + nz] + a[a0, r - nz]) - c2)
                         + cz * ((a[a0, r + 1] + zm_) - c2) - lo_a * c + lo_b)
            c = a[a0, e]
            c2 = c + c
            zp_ = a[a0, r] if pz else c
            out[o, e] = (c + cx * ((a[ap, e] + a[am, e]) - c2)
                         + cy * ((a[a0, e + nz] + a[a0, e - nz]) - c2)
                         + cz * ((zp_ + a[a0, e - 1]) - c2) - hi_a * c + hi_b)
            if s0 <= j < s1:
                s = i * ny + j
                if need_z:
                    part[s, 1] += a[a0, r]
                    part[s, 2] += a[a0, e]
                if rows_sum:
                    t_ = 0.0
                    for k in range(nz):
                        t_ += a[a0, r + k]
                    part[s, 0] += t_
    # The rows on closed y walls without terms, when the rest of the plane took the blended
    # loop: the same kind of loop, the wall's neighbour being the cell itself (no load), from
    # the second cell (row 0) or to the last but one (row ny − 1), so that every load stays in
    # the plane; that one cell scalar. (The row code below costs twice as much per row.)
    y_lo = (flat and z_closed and not py and not need_rows and kb2 == 0.0 and j0 == 0)
    y_hi = (flat and z_closed and not py and not need_rows and kb3 == 0.0 and j1 == ny)
    if y_lo:
        c = a[a0, 0]
        c2 = c + c
        out[o, 0] = (c + cx * ((a[ap, 0] + a[am, 0]) - c2)
                     + cy * ((a[a0, nz] + c) - c2)
                     + cz * ((a[a0, 1] + c) - c2))
        for t in range(1, nz):
            m = np.uint64(t)
            c = a[a0, m]
            c2 = c + c
            zp = a[a0, m + one]
            zp = c if edge[m] == 2 else zp
            out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                         + cy * ((a[a0, m + unz] + c) - c2)
                         + cz * ((zp + a[a0, m - one]) - c2))
    if y_hi:
        m1 = ny * nz - 1
        for t in range(m1 - nz + 1, m1):
            m = np.uint64(t)
            c = a[a0, m]
            c2 = c + c
            zm = a[a0, m - one]
            zm = c if edge[m] == 1 else zm
            out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                         + cy * ((c + a[a0, m - unz]) - c2)
                         + cz * ((a[a0, m + one] + zm) - c2))
        c = a[a0, m1]
        c2 = c + c
        out[o, m1] = (c + cx * ((a[ap, m1] + a[am, m1]) - c2)
                      + cy * ((c + a[a0, m1 - nz]) - c2)
                      + cz * ((c + a[a0, m1 - 1]) - c2))
    for j in range(j0, j1):
        if (flat and f0 <= j < f1) or (y_lo and j == 0) or (y_hi and j == ny - 1):
            continue
        if j + 1 < ny:
            jp = j + 1
        elif py:
            jp = 0
        else:
            jp = j
        if j > 0:
            jm = j - 1
        elif py:
            jm = ny - 1
        else:
            jm = j
        # the same sums, in the same order, as _sweep's
        a_row = a_x
        b_row = b_x
        if j == 0:
            a_row += ka2
            b_row += kb2
        if j == ny - 1:
            a_row += ka3
            b_row += kb3
        r = j * nz
        yp = jp * nz
        ym = jm * nz
        # unsigned indices (as above)
        ur = np.uint64(r)
        uyp = np.uint64(yp)
        uym = np.uint64(ym)
        if a_row == 0.0 and b_row == 0.0:
            for k in range(1, nz - 1):
                uk = np.uint64(k)
                m = ur + uk
                c = a[a0, m]
                c2 = c + c
                out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                             + cy * ((a[a0, uyp + uk] + a[a0, uym + uk]) - c2)
                             + cz * ((a[a0, m + one] + a[a0, m - one]) - c2))
        else:
            for k in range(1, nz - 1):
                uk = np.uint64(k)
                m = ur + uk
                c = a[a0, m]
                c2 = c + c
                out[o, m] = (c + cx * ((a[ap, m] + a[am, m]) - c2)
                             + cy * ((a[a0, uyp + uk] + a[a0, uym + uk]) - c2)
                             + cz * ((a[a0, m + one] + a[a0, m - one]) - c2)
                             - a_row * c + b_row)
        # The two ends of the row carry the z faces.
        c = a[a0, r]
        c2 = c + c
        if nz == 1:
            dz = 0.0
        else:
            zm = a[a0, r + nz - 1] if pz else c
            dz = (a[a0, r + 1] + zm) - c2
        out[o, r] = (c + cx * ((a[ap, r] + a[am, r]) - c2)
                     + cy * ((a[a0, yp] + a[a0, ym]) - c2)
                     + cz * dz - (a_row + a_z0) * c + (b_row + b_z0))
        if nz > 1:
            e = r + nz - 1
            c = a[a0, e]
            c2 = c + c
            zp = a[a0, r] if pz else c
            dz = (zp + a[a0, e - 1]) - c2
            out[o, e] = (c + cx * ((a[ap, e] + a[am, e]) - c2)
                         + cy * ((a[a0, yp + nz - 1] + a[a0, ym + nz - 1]) - c2)
                         + cz * dz - (a_row + ka5) * c + (b_row + kb5))
        if s0 <= j < s1:
            s = i * ny + j
            if need_z:
                part[s, 1] += a[a0, r]
                part[s, 2] += a[a0, r + nz - 1]
            if need_rows and (i == 0 or i == nx - 1 or j == 0 or j == ny - 1):
                t = 0.0
                for k in range(nz):
                    t += a[a0, r + k]
                part[s, 0] += t


@numba.njit(**_JIT)
def _wave_block(src: np.ndarray, dst: np.ndarray, ring: np.ndarray, part: np.ndarray,
                p0: int, p1: int, depth: int, tile: int, nx: int, ny: int, nz: int, py: bool,
                pz: bool, coef: np.ndarray, ka: np.ndarray, kb: np.ndarray,
                edge: np.ndarray) -> None:  # pragma: no cover - compiled
    """``depth`` steps of grid planes ``p0`` … ``p1 − 1`` in one pass (temporal blocking),
    ``tile`` rows (y) of them at a time: step ``t`` of plane ``q`` is computed as soon as step
    ``t − 1`` holds planes ``q − 1``, ``q``, ``q + 1``. Steps 1 … depth − 1 live in rings of
    three planes (``ring[t − 1]``, plane ``q`` in slot ``q mod 3``) of which only the tile's
    rows are touched, so they stay in cache; step 0 is read from ``src`` and the last step
    written to ``dst``, so each cell goes through memory once per ``depth`` steps. Planes and
    rows outside the block or tile that its steps need (``depth − t`` of them either side)
    are computed too: the same values their own block computes; only a cell's own block and
    tile add it to the boundary sums. ``tile`` must be ``ny`` when y is periodic."""
    for y0 in range(0, ny, tile):
        y1 = min(y0 + tile, ny)
        for f in range(max(p0 - depth + 1, 0), p1 + depth - 1):
            for t in range(1, depth + 1):
                q = f - t + 1
                halo = depth - t
                if q < max(p0 - halo, 0) or q >= min(p1 + halo, nx):
                    continue
                im = q - 1 if q > 0 else q
                ip = q + 1 if q + 1 < nx else q
                j0 = max(y0 - halo, 0)
                j1 = min(y1 + halo, ny)
                s0 = y0 if p0 <= q < p1 else 0
                s1 = y1 if p0 <= q < p1 else 0
                if t == 1:
                    if depth == 1:
                        _plane(dst, q, src, im, q, ip, part, q, j0, j1, s0, s1, nx, ny, nz,
                               py, pz, coef, ka, kb, edge)
                    else:
                        _plane(ring[0], q % 3, src, im, q, ip, part, q, j0, j1, s0, s1, nx,
                               ny, nz, py, pz, coef, ka, kb, edge)
                elif t == depth:
                    _plane(dst, q, ring[t - 2], im % 3, q % 3, ip % 3, part, q, j0, j1, s0,
                           s1, nx, ny, nz, py, pz, coef, ka, kb, edge)
                else:
                    _plane(ring[t - 1], q % 3, ring[t - 2], im % 3, q % 3, ip % 3, part, q,
                           j0, j1, s0, s1, nx, ny, nz, py, pz, coef, ka, kb, edge)


@numba.njit(parallel=True, **_JIT)
def _wave_pass(src: np.ndarray, dst: np.ndarray, ring: np.ndarray, part: np.ndarray,
               nblocks: int, depth: int, tile: int, nx: int, ny: int, nz: int, py: bool,
               pz: bool, coef: np.ndarray, ka: np.ndarray, kb: np.ndarray,
               edge: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`_wave_block` over ``nblocks`` blocks of planes, shared by the threads."""
    for blk in prange(nblocks):
        b = np.int64(blk)
        _wave_block(src, dst, ring[b], part, b * nx // nblocks, (b + 1) * nx // nblocks,
                    depth, tile, nx, ny, nz, py, pz, coef, ka, kb, edge)


@numba.njit(**_JIT)
def _periodic_x_step(src: np.ndarray, dst: np.ndarray, part: np.ndarray, p0: int, p1: int,
                     nx: int, ny: int, nz: int, py: bool, pz: bool, coef: np.ndarray,
                     ka: np.ndarray, kb: np.ndarray,
                     edge: np.ndarray) -> None:  # pragma: no cover - compiled
    """One step of planes ``p0`` … ``p1 − 1`` with x periodic (plane −1 is plane nx − 1)."""
    for q in range(p0, p1):
        im = q - 1 if q > 0 else nx - 1
        ip = q + 1 if q + 1 < nx else 0
        _plane(dst, q, src, im, q, ip, part, q, 0, ny, 0, ny, nx, ny, nz, py, pz, coef, ka,
               kb, edge)


@numba.njit(parallel=True, **_JIT)
def _periodic_x_pass(src: np.ndarray, dst: np.ndarray, part: np.ndarray, nblocks: int,
                     nx: int, ny: int, nz: int, py: bool, pz: bool, coef: np.ndarray,
                     ka: np.ndarray, kb: np.ndarray,
                     edge: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`_periodic_x_step` over ``nblocks`` blocks of planes, shared by the threads."""
    for blk in prange(nblocks):
        b = np.int64(blk)
        _periodic_x_step(src, dst, part, b * nx // nblocks, (b + 1) * nx // nblocks, nx, ny,
                         nz, py, pz, coef, ka, kb, edge)


@numba.njit(**_JIT)
def _steps(u: np.ndarray, v: np.ndarray, n_steps: int, coef: np.ndarray, periodic: np.ndarray,
           ka: np.ndarray, kb: np.ndarray, face_sum: np.ndarray, fuse: bool, nblocks: int,
           planes: bool, depth: int, tile: int) -> int:  # pragma: no cover - compiled
    """:func:`ftcs_steps` with the path chosen: ``planes`` runs whole planes (:func:`_plane`,
    ``depth`` steps per pass through memory), else rows (:func:`_sweep`, fused pairs if
    ``fuse``). Both give the same bits (tested)."""
    nx, ny, nz = u.shape
    nrows = nx * ny
    px = periodic[0] != 0
    py = periodic[1] != 0
    pz = periodic[2] != 0
    # Per-row partial sums of the boundary layers, reduced serially in a fixed order, so the
    # result does not depend on the number of threads.
    part = np.zeros((nrows, 3))
    in_v = 0
    done = 0
    if planes:
        plen = ny * nz
        src = u.reshape((nx, plen))
        dst = v.reshape((nx, plen))
        nblocks = max(1, min(nblocks, nx))
        depth = 1 if px else max(1, depth)
        tile = ny if py else max(1, min(tile, ny))
        # Ring planes padded by 64 bytes: planes a multiple of 4 KiB apart alias in the
        # load/store unit (measured: a third slower on 64³).
        ring = np.empty((nblocks, max(depth - 1, 1), 3, plen + 8))
        # Which cells of a plane end a row: 1 at k = 0, 2 at k = nz − 1 (see _plane).
        edge = np.zeros(plen, dtype=np.uint8)
        for jj in range(ny):
            edge[jj * nz + nz - 1] = 2
            edge[jj * nz] = 1
        while done < n_steps:
            k = min(depth, n_steps - done)
            if px:
                if nblocks == 1:
                    _periodic_x_step(src, dst, part, 0, nx, nx, ny, nz, py, pz, coef, ka, kb,
                                     edge)
                else:
                    _periodic_x_pass(src, dst, part, nblocks, nx, ny, nz, py, pz, coef, ka,
                                     kb, edge)
            elif nblocks == 1:
                _wave_block(src, dst, ring[0], part, 0, nx, k, tile, nx, ny, nz, py, pz, coef,
                            ka, kb, edge)
            else:
                _wave_pass(src, dst, ring, part, nblocks, k, tile, nx, ny, nz, py, pz, coef,
                           ka, kb, edge)
            done += k
            src, dst = dst, src
            in_v = 1 - in_v
    else:
        src = u.reshape((nrows, nz))
        dst = v.reshape((nrows, nz))
        # Row pipeline of a fused pair: the second step of row s needs the first step of
        # rows s - lag .. s + lag.
        lag = ny if nx > 1 else 1
        fuse = fuse and not px and not (nx == 1 and py) and nrows > 2 * lag
        nblocks = max(1, min(nblocks, nrows))
        chunk = max(1, min(lag, 64))
        # Ring rows padded by 64 bytes (4 KiB aliasing, as above).
        ring = np.empty((nblocks if fuse else 0, 2 * lag + chunk, nz + 8))
        while done < n_steps:
            if fuse and n_steps - done >= 2:
                if nblocks == 1:
                    _fused_block(src, dst, ring[0], part, 0, nrows, lag, chunk, nx, ny, px,
                                 py, pz, coef, ka, kb)
                else:
                    _fused_pass(src, dst, ring, part, lag, chunk, nx, ny, px, py, pz, coef,
                                ka, kb)
                done += 2
            else:
                if nblocks == 1:
                    _sweep(dst, src, part, 0, nrows, 0, nrows, nx, ny, px, py, pz, coef, ka,
                           kb)
                else:
                    _single_pass(src, dst, part, nblocks, nx, ny, px, py, pz, coef, ka, kb)
                done += 1
            src, dst = dst, src
            in_v = 1 - in_v
    # Reduce the layer sums (a fixed order: independent of the thread count).
    if ka[0] != 0.0 or ka[1] != 0.0 or ka[2] != 0.0 or ka[3] != 0.0:
        for jj in range(ny):
            face_sum[0] += part[jj, 0] if ka[0] != 0.0 else 0.0
            face_sum[1] += part[(nx - 1) * ny + jj, 0] if ka[1] != 0.0 else 0.0
        for ii in range(nx):
            face_sum[2] += part[ii * ny, 0] if ka[2] != 0.0 else 0.0
            face_sum[3] += part[ii * ny + ny - 1, 0] if ka[3] != 0.0 else 0.0
    if ka[4] != 0.0 or ka[5] != 0.0:
        for rr in range(nrows):
            face_sum[4] += part[rr, 1] if ka[4] != 0.0 else 0.0
            face_sum[5] += part[rr, 2] if ka[5] != 0.0 else 0.0
    return in_v


# Steps per pass through memory on the plane path, and the bytes of one y tile of a plane.
# Measured (one thread): 4 steps per pass instead of 2 gain 17 % at 256³ (the state in DRAM)
# and are within ±3 % at 64³–128³ (in cache); 6–8 gain ~6 % at 64³ on one thread but repeat
# more halo planes when blocks are shared among threads. Tiles of 32–64 rows of 256 cells were
# 30–40 % faster at 256³ than whole planes (whose three ring slots per step outgrow L2).
DEPTH = 4
TILE_BYTES = 1 << 16


@numba.njit(**_JIT)
def ftcs_steps(u: np.ndarray, v: np.ndarray, n_steps: int, coef: np.ndarray,
               periodic: np.ndarray, ka: np.ndarray, kb: np.ndarray,
               face_sum: np.ndarray, fuse: bool, nblocks: int) -> int:  # pragma: no cover
    """Advance ``u`` by ``n_steps`` FTCS steps, using ``v`` as the second buffer.

    ``u`` and ``v`` are C-contiguous 3-D arrays of the same shape. Returns 0 if the result is
    in ``u``, 1 if in ``v``. ``coef`` holds ``r_a`` per axis, ``periodic`` (int, per axis)
    whether an axis wraps around, ``ka``/``kb`` the boundary terms per face (zero for no-flux
    and periodic faces). For every face with ``ka[f] != 0``, ``face_sum[f]`` is increased by the
    sum over steps of the boundary layer's states before each step. ``fuse`` allows several
    steps per pass through memory (temporal blocking; not across a periodic x axis).
    The work is split into ``nblocks`` blocks: 1 runs on the calling thread alone (no
    parallel region to start or wait for), more are shared among numba's threads (as many as
    :func:`numba.set_num_threads` allows). The result does not depend on ``nblocks`` or the
    thread count (tested bit for bit).
    """
    nx = u.shape[0]
    nz = u.shape[2]
    # Whole planes where there are enough of them to share out; rows otherwise (1-D, 2-D).
    planes = nx >= 3 and nx >= nblocks
    depth = DEPTH if fuse else 1
    tile = max(1, TILE_BYTES // (8 * nz))
    return _steps(u, v, n_steps, coef, periodic, ka, kb, face_sum, fuse, nblocks, planes,
                  depth, tile)
