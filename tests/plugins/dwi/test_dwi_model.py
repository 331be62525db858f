"""dwi.signal through the framework: outputs, ledger, ADC/DTI, errors, and one mutant per
audit (each a defect a real implementation has had: REFERENCES §4 and issue 6)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import failed_audits
from medtransport_dwi import narrow_pulse, sequence
from medtransport_dwi.model import DWISignal

PGSE = {"kind": "pgse", "pulse_duration": "10 ms", "pulse_separation": "30 ms"}


def scenario(compartments: list[dict[str, Any]], shells: list[dict[str, Any]], *,
             method: str = "matrix", walkers: int | None = None, **protocol: Any
             ) -> dict[str, Any]:
    solver: dict[str, Any] = {"method": method}
    if walkers:
        solver["walkers"] = walkers
    return {"name": "dwi test", "model": "dwi.signal",
            "parameters": {"protocol": {**PGSE, **protocol, "shells": shells},
                           "compartments": compartments},
            "solver": solver, "time": {"stop": "40 ms", "step": "0.2 ms",
                                       "output_every": "10 ms"}, "seed": 5}


FREE = {"kind": "free", "diffusivity": "2 um^2/ms"}
SPHERE = {"kind": "sphere", "radius": "5 um", "diffusivity": "2 um^2/ms"}
SHELLS = [{"b_value": "0 s/mm^2"}, {"b_value": "1000 s/mm^2", "directions": 3}]


def test_free_water_signal_adc_and_ledger() -> None:
    ds = run(scenario([FREE], [*SHELLS, {"b_value": "2500 s/mm^2", "directions": 2}]))
    b = ds["b_value"].values * 1e6
    np.testing.assert_allclose(ds["signal"].values, np.exp(-b * 2e-9), rtol=1e-12)
    np.testing.assert_allclose(ds["adc"].values, 2.0, rtol=1e-12)  # µm²/ms
    assert ds["spins_residual"].values.max() == 0.0
    assert ds.attrs["audit_status"] == "passed"


def test_dti_of_a_zeppelin_gives_its_eigenvalues() -> None:
    zeppelin = {"kind": "tensor", "diffusivity_parallel": "1.7 um^2/ms",
                "diffusivity_perpendicular": "0.5 um^2/ms", "orientation": [1, 1, 0]}
    ds = run(scenario([zeppelin], [{"b_value": "0 s/mm^2"},
                                   {"b_value": "1000 s/mm^2", "directions": 12}]))
    lam = np.array([1.7, 0.5, 0.5])
    md = lam.mean()
    fa = math.sqrt(1.5) * np.linalg.norm(lam - md) / np.linalg.norm(lam)
    assert float(ds["mean_diffusivity"]) == pytest.approx(md, rel=1e-9)
    assert float(ds["fractional_anisotropy"]) == pytest.approx(fa, rel=1e-9)
    axis = np.linalg.eigh(ds["diffusion_tensor"].values)[1][:, -1]
    assert abs(axis @ np.array([1, 1, 0]) / math.sqrt(2)) == pytest.approx(1.0, abs=1e-9)


def test_restricted_adc_falls_with_diffusion_time() -> None:
    shells = [{"b_value": "500 s/mm^2", "pulse_separation": f"{t} ms"} for t in (15, 30)]
    sc = scenario([SPHERE], shells)
    ds = run(sc)
    adc = ds["adc"].values
    assert adc[1] < adc[0] < 2.0


def test_monte_carlo_ledger_counts_walkers_per_compartment() -> None:
    lattice = {"kind": "sphere_lattice", "radius": "4 um", "spacing": "10 um",
               "diffusivity": "2 um^2/ms", "diffusivity_outside": "2 um^2/ms",
               "permeability": "0.05 um/ms"}
    ds = run(scenario([lattice], SHELLS, method="monte_carlo", walkers=2000))
    spins = ds["spins"].values  # (time, [inside, outside]) in S0 units
    np.testing.assert_allclose(spins.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert not np.array_equal(spins[0], spins[-1])  # walkers exchanged
    assert ds["signal"].values[0] == 1.0  # b = 0: every phase is zero


def test_monte_carlo_and_exact_agree_in_one_run() -> None:
    ds = run(scenario([{**SPHERE, "volume_fraction": 0.7}, {**FREE, "volume_fraction": 0.3}],
                      [*SHELLS, {"b_value": "3000 s/mm^2", "directions": 2}],
                      method="monte_carlo", walkers=6000))
    z = (ds["signal"] - ds["signal_exact"]) / np.maximum(ds["signal_standard_error"], 1e-300)
    assert np.all(np.abs(z.values[ds["b_value"].values > 0]) < 4)


@pytest.mark.parametrize(("change", "field"), [
    ({"compartments": [{**FREE, "volume_fraction": 0.4}, {**SPHERE, "volume_fraction": 0.4}]},
     "parameters.compartments"),
    ({"protocol": {**PGSE, "pulse_separation": "5 ms", "shells": SHELLS}},
     "parameters.protocol"),
    ({"protocol": {"kind": "pgse", "shells": SHELLS}}, "parameters.protocol"),
    ({"protocol": {**PGSE, "shells": [{"b_value": "1000 s/mm^2", "gradient_strength":
                                       "40 mT/m"}]}}, "parameters.protocol.shells.0"),
    ({"compartments": [{"kind": "sphere", "radius": "5 um/ms", "diffusivity": "2 um^2/ms"}]},
     "parameters.compartments.0"),
])
def test_bad_input_names_the_field(change: dict[str, Any], field: str) -> None:
    sc = scenario([FREE], SHELLS)
    sc["parameters"].update(change)
    with pytest.raises(ScenarioError) as exc:
        run(sc)
    assert any(p.startswith(field) for p, _ in exc.value.problems), exc.value.problems
    if field == "parameters.compartments.0":  # the bad radius
        assert any(p.endswith("radius") for p, _ in exc.value.problems)


def test_time_grid_must_cover_the_sequence() -> None:
    sc = scenario([FREE], SHELLS)
    sc["time"] = {"stop": "20 ms", "step": "0.1 ms"}
    with pytest.raises(ScenarioError) as exc:
        run(sc)
    assert exc.value.problems[0][0] == "time.stop"


def test_monte_carlo_steps_larger_than_the_pore_are_refused() -> None:
    sc = scenario([{**SPHERE, "radius": "0.5 um"}], SHELLS, method="monte_carlo", walkers=100)
    names = failed_audits(DWISignal, sc)
    assert names == ["stability[walker_step]"]


def test_echo_time_must_cover_the_encoding() -> None:
    sc = scenario([FREE], SHELLS, echo_time="35 ms")
    with pytest.raises(ScenarioError) as exc:
        run(sc)
    assert exc.value.problems[0][0] == "parameters.protocol.echo_time"


def test_lattices_need_monte_carlo() -> None:
    lattice = {"kind": "cylinder_lattice", "radius": "1 um", "spacing": "3 um",
               "diffusivity": "2 um^2/ms", "diffusivity_outside": "2 um^2/ms"}
    with pytest.raises(ScenarioError, match="monte_carlo"):
        run(scenario([lattice], SHELLS))


def test_general_waveform_protocol_runs_and_matches_pgse() -> None:
    step = 0.5
    n = int(40 / step)
    samples = [0.0] * n
    for i in range(int(10 / step)):
        samples[i] = 1.0
        samples[int(30 / step) + i] = -1.0
    wave = scenario([SPHERE], [{"b_value": "1000 s/mm^2", "directions": 2}])
    wave["parameters"]["protocol"] = {"kind": "waveform", "waveform": {
        "step": f"{step} ms", "samples": samples}, "shells": [{"b_value": "1000 s/mm^2",
                                                                "directions": 2}]}
    a = run(wave)["signal"].values
    b = run(scenario([SPHERE], [{"b_value": "1000 s/mm^2", "directions": 2}]))["signal"].values
    np.testing.assert_allclose(a, b, rtol=1e-9)


# --------------------------------------------------------------------------- mutants

def _mutant(**overrides: Any) -> type[DWISignal]:
    return type("BrokenDWI", (DWISignal,), overrides)


def test_b_value_with_delta_instead_of_delta_minus_delta_over_3_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sc = scenario([FREE], SHELLS)
    assert run(sc).attrs["audit_status"] == "passed"  # the control
    monkeypatch.setattr(sequence, "pgse_b_value",
                        lambda g, d, sep: sequence.GAMMA ** 2 * g ** 2 * d ** 2 * sep)
    assert "b_value" in failed_audits(DWISignal, sc)


def _planes_without_the_n_pi_terms(u: Any, n_terms: int) -> tuple[Any, Any]:
    """dmipy's defect: the term at qL = nπ evaluated as 0/0 and dropped."""
    u = np.abs(np.asarray(u, dtype=float))
    n = np.arange(1, n_terms + 1)[:, None] * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = 4 * u ** 2 * (1 - np.cos(n / math.pi * math.pi) * np.cos(u)) / \
            (u ** 2 - n ** 2) ** 2
    terms = np.where(np.abs(u ** 2 - n ** 2) < 1e-9, 0.0, np.nan_to_num(terms))
    first = 2 * (1 - np.cos(u)) / np.where(u > 0, u, 1.0) ** 2
    return np.where(u > 0, first, 1.0), terms


def test_plane_series_missing_its_n_pi_terms_is_caught(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    # qL = π exactly: G = π/(γδL)
    length, delta = 8e-6, 10e-3
    g = math.pi / (sequence.GAMMA * delta * length)
    sc = scenario([{"kind": "planes", "separation": "8 um", "diffusivity": "2 um^2/ms"}],
                  [{"b_value": "0 s/mm^2"},
                   {"gradient_strength": f"{g * 1e3!r} mT/m", "directions": [[1, 0, 0]]}],
                  method="narrow_pulse")
    assert run(sc).attrs["audit_status"] == "passed"  # the control
    monkeypatch.setattr(narrow_pulse, "planes_terms", _planes_without_the_n_pi_terms)
    names = failed_audits(DWISignal, sc)
    assert any(n.startswith("truncation[narrow_pulse_completeness") for n in names), names


def test_monte_carlo_that_drops_walkers_is_caught() -> None:
    def drop(self: DWISignal, index: int, c: Any, n: int) -> Any:
        cw = DWISignal._walk_compartment(self, index, c, n)
        # disimpy's defect: walkers that got stuck vanish from the average and the count
        keep = slice(0, n - max(1, n // 50))
        w = cw.walk
        w.integrals, w.start, w.end = w.integrals[keep], w.start[keep], w.end[keep]
        w.compartment = w.compartment[:, keep]
        return cw

    sc = scenario([SPHERE], SHELLS, method="monte_carlo", walkers=500)
    assert run(sc).attrs["audit_status"] == "passed"  # the control
    names = failed_audits(_mutant(_walk_compartment=drop), sc)
    assert "walker_count" in names and "mass_balance[spins]" in names, names


def _scaled_signal(factor: float, shift: complex = 0.0) -> Any:
    def simulate(self: DWISignal, progress: Any = None) -> Any:
        traj = DWISignal.simulate(self, progress)
        st = traj.states
        b = st["b_value"].values
        e = (st["signal"].values + 1j * st["signal_imaginary"].values) / self.params.s0
        e = np.where(b > 0, e * factor + shift, e)
        st["signal"].values[:] = e.real * self.params.s0
        st["signal_imaginary"].values[:] = e.imag * self.params.s0
        st["attenuation"].values[:] = np.abs(e)
        return traj
    return simulate


def test_sphere_signal_above_one_is_caught() -> None:
    # dmipy's sphere defect: |E| > 1
    sc = scenario([SPHERE], [*SHELLS, {"b_value": "20 s/mm^2"}])
    names = failed_audits(_mutant(simulate=_scaled_signal(1.05)), sc)
    assert "attenuation_bounds" in names, names


def test_cylinder_signal_of_zero_at_b0_is_caught() -> None:
    # dmipy's cylinder defect: E = 0 at q = 0
    def simulate(self: DWISignal, progress: Any = None) -> Any:
        traj = DWISignal.simulate(self, progress)
        traj.states["signal"].values[traj.states["b_value"].values == 0] = 0.0
        return traj

    cyl = {"kind": "cylinder", "radius": "2 um", "diffusivity": "2 um^2/ms"}
    names = failed_audits(_mutant(simulate=simulate), scenario([cyl], SHELLS))
    assert "signal_at_b0" in names, names


def test_spurious_imaginary_part_is_caught() -> None:
    sc = scenario([SPHERE], SHELLS, method="monte_carlo", walkers=2000)
    names = failed_audits(_mutant(simulate=_scaled_signal(1.0, 0.05j)), sc)
    assert "imaginary_part" in names, names


def test_signal_that_does_not_return_to_one_at_small_q_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # an attenuation floor (a factor 0.98 on every weighted signal) breaks E → 1 as q → 0
    from medtransport_dwi import compartments

    original = compartments.exact_attenuation

    def floored(c: Any, meas: Any, method: str, n_terms: Any = None) -> Any:
        e = original(c, meas, method, n_terms)
        return np.where(meas.b_value > 0, e * 0.98, e)

    sc = scenario([SPHERE], SHELLS)
    assert run(sc).attrs["audit_status"] == "passed"  # the control
    monkeypatch.setattr(compartments, "exact_attenuation", floored)
    assert "small_q_limit" in failed_audits(DWISignal, sc)
