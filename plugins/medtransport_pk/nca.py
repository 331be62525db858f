"""Non-compartmental analysis (NCA) of one concentration–time profile after a single dose.

Definitions (Gabrielsson & Weiner, *Pharmacokinetic and Pharmacodynamic Data Analysis*, 5th ed.,
ch. 2; Rowland & Tozer ch. 3; Phoenix WinNonlin User's Guide, "NCA computation formulas"; PKNCA
vignettes "AUC calculation" and "Half-life calculation"):

- Cmax, Tmax: the largest observed concentration and the first time it is observed.
- Clast, Tlast: the last positive concentration and its time.
- AUC over the segment (t₁, C₁) → (t₂, C₂), Δt = t₂ − t₁:
  linear trapezoid  Δt·(C₁ + C₂)/2,
  log trapezoid     Δt·(C₁ − C₂)/ln(C₁/C₂)   (exact for an exponential decline).
  "linear-up/log-down" uses the log trapezoid where the concentration falls (C₂ < C₁, both > 0)
  and the linear one where it rises, stays equal or either value is zero; "linear" uses the
  linear trapezoid throughout. AUC_last sums the segments from t = 0 to Tlast.
- Terminal slope λz: least squares of ln C on t over the last n ≥ 3 positive points after Cmax
  (Cmax itself excluded for extravascular dosing); R²_adj = 1 − (1 − R²)(n − 1)/(n − 2). Among
  the fits with λz > 0, the largest R²_adj wins, and of the fits within 1e-4 of it the one with
  the most points (the WinNonlin "best fit" rule, also PKNCA's default).
- t½ = ln 2/λz;  AUC_inf = AUC_last + Clast/λz;  %AUC_extrap = 100·(Clast/λz)/AUC_inf.
- With a dose D: CL = D/AUC_inf (CL/F for extravascular dosing) and V_z = D/(λz·AUC_inf).

AUC starts at the dose (t = 0). If the first sample is later, a point is added at t = 0, as
WinNonlin does: C = 0 for extravascular and infusion dosing; for an IV bolus C₀ back-extrapolated
log-linearly from the first two samples (the first concentration if they do not decline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import pint
from numpy.typing import NDArray

from medtransport.units import Q_

__all__ = ["NCAResult", "Route", "nca"]

Route = Literal["extravascular", "iv_bolus", "infusion"]
AucMethod = Literal["linear-up/log-down", "linear"]
FloatArray = NDArray[np.float64]

# Fits whose adjusted R² lie this close to the best count as equally good; the one with the most
# points is then taken (WinNonlin / PKNCA rule).
ADJ_R2_TOLERANCE = 1e-4


@dataclass(frozen=True)
class NCAResult:
    """NCA parameters as pint Quantities in the units of the inputs (times, concentrations,
    dose); NaN-valued (keeping their units) where not estimable."""

    cmax: pint.Quantity
    tmax: pint.Quantity
    clast: pint.Quantity
    tlast: pint.Quantity
    auc_last: pint.Quantity
    """AUC from 0 to Tlast by the chosen method (``auc_method``)."""
    auc_inf: pint.Quantity
    """AUC_last + Clast/λz."""
    lambda_z: pint.Quantity
    half_life: pint.Quantity
    lambda_z_points: int
    """Number of points in the chosen terminal regression (0 if none)."""
    lambda_z_adjusted_r2: float
    percent_auc_extrapolated: pint.Quantity
    clearance: pint.Quantity | None
    """Dose/AUC_inf; after extravascular dosing this is the apparent clearance CL/F. ``None``
    when no dose was given."""
    volume_z: pint.Quantity | None
    """Dose/(λz·AUC_inf), the terminal-phase volume (V_z/F after extravascular dosing). ``None``
    when no dose was given."""
    route: str
    auc_method: str

    def to_table(self) -> list[tuple[str, float, str]]:
        """Rows (name, value, unit) for reports, the unit in pint's compact form (which
        :func:`medtransport.units.parse_quantity` reads back); quantities left undefined (no
        dose) are omitted."""
        rows: list[tuple[str, float, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, pint.Quantity):
                rows.append((f.name, float(value.magnitude), f"{value.units:~C}"))
            elif isinstance(value, int | float):
                rows.append((f.name, float(value), ""))
        return rows


def _segment_auc(t: FloatArray, c: FloatArray, method: AucMethod) -> FloatArray:
    """AUC of each segment between consecutive samples."""
    dt = np.diff(t)
    c1, c2 = c[:-1], c[1:]
    linear = dt * (c1 + c2) / 2.0
    if method == "linear":
        return linear
    falling = (c2 < c1) & (c1 > 0.0) & (c2 > 0.0)
    # Placeholders keep the log finite where the linear rule is used instead.
    ratio = np.where(falling, c1 / np.where(falling, c2, 1.0), 2.0)
    log = dt * (c1 - c2) / np.log(ratio)
    return np.where(falling, log, linear)


def _lambda_z(t: FloatArray, c: FloatArray, first: int, last: int, min_points: int
              ) -> tuple[float, int, float]:
    """Best-fit terminal slope from the points first..last (inclusive) with C > 0.

    Returns (λz, n, adjusted R²), or (nan, 0, nan) when no fit with ≥ ``min_points`` points
    and λz > 0 exists.
    """
    idx = np.arange(first, last + 1)
    idx = idx[c[idx] > 0.0]  # ln C needs positive concentrations
    fits: list[tuple[float, int, float]] = []
    for n in range(min_points, len(idx) + 1):
        tt = t[idx[-n:]]
        y = np.log(c[idx[-n:]])
        tc = tt - tt.mean()
        sxx = float(tc @ tc)
        if sxx == 0.0:
            continue
        slope = float(tc @ (y - y.mean())) / sxx
        resid = y - y.mean() - slope * tc
        ss_tot = float((y - y.mean()) @ (y - y.mean()))
        r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0.0 else 1.0
        adj = 1.0 - (1.0 - r2) * (n - 1) / (n - 2)
        if -slope > 0.0:
            fits.append((-slope, n, adj))
    if not fits:
        return math.nan, 0, math.nan
    top = max(adj for _, _, adj in fits)
    return max((f for f in fits if f[2] >= top - ADJ_R2_TOLERANCE), key=lambda f: f[1])


def _start_at_zero(t: FloatArray, c: FloatArray, route: Route) -> tuple[FloatArray, FloatArray]:
    """Prepend a point at t = 0 when the first sample is later (WinNonlin convention)."""
    if t[0] <= 0.0:
        return t, c
    c0 = 0.0
    if route == "iv_bolus":
        c0 = float(c[0])
        if len(c) > 1 and c[0] > c[1] > 0.0:  # log-linear back-extrapolation
            c0 = float(c[0] * (c[0] / c[1]) ** (t[0] / (t[1] - t[0])))
    return np.concatenate([[0.0], t]), np.concatenate([[c0], c])


def nca(times: pint.Quantity, concentrations: pint.Quantity, *,
        dose: pint.Quantity | None = None, route: Route = "extravascular",
        auc_method: AucMethod = "linear-up/log-down",
        min_terminal_points: int = 3) -> NCAResult:
    """NCA of one profile. ``times`` (since the dose, ≥ 0, increasing) and ``concentrations``
    are 1-D Quantities of equal length; ``dose`` an amount. Results carry the inputs' units
    (AUC in concentration·time; CL in L per time unit if the concentration is amount/volume).
    """
    if route not in ("extravascular", "iv_bolus", "infusion"):
        raise ValueError(f"route must be extravascular, iv_bolus or infusion, not {route!r}")
    if auc_method not in ("linear-up/log-down", "linear"):
        raise ValueError(f"auc_method must be 'linear-up/log-down' or 'linear', "
                         f"not {auc_method!r}")
    if min_terminal_points < 3:
        raise ValueError("a terminal slope needs at least 3 points")
    # Convert once at the edge; everything below works on float64 magnitudes.
    t_unit, c_unit = times.units, concentrations.units
    t = np.asarray(times.magnitude, dtype=np.float64)
    c = np.asarray(concentrations.magnitude, dtype=np.float64)
    if t.ndim != 1 or t.shape != c.shape or len(t) < 1:
        raise ValueError("times and concentrations must be 1-D arrays of equal, non-zero length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(c))):
        raise ValueError("times and concentrations must be finite (drop missing samples)")
    if np.any(np.diff(t) <= 0.0) or t[0] < 0.0:
        raise ValueError("times must be non-negative and strictly increasing")
    if np.any(c < 0.0):
        raise ValueError("concentrations must be non-negative")

    i_max = int(np.argmax(c))  # argmax returns the first maximum: Tmax is its first time
    positive = np.flatnonzero(c > 0.0)
    nan = math.nan
    if len(positive):
        i_last = int(positive[-1])
        clast, tlast = float(c[i_last]), float(t[i_last])
    else:
        i_last, clast, tlast = 0, nan, nan

    tz, cz = _start_at_zero(t[: i_last + 1], c[: i_last + 1], route)
    auc_last = float(np.sum(_segment_auc(tz, cz, auc_method))) if len(positive) else 0.0

    first = i_max + 1 if route == "extravascular" else i_max
    lam, n_points, adj_r2 = (_lambda_z(t, c, first, i_last, min_terminal_points)
                             if len(positive) else (nan, 0, nan))
    extrapolated = clast / lam
    auc_inf = auc_last + extrapolated

    auc_unit = c_unit * t_unit
    clearance = volume_z = None
    if dose is not None:
        d = float(dose.magnitude)
        clearance = Q_(d / auc_inf, dose.units / auc_unit)
        volume_z = Q_(d / (lam * auc_inf), dose.units / c_unit)
        # Report in L-based units when the concentration is amount per volume.
        if clearance.check("[volume]/[time]"):
            clearance = clearance.to(f"L/({t_unit})")
            volume_z = volume_z.to("L")

    return NCAResult(
        cmax=Q_(float(c[i_max]), c_unit),
        tmax=Q_(float(t[i_max]), t_unit),
        clast=Q_(clast, c_unit),
        tlast=Q_(tlast, t_unit),
        auc_last=Q_(auc_last, auc_unit),
        auc_inf=Q_(auc_inf, auc_unit),
        lambda_z=Q_(lam, 1 / t_unit),
        half_life=Q_(math.log(2.0) / lam, t_unit),
        lambda_z_points=n_points,
        lambda_z_adjusted_r2=adj_r2,
        percent_auc_extrapolated=Q_(100.0 * extrapolated / auc_inf, "percent"),
        clearance=clearance,
        volume_z=volume_z,
        route=route,
        auc_method=auc_method,
    )
