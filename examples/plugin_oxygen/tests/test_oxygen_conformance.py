"""oxygen.krogh passes medtransport's conformance suite, as every model must."""

from __future__ import annotations

from medtransport.testing import parametrize_with_checks


@parametrize_with_checks(["oxygen.krogh"])
def test_conformance(model_check) -> None:  # type: ignore[no-untyped-def]
    model_check()
