"""Shared pieces of the report tests: the example results, a leaking mutant, and a small HTML
reader (the standard library's parser) that finds what an auditor would look at."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import xarray as xr

import medtransport as mt
from medtransport.plugins import get_registry
from medtransport.testing import build_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
DYE = EXAMPLES / "dye_tissue_slab.yaml"
VANCOMYCIN = EXAMPLES / "vancomycin_infusion_q12h.yaml"
POPULATION = EXAMPLES / "vancomycin_population.yaml"
FIVE_QUESTIONS = ("what is counted", "where", "what may leave", "what is conserved",
                  "how much it starts with")


def leaky_class() -> Any:
    """diffusion.fick losing 10 % of its solute after t0 without booking it: a leak the
    mass-balance audit must catch."""
    base = get_registry().model_class("diffusion.fick")

    def simulate(self: Any, progress: Any = None) -> Any:
        traj = base.simulate(self, progress)
        for sp in self.conserved:
            var = traj.states[sp.variable]
            factor = xr.DataArray([1.0] + [0.9] * (var.sizes["time"] - 1), dims="time")
            traj.states[sp.variable] = (var * factor).assign_attrs(var.attrs)
        return traj

    return type("LeakyFick", (base,), {"simulate": simulate})


def leaky_failure() -> tuple[mt.AuditFailure, Any]:
    """The AuditFailure of the leaking mutant on the dye example, and its model."""
    model = build_model(leaky_class(), mt.load_scenario(DYE))
    try:
        mt.run(model)
    except mt.AuditFailure as exc:
        return exc, model
    raise AssertionError("the leaking mutant passed its audits")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        out = []
        for child in self.children:
            if child.tag == tag and all(
                    v in (child.attrs.get(k.rstrip("_")) or "").split() if k == "class_"
                    else child.attrs.get(k) == v for k, v in attrs.items()):
                out.append(child)
            out.extend(child.find_all(tag, **attrs))
        return out

    def by_id(self, ident: str) -> Element:
        for child in self.children:
            if child.attrs.get("id") == ident:
                return child
            try:
                return child.by_id(ident)
            except KeyError:
                pass
        raise KeyError(ident)

    @property
    def all_text(self) -> str:
        return " ".join(" ".join([self.text, *(c.all_text for c in self.children)]).split())


_VOID = {"meta", "img", "br", "hr", "link", "input", "source"}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(el)
        if tag not in _VOID:
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(html: str) -> Element:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.root


def scenario_copy(path: Path, **changes: Any) -> dict[str, Any]:
    import yaml

    data = copy.deepcopy(yaml.safe_load(path.read_text()))
    data.update(changes)
    return data
