"""``contrast.vessel_diffusion``: dye leaving a capillary and spreading through the tissue.

A Krogh cylinder (Krogh, *J Physiol* 1919;52:409): a vessel of radius R_v carrying plasma at the
arterial concentration C_p(t) (the AIF), surrounded by tissue out to R_t, half way to the
neighbouring vessels (a symmetry plane: no flux). In the extravascular extracellular space
(volume fraction ve) the agent diffuses with the effective diffusivity D; it crosses the vessel
wall with permeability P (Fick's first law for a membrane)::

    ve·∂C_e/∂t = (1/r)·∂/∂r(r·ve·D·∂C_e/∂r)              R_v < r < R_t
    −ve·D·∂C_e/∂r = P·(C_p(t) − C_e)                      r = R_v   (into the tissue)
    ∂C_e/∂r = 0                                           r = R_t

(a 1-D ``box`` domain is a slab beside a vessel wall at x = 0 instead). Solved with the core's
finite volumes (:mod:`medtransport.numerics.finite_volume`: the operator and the face flux
are affine in C_p, assembled once at C_p = 0 and at C_p = 1) and Crank–Nicolson or backward
Euler with one factorization (:mod:`medtransport.numerics.linear`); C_p is linear between
steps, so the wall flux is booked with the same trapezoid the scheme uses and the books close
to round-off.

When D·(R_t − R_v)²⁻¹ ≫ P·S/V the EES is well mixed and the model reduces to Tofts' with
Ktrans = P·S/V (S/V = 2R_v/(R_t² − R_v²) for the cylinder, 1/L for a slab of depth L); when D
is small the uptake is diffusion-limited.

Optional convection (``interstitial_velocity`` v_w > 0): fluid filtered through the wall
flows outward through the EES with the pore velocity v(r) = v_w·R_v/r (cylinder; constant in
the slab), i.e. the Darcy flux ve·v, and drains at the outer face (to the lymphatics). It
carries the agent in at (1 − σ)·C_p (solvent drag, reflection coefficient σ; Kedem &
Katchalsky, *Biochim Biophys Acta* 1958;27:229) and out at the outer cell's C_e::

    ve·∂C_e/∂t = ∇·(ve·D·∇C_e) − ∇·(ve·v·C_e)

discretised by first-order upwind (:mod:`medtransport.numerics.advection`); its numerical
diffusion |v|·Δr/2 (Crank–Nicolson; (1 + C)·|v|·Δr/2 backward Euler) is reported against D by
the model's ``numerical_diffusion`` audit, which refuses a run whose grid adds more diffusion
than the physics has.

The five answers: it counts the agent in the EES (per metre of vessel for the cylinder, per m²
of wall for the slab); in the tissue grid; it enters and leaves through the vessel wall only;
conserved up to that (and, with convection, the drainage at the outer face); it starts with
the uniform ``initial_concentration`` in the EES.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
import pint
import scipy.sparse as sp
import xarray as xr
from pydantic import Field

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty
from medtransport_contrast import __version__
from medtransport_contrast.aif import MeasuredAIF, ParkerAIF, plasma_from_blood
from medtransport_contrast.quantities import Fraction

__all__ = ["VesselDiffusion", "VesselDiffusionParams"]


class VesselDiffusionParams(Params):
    """Parameters of ``contrast.vessel_diffusion`` (module docstring)."""

    # at most 1 m^2/s, and ve at least 1e-6: beyond either the implicit factor is singular
    diffusivity: Qty("m^2/s", gt=0, le=1.0)
    permeability: Qty("m/s", gt=0)
    ve: Annotated[Fraction, Field(ge=1e-6)]
    initial_concentration: Qty("mM", ge=0) = Q_(0.0, "mM")
    interstitial_velocity: Qty("m/s", ge=0) = Q_(0.0, "m/s")
    reflection_coefficient: Annotated[float, Field(ge=0, le=1)] = 0.0
    aif: Annotated[ParkerAIF | MeasuredAIF, Field(discriminator="kind")]


class VesselDiffusion(Model):
    #: what a person reads (medtransport.display): mM, µm for radii
    display_units: ClassVar[dict[str, str]] = {"concentration": "mM", "r": "µm",
                                               "radius": "µm"}
    id = "contrast.vessel_diffusion"
    title = "Contrast agent diffusing from a vessel into tissue"
    version = __version__
    description = ("A contrast agent crossing a capillary wall (permeability P) from plasma "
                   "at the arterial input and diffusing through the extravascular "
                   "extracellular space of a Krogh tissue cylinder or a slab, by the core's "
                   "finite volumes (Crank–Nicolson or backward Euler).")
    Params = VesselDiffusionParams
    conserved = (Species("agent", "concentration", "amount of contrast agent in the EES",
                         "the agent in the EES of the tissue around the vessel",
                         capacity="ees_fraction"),)
    tags = frozenset({"grid", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {"crank_nicolson": Tolerance(rtol=1e-9),
                                               "backward_euler": Tolerance(rtol=1e-9)}
    params: VesselDiffusionParams

    def build_domain(self) -> Grid:
        spec = self.scenario.domain
        problems = []
        grid = spec.build() if spec is not None else None
        if not isinstance(grid, Grid) or grid.ndim != 1 or grid.geometry == "sphere" or \
                (grid.geometry == "cylinder" and grid.lower[0] <= 0.0):
            problems.append(("domain", "a tissue cylinder (shape: cylinder, inner_radius: the "
                                       "vessel radius, radius: the tissue radius) or a 1-D box "
                                       "(a slab beside the vessel wall at x = 0)"))
        if self.params.ve <= 0:
            problems.append(("parameters.ve", "must be > 0"))
        if self.scenario.boundaries:
            problems.append(("boundaries", f"{self.id} sets its own: the vessel wall "
                                           "(permeable) and the symmetry plane (no flux)"))
        if problems:
            raise ScenarioError(problems)
        assert isinstance(grid, Grid)
        self.wall = f"{grid.dims[0]}-"
        self.outer = f"{grid.dims[0]}+"
        self.per = "m" if grid.geometry == "cylinder" else "m**2"
        return grid

    @property
    def grid(self) -> Grid:
        assert isinstance(self.domain, Grid)
        return self.domain

    def build_boundaries(self) -> dict[str, BoundaryCondition]:
        p = float(self.params.permeability.m_as("m/s"))
        return {self.wall: BoundaryCondition(self.wall, "permeable", value=1.0, coefficient=p,
                                             field_units="mM", flux_units="mmol/m**2/s"),
                self.outer: BoundaryCondition(self.outer, "no_flux")}

    def ledger_units(self) -> dict[str, str]:
        return {"agent": f"mol/{self.per}"}

    def routes(self) -> dict[str, list[str]]:
        out = [f"through the vessel wall ({self.wall}), permeability "
               f"{self.params.permeability:~P}, to and from plasma at the AIF"]
        if self.params.interstitial_velocity.magnitude > 0:
            out.append(f"convected out with the interstitial fluid at {self.outer} "
                       "(lymphatic drainage)")
        return {"agent": out}

    def face_flux(self) -> np.ndarray:
        """The Darcy flux ve·v (m/s) at every cell face: v_w·R_v/r on a cylinder, v_w on a
        slab."""
        grid = self.grid
        vw = float(self.params.interstitial_velocity.m_as("m/s"))
        edges = grid.edges(0)
        v = vw * grid.lower[0] / edges if grid.geometry == "cylinder" else np.full_like(edges,
                                                                                          vw)
        return float(self.params.ve) * v

    def audits(self) -> list[Any]:
        return [_numerical_diffusion]

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        w = float(np.sum(self.grid.weights))
        c0 = float(self.params.initial_concentration.m_as("mM"))
        # mM = mol/m³; times the cell measure (m² per metre of vessel, or m per m² of wall)
        return {"agent": Q_(c0 * float(self.params.ve) * w, f"mol/{self.per}")}

    def plasma_input(self, t: np.ndarray) -> np.ndarray:
        aif = self.params.aif
        hct = 0.42 if aif.hematocrit is None else float(aif.hematocrit)
        if isinstance(aif, ParkerAIF):
            return plasma_from_blood(aif.blood(t), hct)
        c = aif.curve(t)
        return plasma_from_blood(c, hct) if aif.medium == "blood" else c

    def _problem(self, outside: float) -> Any:
        from medtransport.numerics.finite_volume import DiffusionProblem

        ve = float(float(self.params.ve))
        bcs = dict(self.boundaries)
        bcs[self.wall] = BoundaryCondition(self.wall, "permeable", value=outside,
                                           coefficient=bcs[self.wall].coefficient)
        return DiffusionProblem(self.grid, ve * float(self.params.diffusivity.m_as("m^2/s")),
                                bcs, capacity=ve)

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        from medtransport.numerics.finite_volume import assemble, face_flux_operators
        from medtransport.numerics.linear import ImplicitSystem

        tg = self.scenario.time
        grid = self.grid
        ve = float(float(self.params.ve))
        t = tg.start.m_as("s") + np.arange(tg.n_steps + 1) * tg.dt
        cp = self.plasma_input(t)
        from medtransport.numerics.advection import upwind

        a, b0 = assemble(self._problem(0.0))
        _, b1 = assemble(self._problem(1.0))
        b1 = b1 - b0  # the wall's inflow per unit C_p
        wall0 = face_flux_operators(self._problem(0.0))[self.wall]
        wall1 = face_flux_operators(self._problem(1.0))[self.wall]
        per_cp = wall1.constant - wall0.constant  # outward flux = weights·u − per_cp·C_p
        adv = upwind(grid, self.face_flux())
        drag = 1.0 - float(self.params.reflection_coefficient)
        a = (a + adv.a).tocsr()
        b1 = b1 + drag * adv.inflow[self.wall]
        # advective outward fluxes: wall (−: the filtrate brings (1 − σ)·C_p in) and drainage
        wall_cell, drain_cell = adv.out_cell[self.wall], adv.out_cell[self.outer]
        wall_out, wall_in = adv.out_weight[self.wall], adv.in_weight[self.wall] * drag
        drain = adv.out_weight[self.outer]
        mass = np.broadcast_to(grid.weights, grid.cells).ravel() * ve
        dt = tg.dt
        theta = 1.0 if self.method == "backward_euler" else 0.5
        system = ImplicitSystem(sp.diags(mass) - (theta * dt) * a, grid.ndim)
        explicit = (sp.diags(mass) + ((1.0 - theta) * dt) * a).tocsr()
        u = np.full(mass.size, float(self.params.initial_concentration.m_as("mM")))
        keep = tg.output_steps()
        states = np.empty((keep.size, *grid.cells))
        outflow = np.zeros(keep.size)
        drained = np.zeros(keep.size)
        states[0] = u.reshape(grid.cells)
        total_out = 0.0
        total_drained = 0.0
        j = 1
        for k in range(tg.n_steps):
            c_eff = theta * cp[k + 1] + (1.0 - theta) * cp[k]
            new = system.solve(explicit @ u + dt * b1 * c_eff, u)
            u_eff = theta * new + (1.0 - theta) * u
            total_out += dt * (float(wall1.weights @ u_eff[wall1.cells]) - per_cp * c_eff
                               + wall_out * u_eff[wall_cell] - wall_in * c_eff)
            total_drained += dt * drain * u_eff[drain_cell]
            u = new
            if j < keep.size and keep[j] == k + 1:
                states[j] = u.reshape(grid.cells)
                outflow[j] = total_out
                drained[j] = total_drained
                j += 1
                if progress is not None:
                    progress((k + 1) / tg.n_steps)
        times = t[keep]
        stored = states.reshape(keep.size, -1) @ (np.broadcast_to(grid.weights, grid.cells)
                                                   .ravel() * ve)
        r = grid.centers(0)
        total_area = float(np.sum(grid.weights))
        plasma_area = np.pi * grid.lower[0] ** 2 if grid.geometry == "cylinder" else 0.0
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s", "long_name": "time"})}
        coords.update(grid.coords())
        ds = xr.Dataset({
            "concentration": (("time", grid.dims[0]), states,
                              {"units": "mM", "long_name": "EES concentration C_e"}),
            "ees_fraction": ((grid.dims[0],), np.full(r.size, ve),
                             {"units": "1", "long_name": "EES volume fraction ve"}),
            "aif_plasma": ("time", cp[keep], {"units": "mM",
                                              "long_name": "plasma concentration in the vessel"}),
            "tissue_concentration": ("time", stored / (total_area + plasma_area) + cp[keep]
                                     * (plasma_area / (total_area + plasma_area)),
                                     {"units": "mM", "long_name": "mean concentration over "
                                                                  "vessel and tissue"}),
        }, coords=coords)
        routes = {f"vessel wall {self.wall}": outflow}
        if drain > 0:
            routes[f"drainage {self.outer}"] = drained
        ledger = Ledger.of("agent", f"mol/{self.per}", keep.size, outflow=routes)
        return Trajectory(ds, {"agent": ledger})

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        ax1, ax2 = figure.subplots(1, 2)
        t = dataset["time"].values
        dim = self.grid.dims[0]
        x = dataset[dim].values * 1e6
        for i in np.unique(np.linspace(0, t.size - 1, 6).astype(int)):
            ax1.plot(x, dataset["concentration"].isel(time=i), label=f"t = {t[i]:.0f} s")
        ax1.set_xlabel(f"{'r' if dim == 'r' else 'distance from the wall'} [µm]")
        ax1.set_ylabel("EES concentration [mM]")
        ax1.set_title("agent spreading from the vessel")
        ax1.legend(fontsize="small")
        ax2.plot(t, dataset["aif_plasma"], label="plasma (AIF)")
        ax2.plot(t, dataset["tissue_concentration"], label="tissue mean")
        ax2.set_xlabel("time [s]")
        ax2.set_ylabel("concentration [mM]")
        ax2.set_title("arterial plasma input and the tissue's mean")
        ax2.legend(fontsize="small")
        if "agent_stored" in dataset:  # the books, stated where they are not plotted
            worst = float(np.max(np.abs(dataset["agent_residual"])))
            unit = dataset["agent_stored"].attrs["units"].replace("**", "^")
            ax2.text(0.98, 0.02, f"ledger: max |residual| {worst:.2g} {unit}",
                     transform=ax2.transAxes, ha="right", va="bottom", fontsize="x-small")
        figure.suptitle(self.scenario.name)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        base = {"model": cls.id,
                "domain": {"shape": "cylinder", "inner_radius": "4 um", "radius": "60 um",
                           "cells": [40]},
                "parameters": {"diffusivity": "1e-10 m^2/s", "permeability": "5e-7 m/s",
                               "ve": 0.3, "initial_concentration": "0.05 mM",
                               "aif": {"kind": "parker", "delay": "5 s"}},
                "time": {"stop": "120 s", "step": "0.5 s", "output_every": "5 s"}}
        return [{**base, "name": "Krogh cylinder, Crank–Nicolson"},
                {**base, "name": "slab beside a wall, backward Euler",
                 "domain": {"shape": "box", "size": ["100 um"], "cells": [50]},
                 "solver": {"method": "backward_euler"}},
                {**base, "name": "Krogh cylinder with interstitial convection and drainage",
                 "parameters": {**base["parameters"], "interstitial_velocity": "0.5 um/s",
                                "reflection_coefficient": 0.1}}]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        good = {"diffusivity": "1e-10 m^2/s", "permeability": "5e-7 m/s", "ve": 0.3,
                "aif": {"kind": "parker"}}
        return [({**good, "diffusivity": "1e-10 m/s"}, "diffusivity"),
                ({**good, "permeability": "5e-7 m^2/s"}, "permeability"),
                ({**good, "ve": 2}, "ve"),
                ({k: v for k, v in good.items() if k != "aif"}, "aif")]


def _numerical_diffusion(ctx: Any) -> list[Any]:
    """Upwind's numerical diffusion against the physical D (module docstring)."""
    from medtransport.audit import AuditResult
    from medtransport.numerics.advection import numerical_diffusion

    model = ctx.model
    assert isinstance(model, VesselDiffusion)
    grid = model.grid
    v = model.face_flux() / float(model.params.ve)
    d_num = float(np.max(numerical_diffusion(v, grid.spacing[0], model.scenario.time.dt,
                                             model.method)))
    d = float(model.params.diffusivity.m_as("m^2/s"))
    peclet = float(np.max(np.abs(v))) * grid.spacing[0] / d
    return [AuditResult("numerical_diffusion", d_num <= d, d_num, d, "m^2/s",
                        f"first-order upwind adds D_num = {d_num:.3g} m²/s ({model.method}) "
                        f"against the physical D = {d:.3g} m²/s (ratio {d_num / d:.3g}; cell "
                        f"Péclet number |v|·Δx/D = {peclet:.3g}); refine the grid if the ratio "
                        "exceeds 1")]
