""""Did you mean …?" for names a person types: model ids, field names, kinds, event types.

:func:`did_you_mean` ranks the known names by :class:`difflib.SequenceMatcher` similarity
(Ratcliff/Obershelp: 2·matches / total length) and proposes those above a cutoff, so
``clearence`` → ``clearance`` and ``pk.two_compartmnt`` → ``pk.two_compartment``, while a name
that resembles nothing gets no guess rather than a wrong one.

:func:`field_names_at` finds the fields a pydantic model accepts at an error's location (for a
misspelt *optional* field, which pydantic reports only as "extra"), by walking the model's JSON
Schema along the location — through ``$ref``, lists, mappings and tagged unions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["close_matches", "did_you_mean", "field_names_at", "quoted_names"]

#: Similarity (0–1) a known name needs to be proposed.
CUTOFF = 0.6


def close_matches(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names most like ``word``, best first (case-insensitive)."""
    known = [str(k) for k in known]
    lowered = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(str(word).lower(), list(lowered), n=n, cutoff=CUTOFF)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'clearance'?"`` — or ``""`` when nothing is close."""
    hits = close_matches(word, known)
    if not hits:
        return ""
    if len(hits) == 1:
        return f"; did you mean {hits[0]!r}?"
    return "; did you mean " + ", ".join(repr(h) for h in hits[:-1]) + f" or {hits[-1]!r}?"


def quoted_names(text: str) -> list[str]:
    """The names quoted in a pydantic message: ``"'spgr' or 'ct'"`` → ``['spgr', 'ct']``."""
    return re.findall(r"'([^']*)'", str(text))


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node


def _variants(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    members = node.get("oneOf") or node.get("anyOf") or node.get("allOf") or []
    out = []
    for m in members:
        m = _resolve(m, defs)
        out += _variants(m, defs) if any(k in m for k in ("oneOf", "anyOf", "allOf")) else [m]
    return out


def _step(node: Any, p: Any, defs: dict[str, Any]) -> tuple[Any, bool]:
    """One location item down the schema: (next node, whether ``p`` was a union's tag)."""
    node = _resolve(node, defs)
    if not isinstance(node, dict):
        return None, False
    if isinstance(p, str) and p in node.get("properties", {}):
        return node["properties"][p], False
    if isinstance(p, int) and "items" in node:
        return node["items"], False
    variants = _variants(node, defs)
    if variants:
        mapping = (node.get("discriminator") or {}).get("mapping") or {}
        if p in mapping:
            return _resolve({"$ref": mapping[p]}, defs), True
        for v in variants:  # a tag by its constant (`kind: parker`) or by a property
            for prop in v.get("properties", {}).values():
                if isinstance(prop, dict) and prop.get("const") == p:
                    return v, True
        for v in variants:
            nxt, tag = _step(v, p, defs)
            if nxt is not None:
                return nxt, tag
        return node, True  # pydantic's own tag (`function-after[…]`): stay
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra, False
    return None, False


def field_names_at(schema: dict[str, Any], loc: Sequence[Any]) -> list[str]:
    """The field names the schema accepts at pydantic location ``loc`` (the location of the
    container, e.g. ``('aif', 'parker')`` for an unknown ``parameters.aif.hemaocrit``)."""
    defs = schema.get("$defs", {})
    node: Any = schema
    for p in loc:
        node, _ = _step(node, p, defs)
        if node is None:
            return []
    node = _resolve(node, defs)
    if not isinstance(node, dict):
        return []
    names = list(node.get("properties", {}))
    for v in _variants(node, defs):
        names += [n for n in v.get("properties", {}) if n not in names]
    return names
