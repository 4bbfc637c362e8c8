"""No import cycles in core or in any plugin (tests/core/import_graph.py builds the graphs from the source,
imports inside functions included), and no plugin imports qexp's internals or another plugin."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .import_graph import REPO, build_graph, cycles, describe, imports_of, module_files, package_roots

PUBLIC = {"qexp", "qexp.ext"}


def plugin_files() -> list[Path]:
    """Every module of every plugin folder (future ones too) and of the example plugin package."""
    return sorted([*REPO.glob("plugins/*/qexp_*/**/*.py"), *REPO.glob("examples/plugin/**/*.py")])


def forbidden_imports(path: Path, own_package: str, core_modules: set[str]) -> list[str]:
    """Imports in one plugin module of qexp internals or of another plugin package, as ``line: module``."""
    bad = []
    for imp in imports_of(path, own_package + ".x", type_checking=True):
        top = imp.module.split(".")[0]
        targets = [imp.module]
        if imp.module == "qexp":  # `from qexp import settings` imports a module too
            targets += [f"qexp.{n}" for n in imp.names if f"qexp.{n}" in core_modules]
        for t in targets:
            if top == "qexp" and t not in PUBLIC:
                bad.append(f"{imp.line}: {t}" + (" (in a function)" if imp.in_function else ""))
        if top.startswith("qexp_") and top != own_package:
            bad.append(f"{imp.line}: {imp.module} (another plugin)")
    return bad


def own_package(path: Path) -> str:
    rel = path.relative_to(REPO).parts
    if rel[0] == "plugins":
        return rel[2]
    return next(p for p in rel if p.startswith("qexp_"))  # examples/plugin/<package>/...


@pytest.fixture(scope="module")
def core_modules() -> set[str]:
    return set(module_files("qexp", REPO / "core" / "qexp"))


def test_plugins_import_only_qexp_and_qexp_ext(core_modules):
    files = plugin_files()
    assert len(files) > 50 and any("examples" in str(f) for f in files)
    problems = {str(f.relative_to(REPO)): bad for f in files
                if (bad := forbidden_imports(f, own_package(f), core_modules))}
    assert not problems, ("plugins may import only `qexp` and `qexp.ext` (add what is missing to "
                          f"core/qexp/ext.py) and never another plugin: {problems}")


def test_the_import_rule_catches_hidden_imports(tmp_path, core_modules):
    f = tmp_path / "qexp_fake" / "mod.py"
    f.parent.mkdir()
    f.write_text(textwrap.dedent("""
        from typing import TYPE_CHECKING
        from qexp import hookimpl, settings
        from qexp.ext import R
        if TYPE_CHECKING:
            from qexp.recorder import Recorder

        def later():
            import qexp.plugins
            from qexp_data import loader
    """))
    bad = forbidden_imports(f, "qexp_fake", core_modules)
    assert bad == ["3: qexp.settings", "6: qexp.recorder", "9: qexp.plugins (in a function)",
                   "10: qexp_data (another plugin)"]


@pytest.mark.parametrize("package", sorted(package_roots()))
def test_no_import_cycles(package):
    graph = build_graph(package, package_roots()[package])
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, c) for c in found)


def test_cycle_finder_sees_function_level_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import thing\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import d\n")
    (pkg / "d.py").write_text("from .c import x\n")
    graph = build_graph("pkgx", pkg)
    assert cycles(graph) == [["pkgx.a", "pkgx.b"]]
    assert "in a function" in describe(graph, ["pkgx.a", "pkgx.b"])
