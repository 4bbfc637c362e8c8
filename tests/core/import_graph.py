"""The import graph of qexp's core and of each plugin package, read from the source (nothing is imported).

Edges come from ``import`` and ``from ... import`` statements at module level and inside functions alike;
imports under ``if TYPE_CHECKING:`` are left out (they never run). ``from pkg import name`` points at the
module ``pkg.name`` when there is one, else at ``pkg``. Only edges between modules of the same package
are kept: a plugin's edges into ``qexp`` belong to the layering rule, not to its own graph.

    python -m tests.core.import_graph          # prints every package's cycles; exit status 1 if any
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    """One imported module name (absolute), where it was imported, and whether inside a function."""

    module: str
    names: tuple[str, ...]
    line: int
    in_function: bool


def package_roots() -> dict[str, Path]:
    """``{package name: folder}`` for ``qexp``, every ``plugins/<folder>/qexp_*`` package and the example plugin."""
    roots = {"qexp": REPO / "core" / "qexp"}
    for init in sorted([*REPO.glob("plugins/*/*/__init__.py"), *REPO.glob("examples/plugin/*/__init__.py")]):
        roots[init.parent.name] = init.parent
    return roots


def module_files(package: str, root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, module: str, type_checking: bool = False) -> list[Import]:
    """Every import that runs in ``path`` (module ``module``), with relative ones made absolute; with
    ``type_checking`` also those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test) and not type_checking:
                for sub in child.orelse:  # the else branch runs
                    visit_stmt(sub, in_function)
                continue
            visit_stmt(child, in_function)

    def visit_stmt(child: ast.AST, in_function: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                found.append(Import(alias.name, (), child.lineno, in_function))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                prefix = base[:len(base) - (child.level - 1)] if child.level > 1 else base
                target = ".".join([*prefix, child.module] if child.module else prefix)
            else:
                target = child.module or ""
            found.append(Import(target, tuple(a.name for a in child.names), child.lineno, in_function))
        else:
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(tree, False)
    return found


def build_graph(package: str, root: Path) -> dict[str, dict[str, list[str]]]:
    """``{module: {imported module: ["file:line (in function)", ...]}}`` within one package."""
    files = module_files(package, root)
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in files}
    for module, path in files.items():
        for imp in imports_of(path, module):
            targets = []
            if imp.names:
                targets = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in files]
                if len(targets) < len(imp.names) and imp.module in files:
                    targets.append(imp.module)  # some names are attributes of the module itself
            elif imp.module in files:
                targets = [imp.module]
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            where = f"{shown}:{imp.line}" + (" (in a function)" if imp.in_function else "")
            for t in targets:
                if t != module:
                    graph[module].setdefault(t, []).append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def describe(graph: dict[str, dict[str, list[str]]], comp: list[str]) -> str:
    """The edges inside one cycle, with the lines that make them."""
    members = set(comp)
    lines = [f"cycle through {', '.join(comp)}:"]
    for a in comp:
        for b, where in sorted(graph[a].items()):
            if b in members:
                lines.append(f"  {a} -> {b}  ({'; '.join(where)})")
    return "\n".join(lines)


def main() -> int:
    bad = 0
    for package, root in package_roots().items():
        graph = build_graph(package, root)
        found = cycles(graph)
        edges = sum(len(v) for v in graph.values())
        print(f"{package}: {len(graph)} modules, {edges} edges, {len(found)} cycle(s)")
        for comp in found:
            print(describe(graph, comp))
        bad += len(found)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
