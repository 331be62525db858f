"""``contrast.whole_body``: an injected contrast agent from the syringe to the urine, audited.

Physiology and equations: :mod:`medtransport_contrast.whole_body`. The five answers: it counts
the agent (mmol of gadolinium, or of iodine atoms for an iodinated agent) in the syringe, the
cardiopulmonary, arterial and venous plasma pools and the EES of every tissue; it leaves by
renal excretion (clearance = the patient's GFR: given, or CKD-EPI 2021 from serum creatinine,
:mod:`medtransport_contrast.renal`) and hepatobiliary excretion; it is conserved up to those;
it starts with every prescribed dose in the syringe (0.1 mmol/kg × 70 kg = 7 mmol). Besides the
core's audits, the model checks the account the radiologist would write,
injected(t) = plasma + Σ EES + excreted, with the injected amount taken from the injection
schedule alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pint
import xarray as xr

from medtransport.audit import AuditContext, AuditResult
from medtransport.domain import Compartments
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Progress, Tolerance, Trajectory
from medtransport.units import Q_
from medtransport_contrast import __version__
from medtransport_contrast.renal import gfr as estimated_gfr
from medtransport_contrast.signal import CTSignal, SPGRSignal, ct_enhancement
from medtransport_contrast.whole_body import WholeBodyParams, WholeBodySystem

__all__ = ["WholeBody", "WholeBodyModelParams", "patient_gfr"]


class WholeBodyModelParams(WholeBodyParams):
    """Parameters of ``contrast.whole_body``: the physiology and, optionally, how the arterial
    blood appears on MRI (``signal: {kind: spgr, …}``) or CT (``{kind: ct, …}``)."""

    signal: SPGRSignal | CTSignal | None = None


def patient_gfr(params: WholeBodyParams, scenario: Any) -> float:
    """GFR in mL/min: ``glomerular_filtration_rate`` if given, else CKD-EPI 2021."""
    if params.glomerular_filtration_rate is not None:
        return float(params.glomerular_filtration_rate.m_as("mL/min"))
    if scenario.patient is None:
        raise ScenarioError([("patient", "needed for the GFR (age, sex, serum_creatinine), or "
                                         "give parameters.glomerular_filtration_rate")])
    return float(estimated_gfr(scenario.patient).m_as("mL/min"))


class WholeBody(Model):
    #: what a person reads (medtransport.display): mmol and mM
    display_units: ClassVar[dict[str, str]] = {"agent": "mmol", "amount": "mmol",
                                               "plasma_concentration": "mM"}
    id = "contrast.whole_body"
    title = "Whole-body contrast agent kinetics"
    version = __version__
    description = ("An injected contrast agent (dose in mmol/kg, injection rate or duration) "
                   "passing the heart and lungs, mixing in the arterial and venous plasma, "
                   "distributing into the extravascular extracellular space of every tissue "
                   "and cleared by the kidneys at the patient's GFR (and optionally in bile); "
                   "solved exactly, with injected = plasma + EES + excreted audited.")
    Params = WholeBodyModelParams
    conserved = (Species("agent", "amount", "amount of contrast agent",
                         "the agent in the syringe, the plasma pools and every tissue's EES"),)
    tags = frozenset({"compartments", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {"exact": Tolerance(rtol=1e-9)}
    event_types = frozenset({"injection"})
    params: WholeBodyModelParams

    def build_domain(self) -> Compartments:
        sc = self.scenario
        if sc.domain is not None or sc.boundaries:
            raise ScenarioError([("domain" if sc.domain is not None else "boundaries",
                                  f"{self.id} builds its own compartments")])
        self.system = WholeBodySystem(self.params, sc, patient_gfr(self.params, sc))
        return Compartments(names=tuple(self.system.body))

    def ledger_units(self) -> dict[str, str]:
        return {"agent": "mmol"}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"agent": Q_(self.system.dose, "mmol")}

    def routes(self) -> dict[str, list[str]]:
        s = self.system
        out = [f"renal excretion at GFR = {s.gfr:.4g} mL/min"]
        if s.hepatobiliary > 0:
            out.append(f"hepatobiliary excretion at {s.hepatobiliary:.4g} mL/min")
        return {"agent": out}

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        s = self.system
        times = self.scenario.time.output_times()
        amt = s.solve(times)
        nb = len(s.body)
        body = amt[:, :nb]
        renal, hepato = amt[:, nb], amt[:, nb + 1]
        pv = s.plasma_volumes
        pools = ["arterial_plasma", "venous_plasma"]
        plasma_conc = np.stack([body[:, s.body.index(p)] / pv[p] for p in pools], axis=1)
        ees_conc = np.stack([body[:, s.body.index(f"ees_{n}")] / v for n, v in
                             zip(s.tissue_names, s.ees_volumes, strict=True)], axis=1)
        coords: dict[str, Any] = {
            "time": ("time", times, {"units": "s", "long_name": "time"}),
            "compartment": ("compartment", np.array(s.body), {"units": "1",
                                                               "long_name": "compartment"}),
            "pool": ("pool", np.array(pools), {"units": "1", "long_name": "plasma pool"}),
            "tissue": ("tissue", np.array(s.tissue_names), {"units": "1",
                                                            "long_name": "tissue"}),
            "route": ("route", np.array(["renal", "hepatobiliary"]),
                      {"units": "1", "long_name": "excretion route"}),
        }
        art_blood = plasma_conc[:, 0] * (1.0 - s.hematocrit)
        dist, elim = s.half_lives()
        ds = xr.Dataset({
            "amount": (("time", "compartment"), body,
                       {"units": "mmol", "long_name": "amount of agent"}),
            "excreted": (("time", "route"), np.stack([renal, hepato], axis=1),
                         {"units": "mmol", "long_name": "cumulative amount excreted"}),
            "injected": ("time", s.injected(times),
                         {"units": "mmol", "long_name": "cumulative amount injected"}),
            "plasma_concentration": (("time", "pool"), plasma_conc,
                                     {"units": "mM", "long_name": "plasma concentration"}),
            "arterial_blood_concentration": ("time", art_blood,
                                             {"units": "mM", "long_name": "arterial whole-blood "
                                                                          "concentration"}),
            "ees_concentration": (("time", "tissue"), ees_conc,
                                  {"units": "mM", "long_name": "EES concentration"}),
            "glomerular_filtration_rate": ((), s.gfr, {"units": "mL/min",
                                                       "long_name": "glomerular filtration "
                                                                    "rate"}),
            "distribution_half_life": ((), dist / 3600.0, {"units": "h", "long_name":
                                                           "distribution half-life"}),
            "elimination_half_life": ((), elim / 3600.0, {"units": "h", "long_name":
                                                          "terminal elimination half-life"}),
        }, coords=coords)
        sig = self.params.signal
        if isinstance(sig, SPGRSignal):
            ds["arterial_signal"] = ("time", sig.signal(art_blood, float(sig.t1_blood.m_as("s"))),
                                     {"units": "1", "long_name": "arterial blood SPGR signal"})
        elif isinstance(sig, CTSignal):
            hu = float(sig.baseline_blood.m_as("HU")) + ct_enhancement(
                art_blood, float(sig.enhancement_per_iodine.m_as("HU*mL/mg")))
            ds["arterial_attenuation"] = ("time", hu, {"units": "HU", "long_name":
                                                       "arterial blood attenuation"})
        ledger = Ledger.of("agent", "mmol", times.size,
                           outflow={"renal": renal, "hepatobiliary": hepato})
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"agent": ledger})

    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        return [_injected_accounted]

    # -- presentation ----------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """Arterial plasma (the AIF) and EES concentrations (left), the agent's account
        (right)."""
        signal = next((n for n in ("arterial_attenuation", "arterial_signal")
                       if n in dataset), None)
        axes = figure.subplots(1, 3 if signal else 2)
        ax1, ax2 = axes[0], axes[1]
        t = dataset["time"].values
        scale, unit = (3600.0, "h") if t[-1] - t[0] > 3 * 3600 else (60.0, "min")
        ax1.plot(t / scale, dataset["plasma_concentration"].sel(pool="arterial_plasma"),
                 label="arterial plasma (AIF)")
        ax1.plot(t / scale, dataset["plasma_concentration"].sel(pool="venous_plasma"),
                 label="venous plasma")
        for name in dataset["tissue"].values:
            ax1.plot(t / scale, dataset["ees_concentration"].sel(tissue=name),
                     label=f"EES {name}")
        ax1.set_xlabel(f"time [{unit}]")
        ax1.set_ylabel("concentration [mM]")
        ax1.set_title("concentrations")
        ax1.legend(fontsize="small")
        amount = dataset["amount"]
        plasma = sum(amount.sel(compartment=c) for c in amount["compartment"].values
                     if "plasma" in str(c) or str(c).startswith("cardiopulmonary"))
        ees = sum(amount.sel(compartment=c) for c in amount["compartment"].values
                  if str(c).startswith("ees_"))
        ax2.plot(t / scale, dataset["injected"], "k", label="injected")
        ax2.plot(t / scale, plasma, label="plasma")
        ax2.plot(t / scale, ees, label="EES (all tissues)")
        ax2.plot(t / scale, dataset["excreted"].sum("route"), label="excreted")
        ax2.plot(t / scale, plasma + ees + dataset["excreted"].sum("route"), ":",
                 label="plasma + EES + excreted")
        ax2.set_xlabel(f"time [{unit}]")
        ax2.set_ylabel("amount of agent [mmol]")
        if unit == "h":  # a day-long account: the terminal phase is only seen on a log axis
            ax1.set_yscale("log")
            ax2.set_yscale("log")
            floor = 1e-4 * float(dataset["injected"].max())
            ax2.set_ylim(bottom=floor)
            positive = dataset["plasma_concentration"].values
            positive = positive[positive > 0]
            if positive.size:
                ax1.set_ylim(bottom=max(float(positive.min()), 1e-4 * float(positive.max())))
            ax1.set_ylabel("concentration [mM] (log scale)")
            ax2.set_ylabel("amount of agent [mmol] (log scale)")
        el = float(dataset["elimination_half_life"])
        ax2.set_title(f"agent account (t½ {el:.3g} h)")
        ax2.legend(fontsize="small")
        if signal:
            var = dataset[signal]
            axes[2].plot(t / scale, var, color="tab:red")
            axes[2].set_xlabel(f"time [{unit}]")
            axes[2].set_ylabel(f"{var.attrs['long_name']} [{var.attrs['units']}]")
            axes[2].set_title(f"peak {float(var.max()):.4g} {var.attrs['units']} at "
                              f"{float(t[int(np.argmax(var.values))]):.3g} s")
        figure.suptitle(self.scenario.name)

    # -- conformance -----------------------------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        patient = {"weight": "70 kg", "height": "175 cm", "age": "45 year", "sex": "male",
                   "serum_creatinine": "0.9 mg/dL"}
        return [
            {"name": "gadobutrol 0.1 mmol/kg at 2 mL/s, normal renal function", "model": cls.id,
             "patient": patient, "parameters": {"agent": "gadobutrol"},
             "events": [{"type": "injection", "dose": "0.1 mmol/kg", "rate": "2 mL/s"}],
             "time": {"stop": "6 h", "step": "1 min"}},
            {"name": "gadoxetate bolus, hepatobiliary route, GFR given", "model": cls.id,
             "patient": {"weight": "60 kg"},
             "parameters": {"agent": "gadoxetate", "glomerular_filtration_rate": "30 mL/min",
                            "hepatobiliary_clearance": "30 mL/min",
                            "tissues": [{"name": "liver", "ees_volume": "0.4 L",
                                         "exchange_clearance": "30 L/h"},
                                        {"name": "rest", "ees_volume": "0.15 L/kg",
                                         "exchange_clearance": "8 L/h"}]},
             "events": [{"type": "injection", "dose": "0.025 mmol/kg"}],
             "time": {"stop": "2 h", "step": "30 s"}},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"cardiac_output": "5 L"}, "cardiac_output"),
            ({"glomerular_filtration_rate": "-3 mL/min"}, "glomerular_filtration_rate"),
            ({"agent": "gadolinium"}, "agent"),
            ({"tissues": [{"name": "liver", "ees_volume": "2 mL/min",
                           "exchange_clearance": "1 L/h"}]}, "tissues"),
            ({"blood_volume": "70 mL/min"}, "blood_volume"),
        ]


def _injected_accounted(ctx: AuditContext) -> list[AuditResult]:
    """injected(t) = plasma + Σ EES + excreted, injected from the schedule, the rest from the
    returned states."""
    model = ctx.model
    assert isinstance(model, WholeBody)
    ds = ctx.states
    times = np.asarray(ds["time"].values, dtype=float)
    injected = model.system.injected(times)
    amount = ds["amount"]
    inside = amount.sel(compartment=[c for c in amount["compartment"].values
                                     if str(c) != "syringe"]).sum("compartment").values
    accounted = inside + ds["excreted"].sum("route").values
    res = np.abs(accounted - injected)
    scale = max(float(np.max(np.abs(injected))), 1e-300)
    tol = ctx.tolerance.atol + ctx.tolerance.rtol * scale
    worst = float(np.max(res)) if np.all(np.isfinite(res)) else float("nan")
    passed = bool(np.all(res <= tol))
    return [AuditResult("injected_accounted[agent]", passed, worst, tol, "mmol",
                        "max |plasma + Σ EES + excreted − injected (from the schedule)| over "
                        f"{times.size} times; dose {model.system.dose:.6g} mmol")]
