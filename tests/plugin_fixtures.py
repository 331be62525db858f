"""What the plugin, limit and path tests share: a small valid scenario, a clean plugin
registry around each test, and a stand-in plugin module built from functions."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from medtransport.plugins import reset_registry

#: a 10-cell diffusion slab that runs in milliseconds
SLAB: dict[str, Any] = {
    "name": "slab",
    "model": "diffusion.fick",
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [10]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 umol/cm^2"}},
    "time": {"stop": "10 s", "step": "1 s"},
}


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def plugin_module(name: str, **functions: object) -> types.ModuleType:
    """A module named ``name`` holding ``functions`` (hook implementations) as attributes."""
    mod = types.ModuleType(name)
    for key, fn in functions.items():
        setattr(mod, key, fn)
    return mod
