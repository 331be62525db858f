"""A bad-input corpus (issue 20): a few hundred mutations of the example scenarios, each run
through ``medtransport run`` in a forked child under a memory cap (RLIMIT_AS) and a timeout,
and judged against the promise:

- never a crash: the exit code is 0, 1 (an audit refused the result) or 2 (bad input) — not
  3 (a model crashed on input it should have refused), 70 (internal error), a signal, a
  memory blow-up or a hang;
- exit 2 is one paragraph on stderr, starting ``error:``, without a traceback, naming the
  mutated field (its key, or the dotted path);
- a mutation that can only be invalid (a boolean or a map where a number belongs, a unit of
  an impossible dimension, NaN, an unknown section key, an over-long quantity) exits 2: exit 0
  is for valid input only.

The mutations are generated from a fixed seed, so a failure names a reproducible case
(``ids`` show example, path and mutation). Children run two at a time.
"""

from __future__ import annotations

import copy
import json
import os
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
#: Quick examples of every plugin (under a second each); slow ones add cost, not coverage.
BASES = ["dye_tissue_slab.yaml", "dye_tissue_slab_repeated.yaml", "implant_sphere_release.yaml",
         "theophylline_oral.yaml", "vancomycin_infusion_q12h.yaml",
         "contrast_brain_tumour_extended_tofts.yaml", "contrast_capillary_krogh_cylinder.yaml",
         "contrast_gadolinium_24h_renal_impairment.yaml", "bioheat_limb_hyperthermia.yaml",
         "noise_phantom_sigmoid.yaml", "dwi_prostate_tumour.yaml"]
PER_EXAMPLE = 21
#: Address space a child may map beyond what the forked test process already maps.
MEMORY_CAP = 4 * 2**30
TIMEOUT = 60.0
#: Kinds of mutation whose result can only be invalid input.
INVALID = {"bool", "map", "nan", "impossible_unit", "unknown_key", "long_quantity"}


@dataclass(frozen=True)
class Mutation:
    example: str
    path: tuple[str | int, ...]
    kind: str
    scenario: dict[str, Any]

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.path))

    def __str__(self) -> str:
        return f"{self.example.removesuffix('.yaml')}:{self.dotted}:{self.kind}"


def _leaves(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = []
    if isinstance(node, dict):
        if path:
            out.append((path, node))
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    else:
        out.append((path, node))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _quantity(value: Any) -> bool:
    return isinstance(value, str) and value[:1] in "+-.0123456789" and " " in value.strip()


def _in_event_or_free_map(path: tuple[Any, ...]) -> bool:
    # Events keep extra keys for the model to read; tissues/probes/... are user-named maps.
    return (bool(path) and path[0] in ("events",)) or any(
        p in ("tissues", "probes", "correlations", "variability", "boundaries", "select")
        for p in path)


def _mutate(rng: random.Random, example: str, base: dict[str, Any]) -> Mutation | None:
    leaves = _leaves(base)
    path, value = rng.choice(leaves)
    kinds = ["bool", "map", "delete", "huge", "tiny", "negative", "zero", "list", "nul"]
    if _quantity(value):
        kinds += ["nan", "impossible_unit", "long_quantity", "wrong_unit", "scale"] * 2
    if isinstance(value, dict) and not _in_event_or_free_map(path):
        kinds += ["unknown_key"] * 2
    if isinstance(value, bool) or (isinstance(value, int | float) and not isinstance(value, bool)):
        kinds += ["scale", "bool"]
    kind = rng.choice(kinds)
    sc = copy.deepcopy(base)
    number, _, unit = value.strip().partition(" ") if _quantity(value) else ("1", "", "")
    if kind == "bool":
        if isinstance(value, bool) or not (_quantity(value) or isinstance(value, int | float)):
            return None  # a boolean is only surely wrong where a number belongs
        new: Any = rng.choice([True, False])
    elif kind == "map":
        if isinstance(value, dict):
            return None
        new = {"zz": 1}
    elif kind == "delete":
        parent = sc
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
        return Mutation(example, path, kind, sc)
    elif kind == "huge":
        new = f"1e300 {unit}".strip() if unit else 1e300
    elif kind == "tiny":
        new = f"1e-300 {unit}".strip() if unit else 1e-300
    elif kind == "negative":
        new = f"-{number.lstrip('+-')} {unit}".strip() if unit else -abs(float(
            value)) if isinstance(value, int | float) and not isinstance(value, bool) else -1
    elif kind == "zero":
        new = f"0 {unit}".strip() if unit else 0
    elif kind == "list":
        new = [value, value, value]
    elif kind == "nul":
        new = (value if isinstance(value, str) else "x") + "\x00"
    elif kind == "nan":
        new = f"nan {unit}"
    elif kind == "impossible_unit":
        new = f"{number} kg^7*cd^3"
    elif kind == "long_quantity":
        new = f"{number}{'0' * 400} {unit}"
    elif kind == "wrong_unit":
        new = f"{number} {rng.choice(['kg', 's', 'm', 'mol', 'K', 'W', 'L/h'])}"
    elif kind == "scale":
        factor = rng.choice([1e-6, 1e6, 1e12])
        new = f"{float(number) * factor:g} {unit}".strip() if unit else float(value) * factor
    elif kind == "unknown_key":
        new = {**value, "zz_unknown_key": 1}
    else:  # pragma: no cover
        raise AssertionError(kind)
    _set(sc, path, new)
    return Mutation(example, path, kind, sc)


def corpus() -> list[Mutation]:
    rng = random.Random(20)
    out: list[Mutation] = []
    for example in BASES:
        base = yaml.safe_load((EXAMPLES / example).read_text(encoding="utf-8"))
        made: list[Mutation] = []
        seen: set[str] = set()
        while len(made) < PER_EXAMPLE:
            m = _mutate(rng, example, base)
            if m is not None and str(m) not in seen:
                seen.add(str(m))
                made.append(m)
        out += made
    return out


# ------------------------------------------------------------------------------ the children

def _address_space() -> int:
    """This process's virtual memory now (bytes): the cap is set above it, since a test
    process that loaded dask, numba and zarr already maps gigabytes it never touches."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(path: Path, out: Path) -> None:
    """Run ``medtransport run PATH`` in this (forked) process, stdout and stderr into ``out``,
    and exit with the command's code."""
    cap = _address_space() + MEMORY_CAP
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # pytest's capture replaced sys.stdout/err; write to the file descriptors again
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
    code = 70
    try:
        from medtransport.cli import main

        main(["run", str(path), "-q"], prog_name="medtransport", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_all(mutations: list[Mutation], directory: Path) -> dict[str, tuple[int | str, str]]:
    """Run every mutation in a forked child, two at a time: name → (exit code or
    "timeout"/"signal N", output)."""
    results: dict[str, tuple[int | str, str]] = {}
    pending = list(enumerate(mutations))
    running: dict[int, tuple[int, float, Path]] = {}
    while pending or running:
        while pending and len(running) < 2:
            i, m = pending.pop(0)
            case = directory / f"case{i}.json"
            case.write_text(json.dumps(m.scenario))
            out = directory / f"case{i}.out"
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _child(case, out)
            running[pid] = (i, time.monotonic(), out)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for child, (_, started, _) in list(running.items()):
                if time.monotonic() - started > TIMEOUT:
                    os.kill(child, signal.SIGKILL)
            time.sleep(0.005)
            continue
        i, started, out = running.pop(pid)
        text = out.read_text(encoding="utf-8", errors="replace")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            code: int | str = "timeout" if sig == signal.SIGKILL and \
                time.monotonic() - started > TIMEOUT else f"signal {sig}"
        else:
            code = os.WEXITSTATUS(status)
        results[str(mutations[i])] = (code, text)
    return results


def _names_field(text: str, m: Mutation) -> bool:
    """The message names the mutated key, or a field enclosing it (``boundaries.r+`` for a
    bad transfer coefficient: the face's check names the face)."""
    keys = [str(p) for p in m.path if isinstance(p, str)]
    parts = [str(p) for p in m.path]
    enclosing = [".".join(parts[:n]) for n in range(2, len(parts) + 1)]
    return (bool(keys) and keys[-1] in text) or any(f"{e}:" in text for e in enclosing) or \
        (len(parts) == 1 and parts[0] in text)


def _judge(m: Mutation, code: int | str, text: str) -> str | None:
    """What breaks the promise in this outcome, or None."""
    if code not in (0, 1, 2):
        return f"exit {code}"
    if code == 2:
        if "Traceback" in text or not text.lstrip().startswith("error:"):
            return "exit 2 without a one-paragraph error"
        if not _names_field(text, m):
            return "exit 2 without naming the field"
    elif m.kind in INVALID:
        return f"exit {code} for input that can only be invalid"
    return None


MUTATIONS = corpus()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int | str, str]]:
    # Warm the numba caches once here, so that every child starts compiled.
    from medtransport.runner import run

    for example in BASES:
        run(EXAMPLES / example)
    return _run_all(MUTATIONS, tmp_path_factory.mktemp("corpus"))


def test_the_corpus_is_a_few_hundred_distinct_mutations_of_every_plugin() -> None:
    assert len(MUTATIONS) >= 220 and len({str(m) for m in MUTATIONS}) == len(MUTATIONS)
    models = {yaml.safe_load((EXAMPLES / b).read_text())["model"].split(".")[0] for b in BASES}
    assert models >= {"diffusion", "pk", "contrast", "bioheat", "noise", "dwi"}
    assert sum(m.kind in INVALID for m in MUTATIONS) >= 60


@pytest.mark.slow
def test_every_mutation_keeps_the_bad_input_promise(
        outcomes: dict[str, tuple[int | str, str]]) -> None:
    broken = {}
    for m in MUTATIONS:
        code, text = outcomes[str(m)]
        problem = _judge(m, code, text)
        if problem:
            broken[str(m)] = f"{problem}: {text.strip()[-300:]}"
    assert not broken, f"{len(broken)} of {len(MUTATIONS)} broke the promise:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(broken.items()))
