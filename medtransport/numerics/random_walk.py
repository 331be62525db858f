"""Random walks: lattice walkers (the stochastic twin of FTCS) and off-lattice Brownian walkers.

Both represent Fick's second law ∂c/∂t = D∇²c (Crank, *The Mathematics of Diffusion*, 2nd ed.,
§1.2) by particles that each carry an equal share of the amount.

**Lattice walk** on a uniform Cartesian :class:`~medtransport.domain.Grid` (1–3 axes). Every step
each walker jumps to each neighbour along axis k with probability

    r_k = D·Δt/Δx_k²,        and stays with probability 1 − 2·Σ_k r_k,

so 2·Σ_k r_k ≤ 1 is required (r ≤ 1/(2d) on a cubic grid) — the FTCS stability bound, here a
statement that probabilities cannot exceed 1. The expected occupancy ū_i then obeys FTCS exactly,

    ū_i ← ū_i + Σ_k r_k (ū_{i+e_k} − 2ū_i + ū_{i−e_k})      (the explicit scheme, Crank §8.2),

with mirrored ghost cells (ū_ghost = ū_edge) at a reflecting face — a jump into that wall leaves
the walker where it is. An absorbing face holds the density at zero *on the face*, half a cell
from the edge cell's centre, as the finite-volume Dirichlet face does (outward flux
D·ū_edge/(Δx/2)): a walker in an edge cell leaves through that face with probability 2·r_k per
step — its jump toward the face (r_k), or a second r_k taken from its chance to stay — and is
counted as absorbed there. That is the antisymmetric ghost ū_ghost = −ū_edge; a zero ghost
(leaving with r_k only) would put the wall half a cell further out, an O(Δx) error. The stay
probability must cover it: 2·Σ_k r_k + Σ r_k over the absorbing faces a cell can touch ≤ 1
(:func:`largest_lattice_step`).

**Off-lattice walk**: Gaussian steps ΔX ~ N(0, 2D·Δt) per axis, so Var(x_t) = 2Dt (the
instantaneous plane source exp(−x²/4Dt)/√(4πDt), Crank §2.2); stable for any Δt. Domains: free
space, a Cartesian box (planes: mirror reflection, repeated until inside, is exact by the
reflection principle), or a full ball (``sphere``, walkers in 3-D) or disk (``cylinder``, walkers
in the 2-D cross-section) with specular reflection of the overshooting segment at the curved wall.
An absorbing wall removes a walker that ends a step outside it and, with ``bridge=True``, also
one whose path crossed the wall and came back within the step: for a wall at distances d₀, d₁
from the step's end points the Brownian-bridge crossing probability is exp(−d₀d₁/(DΔt)) (exact
for a single plane; the tangent-plane approximation at a curved wall). Without it the wall acts
as if moved outwards by about 0.5826·√(2DΔt) (the continuity correction −ζ(1/2)/√(2π) of
Broadie, Glasserman & Kou 1997).

Reproducibility: one integer ``seed`` drives a ``numpy.random.Generator(PCG64)``; the same seed
gives bit-identical output. Walkers are never dropped silently: at every output the walkers inside
plus those absorbed at each face must equal the initial count, otherwise :class:`AuditFailure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medtransport.domain import Grid
from medtransport.errors import AuditFailure

__all__ = [
    "BrownianWalkResult",
    "LatticeWalkResult",
    "WallKind",
    "bin_counts",
    "brownian_walk",
    "concentration",
    "largest_lattice_step",
    "lattice_walk",
    "make_rng",
    "place_at_point",
    "place_gaussian",
    "place_uniform",
]

WallKind = Literal["reflecting", "absorbing"]
Boundaries = WallKind | Mapping[str, WallKind]

#: Random numbers drawn per block in the lattice walk (bounds memory at ~32 MB).
_BLOCK = 1 << 22
#: exp(−x) is below the smallest double for x > 745; such bridge crossings cannot happen.
_EXP_UNDERFLOW = 745.0
#: A walker still outside a curved wall after this many reflections is reported, not hidden.
_MAX_REFLECTIONS = 100_000
#: The walk draws from stream 0 of a seed; the placement helpers from stream 1, so one seed can
#: drive both without correlating initial positions with steps.
_WALK_STREAM = 0
_PLACEMENT_STREAM = 1


def make_rng(seed: int, stream: int = _WALK_STREAM) -> np.random.Generator:
    """A ``Generator(PCG64)`` for ``seed``; distinct ``stream`` numbers give independent streams."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed),
                                                                      spawn_key=(stream,))))


def _placement_rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else make_rng(seed, _PLACEMENT_STREAM)


def _check_books(inside: int, absorbed: Mapping[str, int], n_walkers: int, step: int) -> None:
    """Walkers inside + absorbed per face must equal the initial count; a gap is a bug."""
    total = inside + sum(int(v) for v in absorbed.values())
    if total != n_walkers:
        detail = ", ".join(f"{f}: {int(v)}" for f, v in absorbed.items())
        raise AuditFailure(f"walker count not conserved at step {step}: {inside} inside + "
                           f"absorbed ({detail}) = {total}, but {n_walkers} walkers started")


def _wall_kinds(grid: Grid, boundaries: Boundaries) -> dict[str, WallKind]:
    faces = grid.faces
    if isinstance(boundaries, str):
        kinds = dict.fromkeys(faces, boundaries)
    else:
        unknown = sorted(set(boundaries) - set(faces))
        missing = [f for f in faces if f not in boundaries]
        if unknown or missing:
            raise ValueError(f"boundaries must name each face {faces} exactly once "
                             f"(unknown: {unknown}, missing: {missing})")
        kinds = {f: boundaries[f] for f in faces}
    for face, kind in kinds.items():
        if kind not in ("reflecting", "absorbing"):
            raise ValueError(f"face {face}: wall kind must be 'reflecting' or 'absorbing', "
                             f"got {kind!r}")
    return kinds


def _output_steps(steps: Sequence[int] | np.ndarray) -> np.ndarray:
    out = np.asarray(steps)
    if out.ndim != 1 or out.size == 0 or not np.issubdtype(out.dtype, np.integer):
        raise ValueError("output_steps must be a non-empty 1-D sequence of integers")
    if out[0] < 0 or np.any(np.diff(out) <= 0):
        raise ValueError("output_steps must be non-negative and strictly increasing")
    return out.astype(np.int64)


# --------------------------------------------------------------------------- placement helpers

def place_at_point(n: int, point: Sequence[float]) -> np.ndarray:
    """``n`` walkers all at ``point``: an array of shape (n, len(point))."""
    p = np.asarray(point, dtype=float).reshape(1, -1)
    return np.repeat(p, int(n), axis=0)


def place_uniform(n: int, region: Grid, seed: int | np.random.Generator) -> np.ndarray:
    """``n`` walkers uniform in ``region``: a Cartesian box (shape (n, ndim)), or the shell
    ``lower[0] ≤ r ≤ upper[0]`` of a sphere (3-D points) or a cylinder (2-D cross-section)."""
    rng = _placement_rng(seed)
    if not region.radial:
        lo, hi = np.asarray(region.lower), np.asarray(region.upper)
        return lo + (hi - lo) * rng.random((int(n), region.ndim))
    dim = 3 if region.geometry == "sphere" else 2
    # Radius by inverting the CDF (r^dim uniform between the bounds), direction isotropic.
    r_in, r_out = region.lower[0], region.upper[0]
    radius = (r_in ** dim + (r_out ** dim - r_in ** dim) * rng.random(int(n))) ** (1.0 / dim)
    direction = rng.standard_normal((int(n), dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * radius[:, None]


def place_gaussian(n: int, mean: Sequence[float], std: float | Sequence[float],
                   seed: int | np.random.Generator) -> np.ndarray:
    """``n`` walkers from N(mean, std²) per axis (shape (n, len(mean)))."""
    rng = _placement_rng(seed)
    mu = np.asarray(mean, dtype=float)
    return mu + np.asarray(std, dtype=float) * rng.standard_normal((int(n), mu.size))


# --------------------------------------------------------------------------- binning

def _cell_index(positions: np.ndarray, grid: Grid, allow_outside: bool) -> np.ndarray:
    """Flat cell index of each finite position; −1 for NaN (removed) or outside (if allowed)."""
    pos = np.asarray(positions, dtype=float)
    if pos.ndim == 1:
        pos = pos[:, None]
    if grid.radial:
        dim = 3 if grid.geometry == "sphere" else 2
        if pos.shape[1] != dim:
            raise ValueError(f"a {grid.geometry} bins {dim}-D positions, got {pos.shape[1]}-D")
        coords = [np.linalg.norm(pos, axis=1)]
    else:
        if pos.shape[1] != grid.ndim:
            raise ValueError(f"a {grid.ndim}-D grid bins {grid.ndim}-D positions, "
                             f"got {pos.shape[1]}-D")
        coords = [pos[:, k] for k in range(grid.ndim)]
    valid = np.all(np.isfinite(pos), axis=1)
    idx = []
    for k, x in enumerate(coords):
        lo, hi, h = grid.lower[k], grid.upper[k], grid.spacing[k]
        inside = (x >= lo) & (x <= hi)
        valid &= inside | ~np.isfinite(x)
        i = np.floor((np.where(inside, x, lo) - lo) / h).astype(np.int64)
        idx.append(np.clip(i, 0, grid.cells[k] - 1))  # x = upper belongs to the last cell
    outside = np.all(np.isfinite(pos), axis=1) & ~valid
    if outside.any() and not allow_outside:
        raise ValueError(f"{int(outside.sum())} walkers lie outside the grid; pass "
                         "allow_outside=True to leave them out of the counts")
    flat = np.ravel_multi_index(tuple(idx), grid.cells)
    return np.where(valid, flat, -1)


def bin_counts(positions: np.ndarray, grid: Grid, *, allow_outside: bool = False) -> np.ndarray:
    """Number of walkers in each cell of ``grid`` (shape ``grid.cells``).

    Positions of shape (n, ndim) — radial grids bin by the distance from the origin of 3-D
    (sphere) or 2-D (cylinder) points. NaN rows (absorbed walkers) are skipped; a walker outside
    the grid is an error unless ``allow_outside``.
    """
    idx = _cell_index(positions, grid, allow_outside)
    counts = np.bincount(idx[idx >= 0], minlength=math.prod(grid.cells))
    return counts.reshape(grid.cells)


def concentration(counts: np.ndarray, grid: Grid, amount_per_walker: float) -> np.ndarray:
    """Concentration = count·amount_per_walker / cell measure (``grid.weights``), so that
    Σ w·c = walkers counted × amount per walker. ``counts`` may carry leading (e.g. time) axes."""
    return np.asarray(counts, dtype=float) * amount_per_walker / grid.weights


# --------------------------------------------------------------------------- lattice walk

def largest_lattice_step(grid: Grid, diffusivity: float,
                         boundaries: Boundaries = "reflecting") -> float:
    """The largest Δt at which every cell's move probabilities sum to at most 1:
    2·Σ_k r_k plus, for a cell by absorbing faces, r_k per such face (r_k = D·Δt/Δx_k²)."""
    kinds = _wall_kinds(grid, boundaries)
    weight = 0.0
    for axis, h in enumerate(grid.spacing):
        lo, hi = grid.faces[2 * axis: 2 * axis + 2]
        n_abs = (kinds[lo] == "absorbing") + (kinds[hi] == "absorbing")
        touching = n_abs if grid.cells[axis] == 1 else min(1, n_abs)  # one cell: both faces
        weight += (2.0 + touching) / h ** 2
    return 1.0 / (diffusivity * weight)


@dataclass(frozen=True)
class LatticeWalkResult:
    """Occupancy ``counts`` (n_out, *grid.cells) and cumulative ``absorbed`` counts per face
    (n_out,) at ``steps``/``times`` (s)."""

    grid: Grid
    steps: np.ndarray
    times: np.ndarray
    counts: np.ndarray
    absorbed: dict[str, np.ndarray]
    n_walkers: int
    seed: int
    jump_probability: tuple[float, ...]

    def concentration(self, amount_per_walker: float) -> np.ndarray:
        return concentration(self.counts, self.grid, amount_per_walker)


def _lattice_steps(idx: np.ndarray, n_alive: int, u: np.ndarray, cum: np.ndarray,
                   axis_of: np.ndarray, step_of: np.ndarray, cells: np.ndarray,
                   absorbing: np.ndarray, absorbed: np.ndarray) -> int:
    """Advance walkers ``idx[:n_alive]`` (multi-indices) one step per row of ``u``; compiled by
    numba. One uniform per walker and step picks the move k = #{cum_j ≤ u}: k < 2d is a jump by
    ``step_of[k]`` along ``axis_of[k]`` (face k), k = 2d a stay (step 0) — unless the walker
    sits by absorbing faces, whose second chances (widths r_k, faces in order) take the start
    of the stay interval. Absorbed walkers are compacted out in order, so the numpy engine
    reproduces every step."""
    n_dir = cum.shape[0]
    for s in range(u.shape[0]):
        w = 0
        for j in range(n_alive):
            x = u[s, j]
            k = 0
            for m in range(n_dir):  # branch-free count: cum is sorted
                k += x >= cum[m]
            if k == n_dir:
                extra = x - cum[n_dir - 1]
                gone = -1
                for f in range(n_dir):
                    if absorbing[f]:
                        a = axis_of[f]
                        edge = 0 if step_of[f] < 0 else cells[a] - 1
                        if idx[j, a] == edge:
                            width = cum[f] - cum[f - 1] if f > 0 else cum[0]
                            if extra < width:
                                gone = f
                                break
                            extra -= width
                if gone >= 0:
                    absorbed[gone] += 1
                    continue
            axis = axis_of[k]
            new = idx[j, axis] + step_of[k]
            if new < 0 or new >= cells[axis]:
                if absorbing[k]:
                    absorbed[k] += 1
                    continue
                # a reflecting wall leaves the walker where it is
            else:
                idx[j, axis] = new
            if w != j:
                for a in range(idx.shape[1]):
                    idx[w, a] = idx[j, a]
            w += 1
        n_alive = w
    return n_alive


def _lattice_steps_numpy(idx: np.ndarray, n_alive: int, u: np.ndarray, cum: np.ndarray,
                         axis_of: np.ndarray, step_of: np.ndarray, cells: np.ndarray,
                         absorbing: np.ndarray, absorbed: np.ndarray) -> int:
    """The same moves as :func:`_lattice_steps`, vectorised over walkers (identical output)."""
    n_dir = cum.shape[0]
    widths = np.diff(cum, prepend=0.0)
    for s in range(u.shape[0]):
        k = np.searchsorted(cum, u[s, :n_alive], side="right")
        # stayers by an absorbing face: its second chance, faces in order, as the loop does
        stayers = np.flatnonzero(k == n_dir)
        extra = u[s, stayers] - cum[n_dir - 1]
        gone = np.full(stayers.size, -1)
        for f in np.flatnonzero(absorbing):
            a = axis_of[f]
            edge = 0 if step_of[f] < 0 else cells[a] - 1
            at = (idx[stayers, a] == edge) & (gone < 0)
            hit = at & (extra < widths[f])
            gone[hit] = f
            extra[at & ~hit] -= widths[f]
        movers = np.flatnonzero(k < n_dir)
        km = k[movers]
        axis = axis_of[km]
        new = idx[movers, axis] + step_of[km]
        hits_wall = (new < 0) | (new >= cells[axis])
        inner = ~hits_wall
        idx[movers[inner], axis[inner]] = new[inner]
        leaving = hits_wall & absorbing[km]
        if leaving.any() or (gone >= 0).any():
            absorbed += np.bincount(km[leaving], minlength=n_dir)
            absorbed += np.bincount(gone[gone >= 0], minlength=n_dir)
            keep = np.ones(n_alive, dtype=bool)
            keep[movers[leaving]] = False
            keep[stayers[gone >= 0]] = False
            survivors = idx[:n_alive][keep]
            n_alive = survivors.shape[0]
            idx[:n_alive] = survivors
    return n_alive


_COMPILED: dict[str, Callable[..., int]] = {}


def _lattice_engine(engine: Literal["auto", "numba", "numpy"]) -> Callable[..., int]:
    if engine == "numpy":
        return _lattice_steps_numpy
    if "numba" not in _COMPILED:
        try:
            import numba  # lazily: compiling costs about a second, only when a walk runs
        except ImportError:
            if engine == "numba":
                raise
            return _lattice_steps_numpy
        _COMPILED["numba"] = numba.njit(cache=True, nogil=True)(_lattice_steps)
    return _COMPILED["numba"]


def lattice_walk(grid: Grid, initial_counts: np.ndarray, diffusivity: float, dt: float,
                 output_steps: Sequence[int] | np.ndarray, *, boundaries: Boundaries =
                 "reflecting", seed: int, engine: Literal["auto", "numba", "numpy"] = "auto",
                 ) -> LatticeWalkResult:
    """Walk ``initial_counts`` (walkers per cell, shape ``grid.cells``) on a Cartesian grid.

    ``boundaries`` is one wall kind for every face or a mapping naming each face of
    ``grid.faces`` (``"x-"``, ``"x+"``, …). Output at each of ``output_steps`` (step numbers;
    0 is the initial state). Raises ``ValueError`` if Δt exceeds :func:`largest_lattice_step`.
    """
    if grid.radial:
        raise ValueError("the lattice walk needs a Cartesian grid; use brownian_walk in a "
                         f"{grid.geometry}")
    if not (0 < diffusivity < math.inf and 0 < dt < math.inf):
        raise ValueError("diffusivity and dt must be positive and finite")
    probs = tuple(diffusivity * dt / h ** 2 for h in grid.spacing)
    kinds = _wall_kinds(grid, boundaries)
    dt_max = largest_lattice_step(grid, diffusivity, kinds)
    # 1e-12: r at exactly the bound may round just above it.
    if dt > dt_max * (1.0 + 1e-12):
        raise ValueError(f"dt = {dt:g} s gives move probabilities 2·Σ D·dt/dx² (+ D·dt/dx² "
                         f"per absorbing face of a cell) = {dt / dt_max:.6g} > 1; the largest "
                         f"allowed dt is {dt_max:.6g} s (or use brownian_walk, stable for any "
                         "dt)")
    counts0 = np.asarray(initial_counts)
    if counts0.shape != grid.cells or not np.issubdtype(counts0.dtype, np.integer) \
            or np.any(counts0 < 0):
        raise ValueError(f"initial_counts must be non-negative integers of shape {grid.cells}")
    steps = _output_steps(output_steps)
    faces = grid.faces
    step_kernel = _lattice_engine(engine)
    rng = make_rng(seed)

    n_walkers = int(counts0.sum())
    flat = np.repeat(np.arange(counts0.size), counts0.ravel())
    idx = np.ascontiguousarray(np.stack(np.unravel_index(flat, grid.cells), axis=1),
                               dtype=np.int64)
    cum = np.cumsum(np.repeat(probs, 2))
    # Move k: face k = (axis k // 2, − for even k, + for odd); k = 2d stays put.
    axis_of = np.append(np.arange(2 * grid.ndim) // 2, 0).astype(np.int64)
    step_of = np.append(np.tile([-1, 1], grid.ndim), 0).astype(np.int64)
    cells = np.asarray(grid.cells, dtype=np.int64)
    absorbing = np.array([kinds[f] == "absorbing" for f in faces])
    absorbed = np.zeros(len(faces), dtype=np.int64)

    out_counts = np.zeros((steps.size, *grid.cells), dtype=np.int64)
    out_absorbed = np.zeros((steps.size, len(faces)), dtype=np.int64)
    n_alive, done = n_walkers, 0
    for i, target in enumerate(steps):
        while done < target:
            block = int(min(target - done, max(1, _BLOCK // max(n_alive, 1))))
            u = rng.random((block, n_alive))
            n_alive = step_kernel(idx, n_alive, u, cum, axis_of, step_of, cells, absorbing,
                                      absorbed)
            done += block
        flat_now = np.ravel_multi_index(tuple(idx[:n_alive].T), grid.cells)
        out_counts[i] = np.bincount(flat_now, minlength=counts0.size).reshape(grid.cells)
        out_absorbed[i] = absorbed
        _check_books(int(out_counts[i].sum()), dict(zip(faces, absorbed, strict=True)),
                     n_walkers, int(target))
    return LatticeWalkResult(grid=grid, steps=steps, times=steps * dt, counts=out_counts,
                             absorbed={f: out_absorbed[:, j] for j, f in enumerate(faces)},
                             n_walkers=n_walkers, seed=int(seed), jump_probability=probs)


# --------------------------------------------------------------------------- off-lattice walk

@dataclass(frozen=True)
class BrownianWalkResult:
    """Off-lattice walk output at ``steps``/``times`` (s).

    ``inside`` (n_out,) walkers still in the domain; ``absorbed`` cumulative counts per face;
    ``positions`` (n_out, n_walkers, ndim) with NaN rows for absorbed walkers (``None`` unless
    kept); ``counts`` (n_out, *bin_grid.cells) if a ``bin_grid`` was given.
    """

    steps: np.ndarray
    times: np.ndarray
    inside: np.ndarray
    absorbed: dict[str, np.ndarray]
    positions: np.ndarray | None
    counts: np.ndarray | None
    n_walkers: int
    seed: int


def _resolve_box_axis(x: np.ndarray, lo: float, hi: float, kinds: tuple[WallKind, WallKind],
                      face: np.ndarray, codes: tuple[int, int]) -> None:
    """Bring coordinate ``x`` back into [lo, hi] in place: mirror at reflecting planes, mark
    ``face`` with the face code where an absorbing plane is crossed (end point outside)."""
    if x.min() >= lo and x.max() <= hi:  # the common case, checked cheaply
        return
    alive = face < 0
    if kinds == ("reflecting", "reflecting"):
        # Repeated mirror reflection between two planes is a fold with period 2L.
        out = alive & ((x < lo) | (x > hi))
        if out.any():
            length = hi - lo
            y = np.mod(x[out] - lo, 2.0 * length)
            x[out] = lo + np.where(y > length, 2.0 * length - y, y)
        return
    while True:
        below = alive & (x < lo)
        above = alive & (x > hi)
        if not (below.any() or above.any()):
            return
        for mask, wall, kind, code in ((below, lo, kinds[0], codes[0]),
                                       (above, hi, kinds[1], codes[1])):
            if kind == "absorbing":
                face[mask] = code
            else:
                x[mask] = 2.0 * wall - x[mask]
        alive = face < 0


def _reflect_in_ball(start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """Specular reflection of the segments start → end (rows) at the sphere |x| = radius,
    repeated until each end point is inside. Returns the new end points."""
    p, q = start.copy(), end.copy()
    todo = np.flatnonzero(np.einsum("ij,ij->i", q, q) > radius ** 2)
    for _ in range(_MAX_REFLECTIONS):
        if todo.size == 0:
            return q
        pp, v = p[todo], q[todo] - p[todo]
        vv = np.einsum("ij,ij->i", v, v)
        b = np.einsum("ij,ij->i", pp, v)
        c = np.einsum("ij,ij->i", pp, pp) - radius ** 2
        s = np.sqrt(np.maximum(b * b - vv * c, 0.0))
        # Exit root of |p + t v| = R; the two forms avoid cancellation.
        t = np.where(b > 0, -c / np.where(b + s > 0, b + s, 1.0), (s - b) / vv)
        t = np.clip(t, 0.0, 1.0)
        hit = pp + t[:, None] * v
        normal = hit / np.linalg.norm(hit, axis=1, keepdims=True)
        rest = (1.0 - t)[:, None] * v
        rest -= 2.0 * np.einsum("ij,ij->i", rest, normal)[:, None] * normal
        # Start the next leg a hair inside, so rounding cannot re-trigger the same wall.
        hit = normal * (radius * (1.0 - 4.0 * np.finfo(float).eps))
        p[todo], q[todo] = hit, hit + rest
        qq = np.einsum("ij,ij->i", q[todo], q[todo])
        todo = todo[qq > radius ** 2]
    raise AuditFailure(f"{todo.size} walkers still outside the {radius:g} m wall after "
                       f"{_MAX_REFLECTIONS} reflections; use a smaller dt")


def brownian_walk(positions: np.ndarray, diffusivity: float, dt: float,
                  output_steps: Sequence[int] | np.ndarray, *, domain: Grid | None = None,
                  boundaries: Boundaries = "reflecting", bridge: bool = True, seed: int,
                  keep_positions: bool = True, bin_grid: Grid | None = None,
                  progress: Callable[[float], None] | None = None,
                  ) -> BrownianWalkResult:
    """Gaussian steps N(0, 2D·dt) per axis from ``positions`` (shape (n, ndim)).

    ``domain``: ``None`` (free space), a Cartesian grid (its box), or a full ``sphere`` (3-D
    positions) or ``cylinder`` (2-D cross-section) grid. ``boundaries``: a wall kind for all
    faces or a mapping over ``domain.faces``. ``bridge``: also absorb walkers whose path crossed
    an absorbing wall within a step (module docstring). ``bin_grid``: count walkers per cell at
    each output (in free space, walkers beyond it are left out of the counts, not the walk).
    Stable for any dt. ``progress`` is told the fraction of steps done, about 200 times.
    """
    pos = np.array(positions, dtype=float, copy=True)
    if pos.ndim != 2 or pos.shape[0] == 0:
        raise ValueError("positions must have shape (n_walkers, ndim)")
    if not (0 < diffusivity < math.inf and 0 < dt < math.inf):
        raise ValueError("diffusivity and dt must be positive and finite")
    if not np.all(np.isfinite(pos)):
        raise ValueError("initial positions must be finite")
    n_walkers, ndim = pos.shape
    steps = _output_steps(output_steps)
    faces: tuple[str, ...] = ()
    kinds: dict[str, WallKind] = {}
    radius = math.inf
    if domain is not None:
        faces = domain.faces
        kinds = _wall_kinds(domain, boundaries)
        if domain.radial:
            if domain.lower[0] > 0:
                raise ValueError("off-lattice walkers support a full sphere or cylinder, not a "
                                 "shell with an inner radius")
            need = 3 if domain.geometry == "sphere" else 2
            if ndim != need:
                raise ValueError(f"walkers in a {domain.geometry} need {need}-D positions")
            radius = domain.upper[0]
            if np.any(np.linalg.norm(pos, axis=1) > radius):
                raise ValueError(f"initial positions must lie inside the {domain.geometry}")
        else:
            if ndim != domain.ndim:
                raise ValueError(f"walkers in a {domain.ndim}-D box need {domain.ndim}-D "
                                 "positions")
            lo, hi = np.asarray(domain.lower), np.asarray(domain.upper)
            if np.any((pos < lo) | (pos > hi)):
                raise ValueError("initial positions must lie inside the box")

    rng = make_rng(seed)
    sigma = math.sqrt(2.0 * diffusivity * dt)
    bridge_scale = _EXP_UNDERFLOW * diffusivity * dt
    ids = np.arange(n_walkers)
    absorbed = np.zeros(len(faces), dtype=np.int64)
    n_out = steps.size
    out_inside = np.zeros(n_out, dtype=np.int64)
    out_absorbed = np.zeros((n_out, len(faces)), dtype=np.int64)
    out_pos = np.full((n_out, n_walkers, ndim), np.nan) if keep_positions else None
    out_counts = (np.zeros((n_out, *bin_grid.cells), dtype=np.int64)
                  if bin_grid is not None else None)
    absorbing_faces = [j for j, f in enumerate(faces) if kinds[f] == "absorbing"]

    def bridge_crossed(face: np.ndarray, d0: np.ndarray, d1: np.ndarray, code: int) -> None:
        # P(crossed | both ends inside) = exp(−d0·d1/(D·dt)); draw only where it is > 0.
        # d0, d1 are signed distances (≥ 0 inside); walkers already outside are skipped.
        prod = d0 * d1
        cand = np.flatnonzero(prod < bridge_scale)
        cand = cand[face[cand] < 0]
        if cand.size:
            p = np.exp(-prod[cand] / (diffusivity * dt))
            face[cand[rng.random(cand.size) < p]] = code

    done = 0
    tick = max(1, int(steps[-1]) // 200)
    for i, target in enumerate(steps):
        while done < target:
            if progress is not None and done % tick == 0:
                progress(done / int(steps[-1]))
            old = pos
            pos = old + sigma * rng.standard_normal(old.shape)
            face = np.full(pos.shape[0], -1, dtype=np.int64)
            if domain is not None and not domain.radial:
                for k in range(ndim):
                    codes = (2 * k, 2 * k + 1)
                    _resolve_box_axis(pos[:, k], domain.lower[k], domain.upper[k],
                                      (kinds[faces[codes[0]]], kinds[faces[codes[1]]]),
                                      face, codes)
                if bridge:
                    for code in absorbing_faces:
                        k = code // 2
                        if code % 2:
                            d0, d1 = domain.upper[k] - old[:, k], domain.upper[k] - pos[:, k]
                        else:
                            d0, d1 = old[:, k] - domain.lower[k], pos[:, k] - domain.lower[k]
                        bridge_crossed(face, d0, d1, code)
            elif domain is not None:
                out = np.einsum("ij,ij->i", pos, pos) > radius ** 2
                if kinds[faces[-1]] == "absorbing":
                    face[out] = len(faces) - 1
                    if bridge:
                        bridge_crossed(face, radius - np.linalg.norm(old, axis=1),
                                       radius - np.linalg.norm(pos, axis=1), len(faces) - 1)
                elif out.any():
                    pos[out] = _reflect_in_ball(old[out], pos[out], radius)
            if face.size and face.max() >= 0:
                gone = face >= 0
                absorbed += np.bincount(face[gone], minlength=len(faces))
                pos, ids = pos[~gone], ids[~gone]
            done += 1
        out_inside[i] = pos.shape[0]
        out_absorbed[i] = absorbed
        _check_books(pos.shape[0], dict(zip(faces, absorbed, strict=True)), n_walkers,
                     int(target))
        if out_pos is not None:
            out_pos[i, ids] = pos
        if out_counts is not None and bin_grid is not None:
            out_counts[i] = bin_counts(pos, bin_grid, allow_outside=domain is None)
    return BrownianWalkResult(steps=steps, times=steps * dt, inside=out_inside,
                              absorbed={f: out_absorbed[:, j] for j, f in enumerate(faces)},
                              positions=out_pos, counts=out_counts, n_walkers=n_walkers,
                              seed=int(seed))
