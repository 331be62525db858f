"""Signal models: relaxivity table, spoiled gradient echo, CT enhancement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport_contrast.dce_model import DCE
from medtransport_contrast.signal import (
    RELAXIVITY,
    SPGRSignal,
    concentration_from_spgr,
    ct_enhancement,
    r1_of,
    spgr,
)


def test_relaxivity_table_is_the_cited_one() -> None:
    """REFERENCES §2 (Rohrer 2005): r1 in s⁻¹mM⁻¹ at 1.5 T / 3 T."""
    expected = {"gadoterate": (3.6, 3.5), "gadobutrol": (5.2, 5.0), "gadoxetate": (8.1, 6.4)}
    for agent, (low, high) in expected.items():
        assert r1_of(agent, 1.5) == low and r1_of(agent, 3.0) == high
    assert set(RELAXIVITY) == set(expected)
    with pytest.raises(ValueError, match="not 7 T"):
        r1_of("gadobutrol", 7.0)


def test_spgr_limits_and_ernst_angle() -> None:
    tr, r1 = 0.005, 1.0 / 1.2
    # full relaxation (R1 → ∞): S = M0·sin α
    assert float(spgr(np.array(1e9), tr, math.radians(30))) == pytest.approx(math.sin(
        math.radians(30)))
    # the signal is largest at the Ernst angle cos α_E = E1 (Ernst & Anderson 1966)
    angles = np.radians(np.linspace(0.5, 30, 5901))
    s = spgr(np.full_like(angles, r1), tr, angles)
    ernst = math.acos(math.exp(-tr * r1))
    assert angles[s.argmax()] == pytest.approx(ernst, abs=np.radians(0.01))


def test_spgr_inversion_round_trip() -> None:
    c = np.linspace(0.0, 5.0, 11)
    r10, r1, tr, fa = 1 / 1.4, 5.0, 0.004, math.radians(20)
    s = spgr(r10 + r1 * c, tr, fa, m0=1234.0)
    back = concentration_from_spgr(s, float(s[0]), r10, r1, tr, fa)
    np.testing.assert_allclose(back, c, atol=1e-10)


def test_ct_enhancement_per_iodine() -> None:
    """1 mg I/mL = 1000/126.904 mM; at 25 HU per mg/mL that is 25 HU."""
    assert float(ct_enhancement(np.array(1000.0 / 126.904), 25.0)) == pytest.approx(25.0)


def test_spgr_needs_a_tabulated_field_or_a_relaxivity() -> None:
    base = {"kind": "spgr", "agent": "gadobutrol", "t1_tissue": "1 s",
            "repetition_time": "5 ms", "flip_angle": "30 deg"}
    assert SPGRSignal(**base, field_strength="3 T").r1 == 5.0
    assert SPGRSignal(**base, field_strength="7 T", relaxivity="4.1 L/mmol/s").r1 == \
        pytest.approx(4.1)
    params = {"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2,
              "aif": {"kind": "parker"}, "signal": {**base, "field_strength": "7 T"}}
    with pytest.raises(ScenarioError, match=r"parameters\.signal.*relaxivity"):
        DCE.validate_params(params)
