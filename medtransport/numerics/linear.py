"""Repeated solves of the implicit diffusion system (M − θΔt·A)·x = r.

For finite-volume diffusion ``M`` is diagonal and positive (cell amounts per unit field) and
``A`` symmetric and negative semi-definite, so the system matrix is symmetric positive
definite. Two strategies, both set up once per run:

- a sparse LU factorization (SuperLU), reused at every step — exact, and cheap in 1-D and 2-D
  where fill-in stays small;
- conjugate gradients with a Jacobi (diagonal) preconditioner, warm-started from the previous
  state, to a relative residual of 1e-13 — for large 3-D grids, where LU fill-in grows like
  N^{4/3} and its memory and time explode (48³ cells: a minute and gigabytes; 64³ does not fit).
  The residual left in a step, Σ|r| ≤ 1e-13·‖r₀‖·√N, is far below any ledger tolerance.
  Its vector operations run with single-threaded BLAS: they gain nothing from threads at these
  sizes, and a threaded BLAS whose cores are busy elsewhere slows every dot product by 10–100×.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg, splu
from threadpoolctl import ThreadpoolController

from medtransport.errors import MedtransportError

#: Above this many cells (16³) a 3-D system is solved by conjugate gradients instead of LU:
#: at 32³ LU already takes seconds to factorize where CG needs a few hundredths.
LU_LIMIT_3D = 4_096
CG_RTOL = 1e-13


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


class ImplicitSystem:
    """``solve(rhs, guess)`` returns x with (M − θΔt·A)·x = rhs; ``rtol`` is the relative
    residual at which conjugate gradients stop (ignored with LU)."""

    def __init__(self, matrix: sp.spmatrix, ndim: int, rtol: float = CG_RTOL):
        n = matrix.shape[0]
        self.rtol = rtol
        self.iterative = ndim >= 3 and n > LU_LIMIT_3D
        self.factorizations = 0
        self.iterations = 0
        if self.iterative:
            self._matrix = matrix.tocsr()
            inv_diag = 1.0 / self._matrix.diagonal()
            self._precondition = LinearOperator((n, n), matvec=lambda v: inv_diag * v,
                                                dtype=float)
        else:
            self._lu = splu(matrix.tocsc())
            self.factorizations = 1

    def solve(self, rhs: np.ndarray, guess: np.ndarray) -> np.ndarray:
        if not self.iterative:
            return self._lu.solve(rhs)
        count = [0]

        def tick(_: np.ndarray) -> None:
            count[0] += 1

        with _blas_controller().limit(limits=1, user_api="blas"):
            x, info = cg(self._matrix, rhs, x0=guess, rtol=self.rtol, atol=0.0,
                         M=self._precondition, maxiter=10_000, callback=tick)
        self.iterations += count[0]
        if info != 0:
            raise MedtransportError(f"the implicit solve did not converge in {count[0]} "
                                    "conjugate-gradient iterations; take a smaller time step")
        return x


class SpectralSystem:
    """Direct solves of ``(c·I − Σ_a g_a·L_a)·x = rhs`` on a uniform 3-D (or any-D) grid in
    O(N log N), where ``L_a`` is the cell-centred second difference along axis ``a`` (unit
    spacing) whose two ends are each held at zero (``"dirichlet"``: a ghost value ``−u_0``,
    i.e. the face at zero) or closed (``"neumann"``: ghost ``u_0``).

    Each 1-D operator is diagonalised by a discrete sine or cosine transform (Strang, *The
    discrete cosine transform*, SIAM Review 41, 1999, §2: the eight DCT/DST variants are the
    eigenvector bases of the second difference with these end conditions):

    - Dirichlet–Dirichlet: DST-II, eigenvalues −4 sin²(πk/(2n)), k = 1…n;
    - Neumann–Neumann: DCT-II, eigenvalues −4 sin²(πk/(2n)), k = 0…n−1;
    - Dirichlet–Neumann: DST-IV, Neumann–Dirichlet: DCT-IV, eigenvalues
      −4 sin²(π(2k+1)/(4n)), k = 0…n−1.

    With constant coefficients the finite-volume θ-scheme matrix ``M − θΔt·A`` has exactly this
    form, so one forward and one inverse transform per step solve it to round-off — where
    conjugate gradients need tens of sparse products and LU does not fit in memory.
    ``workers`` is passed to :mod:`scipy.fft` (−1: one thread per core).
    """

    iterative = False

    def __init__(self, shape: tuple[int, ...], ends: list[tuple[str, str]], diagonal: float,
                 coupling: list[float], workers: int = -1):
        self.shape = shape
        self.factorizations = 0
        self.iterations = 0
        self.workers = workers
        self._plans: list[tuple[str, int]] = []
        denom = np.full(shape, float(diagonal))
        for axis, ((lo, hi), n, g) in enumerate(zip(ends, shape, coupling, strict=True)):
            k = np.arange(n)
            if lo == hi == "dirichlet":
                kind, typ, lam = "dst", 2, -4.0 * np.sin(np.pi * (k + 1) / (2 * n)) ** 2
            elif lo == hi == "neumann":
                kind, typ, lam = "dct", 2, -4.0 * np.sin(np.pi * k / (2 * n)) ** 2
            elif (lo, hi) == ("dirichlet", "neumann"):
                kind, typ, lam = "dst", 4, -4.0 * np.sin(np.pi * (2 * k + 1) / (4 * n)) ** 2
            elif (lo, hi) == ("neumann", "dirichlet"):
                kind, typ, lam = "dct", 4, -4.0 * np.sin(np.pi * (2 * k + 1) / (4 * n)) ** 2
            else:
                raise ValueError(f"axis {axis}: ends must be dirichlet or neumann, got "
                                 f"{lo}, {hi}")
            self._plans.append((kind, typ))
            view = [1] * len(shape)
            view[axis] = n
            denom = denom - g * lam.reshape(view)
        if not np.all(denom > 0):
            raise ValueError("the system is not positive definite")
        self._inverse = 1.0 / denom

    def solve(self, rhs: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
        from scipy import fft

        x = np.reshape(rhs, self.shape)
        for axis, (kind, typ) in enumerate(self._plans):
            f = fft.dst if kind == "dst" else fft.dct
            x = f(x, type=typ, axis=axis, norm="ortho", workers=self.workers)
        x = x * self._inverse
        for axis, (kind, typ) in enumerate(self._plans):
            f = fft.idst if kind == "dst" else fft.idct
            x = f(x, type=typ, axis=axis, norm="ortho", workers=self.workers)
        return np.ravel(x)
