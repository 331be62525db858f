"""``contrast.dce``: a tissue fed by an arterial input, and how it looks on MRI or CT.

Arterial input (``aif``, :mod:`medtransport_contrast.aif`): Parker's population AIF (blood;
plasma through the hematocrit), a measured table (blood or plasma, with units), or the arterial
plasma of ``contrast.whole_body`` for the scenario's patient and ``injection`` events; each
delayed by ``delay`` (bolus arrival). Tissue kinetics (``kinetic_model``,
:mod:`medtransport_contrast.kinetics`, :mod:`medtransport_contrast.tissue`): Tofts, extended
Tofts, two-compartment exchange (Fp, PS, vp, ve) or Patlak; flows may be given per volume
("25 mL/min/100 mL", "0.25 1/min") or per mass ("60 mL/min/100 g", converted with
``tissue_density``). Signal (``signal``, :mod:`medtransport_contrast.signal`): spoiled gradient
echo with fast-exchange relaxation and tabulated relaxivities, or CT attenuation in HU.

The five answers: it counts the agent in a tissue volume ``tissue_volume`` (µmol), split into
its plasma and EES (``amount``; per unit tissue volume: ``concentration``); no space beyond
that volume; it enters
and leaves with the blood (routes per model, :mod:`medtransport_contrast.tissue`); it is
conserved up to those flows; it starts with the EES content ``initial_ees_concentration``
(agent left from an earlier injection) plus, for the models whose plasma follows the AIF,
vp·C_p(t0).

The time grid is the scenario's step; the AIF is sampled on it and taken as linear between
samples, for which the solution is exact (the books close to round-off).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pint
import xarray as xr
from pydantic import Field

from medtransport.domain import Compartments
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty
from medtransport_contrast import __version__
from medtransport_contrast.aif import MeasuredAIF, ParkerAIF, WholeBodyAIF, plasma_from_blood
from medtransport_contrast.quantities import Fraction, Rate
from medtransport_contrast.signal import CTSignal, SPGRSignal, ct_enhancement
from medtransport_contrast.tissue import TissueSolution, solve_tissue

__all__ = ["DCE", "DCEParams"]

KineticModel = Literal["tofts", "extended_tofts", "two_compartment_exchange", "patlak"]
#: The models as the literature names them (Tofts and Patlak are people).
KINETIC_NAMES = {"tofts": "Tofts", "extended_tofts": "extended Tofts",
                 "two_compartment_exchange": "two-compartment exchange", "patlak": "Patlak"}

#: The parameters each kinetic model needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "tofts": ("ktrans", "ve"),
    "extended_tofts": ("ktrans", "ve", "vp"),
    "two_compartment_exchange": ("plasma_flow", "permeability_surface", "vp", "ve"),
    "patlak": ("ktrans", "vp"),
}
DEFAULT_HEMATOCRIT = 0.42


class DCEParams(Params):
    """Parameters of ``contrast.dce`` (module docstring)."""

    kinetic_model: KineticModel
    ktrans: Rate | None = None
    ve: Fraction | None = None
    vp: Fraction | None = None
    plasma_flow: Rate | None = None
    permeability_surface: Rate | None = None
    tissue_density: Qty("g/mL", gt=0) = Q_(1.04, "g/mL")
    tissue_volume: Qty("mL", gt=0) = Q_(1.0, "mL")
    initial_ees_concentration: Qty("mM", ge=0) = Q_(0.0, "mM")
    aif: Annotated[ParkerAIF | MeasuredAIF | WholeBodyAIF, Field(discriminator="kind")]
    signal: Annotated[SPGRSignal | CTSignal, Field(discriminator="kind")] | None = None


class DCE(Model):
    #: what a person reads (medtransport.display): µmol and mM
    display_units: ClassVar[dict[str, str]] = {"agent": "µmol", "amount": "µmol",
                                               "tissue_concentration": "mM"}
    id = "contrast.dce"
    title = "DCE tracer kinetics with MRI/CT signal"
    version = __version__
    description = ("A contrast agent entering a tissue from an arterial input (Parker population "
                   "AIF, a measured AIF or the whole-body model), with Tofts, extended Tofts, "
                   "two-compartment exchange or Patlak kinetics and an arterial delay, and the "
                   "MRI (spoiled gradient echo, fast exchange, tabulated relaxivities) or CT "
                   "(HU) signal it makes; exact for an AIF linear between samples.")
    Params = DCEParams
    conserved = (Species("agent", "amount", "amount of contrast agent in the tissue",
                         "the agent in the tissue volume's plasma and EES"),)
    tags = frozenset({"compartments", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {"exact": Tolerance(rtol=1e-9)}
    event_types = frozenset({"injection"})
    params: DCEParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Compartments:
        sc, p = self.scenario, self.params
        problems = [(f"parameters.{name}", f"required by the {p.kinetic_model} model")
                    for name in NEEDS[p.kinetic_model] if getattr(p, name) is None]
        unused = [n for n in ("ktrans", "ve", "vp", "plasma_flow", "permeability_surface")
                  if n not in NEEDS[p.kinetic_model] and getattr(p, n) is not None]
        problems += [(f"parameters.{n}", f"not a parameter of the {p.kinetic_model} model "
                                         f"(it takes {', '.join(NEEDS[p.kinetic_model])})")
                     for n in unused]
        for name in ("ve", "vp"):
            if name in NEEDS[p.kinetic_model] and getattr(p, name) is not None and \
                    getattr(p, name) <= 0 and not (name == "vp" and p.kinetic_model
                                                             in ("extended_tofts", "patlak")):
                problems.append((f"parameters.{name}", "must be > 0"))
        if sc.domain is not None or sc.boundaries:
            problems.append(("domain" if sc.domain is not None else "boundaries",
                             f"{self.id} builds its own compartments"))
        if sc.events and not isinstance(p.aif, WholeBodyAIF):
            problems.append(("events", "injection events drive the whole-body AIF only "
                                       "(aif.kind: whole_body); a population or measured AIF "
                                       "already includes the injection"))
        if problems:
            raise ScenarioError(problems)
        self.whole_body = None
        if isinstance(p.aif, WholeBodyAIF):
            self.whole_body = self._whole_body_system()
        return Compartments(names=("plasma", "ees"))

    def _whole_body_system(self) -> Any:
        from medtransport_contrast.whole_body import WholeBodySystem
        from medtransport_contrast.whole_body_model import patient_gfr

        assert isinstance(self.params.aif, WholeBodyAIF)
        wb = self.params.aif.physiology
        return WholeBodySystem(wb, self.scenario, patient_gfr(wb, self.scenario))

    def ledger_units(self) -> dict[str, str]:
        return {"agent": "umol"}

    def routes(self) -> dict[str, list[str]]:
        return {"agent": {"tofts": ["washout from the EES back to the plasma (kep·ve·Ce)"],
                          "extended_tofts": ["washout from the EES back to the plasma "
                                             "(kep·ve·Ce)", "the intravascular part follows "
                                             "the AIF (vp·Cp)"],
                          "patlak": ["the intravascular part follows the AIF (vp·Cp); the EES "
                                     "has no back-flux"],
                          "two_compartment_exchange": ["venous outflow Fp·Cp"]
                          }[self.params.kinetic_model]}

    # -- quantities in canonical units ------------------------------------------------------
    def rate(self, name: str) -> float:
        """A rate parameter in 1/s (per-mass flows times the tissue density)."""
        q = getattr(self.params, name)
        if q is None:
            return 0.0
        if q.check("1/s"):
            return float(q.m_as("1/s"))
        return float((q * self.params.tissue_density).m_as("1/s"))

    def fraction(self, name: str) -> float:
        q = getattr(self.params, name)
        return 0.0 if q is None else float(q)

    @property
    def hematocrit(self) -> float:
        if self.whole_body is not None:
            return float(self.whole_body.hematocrit)
        aif = self.params.aif
        if aif.hematocrit is not None:
            return float(aif.hematocrit)
        patient = self.scenario.patient
        if patient is not None and patient.hematocrit is not None:
            return float(patient.hematocrit.m_as(""))
        return DEFAULT_HEMATOCRIT

    def grid(self) -> np.ndarray:
        tg = self.scenario.time
        return tg.start.m_as("s") + np.arange(tg.n_steps + 1) * tg.dt

    def arterial_input(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whole blood, plasma) arterial concentrations in mM on the grid ``t``."""
        aif = self.params.aif
        rel = t  # the AIF's clock starts at t = 0 (the injection), not at time.start
        hct = self.hematocrit
        if isinstance(aif, ParkerAIF):
            blood = aif.blood(rel)
            return blood, self.plasma_of_blood(blood, hct)
        if isinstance(aif, MeasuredAIF):
            c = aif.curve(rel)
            if aif.medium == "blood":
                return c, self.plasma_of_blood(c, hct)
            return c * (1.0 - hct), c
        assert self.whole_body is not None
        s = self.whole_body
        amt = s.solve(t)
        plasma = amt[:, s.states.index("arterial_plasma")] / s.plasma_volumes["arterial_plasma"]
        d = float(aif.delay.m_as("s"))
        if d:
            plasma = np.interp(t - d, t, plasma, left=0.0)
        return plasma * (1.0 - hct), plasma

    def plasma_of_blood(self, blood: np.ndarray, hct: float) -> np.ndarray:
        """C_p = C_b/(1 − Hct)."""
        return plasma_from_blood(blood, hct)

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        t = self.grid()[:2]
        _, cp = self.arterial_input(t)
        per_volume = float(self.params.initial_ees_concentration.m_as("mM"))
        if self.params.kinetic_model in ("extended_tofts", "patlak"):
            per_volume += self.fraction("vp") * float(cp[0])
        return {"agent": (Q_(per_volume, "mM") * self.params.tissue_volume).to("umol")}

    # -- the run ---------------------------------------------------------------------------
    def kinetics(self, t: np.ndarray, cp: np.ndarray) -> TissueSolution:
        return solve_tissue(self.params.kinetic_model, t, cp, ktrans=self.rate("ktrans"),
                            ve=self.fraction("ve"), vp=self.fraction("vp"),
                            fp=self.rate("plasma_flow"), ps=self.rate("permeability_surface"),
                            e0=float(self.params.initial_ees_concentration.m_as("mM")))

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        tg = self.scenario.time
        t = self.grid()
        cb, cp = self.arterial_input(t)
        sol = self.kinetics(t, cp)
        keep = tg.output_steps()
        times = t[keep]
        parts = np.stack([sol.plasma, sol.ees], axis=1)[keep]
        ct = parts.sum(axis=1)
        vol_ml = float(self.params.tissue_volume.m_as("mL"))
        ds = xr.Dataset({
            # mM × mL = µmol
            "amount": (("time", "compartment"), parts * vol_ml,
                       {"units": "umol", "long_name": "amount of agent in the tissue volume"}),
            "concentration": (("time", "compartment"), parts,
                              {"units": "mM", "long_name": "agent per unit tissue volume, by "
                                                           "compartment"}),
            "tissue_concentration": ("time", ct, {"units": "mM",
                                                  "long_name": "tissue concentration C_t"}),
            "aif_blood": ("time", cb[keep], {"units": "mM", "long_name": "arterial whole-blood "
                                                                         "concentration"}),
            "aif_plasma": ("time", cp[keep], {"units": "mM", "long_name": "arterial plasma "
                                                                          "concentration"}),
        }, coords={"time": ("time", times, {"units": "s", "long_name": "time"}),
                   "compartment": ("compartment", np.array(["plasma", "ees"]),
                                   {"units": "1", "long_name": "compartment"})})
        ve = self.fraction("ve")
        if ve > 0:
            ds["ees_concentration"] = ("time", parts[:, 1] / ve,
                                       {"units": "mM", "long_name": "EES concentration C_e"})
        self._signals(ds, ct, cb[keep])
        # mM × mL = µmol
        ledger = Ledger.of("agent", "umol", times.size,
                           inflow={k: v[keep] * vol_ml for k, v in sol.inflow.items()} or None,
                           outflow={k: v[keep] * vol_ml for k, v in sol.outflow.items()}
                           or None)
        if progress is not None:
            progress(1.0)
        return Trajectory(ds, {"agent": ledger})

    def _signals(self, ds: xr.Dataset, ct: np.ndarray, cb: np.ndarray) -> None:
        sig = self.params.signal
        if isinstance(sig, SPGRSignal):
            t1 = float(sig.t1_tissue.m_as("s"))
            s = sig.signal(ct, t1)
            ds["tissue_r1"] = ("time", 1.0 / t1 + sig.r1 * ct,
                               {"units": "1/s", "long_name": "tissue R1 (fast exchange)"})
            ds["tissue_signal"] = ("time", s, {"units": "1",
                                               "long_name": "tissue SPGR signal (M0 units)"})
            s0 = float(sig.signal(np.array(0.0), t1))
            ds["relative_enhancement"] = ("time", (s - s0) / s0,
                                          {"units": "1", "long_name": "relative signal "
                                                                      "enhancement (S − S0)/S0"})
            ds["blood_signal"] = ("time", sig.signal(cb, float(sig.t1_blood.m_as("s"))),
                                  {"units": "1", "long_name": "arterial blood SPGR signal"})
            ds.attrs["relaxivity_1_per_s_mM"] = sig.r1
        elif isinstance(sig, CTSignal):
            k = float(sig.enhancement_per_iodine.m_as("HU*mL/mg"))
            ds["tissue_enhancement"] = ("time", ct_enhancement(ct, k),
                                        {"units": "HU", "long_name": "tissue enhancement"})
            ds["tissue_attenuation"] = ("time", float(sig.baseline_tissue.m_as("HU"))
                                        + ct_enhancement(ct, k),
                                        {"units": "HU", "long_name": "tissue attenuation"})
            ds["blood_attenuation"] = ("time", float(sig.baseline_blood.m_as("HU"))
                                       + ct_enhancement(cb, k),
                                       {"units": "HU", "long_name": "arterial blood attenuation"})

    # -- presentation ----------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """The AIF; the tissue curve and its parts on their own scale (an AIF peaking ten
        times higher would flatten them); the signal; the tissue's agent account, with the
        EES uptake (monotone) apart from the intravascular content, which follows the AIF."""
        ax0, ax1, ax2, ax3 = figure.subplots(1, 4)
        t = dataset["time"].values
        scale, unit = (60.0, "min") if t[-1] - t[0] > 600 else (1.0, "s")
        x = t / scale
        ax0.plot(x, dataset["aif_plasma"], label="plasma")
        ax0.plot(x, dataset["aif_blood"], "--", label="whole blood")
        ax0.set_xlabel(f"time [{unit}]")
        ax0.set_ylabel("arterial concentration [mM]")
        ax0.set_title("arterial input (AIF)", fontsize="medium")
        ax0.legend(fontsize="small")
        ax1.plot(x, dataset["tissue_concentration"], "k", lw=2, label="tissue C_t")
        conc = dataset["concentration"]
        names = {"plasma": "plasma part vp·Cp", "ees": "EES part ve·Ce"}
        for name in conc["compartment"].values:
            if float(np.max(np.abs(conc.sel(compartment=name)))) > 0:
                ax1.plot(x, conc.sel(compartment=name), ":",
                         label=names.get(str(name), f"{name} part"))
        ax1.set_xlabel(f"time [{unit}]")
        ax1.set_ylabel("tissue concentration [mM]")
        ax1.set_title(f"tissue, {KINETIC_NAMES[self.params.kinetic_model]}",
                      fontsize="medium")
        ax1.legend(fontsize="small")
        labels = {"relative_enhancement": "relative enhancement (S − S₀)/S₀",
                  "tissue_attenuation": "tissue attenuation [HU]",
                  "blood_attenuation": "blood attenuation [HU]"}
        drawn = [n for n in labels if n in dataset]
        for name in drawn:
            ax2.plot(x, dataset[name], label=labels[name])
        ax2.set_xlabel(f"time [{unit}]")
        ax2.set_ylabel(labels[drawn[0]] if len(drawn) == 1 else "signal")
        ax2.set_title("signal", fontsize="medium")
        if len(drawn) > 1:
            ax2.legend(fontsize="small")
        stored = dataset.get("agent_stored")
        if stored is not None:
            from medtransport.display import pretty

            amount_unit = pretty(stored.attrs.get("units", ""))
            ax3.plot(x, stored, "k", lw=2, label="in the tissue (recomputed)")
            inflow = dataset.get("agent_inflow")
            amount = dataset.get("amount")
            if inflow is not None and amount is not None and \
                    "plasma" in amount["compartment"].values:
                vascular = amount.sel(compartment="plasma")
                vascular = vascular - vascular.isel(time=0)
                ax3.plot(x, inflow - vascular, label="EES uptake (cumulative)")
                ax3.plot(x, vascular, ":", label="intravascular change (follows the AIF)")
            elif inflow is not None:
                ax3.plot(x, inflow, label="inflow (cumulative)")
            if "agent_outflow" in dataset:
                ax3.plot(x, dataset["agent_outflow"], label="EES washout (cumulative)")
            ax3.set_ylabel(f"agent [{amount_unit}]")
            ax3.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.15))
        ax3.set_xlabel(f"time [{unit}]")
        ax3.set_title("the tissue's agent account", fontsize="medium")
        figure.suptitle(self.scenario.name)

    # -- conformance -----------------------------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        mri = {"kind": "spgr", "agent": "gadobutrol", "field_strength": "3 T",
               "t1_tissue": "1.2 s", "repetition_time": "4 ms", "flip_angle": "15 deg"}
        short = {"stop": "300 s", "step": "1 s"}
        return [
            {"name": "extended Tofts, Parker AIF with delay, second injection", "model": cls.id,
             "parameters": {"kinetic_model": "extended_tofts", "ktrans": "0.12 1/min",
                            "ve": 0.3, "vp": "5 mL/100 mL",
                            "initial_ees_concentration": "0.05 mM",
                            "aif": {"kind": "parker", "delay": "8 s", "hematocrit": 0.42},
                            "signal": mri},
             "time": short},
            {"name": "2CXM with flows per 100 g, measured blood AIF, CT", "model": cls.id,
             "parameters": {"kinetic_model": "two_compartment_exchange",
                            "plasma_flow": "60 mL/min/100 g", "permeability_surface":
                            "10 mL/min/100 g", "vp": 0.08, "ve": 0.25,
                            "initial_ees_concentration": "0.1 mM",
                            "aif": {"kind": "measured", "medium": "blood",
                                    "time_units": "s", "concentration_units": "mM",
                                    "times": [0, 5, 10, 15, 20, 40, 80, 160, 300],
                                    "concentrations": [0, 0, 20, 8, 5, 4, 3, 2.5, 2]},
                            "signal": {"kind": "ct"}},
             "time": {"stop": "300 s", "step": "0.5 s", "output_every": "2 s"}},
            {"name": "Patlak, Parker AIF", "model": cls.id,
             "parameters": {"kinetic_model": "patlak", "ktrans": "0.05 1/min", "vp": 0.1,
                            "aif": {"kind": "parker"}},
             "time": short},
            {"name": "Tofts, whole-body AIF", "model": cls.id,
             "patient": {"weight": "70 kg", "height": "175 cm", "age": "45 year",
                         "sex": "male", "serum_creatinine": "0.9 mg/dL"},
             "parameters": {"kinetic_model": "tofts", "ktrans": "0.25 1/min", "ve": 0.4,
                            "initial_ees_concentration": "0.02 mM",
                            "aif": {"kind": "whole_body", "delay": "2 s"}},
             "events": [{"type": "injection", "dose": "0.1 mmol/kg", "rate": "3 mL/s"}],
             "time": short},
        ]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        aif = {"kind": "parker"}
        return [
            ({"kinetic_model": "tofts", "ktrans": "0.1 mL", "ve": 0.2, "aif": aif}, "ktrans"),
            ({"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 1.5, "aif": aif}, "ve"),
            ({"kinetic_model": "gamma", "aif": aif}, "kinetic_model"),
            ({"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2}, "aif"),
            ({"kinetic_model": "two_compartment_exchange", "plasma_flow": "25 mL/100 mL",
              "permeability_surface": "0.1 1/min", "vp": 0.1, "ve": 0.2, "aif": aif},
             "plasma_flow"),
            ({"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2,
              "aif": {"kind": "measured", "medium": "serum", "times": [0, 1],
                      "concentrations": [0, 1]}}, "aif"),
        ]
