"""Every built-in model passes the conformance suite that third parties run."""

from __future__ import annotations

import medtransport
from medtransport.testing import parametrize_with_checks

BUILTIN = sorted(medtransport.models())


def test_there_are_builtin_models() -> None:
    assert "diffusion.fick" in BUILTIN


@parametrize_with_checks(BUILTIN)
def test_conformance(model_check) -> None:  # type: ignore[no-untyped-def]
    model_check()
