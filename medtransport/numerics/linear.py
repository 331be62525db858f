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
    """``solve(rhs, guess)`` returns x with (M − θΔt·A)·x = rhs."""

    def __init__(self, matrix: sp.spmatrix, ndim: int):
        n = matrix.shape[0]
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
            x, info = cg(self._matrix, rhs, x0=guess, rtol=CG_RTOL, atol=0.0,
                         M=self._precondition, maxiter=10_000, callback=tick)
        self.iterations += count[0]
        if info != 0:
            raise MedtransportError(f"the implicit solve did not converge in {count[0]} "
                                    "conjugate-gradient iterations; take a smaller time step")
        return x
