"""Finite-volume diffusion–reaction on a :class:`~medtransport.domain.Grid`, with an exact ledger.

The equation, generic so that mass (``D`` a diffusivity, ``capacity`` 1) and heat (``D`` a
thermal conductivity, ``capacity`` ρc) share it:

    capacity · ∂u/∂t = ∇·(D ∇u) − decay · u + source + exchange · (u_ref − u)

Each of ``D``, ``capacity``, ``decay``, ``source``, ``exchange`` and ``exchange_reference`` is a
scalar or one value per cell. The exchange term is a linear transfer with a reservoir held at
``u_ref`` (Pennes perfusion: ``exchange = ω_b ρ_b c_b``, ``u_ref = T_a``); its net amount is
kept as one ledger term (gained when positive), separately from ``decay`` and ``source``.

Discretisation (cell-centred, conservative by construction). With cell measures ``w_i``
(:attr:`Grid.weights`) the amount in cell ``i`` is ``m_i = w_i·capacity_i·u_i`` and

    dm/dt = A·u + b,

where ``A`` and ``b`` (:func:`assemble`) collect

- interior faces: a flux ``G_ij·(u_i − u_j)`` from ``i`` to ``j`` with ``G_ij = K_ij·area``,
  ``K_ij = 1/(h/(2D_i) + h/(2D_j))`` — the two half cells in series, i.e. the harmonic mean of
  ``D`` over the centre distance ``h``; areas are those of :meth:`Grid.face_area` (``2πr`` or
  ``4πr²`` at the edge for radial grids, where ``r = 0`` is an axis of symmetry with no face);
- periodic faces: the same coupling between the first and last cell of the axis;
- boundary faces: the outward flux ``area·(α·u_b − β)`` with ``(α, β)`` from
  :meth:`BoundaryCondition.flux_coefficients` for the half cell's conductance ``D_b/(h/2)``;
- decay: ``−w_i·decay_i·u_i``; source: ``+w_i·source_i``;
  exchange: ``w_i·exchange_i·(u_ref,i − u_i)``.

Because the interior fluxes cancel in pairs, ``Σ(A·u + b) = Σ w·source − Σ w·decay·u −
Σ_faces F_f(u)`` with ``F_f`` the outward flux through face ``f`` (:func:`face_flux_operators`).
:func:`solve` integrates these terms with the *same* time discretisation as the state
(forward Euler at ``uⁿ``, backward Euler at ``uⁿ⁺¹``, Crank–Nicolson at their mean), so its
ledger closes to round-off:

    Σ m(t) − Σ m(0) = source(t) + exchange(t) − sink(t) − Σ_f outflow_f(t).

:class:`ThetaStepper` takes the same steps one at a time, for callers that change a source
between steps (power schedules) or update the exchange coefficient (perfusion shut-down), and
reports each step's ledger terms.

Stability of the explicit step (REFERENCES §0): ``mⁿ⁺¹ = mⁿ + Δt·(A·uⁿ + b)`` keeps every
coefficient of ``uⁿ`` non-negative iff ``Δt·(−A_ii)/(w_i·capacity_i) ≤ 1`` for every cell; on a
uniform Cartesian grid with constant ``D`` and closed or periodic walls this is the textbook
``r = D·Δt/Δx² ≤ 1/(2d)`` (faces held at a value add ``2D/Δx`` of conductance to their cells,
which tightens the bound to ``1/(2d + 1)`` beside one such face).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.errors import MedtransportError
from medtransport.numerics import threads
from medtransport.numerics.linear import LU_LIMIT_3D, ImplicitSystem, SpectralSystem

__all__ = [
    "DiffusionProblem",
    "DiffusionSolution",
    "FaceFlux",
    "StabilityInfo",
    "StepFlows",
    "ThetaStepper",
    "UnstableStepError",
    "assemble",
    "face_flux_operators",
    "ftcs_stability",
    "solve",
]

Method = Literal["crank_nicolson", "backward_euler", "ftcs"]
METHODS = ("crank_nicolson", "backward_euler", "ftcs")

# A step at exactly the stability limit must pass although Δt·rate rounds to 1 + a few ulp.
_STABILITY_SLACK = 1e-12

# Below this many cells a step takes a few microseconds and waking other threads costs more.
_SERIAL_CELLS = 1 << 16
# From this many cells (2 MiB per state buffer) the two buffers outgrow a core's L2 and
# several explicit steps per pass through memory (the FTCS kernel's temporal blocking) pay for
# the planes they repeat at block edges (measured at 64³: 1.07e9 → 1.24e9 cell-updates/s; 2-D
# grids, fused row pairs, at 512²: the same as single steps within 3 %).
_FUSE_CELLS = 1 << 18


class UnstableStepError(MedtransportError):
    """An explicit step larger than the stability limit; the message gives the largest stable
    step (also in :attr:`max_stable_dt`)."""

    def __init__(self, message: str, stability: StabilityInfo):
        super().__init__(message)
        self.stability = stability
        self.max_stable_dt = stability.max_stable_dt


@dataclass
class DiffusionProblem:
    """``capacity·∂u/∂t = ∇·(D∇u) − decay·u + source`` on ``grid`` (see the module docstring).

    ``boundaries`` maps face names (:attr:`Grid.faces`) to conditions; faces left out are
    closed (no flux). Coefficients are plain float64 magnitudes in canonical SI units.
    """

    grid: Grid
    diffusivity: float | np.ndarray
    boundaries: dict[str, BoundaryCondition] = field(default_factory=dict)
    decay: float | np.ndarray = 0.0
    source: float | np.ndarray = 0.0
    capacity: float | np.ndarray = 1.0
    exchange: float | np.ndarray = 0.0
    exchange_reference: float | np.ndarray = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.boundaries) - set(self.grid.faces))
        if unknown:
            raise ValueError(f"no face {', '.join(unknown)} on this grid; its faces are "
                             f"{', '.join(self.grid.faces)}")
        for face, bc in self.boundaries.items():
            if bc.kind == "periodic":
                partner = face[0] + ("+" if face.endswith("-") else "-")
                if self.grid.radial:
                    raise ValueError(f"radial face {face} cannot be periodic")
                if self.boundary(partner).kind != "periodic":
                    raise ValueError(f"periodic face {face} needs {partner} periodic too")
        d = self.coefficient("diffusivity")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("the transport coefficient must be finite and non-negative")
        c = self.coefficient("capacity")
        if not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise ValueError("the capacity must be finite and positive")
        for name in ("decay", "source", "exchange_reference"):
            if not np.all(np.isfinite(self.coefficient(name))):
                raise ValueError(f"{name} must be finite")
        e = self.coefficient("exchange")
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError("the exchange coefficient must be finite and non-negative")

    def boundary(self, face: str) -> BoundaryCondition:
        return self.boundaries.get(face, BoundaryCondition(face, "no_flux"))

    def coefficient(self, name: str) -> np.ndarray:
        """Coefficient ``name`` as given: a 0-d array or one of shape ``grid.cells``."""
        value = np.asarray(getattr(self, name), dtype=float)
        if value.ndim and value.shape != self.grid.cells:
            raise ValueError(f"{name} has shape {value.shape}; expected a scalar or "
                             f"{self.grid.cells}")
        return value

    def cellwise(self, name: str) -> np.ndarray:
        """Coefficient ``name`` as a (read-only) array of shape ``grid.cells``."""
        return np.broadcast_to(self.coefficient(name), self.grid.cells)


@dataclass(frozen=True)
class FaceFlux:
    """Outward amount per unit time through one boundary face, affine in the state:

    ``F(u) = Σ_k weights_k · u[cells_k] − constant``  (``cells`` are flat C-order indices).
    """

    face: str
    cells: np.ndarray
    weights: np.ndarray
    constant: float

    def __call__(self, u: np.ndarray) -> float:
        return _dot(self.weights, np.ravel(u)[self.cells]) - self.constant


@dataclass(frozen=True)
class StabilityInfo:
    """Explicit-step stability: the step is stable iff ``r ≤ limit``.

    ``form == "textbook"``: ``r = D·Δt/(capacity·Δx²)`` on a uniform Cartesian grid with equal
    spacings and constant coefficients (``limit = 1/(2d)`` with closed or periodic walls).
    ``form == "general"``: ``r = max_i Δt·(Σ face conductance·area + w·decay)/(w·capacity)``
    and ``limit = 1``. ``max_stable_dt`` is the largest stable step in either form.
    """

    r: float
    limit: float
    max_stable_dt: float
    form: Literal["textbook", "general"]

    @property
    def stable(self) -> bool:
        return self.r <= self.limit * (1.0 + _STABILITY_SLACK)

    def describe(self) -> str:
        name = "D·Δt/Δx²" if self.form == "textbook" else "max Δt·(outgoing rate)"
        return (f"r = {name} = {self.r:.6g} (limit {self.limit:.6g}); largest stable step "
                f"{_safe_sig(self.max_stable_dt):.6g} s")


@dataclass
class DiffusionSolution:
    """States at the output times and the ledger, cumulative from ``t = 0``.

    ``outflow[face]`` is the amount that left through ``face`` (negative: entered), ``sink``
    the amount removed by decay, ``source`` the amount created, ``exchange`` the net amount
    gained by exchange (``None`` when the problem has none), ``inflow`` the amount added by
    instantaneous additions (``None`` without any); amounts are ``Σ w·capacity·u``.
    """

    times: np.ndarray
    states: np.ndarray
    outflow: dict[str, np.ndarray]
    sink: np.ndarray
    source: np.ndarray
    substeps: int
    method: str
    stability: StabilityInfo
    factorizations: int = 0
    compiled: bool = False
    exchange: np.ndarray | None = None
    inflow: np.ndarray | None = None

    def stored(self, grid: Grid, capacity: float | np.ndarray = 1.0) -> np.ndarray:
        """``Σ w·capacity·u`` at every output time (recomputed from the states)."""
        axes = tuple(range(1, self.states.ndim))
        return np.sum(self.states * (grid.weights * np.asarray(capacity)), axis=axes)


# ----------------------------------------------------------------------------- assembly


@dataclass(frozen=True)
class _Discretisation:
    a: sp.csr_matrix
    b: np.ndarray
    mass: np.ndarray          # w·capacity, flat
    faces: dict[str, FaceFlux]
    sink_weights: np.ndarray  # w·decay, flat
    source_rate: float        # Σ w·source
    exchange_weights: np.ndarray | None = None  # w·exchange, flat (None: no exchange)
    exchange_rate: float = 0.0                   # Σ w·exchange·u_ref

    def exchange_gain(self, u: np.ndarray) -> float:
        """Net amount per time gained by exchange at state ``u``."""
        if self.exchange_weights is None:
            return 0.0
        return self.exchange_rate - _dot(self.exchange_weights, u)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Σ a·b without BLAS: a threaded BLAS on a busy machine makes one dot product of a large
    grid 10–100× slower (see :mod:`~medtransport.numerics.linear`)."""
    return float(np.einsum("i,i->", a, b))


def _harmonic(d_lo: np.ndarray, d_hi: np.ndarray, h: float) -> np.ndarray:
    """Conductance per unit area of two half cells of width h/2 in series."""
    total = d_lo + d_hi
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(total > 0, 2.0 * d_lo * d_hi / (total * h), 0.0)
    return k


def _boundary_coefficients(bc: BoundaryCondition,
                           conductance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(α, β)`` per boundary cell; a cell that does not conduct passes only a given flux."""
    # Usually one conductance for the whole face: ask the condition once per distinct value.
    values, inverse = np.unique(conductance, return_inverse=True)
    pairs = np.array([bc.flux_coefficients(float(g)) if g > 0
                      else (0.0, bc.flux if bc.kind == "neumann" else 0.0) for g in values])
    inverse = inverse.reshape(conductance.shape)
    return pairs[inverse, 0], pairs[inverse, 1]


def _discretise(problem: DiffusionProblem) -> _Discretisation:
    grid = problem.grid
    n = math.prod(grid.cells)
    idx = np.arange(n).reshape(grid.cells)
    d = problem.cellwise("diffusivity").ravel()
    w = np.broadcast_to(grid.weights, grid.cells).ravel()
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    diag = np.zeros(n)
    b = np.zeros(n)

    def couple(lo: np.ndarray, hi: np.ndarray, g: np.ndarray) -> None:
        rows.extend((lo, hi))
        cols.extend((hi, lo))
        vals.extend((g, g))
        # bincount: the same sums as np.add.at, an order of magnitude faster on large grids
        diag[:] -= np.bincount(lo, weights=np.broadcast_to(g, lo.shape), minlength=n)
        diag[:] -= np.bincount(hi, weights=np.broadcast_to(g, hi.shape), minlength=n)

    faces: dict[str, FaceFlux] = {}
    for axis in range(grid.ndim):
        m = grid.cells[axis]
        h = grid.spacing[axis]
        area = grid.face_area(axis)
        if m > 1:
            lo = np.take(idx, np.arange(m - 1), axis=axis).ravel()
            hi = np.take(idx, np.arange(1, m), axis=axis).ravel()
            inner = np.asarray(area)[1:-1] if grid.radial else area
            couple(lo, hi, _harmonic(d[lo], d[hi], h) * inner)
        name = grid.dims[axis]
        if problem.boundary(f"{name}-").kind == "periodic":
            if m > 1:  # with one cell the wrap-around face joins the cell to itself
                lo = np.take(idx, [m - 1], axis=axis).ravel()
                hi = np.take(idx, [0], axis=axis).ravel()
                couple(lo, hi, _harmonic(d[lo], d[hi], h) * area)
            continue
        for side in "-+":
            face = f"{name}{side}"
            if face not in grid.faces:
                continue  # r = 0: the symmetry axis has no face
            cells = np.take(idx, [0 if side == "-" else m - 1], axis=axis).ravel()
            face_area = grid.face_total_area(face) if grid.radial else float(area)
            alpha, beta = _boundary_coefficients(problem.boundary(face), d[cells] / (0.5 * h))
            np.add.at(diag, cells, -face_area * alpha)
            np.add.at(b, cells, face_area * beta)
            faces[face] = FaceFlux(face, cells, face_area * alpha,
                                   float(np.sum(face_area * beta)))

    sink_weights = w * problem.cellwise("decay").ravel()
    diag -= sink_weights
    source_density = w * problem.cellwise("source").ravel()
    b += source_density
    exchange_weights = None
    exchange_rate = 0.0
    if np.any(problem.coefficient("exchange")):
        exchange_weights = w * problem.cellwise("exchange").ravel()
        held = exchange_weights * problem.cellwise("exchange_reference").ravel()
        diag -= exchange_weights
        b += held
        exchange_rate = float(np.sum(held))
    off = sp.coo_matrix((np.concatenate(vals) if vals else np.zeros(0),
                         (np.concatenate(rows) if rows else np.zeros(0, int),
                          np.concatenate(cols) if cols else np.zeros(0, int))),
                        shape=(n, n))
    a = (off + sp.diags(diag)).tocsr()
    a.sum_duplicates()
    mass = w * problem.cellwise("capacity").ravel()
    return _Discretisation(a, b, mass, faces, sink_weights, float(np.sum(source_density)),
                           exchange_weights, exchange_rate)


def assemble(problem: DiffusionProblem) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(A, b)`` with ``d(w·capacity·u)/dt = A·u + b`` for the flattened (C-order) state."""
    disc = _discretise(problem)
    return disc.a, disc.b


def face_flux_operators(problem: DiffusionProblem) -> dict[str, FaceFlux]:
    """The outward flux (amount per time, over the whole face) of every boundary face that is
    not periodic, as an affine function of the state."""
    return _discretise(problem).faces


# ----------------------------------------------------------------------------- stability


def _safe_sig(x: float, digits: int = 6) -> float:
    """``x`` to ``digits`` significant digits, rounded down when rounding to nearest would
    give a step beyond the limit, so that a printed largest step can be used as it is."""
    if not math.isfinite(x) or x <= 0:
        return x
    nearest = float(f"{x:.{digits}g}")
    if nearest <= x * (1.0 + 0.5 * _STABILITY_SLACK):
        return nearest
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return math.floor(x / scale) * scale


def _uniform_coefficients(problem: DiffusionProblem) -> tuple[float, float] | None:
    """``(D, capacity)`` if the grid is Cartesian and both are constant, else ``None``."""
    if problem.grid.radial:
        return None
    d = problem.coefficient("diffusivity")
    c = problem.coefficient("capacity")
    if np.ptp(d) != 0.0 or np.ptp(c) != 0.0:
        return None
    return float(d.flat[0]), float(c.flat[0])


def _compiled_applies(problem: DiffusionProblem) -> bool:
    return (_uniform_coefficients(problem) is not None
            and not np.any(problem.coefficient("decay"))
            and not np.any(problem.coefficient("source"))
            and not np.any(problem.coefficient("exchange")))


@dataclass(frozen=True)
class _Axis:
    """One axis of a uniform problem, discretised on its own (1-D, unit face area)."""

    rates: np.ndarray                                 # −A_ii/m_i of the 1-D operator
    alpha_beta: dict[str, tuple[float, float]]        # face -> (α, β) per unit area
    periodic: bool


def _axes(problem: DiffusionProblem) -> list[_Axis]:
    """Per-axis 1-D discretisations of a problem with uniform coefficients.

    The d-dimensional operator is then their Kronecker sum: a cell's rate is the sum of its
    per-axis rates, and each face's (α, β) is that of the 1-D face. This avoids assembling a
    matrix with as many rows as the grid has cells on the compiled path.
    """
    grid = problem.grid
    uniform = _uniform_coefficients(problem)
    assert uniform is not None
    d, capacity = uniform
    return [_line_axis(float(grid.lower[axis]), float(grid.upper[axis]), int(grid.cells[axis]),
                       d, capacity, name, problem.boundary(f"{name}-"),
                       problem.boundary(f"{name}+"))
            for axis, name in enumerate(grid.dims)]


@functools.lru_cache(maxsize=64)
def _line_axis(lower: float, upper: float, cells: int, d: float, capacity: float, name: str,
               lo: BoundaryCondition, hi: BoundaryCondition) -> _Axis:
    """One axis of :func:`_axes`, kept for the next run: a sparse 1-D assembly costs about
    1 ms, six of them (stability check, kernel set-up) 4 % of a warm 64³ FTCS run."""
    line = Grid("cartesian", (lower,), (upper,), (cells,))
    bcs = {"x-": replace(lo, face="x-"), "x+": replace(hi, face="x+")}
    disc = _discretise(DiffusionProblem(line, d, bcs, capacity=capacity))
    rates = -disc.a.diagonal() / disc.mass
    rates.setflags(write=False)  # shared by the runs that hit the cache
    return _Axis(rates, {f"{name}{f[1]}": (float(op.weights[0]), op.constant)
                         for f, op in disc.faces.items()}, bcs["x-"].kind == "periodic")


def _max_rate(problem: DiffusionProblem, disc: _Discretisation | None) -> float:
    """max_i (−A_ii)/(w_i·capacity_i): the explicit step is stable iff Δt·max_rate ≤ 1."""
    if disc is None:
        rate = sum(float(np.max(ax.rates)) for ax in _axes(problem))
    else:
        rate = float(np.max(-disc.a.diagonal() / disc.mass))
    return max(rate, 0.0)


def _stability(problem: DiffusionProblem, max_rate: float, dt: float) -> StabilityInfo:
    max_dt = 1.0 / max_rate if max_rate > 0 else math.inf
    uniform = _uniform_coefficients(problem)
    spacing = problem.grid.spacing
    if (uniform is not None and uniform[0] > 0 and len(set(spacing)) == 1
            and not np.any(problem.coefficient("decay"))
            and not np.any(problem.coefficient("exchange"))):
        unit = uniform[0] / (uniform[1] * spacing[0] ** 2)
        limit = unit / max_rate if max_rate > 0 else math.inf
        return StabilityInfo(unit * dt, limit, max_dt, "textbook")
    return StabilityInfo(dt * max_rate, 1.0, max_dt, "general")


def ftcs_stability(problem: DiffusionProblem, dt: float) -> StabilityInfo:
    """Stability of one explicit (FTCS) step of size ``dt``; see :class:`StabilityInfo`."""
    disc = None if _compiled_applies(problem) else _discretise(problem)
    return _stability(problem, _max_rate(problem, disc), dt)


# ----------------------------------------------------------------------------- time stepping


def _output_steps(n_steps: int, output_every: int) -> list[int]:
    steps = list(range(0, n_steps + 1, output_every))
    if steps[-1] != n_steps:
        steps.append(n_steps)
    return steps


class _Ledger:
    """Cumulative outflow per face, sink and source, recorded at the output times."""

    def __init__(self, faces: list[str], n_out: int):
        self.outflow = {f: np.zeros(n_out) for f in faces}
        self.sink = np.zeros(n_out)
        self.source = np.zeros(n_out)
        self.exchange = np.zeros(n_out)
        self.inflow = np.zeros(n_out)
        self._flow = dict.fromkeys(faces, 0.0)
        self._inflow = 0.0
        self._sink = 0.0
        self._source = 0.0
        self._exchange = 0.0

    def add(self, disc: _Discretisation, u: np.ndarray, dt: float) -> None:
        """Integrate the rates at state ``u`` over a step ``dt``."""
        for face, op in disc.faces.items():
            self._flow[face] += dt * op(u)
        self._sink += dt * _dot(disc.sink_weights, u)
        self._source += dt * disc.source_rate
        self._exchange += dt * disc.exchange_gain(u)

    def add_flows(self, flows: dict[str, float]) -> None:
        for face, amount in flows.items():
            self._flow[face] += amount

    def add_inflow(self, amount: float) -> None:
        self._inflow += amount

    def record(self, k: int) -> None:
        for face, value in self._flow.items():
            self.outflow[face][k] = value
        self.sink[k] = self._sink
        self.source[k] = self._source
        self.exchange[k] = self._exchange
        self.inflow[k] = self._inflow


def solve(problem: DiffusionProblem, u0: float | np.ndarray, dt: float, n_steps: int,
          output_every: int = 1, method: Method = "crank_nicolson",
          substeps_allowed: bool = False,
          progress: Callable[[float], None] | None = None,
          compiled: bool | None = None,
          additions: Mapping[int, np.ndarray] | None = None) -> DiffusionSolution:
    """Advance ``u0`` by ``n_steps`` steps of ``dt``, keeping every ``output_every``-th state
    (and the last one).

    ``additions`` maps a step number s (1 … n_steps) to a field added instantaneously at the
    end of step s, i.e. at t = s·dt (an injection; an output at that time includes it); the
    amount each adds, Σ w·capacity·δu, is booked as ``inflow``.

    ``method``: ``"crank_nicolson"`` (second order), ``"backward_euler"`` (first order, no
    oscillations) — both set up one solver per run (:mod:`~medtransport.numerics.linear`: a
    single sparse LU, or preconditioned CG on large 3-D grids) — or ``"ftcs"`` (explicit; a step
    beyond the stability limit raises :class:`UnstableStepError` unless ``substeps_allowed``,
    in which case each step is split into the fewest equal stable sub-steps). ``compiled``
    chooses the compiled FTCS kernel (default: whenever the problem allows it — Cartesian grid,
    constant ``D`` and capacity, no decay, source or exchange). ``progress`` is called with the
    fraction done after every output.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"the time step must be positive and finite, got {dt}")
    if n_steps < 0 or output_every < 1:
        raise ValueError("n_steps must be ≥ 0 and output_every ≥ 1")
    use_compiled = method == "ftcs" and (_compiled_applies(problem) if compiled is None
                                         else compiled)
    if use_compiled and not _compiled_applies(problem):
        raise ValueError("the compiled FTCS kernel needs a Cartesian grid with constant "
                         "coefficients and no decay, source or exchange")
    grid = problem.grid
    u = np.array(np.broadcast_to(np.asarray(u0, dtype=float), grid.cells)).ravel()
    # The compiled path never needs the full matrix; every other path is built on it.
    disc = None if use_compiled else _discretise(problem)
    max_rate = _max_rate(problem, disc)
    stability = _stability(problem, max_rate, dt)
    out_steps = _output_steps(n_steps, output_every)
    states = np.empty((len(out_steps), *grid.cells))
    states[0] = u.reshape(grid.cells)
    faces = [f for f in grid.faces if problem.boundary(f).kind != "periodic"]
    ledger = _Ledger(faces, len(out_steps))
    ledger.record(0)
    added = _additions(problem, additions, n_steps)

    def add_at(step: int) -> None:
        nonlocal u
        hit = added.get(step)
        if hit is not None:
            u = u + hit[0]
            ledger.add_inflow(hit[1])

    def done(k: int) -> None:
        states[k] = u.reshape(grid.cells)
        ledger.record(k)
        if progress is not None:
            progress(out_steps[k] / n_steps if n_steps else 1.0)

    substeps = 1
    factorizations = 0
    if method == "ftcs":
        if not stability.stable:
            if not substeps_allowed:
                raise UnstableStepError(
                    f"the explicit (FTCS) step dt = {dt:.6g} s is unstable: "
                    f"{stability.describe()}; take a smaller step, allow sub-stepping, or "
                    "choose crank_nicolson", stability)
            substeps = max(1, math.ceil(dt * max_rate * (1.0 - _STABILITY_SLACK)))
            while not _stability(problem, max_rate, dt / substeps).stable:
                substeps += 1
        h = dt / substeps
        if use_compiled:
            stepper = _CompiledFTCS(problem, h)
            for k in range(1, len(out_steps)):
                # runs of steps between additions go through the kernel in one call
                for last, n in _runs(out_steps[k - 1], out_steps[k], added):
                    u, flows = stepper.run(u, n * substeps)
                    ledger.add_flows(flows)
                    add_at(last)
                done(k)
        else:
            assert disc is not None
            step = (sp.diags(h / disc.mass) @ disc.a).tocsr()
            shift = h * disc.b / disc.mass
            for k in range(1, len(out_steps)):
                for s in range(out_steps[k - 1] + 1, out_steps[k] + 1):
                    for _ in range(substeps):
                        ledger.add(disc, u, h)  # forward Euler: rates at the old state
                        u = u + (step @ u + shift)
                    add_at(s)
                done(k)
    else:
        assert disc is not None
        theta = 1.0 if method == "backward_euler" else 0.5
        mass = sp.diags(disc.mass)
        system = ImplicitSystem(mass - (theta * dt) * disc.a, grid.ndim)
        explicit = (mass + ((1.0 - theta) * dt) * disc.a).tocsr()
        rhs_const = dt * disc.b
        for k in range(1, len(out_steps)):
            for s in range(out_steps[k - 1] + 1, out_steps[k] + 1):
                new = system.solve(explicit @ u + rhs_const, u)
                # The ledger uses the state at which the scheme evaluates the rates.
                ledger.add(disc, new if theta == 1.0 else 0.5 * (u + new), dt)
                u = new
                add_at(s)
            done(k)
        factorizations = system.factorizations
    return DiffusionSolution(
        times=np.asarray(out_steps, dtype=float) * dt, states=states, outflow=ledger.outflow,
        sink=ledger.sink, source=ledger.source, substeps=substeps, method=method,
        stability=stability, factorizations=factorizations, compiled=use_compiled,
        exchange=(ledger.exchange if np.any(problem.coefficient("exchange")) else None),
        inflow=ledger.inflow if added else None)


def _additions(problem: DiffusionProblem, additions: Mapping[int, np.ndarray] | None,
               n_steps: int) -> dict[int, tuple[np.ndarray, float]]:
    """Step → (flat field to add, the amount it adds: Σ w·capacity·δu)."""
    out: dict[int, tuple[np.ndarray, float]] = {}
    grid = problem.grid
    weights = np.broadcast_to(grid.weights, grid.cells).ravel() * \
        np.broadcast_to(problem.coefficient("capacity"), grid.cells).ravel()
    for step, field_ in (additions or {}).items():
        if not (isinstance(step, int | np.integer) and 1 <= step <= n_steps):
            raise ValueError(f"an addition at step {step}: steps run from 1 to {n_steps}")
        delta = np.array(np.broadcast_to(np.asarray(field_, dtype=float), grid.cells)).ravel()
        if not np.all(np.isfinite(delta)):
            raise ValueError(f"the addition at step {step} is not finite")
        out[int(step)] = (delta, float(weights @ delta))
    return out


def _runs(first: int, last: int, added: Mapping[int, Any]) -> list[tuple[int, int]]:
    """Steps first+1 … last cut after each addition step: (the run's last step, its
    length)."""
    cuts = [*sorted(s for s in added if first < s < last), last]
    out, start = [], first
    for cut in cuts:
        out.append((cut, cut - start))
        start = cut
    return out


class _CompiledFTCS:
    """FTCS steps through :mod:`medtransport.numerics.ftcs` (imported here, so that numba
    loads only when an explicit run needs it)."""

    def __init__(self, problem: DiffusionProblem, h: float):
        from medtransport.numerics.ftcs import ftcs_steps

        self._kernel = ftcs_steps
        grid = problem.grid
        d, capacity = _uniform_coefficients(problem) or (0.0, 1.0)
        pad = 3 - grid.ndim  # 1-D and 2-D grids run as 3-D with leading axes of one cell
        self.shape = (1,) * pad + grid.cells
        self.h = h
        self.coef = np.zeros(3)
        self.periodic = np.zeros(3, dtype=np.int64)
        self.ka = np.zeros(6)
        self.kb = np.zeros(6)
        # face -> (kernel slot, per-cell area·α, whole-face area·β)
        self.faces: dict[str, tuple[int, float, float]] = {}
        self._spare: np.ndarray | None = None
        n_cells = math.prod(grid.cells)
        for axis, line in enumerate(_axes(problem)):
            spacing = grid.spacing[axis]
            slot = axis + pad
            self.coef[slot] = h * d / (capacity * spacing ** 2)
            self.periodic[slot] = line.periodic
            area = float(grid.face_area(axis))
            for face, (alpha, beta) in line.alpha_beta.items():
                k = 2 * slot + (face[1] == "+")
                self.ka[k] = h * alpha / (capacity * spacing)
                self.kb[k] = h * beta / (capacity * spacing)
                self.faces[face] = (k, area * alpha,
                                    area * beta * (n_cells // grid.cells[axis]))

    def run(self, u: np.ndarray, n: int) -> tuple[np.ndarray, dict[str, float]]:
        """``n`` steps from the flat state ``u``; returns the new flat state and the amount
        that left through each face during them."""
        cur = np.ascontiguousarray(u.reshape(self.shape))
        # Reuse the buffer the last call left free (u is usually the state it returned).
        other = self._spare
        if other is None or np.may_share_memory(other, cur):
            other = np.empty_like(cur)
        face_sum = np.zeros(6)
        # as many threads as asked for or free (numerics.threads); the bits do not depend on it
        with threads.limited(threads.choose(cur.size, _SERIAL_CELLS), blas=False) as n_threads:
            in_other = self._kernel(cur, other, n, self.coef, self.periodic, self.ka, self.kb,
                                    face_sum, cur.size >= _FUSE_CELLS, n_threads)
        result, self._spare = (other, cur) if in_other else (cur, other)
        # Σ_steps h·(Σ area·α·u_b − area·β): forward Euler, rates at each old state.
        flows = {face: self.h * (weight * face_sum[k] - n * constant)
                 for face, (k, weight, constant) in self.faces.items()}
        return result.ravel(), flows


# ----------------------------------------------------------------------------- step by step


@dataclass(frozen=True)
class StepFlows:
    """Amounts over one step, integrated at the state the scheme evaluates its rates at:
    ``outflow`` per boundary face (negative: entered), ``sink`` removed by decay, ``source``
    created by the constant source, ``exchange`` net gained by exchange, ``extra`` added by
    the per-step source passed to :meth:`ThetaStepper.step`."""

    outflow: dict[str, float]
    sink: float
    source: float
    exchange: float
    extra: float


class ThetaStepper:
    """Steps of ``problem`` one at a time, with the same schemes and ledger as :func:`solve`.

    ``method``: ``"crank_nicolson"`` (θ = ½), ``"backward_euler"`` (θ = 1) or ``"ftcs"``
    (θ = 0; an unstable step raises :class:`UnstableStepError` with the largest stable step).
    The implicit system ``(M − θΔt·A)`` is set up once and again only when :meth:`update`
    changes a coefficient; :attr:`factorizations` counts the LU factorizations. On large 3-D
    grids with constant coefficients and every face held at a value or closed (a given flux
    included), it is solved directly by fast sine/cosine transforms
    (:class:`~medtransport.numerics.linear.SpectralSystem`, checked against the assembled
    matrix before use); otherwise by :class:`ImplicitSystem` (one LU, or preconditioned CG on
    large 3-D grids). ``linear_solver`` forces ``"spectral"`` or ``"standard"``
    (:class:`ImplicitSystem`); ``"auto"`` chooses as above.

    :meth:`step` takes an optional per-cell source ``extra`` given as the amount per unit cell
    measure added *during* the step (``∫ q dt`` over it): a source that does not depend on the
    state enters the θ-scheme only through its integral, so a schedule switched on or off
    inside a step is integrated exactly and the ledger stays closed to round-off.
    """

    def __init__(self, problem: DiffusionProblem, dt: float,
                 method: Method = "crank_nicolson", cg_rtol: float | None = None,
                 linear_solver: Literal["auto", "spectral", "standard"] = "auto"):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"the time step must be positive and finite, got {dt}")
        self.dt = dt
        self.method = method
        self.theta = {"crank_nicolson": 0.5, "backward_euler": 1.0, "ftcs": 0.0}[method]
        self.cg_rtol = cg_rtol
        self.linear_solver = linear_solver
        self.factorizations = 0
        self.problem = problem
        self._build()

    def _build(self) -> None:
        problem = self.problem
        disc = _discretise(problem)
        self._disc = disc
        self.stability = _stability(problem, _max_rate(problem, disc), self.dt)
        self._weights = np.broadcast_to(problem.grid.weights, problem.grid.cells).ravel()
        self._system: ImplicitSystem | SpectralSystem | None = None
        if self.theta == 0.0:
            if not self.stability.stable:
                raise UnstableStepError(
                    f"the explicit (FTCS) step dt = {self.dt:.6g} s is unstable: "
                    f"{self.stability.describe()}; take a smaller step or choose "
                    "crank_nicolson", self.stability)
            self._step_matrix = (sp.diags(self.dt / disc.mass) @ disc.a).tocsr()
            return
        theta_dt = self.theta * self.dt
        spectral = None
        if self.linear_solver != "standard":
            spectral = _spectral_system(
                problem, lambda x: disc.mass * x - theta_dt * (disc.a @ x), theta_dt,
                forced=self.linear_solver == "spectral")
        if spectral is not None:
            self._system = spectral
        else:
            kwargs = {} if self.cg_rtol is None else {"rtol": self.cg_rtol}
            self._system = ImplicitSystem(sp.diags(disc.mass) - theta_dt * disc.a,
                                          problem.grid.ndim, **kwargs)
            self.factorizations += self._system.factorizations

    @property
    def iterations(self) -> int:
        """Conjugate-gradient iterations so far (0 with LU or the spectral solver)."""
        return 0 if self._system is None else self._system.iterations

    @property
    def solver_name(self) -> str:
        """Which linear solver the steps use."""
        if self._system is None:
            return "explicit"
        if isinstance(self._system, SpectralSystem):
            return "fast sine/cosine transforms (direct)"
        if self._system.iterative:
            return f"conjugate gradients, Jacobi-preconditioned, rtol {self._system.rtol:g}"
        return "sparse LU, factorized once"

    def update(self, **coefficients: float | np.ndarray) -> None:
        """Replace coefficients of the problem (e.g. ``exchange=…``) and set the solver up
        again."""
        self.problem = replace(self.problem, **coefficients)
        iterations = self.iterations
        self._build()
        if self._system is not None:
            self._system.iterations = iterations

    def step(self, u: np.ndarray, extra: np.ndarray | None = None,
             guess: np.ndarray | None = None) -> tuple[np.ndarray, StepFlows]:
        """One step from the flat state ``u``; returns the new flat state and the step's
        ledger terms. ``guess`` is a starting point for an iterative solve."""
        disc, dt = self._disc, self.dt
        added = None if extra is None else self._weights * np.ravel(extra)
        if self._system is None:
            rates_at = u
            new = u + (self._step_matrix @ u + dt * disc.b / disc.mass)
            if added is not None:
                new += added / disc.mass
        else:
            # (M + (1 − θ)Δt·A)·u without forming that matrix
            rhs = disc.mass * u + dt * disc.b
            if self.theta < 1.0:
                rhs += ((1.0 - self.theta) * dt) * (disc.a @ u)
            if added is not None:
                rhs += added
            new = self._system.solve(rhs, u if guess is None else guess)
            rates_at = new if self.theta == 1.0 else 0.5 * (u + new)
        flows = StepFlows(
            outflow={face: dt * op(rates_at) for face, op in disc.faces.items()},
            sink=dt * _dot(disc.sink_weights, rates_at),
            source=dt * disc.source_rate,
            exchange=dt * disc.exchange_gain(rates_at),
            extra=0.0 if added is None else float(np.sum(added)))
        return new, flows


def _spectral_system(problem: DiffusionProblem, matrix: Callable[[np.ndarray], np.ndarray],
                     theta_dt: float, forced: bool = False) -> SpectralSystem | None:
    """A :class:`SpectralSystem` equal to ``matrix`` (x ↦ (M − θΔt·A)·x), or ``None`` when the
    problem does not allow one (or, unless ``forced``, when the grid is small enough for the
    usual solvers). ``forced`` turns a refusal into a ``ValueError`` saying why."""
    grid = problem.grid

    def refuse(why: str) -> None:
        if forced:
            raise ValueError(f"the spectral solver needs {why}")

    if not forced and (grid.ndim < 3 or math.prod(grid.cells) <= LU_LIMIT_3D):
        return None
    if grid.radial:
        return refuse("a Cartesian grid")
    names = ("diffusivity", "capacity", "decay", "exchange")
    if any(np.ptp(problem.coefficient(n)) != 0.0 for n in names):
        return refuse("constant coefficients")
    ends = []
    for name in grid.dims:
        pair = []
        for side in "-+":
            kind = problem.boundary(f"{name}{side}").kind
            if kind in ("dirichlet", "absorbing"):
                pair.append("dirichlet")
            elif kind in ("no_flux", "neumann"):
                pair.append("neumann")
            else:
                return refuse(f"faces held at a value or closed, not {kind}")
        ends.append((pair[0], pair[1]))
    d, cap, decay, exchange = (float(problem.coefficient(n).flat[0]) for n in names)
    w = float(np.broadcast_to(grid.weights, grid.cells).flat[0])
    coupling = [theta_dt * d * w / h ** 2 for h in grid.spacing]
    system = SpectralSystem(grid.cells, ends, w * (cap + theta_dt * (decay + exchange)),
                            coupling)
    # The derivation above must reproduce the assembled matrix: check it on a random vector.
    x = np.random.default_rng(0).random(math.prod(grid.cells))
    rhs = matrix(x)
    if np.max(np.abs(system.solve(rhs) - x)) > 1e-9:
        return refuse("a matrix it reproduces (check failed)")
    return system
