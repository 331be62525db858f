"""A drug's clearance by the dialyser, for dosing in dialysis patients.

Only the unbound drug crosses the membrane, so with free fraction f_u the dialytic clearance of
the (total) plasma drug is, from the drug's own mass-transfer area coefficient KoA_drug and the
one dialyser model of the plugin (:mod:`medtransport_dialysis.dialyser`: Michaels diffusion,
convection with sieving coefficient S ≈ f_u, haemodiafiltration, recirculation)::

    CL_D = f_u · K(KoA_drug, Q_b, Q_d, Q_f; S = 1)

or it is given directly (a measured CL_D). Continuous renal replacement therapy (CRRT) clears
the drug at the effluent flow times the saturation/sieving coefficient, taken as f_u
(Bouman 2008, Crit Care 12:R44 as a review of the approximation)::

    CL_CRRT = f_u · Q_effluent
"""

from __future__ import annotations

from typing import Literal

import pint

from medtransport.units import Q_
from medtransport_dialysis.dialyser import clearance as dialyser_clearance

__all__ = ["crrt_clearance", "drug_dialysis_clearance"]


def drug_dialysis_clearance(*, clearance: pint.Quantity | None = None,
                            koa: pint.Quantity | None = None, free_fraction: float = 1.0,
                            blood_flow: pint.Quantity | None = None,
                            dialysate_flow: pint.Quantity | None = None,
                            ultrafiltration: pint.Quantity | None = None,
                            substitution: pint.Quantity | None = None,
                            dilution: Literal["post", "pre"] = "post",
                            recirculation: float = 0.0) -> pint.Quantity:
    """CL_D in L/h: ``clearance`` as given, or f_u × the dialyser clearance from the drug's
    ``koa`` and the flows (ultrafiltration and substitution as flows, volume per time)."""
    if not 0.0 < free_fraction <= 1.0:
        raise ValueError(f"free_fraction must be in (0, 1], got {free_fraction}")
    if clearance is not None:
        if koa is not None:
            raise ValueError("give the clearance or the drug's KoA with the flows, not both")
        return clearance.to("L/h")
    if koa is None or blood_flow is None or dialysate_flow is None:
        raise ValueError("without a clearance, the drug's koa, blood_flow and dialysate_flow "
                         "are needed")
    unit = "mL/min"

    def mag(q: pint.Quantity | None) -> float:
        return 0.0 if q is None else float(q.m_as(unit))

    k = dialyser_clearance(mag(koa), mag(blood_flow), mag(dialysate_flow),
                           ultrafiltration=mag(ultrafiltration), substitution=mag(substitution),
                           dilution=dilution, recirculation=recirculation)
    return Q_(free_fraction * float(k), unit).to("L/h")


def crrt_clearance(effluent_flow: pint.Quantity, free_fraction: float = 1.0) -> pint.Quantity:
    """CL_CRRT = f_u·Q_effluent, in L/h."""
    if not 0.0 < free_fraction <= 1.0:
        raise ValueError(f"free_fraction must be in (0, 1], got {free_fraction}")
    return (free_fraction * effluent_flow).to("L/h")
