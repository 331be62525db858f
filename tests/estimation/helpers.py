"""Small estimation problems with known answers, built on closed-form predictions."""

from __future__ import annotations

import numpy as np

from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError
from medtransport_pk.closed_forms import bateman

TIMES = np.array([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0])
NAMES = ("clearance", "central_volume", "absorption_rate")


def oral_predict(times: np.ndarray, dose: float = 320.0):
    """Batched one-compartment oral predictions; phi columns CL, V, ka (L/h, L, 1/h)."""

    def predict(phi: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        cl, v, ka = phi[:, 0:1], phi[:, 1:2], phi[:, 2:3]
        k = cl / v
        t = np.asarray(times)[None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            out = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
        # ka ≈ k: the limit (these draws never reach it, but a trial step may)
        near = np.abs(ka - k) < 1e-9
        return np.where(near, dose * k * t * np.exp(-k * t) / v, out)

    return predict


def simulated_oral(n: int, *, seed: int, theta=(2.8, 32.0, 1.5), omega_sd=(0.3, 0.2, 0.4),
                   residual: ResidualError | None = None, times: np.ndarray = TIMES
                   ) -> tuple[Problem, np.ndarray]:
    """n subjects of a one-compartment oral drug, with their true η."""
    rng = np.random.default_rng(seed)
    residual = residual or ResidualError(additive=0.1, proportional=0.1, unit="mg/L")
    theta = np.asarray(theta, dtype=float)
    omega = np.diag(np.asarray(omega_sd) ** 2)
    eta = rng.multivariate_normal(np.zeros(3), omega, size=n)
    predict = oral_predict(times)
    f = predict(theta * np.exp(eta), np.arange(n))
    dv = residual.simulate(f, rng)
    if residual.log_scale or residual.additive == 0:
        dv = np.abs(dv)
    problem = Problem(predict=predict, dv=dv, observed=np.ones_like(dv, dtype=bool),
                      parameter_names=NAMES, theta=theta, eta_names=NAMES, omega=omega,
                      residual=residual, time=np.broadcast_to(times, dv.shape).copy(),
                      parameter_units={"clearance": "L/h", "central_volume": "L",
                                       "absorption_rate": "1/h"})
    return problem, eta


def check_bateman_agrees() -> float:
    """The helper's formula against the plugin's closed form (a guard on the helper)."""
    phi = np.array([[2.8, 32.0, 1.5]])
    ours = oral_predict(TIMES)(phi, np.arange(1))[0]
    ref = bateman(TIMES, 320.0, 1.0, 1.5, 2.8 / 32.0, 32.0)
    return float(np.max(np.abs(ours / ref - 1)))
