"""Plugin isolation (issue 20): no plugin can take the command down, and a failed run never
exits 0.

Each test builds a broken plugin — by hand (:func:`register_plugin`) or as an installed
distribution whose entry point the registry discovers — and checks that the failure is caught
at the plugin boundary, names the plugin, and leaves the other plugins' models working.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from medtransport.audit import AuditResult
from medtransport.cli import main
from medtransport.errors import AuditFailure, ModelError, PluginError
from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport.plugins import get_registry, register_plugin
from medtransport.runner import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plugin_fixtures import SLAB, fresh_registry  # noqa: F401  (autouse fixture)
from plugin_fixtures import plugin_module as _plugin


def _rogue_model(monkeypatch: pytest.MonkeyPatch, simulate: Any = None,
                 audits: Any = None, plugin: str = "rogue", version: str = "6.6") -> str:
    """Register plugin ``rogue`` with a model ``rogue.fick`` (Fick diffusion with the given
    ``simulate`` and ``audits``); returns the module name its class lives in."""
    from medtransport_diffusion.model import FickDiffusion

    attrs: dict[str, Any] = {"id": "rogue.fick"}
    if simulate is not None:
        attrs["simulate"] = simulate
    if audits is not None:
        attrs["audits"] = audits
    cls = type("Rogue", (FickDiffusion,), attrs)
    mod = types.ModuleType("rogue_models_for_tests")
    mod.Rogue = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)

    @hookimpl
    def medtransport_models() -> list[ModelSpec]:
        return [ModelSpec("rogue.fick", f"{mod.__name__}:Rogue", "rogue", "1")]

    register_plugin(_plugin(plugin, medtransport_models=medtransport_models), plugin, version)
    return mod.__name__


def _scenario(tmp_path: Path, model: str = "rogue.fick", **extra: Any) -> Path:
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SLAB, "model": model, **extra}))
    return path


# ------------------------------------------------------------------ simulate and own audits

@pytest.mark.parametrize("exc", [SystemExit(0), SystemExit(None), SystemExit("bye"),
                                 GeneratorExit(), BaseException("odd")])
def test_simulate_raising_any_base_exception_is_a_model_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: BaseException) -> None:
    def simulate(self: Any, progress: Any = None) -> Any:
        raise exc

    _rogue_model(monkeypatch, simulate=simulate)
    with pytest.raises(ModelError, match=r"rogue\.fick \(plugin rogue 6\.6\)"):
        run(_scenario(tmp_path))


def test_run_never_exits_0_when_simulate_calls_sys_exit_0(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def simulate(self: Any, progress: Any = None) -> Any:
        sys.exit(0)

    _rogue_model(monkeypatch, simulate=simulate)
    out = tmp_path / "out.nc"
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path)), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert "plugin rogue 6.6" in result.output and "SystemExit" in result.output
    assert not out.exists()


@pytest.mark.parametrize("returned", [None, {"states": 1}, 42])
def test_simulate_returning_no_trajectory_is_exit_3_naming_plugin(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, returned: Any) -> None:
    def simulate(self: Any, progress: Any = None) -> Any:
        return returned

    _rogue_model(monkeypatch, simulate=simulate)
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path))])
    assert result.exit_code == 3, result.output
    assert "plugin rogue 6.6" in result.output
    assert "expected a Trajectory" in result.output


@pytest.mark.parametrize("exc", [RuntimeError("own audit broke"), SystemExit(0)])
def test_a_models_own_audit_raising_is_exit_3_naming_plugin(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exc: BaseException) -> None:
    def broken(ctx: Any) -> list[AuditResult]:
        raise exc

    _rogue_model(monkeypatch, audits=lambda self: [broken])
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path))])
    assert result.exit_code == 3, result.output
    assert "plugin rogue 6.6" in result.output


def test_a_models_audit_returning_garbage_is_exit_3(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    _rogue_model(monkeypatch, audits=lambda self: [lambda ctx: "all fine"])
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path))])
    assert result.exit_code == 3, result.output
    assert "expected a list of AuditResult" in result.output


def test_set_up_raising_system_exit_names_the_plugin(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    def build_domain(self: Any) -> Any:
        raise SystemExit(0)

    from medtransport_diffusion.model import FickDiffusion

    monkeypatch.setattr(FickDiffusion, "build_domain", build_domain)
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, "diffusion.fick"))])
    assert result.exit_code == 3, result.output
    assert "plugin diffusion" in result.output and "set up" in result.output


def test_a_stray_system_exit_in_the_cli_is_an_internal_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Defence in depth: were a SystemExit(0) to escape every boundary, the command still
    fails (exit 70) instead of reporting success."""
    import medtransport.runner

    def prepare(*args: Any, **kw: Any) -> Any:
        raise SystemExit(0)

    monkeypatch.setattr(medtransport.runner, "prepare", prepare)
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, "diffusion.fick"))])
    assert result.exit_code == 70, result.output


# ------------------------------------------------------------------ the audits hook

def _broken_hook(behaviour: str) -> Any:
    @hookimpl
    def medtransport_audits(model: Any) -> Any:
        if behaviour == "raise":
            raise RuntimeError("hook boom")
        if behaviour == "exit":
            raise SystemExit(0)
        if behaviour == "string":
            return "not a list"
        return [42]

    return medtransport_audits


@pytest.mark.parametrize("behaviour", ["raise", "exit", "string", "non-callables"])
def test_a_broken_audits_hook_is_skipped_for_other_plugins_models(behaviour: str) -> None:
    register_plugin(_plugin("crashy", medtransport_audits=_broken_hook(behaviour)),
                    "crashy", "0.3")
    ds = run(SLAB)  # diffusion.fick is not crashy's: the hook is skipped, the run passes
    assert ds.attrs["audit_status"] == "passed"
    reg = get_registry()
    assert "crashy" in reg.broken_hooks
    assert any("crashy 0.3" in w and "diffusion.fick" in w for w in reg.warnings)


@pytest.mark.parametrize("behaviour", ["raise", "string"])
def test_a_broken_audits_hook_fails_its_own_plugins_models(
        monkeypatch: pytest.MonkeyPatch, behaviour: str) -> None:
    @hookimpl
    def medtransport_models() -> list[ModelSpec]:
        return [ModelSpec("crashy.fick", "rogue_models_for_tests:Rogue")]

    from medtransport_diffusion.model import FickDiffusion

    mod = types.ModuleType("rogue_models_for_tests")
    mod.Rogue = type("Rogue", (FickDiffusion,), {"id": "crashy.fick"})  # type: ignore
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    register_plugin(_plugin("crashy", medtransport_models=medtransport_models,
                            medtransport_audits=_broken_hook(behaviour)), "crashy", "0.3")
    with pytest.raises(PluginError, match=r"plugin crashy 0\.3: medtransport_audits"):
        run({**SLAB, "model": "crashy.fick"})


def test_models_lists_a_broken_audits_hook_and_still_lists_every_model() -> None:
    register_plugin(_plugin("crashy", medtransport_audits=_broken_hook("raise")),
                    "crashy", "0.3")
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert "diffusion.fick" in result.output and "pk.one_compartment" in result.output
    assert "broken hook" in result.output and "crashy" in result.output


def test_a_plugin_audit_that_raises_is_a_failure_of_the_run_naming_the_plugin() -> None:
    def explodes(ctx: Any) -> list[AuditResult]:
        raise SystemExit(0)

    @hookimpl
    def medtransport_audits(model: Any) -> list[Any]:
        return [explodes]

    register_plugin(_plugin("strict", medtransport_audits=medtransport_audits), "strict", "1.1")
    with pytest.raises(ModelError, match=r"plugin strict 1\.1: audit 'explodes'"):
        run(SLAB)


def test_a_plugin_audit_that_fails_fails_the_run_naming_the_plugin() -> None:
    def says_no(ctx: Any) -> list[AuditResult]:
        return [AuditResult("extra[no]", False, 1.0, 0.0, detail="no")]

    @hookimpl
    def medtransport_audits(model: Any) -> list[Any]:
        return [says_no]

    register_plugin(_plugin("strict", medtransport_audits=medtransport_audits), "strict")
    with pytest.raises(AuditFailure) as info:
        run(SLAB)
    assert [r.source for r in info.value.report.failures] == ["strict"]


# ------------------------------------------------------------------ hooks at load time

@pytest.mark.parametrize("hook", ["medtransport_models", "medtransport_define_units"])
def test_system_exit_in_a_load_time_hook_breaks_only_that_plugin(hook: str) -> None:
    def exits(**kw: Any) -> Any:
        raise SystemExit(3)

    register_plugin(_plugin("quitter", **{hook: hookimpl(exits)}), "quitter", "0.1")
    reg = get_registry()
    assert [b.name for b in reg.broken] == ["quitter"]
    assert "SystemExit" in reg.broken[0].reason
    assert "diffusion.fick" in reg.models


# ------------------------------------------------------------------ installed plugins

def _install(tmp_path: Path, dist: str, version: str, module: str, source: str,
             ep_name: str | None = None) -> None:
    info = tmp_path / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        f"[medtransport]\n{ep_name or dist} = {module}\n")
    (tmp_path / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.startswith("mt_test_")]:
        del sys.modules[name]


@pytest.mark.parametrize("body", ["raise SystemExit(0)", "import sys; sys.exit(2)",
                                  "raise KeyError('x')"])
def test_a_plugin_ending_the_process_at_import_is_reported(site: Path, body: str) -> None:
    _install(site, "quitter", "0.9", "mt_test_quitter", body + "\n")
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert "diffusion.fick" in result.output
    assert "broken plugin quitter 0.9" in result.output


def test_a_plugin_parsing_argv_at_import_cannot_take_over_the_command_line(
        site: Path, tmp_path: Path) -> None:
    _install(site, "greedy", "1.0", "mt_test_greedy",
             "import argparse\n"
             "p = argparse.ArgumentParser()\n"
             "p.add_argument('cmd')\n"
             "p.parse_args()\n")
    out = tmp_path / "out.nc"
    # The real argv during a command is the command line, which the plugin would parse.
    argv = sys.argv
    sys.argv = ["medtransport", "run", str(_scenario(tmp_path, "diffusion.fick")), "-o",
                str(out)]
    try:
        result = CliRunner().invoke(main, sys.argv[1:])
    finally:
        sys.argv = argv
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "usage:" not in result.output
    assert any(b.name == "greedy" for b in get_registry().broken)


_THIEF = ("from medtransport.hookspecs import ModelSpec, hookimpl\n"
          "@hookimpl\n"
          "def medtransport_models():\n"
          "    return [ModelSpec('diffusion.fick', 'mt_test_thief:Nothing'),\n"
          "            ModelSpec('thief.other', 'mt_test_thief:Nothing')]\n")


@pytest.mark.parametrize("ep_name", ["aaa", "zzz"])
def test_a_third_party_cannot_take_over_a_builtin_model_id(site: Path, tmp_path: Path,
                                                           ep_name: str) -> None:
    """Whatever the entry points' order (the thief's sorts first or last, and its
    distribution is first on sys.path), the built-in keeps its id and the newcomer is the
    one refused."""
    _install(site, "thief", "6.6", "mt_test_thief", _THIEF, ep_name=ep_name)
    reg = get_registry()
    assert reg.models["diffusion.fick"].plugin == "diffusion"
    assert [b.name for b in reg.broken] == [ep_name]
    assert "already registered by diffusion" in reg.broken[0].reason
    result = CliRunner().invoke(main, ["run", str(_scenario(tmp_path, "diffusion.fick"))])
    assert result.exit_code == 0, result.output
    assert f"plugin {ep_name} also registers the model id 'diffusion.fick'" in result.output


def test_two_third_parties_colliding_are_decided_by_name_not_install_order(
        site: Path) -> None:
    src = ("from medtransport.hookspecs import ModelSpec, hookimpl\n"
           "@hookimpl\n"
           "def medtransport_models():\n"
           "    return [ModelSpec('shared.model', 'x:Y')]\n")
    # 'zeta' is installed first (first on sys.path), 'alpha' second: alpha still wins.
    _install(site, "zeta", "1", "mt_test_zeta", src)
    _install(site, "alpha", "1", "mt_test_alpha", src)
    reg = get_registry()
    assert reg.models["shared.model"].plugin == "alpha"
    assert [b.name for b in reg.broken] == ["zeta"]
