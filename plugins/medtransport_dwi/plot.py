"""The family's plot: signal against b, ADC per shell, and Monte Carlo against exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from medtransport_dwi.model import DWISignal


def plot(model: DWISignal, ds: xr.Dataset, figure: Any) -> None:
    ax1, ax2, ax3 = figure.subplots(1, 3)
    b = ds["b_value"].values
    s = ds["signal"].values
    se = ds["signal_standard_error"].values
    sep = ds["pulse_separation"].values
    for value in np.unique(sep):
        sel = sep == value
        ax1.errorbar(b[sel], s[sel], yerr=2 * se[sel] if se.any() else None, fmt="o", ms=3,
                     label=f"Δ = {value:g} ms")
    ax1.set_yscale("log")
    ax1.set_xlabel("b [s/mm²]")
    ax1.set_ylabel("signal [S0 units]")
    ax1.set_title(f"signal vs b ({model.method})")
    ax1.legend(fontsize="small")
    if "adc" in ds:
        shell_sep = ds["shell_pulse_separation"].values
        for value in np.unique(shell_sep):
            sel = shell_sep == value
            ax2.plot(ds["shell_b_value"].values[sel], ds["adc"].values[sel], "s-",
                     label=f"Δ = {value:g} ms")
        ax2.legend(fontsize="small")
        ax2.set_xlabel("shell b [s/mm²]")
        ax2.set_ylabel("ADC [µm²/ms]")
    title = "ADC per shell"
    if "fractional_anisotropy" in ds:
        title += (f"\nDTI: FA {float(ds['fractional_anisotropy']):.3f}, "
                  f"MD {float(ds['mean_diffusivity']):.3f} µm²/ms")
    ax2.set_title(title)
    if "signal_exact" in ds:
        exact = ds["signal_exact"].values
        ax3.errorbar(exact, s, yerr=2 * se, fmt="o", ms=3, label="Monte Carlo ± 2 SE")
        lo, hi = float(min(exact.min(), s.min())), float(max(exact.max(), s.max()))
        ax3.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
        ax3.set_xlabel("exact (matrix formalism)")
        ax3.set_ylabel("Monte Carlo")
        ax3.set_title("Monte Carlo vs exact")
        ax3.legend(fontsize="small")
    else:
        ax3.plot(ds["time"].values * 1e3, ds["spins"].values, "o-")
        ax3.set_xlabel("time [ms]")
        ax3.set_ylabel("spins per compartment [S0]")
        ax3.set_title("spin (walker) ledger")
        ax3.legend([str(c) for c in ds["compartment"].values], fontsize="small")
    figure.suptitle(model.scenario.name)
