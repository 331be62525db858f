"""Meta-tests of the plugin API: every hook specification is documented (in its module and in
the plugin author guide, with when it is called and what it returns) and exercised by a test;
the conformance checks, the pytest fixtures, the model contract and the hook API version are
documented where plugin authors read."""

from __future__ import annotations

import ast
import functools
import inspect
import re
from pathlib import Path

import pytest

from medtransport import hookspecs, testing
from medtransport.model import Model
from medtransport.plugins import _new_manager

ROOT = Path(__file__).parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec"))


def _guide_section(heading_start: str) -> str:
    """The text of the guide's ``### `...` `` section whose heading starts so."""
    match = re.search(rf"^### `{re.escape(heading_start)}.*?$(.*?)(?=^#|\Z)", GUIDE,
                      flags=re.M | re.S)
    assert match, f"docs/plugins.md has no section '### `{heading_start}...`'"
    return match.group(0)


def test_the_hook_list_is_what_the_plugin_manager_knows() -> None:
    known = {name for name in vars(_new_manager().hook) if not name.startswith("_")}
    assert HOOKS and set(HOOKS) == known


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_its_module(hook: str) -> None:
    assert inspect.getdoc(getattr(hookspecs, hook)), f"{hook} has no docstring"
    doc = hookspecs.__doc__ or ""
    assert f"``{hook}(" in doc, f"hookspecs' module docstring does not say when {hook} is called"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_for_plugin_authors(hook: str) -> None:
    section = _guide_section(f"{hook}(")
    heading = section.splitlines()[0]
    for arg in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert arg in heading, f"the guide's heading of {hook} does not name its argument {arg}"
    for part in ("**Called:**", "**Returns:**"):
        assert part in section, f"the guide does not say {part} for {hook}"


@functools.cache
def _hookimpls_in_tests() -> dict[str, list[str]]:
    """Hook name → test files that implement it with ``@hookimpl`` (and so exercise it through
    the plugin manager)."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            marked = any((isinstance(d, ast.Name) and d.id == "hookimpl") or
                         (isinstance(d, ast.Attribute) and d.attr == "hookimpl") or
                         (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "hookimpl")
                         for d in node.decorator_list)
            if marked and node.name.startswith(f"{hookspecs.PROJECT}_"):
                found.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    assert hook in _hookimpls_in_tests(), (f"no test implements {hook} with @hookimpl; add one "
                                           "that registers a plugin using it")


def test_the_hook_api_version_and_its_rule_are_documented() -> None:
    assert f'`"{hookspecs.HOOK_API_VERSION}"`' in GUIDE
    section = GUIDE.split("## Versioning of the hook API", 1)[1]
    assert "adding" in section and "never by changing" in section
    assert "HOOK_API_VERSION" in (hookspecs.__doc__ or "")


@pytest.mark.parametrize("check", sorted(testing.CHECKS))
def test_every_conformance_check_is_documented(check: str) -> None:
    assert re.search(rf"^\| `{check}` \|", GUIDE, flags=re.M), f"{check} not in the guide"
    assert f"``{check}``" in (testing.__doc__ or ""), f"{check} not in medtransport.testing"


def test_every_conformance_check_declares_the_tags_the_guide_gives() -> None:
    for check in testing._CHECKS:
        row = re.search(rf"^\| `{check.name}` \| ([^|]*) \|", GUIDE, flags=re.M)
        assert row is not None
        tags = {t.strip(" `") for t in row.group(1).split(",")} - {"all"}
        assert tags == set(check.requires), (check.name, tags, check.requires)


def _fixtures() -> list[str]:
    tree = ast.parse(Path(testing.__file__).read_text(encoding="utf-8"))
    return sorted(node.name for node in ast.walk(tree)
                  if isinstance(node, ast.FunctionDef) and any(
                      isinstance(d, ast.Attribute) and d.attr == "fixture"
                      for d in node.decorator_list))


def test_every_fixture_of_the_pytest_plugin_is_documented() -> None:
    fixtures = _fixtures()
    assert "medtransport_registry" in fixtures
    for name in fixtures:
        assert f"`{name}`" in GUIDE, f"fixture {name} is not in the guide"
        assert f"``{name}``" in (testing.__doc__ or ""), f"fixture {name} not in the module doc"


def test_every_public_testing_function_is_documented() -> None:
    for name in testing.__all__:
        if name.isupper():
            continue
        assert f"`{name}" in GUIDE, f"medtransport.testing.{name} is not in the guide"


def test_the_model_contract_is_documented() -> None:
    """Every attribute a model declares and every method of the base class a model may
    override or call (properties excepted) is named in the guide."""
    declared = set(Model.__annotations__)
    methods = {name for name, obj in vars(Model).items()
               if not name.startswith("_") and not isinstance(obj, property)}
    missing = sorted(n for n in declared | methods if f"`{n}" not in GUIDE)
    assert not missing, f"document in docs/plugins.md: {missing}"


def test_the_scaffold_command_is_documented() -> None:
    assert "medtransport new-plugin" in GUIDE and "--directory" in GUIDE
