"""Layering: the library's import graph has no cycle, and only the front end (fdem.cli) imports fdem.cli.

Every module of the installed packages (pyproject's ``packages`` and ``package-dir``: fdem/, and
benchmarks/, datamodules/, kernels_gen/, configs/ installed as fdem.benchmarks, ...) is parsed with
``ast``, nothing is imported. Edges are every import statement, at module level or inside a
function (a deferred import still runs), and, from every module that calls ``import_module``, one
to each module named in a ``"module:Class"`` string anywhere (the restorer registry's table).
Importing ``a.b.c`` also runs the packages ``a.b`` and ``a`` unless they are already being
imported (ancestors of the importer), so those edges are added too.
"""

from __future__ import annotations

import ast
import re
import tomllib
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONT_END = "fdem.cli"
REGISTRY_ENTRY = re.compile(r"(fdem(?:\.\w+)+):\w+")


def package_folders() -> dict[str, Path]:
    """Package name → folder, from pyproject.toml (so a new mapped folder is covered too)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    return {name: ROOT / mapped.get(name, name.replace(".", "/")) for name in setuptools["packages"]}


def module_files() -> dict[str, Path]:
    """Dotted module name → source file, for every module of every installed package."""
    modules = {}
    for package, folder in package_folders().items():
        for path in folder.glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names this module imports (``from a import b`` gives ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def registry_entries(tree: ast.AST) -> set[str]:
    """Modules named by the ``"module:Class"`` strings of a module."""
    strings = (n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return {m.group(1) for m in map(REGISTRY_ENTRY.fullmatch, strings) if m}


def calls_import_module(tree: ast.AST) -> bool:
    """Whether the module imports modules by name (``importlib.import_module(...)``)."""
    return any(isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == "import_module"
               for n in ast.walk(tree))


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules that importing it (or calling its functions) runs."""
    files = module_files()
    trees = {module: ast.parse(path.read_text(), str(path)) for module, path in files.items()}
    registry = set().union(*map(registry_entries, trees.values()))
    graph = {}
    for module, path in files.items():
        own = set(ancestors(module)) | {module}
        names = imported_names(trees[module], module, path.stem == "__init__")
        targets = set()
        for name in names | (registry if calls_import_module(trees[module]) else set()):
            if name in files:
                targets.update(t for t in [*ancestors(name), name] if t in files and t not in own)
        graph[module] = targets
    return graph


def is_front_end(module: str) -> bool:
    return module == FRONT_END or module.startswith(FRONT_END + ".")


GRAPH = import_graph()


def test_the_graph_covers_the_mapped_folders_and_the_registry():
    assert {"fdem.benchmarks.kernel_estimation", "fdem.datamodules.blur_benchmark", "fdem.cli.parser"} <= set(GRAPH)
    registry = [m for m, targets in GRAPH.items() if "fdem.sampling.diffusion_restorer" in targets]
    assert any(m in ("fdem.restorers", "fdem.method_table") for m in registry), registry


def test_library_modules_import_no_front_end():
    offenders = {m: sorted(filter(is_front_end, t)) for m, t in GRAPH.items() if not is_front_end(m)}
    assert not {m: t for m, t in offenders.items() if t}


def test_no_import_cycle_among_library_modules():
    library = {m: {t for t in targets if not is_front_end(t)} for m, targets in GRAPH.items() if not is_front_end(m)}
    try:
        TopologicalSorter(library).prepare()
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(reversed(err.args[1]))}") from None


STUDIES = ROOT / "studies"  # one-off studies: run from the checkout, never installed (tests/test_wheel.py)


def imports_of(path: Path, module: str) -> set[str]:
    """The dotted names the module in ``path`` imports."""
    return imported_names(ast.parse(path.read_text(), str(path)), module, path.stem == "__init__")


def is_studies(name: str) -> bool:
    return name == "studies" or name.startswith("studies.")


def test_no_installed_module_imports_the_studies():
    offenders = {m: sorted(filter(is_studies, imports_of(path, m))) for m, path in module_files().items()}
    assert not {m: names for m, names in offenders.items() if names}
    assert not any(map(is_studies, package_folders())), "studies/ must stay out of pyproject's packages"


def test_studies_share_helpers_only_through_studies_common():
    studies = {".".join(path.relative_to(ROOT).with_suffix("").parts): path for path in STUDIES.rglob("*.py")}
    assert "studies.fastem.fastem_study" in studies and "studies.common.__init__" in studies
    offenders = {}
    for module, path in studies.items():
        names = {n for n in imports_of(path, module.removesuffix(".__init__")) if is_studies(n)}
        other = sorted(n for n in names if n != "studies" and not n.startswith("studies.common"))
        if other:
            offenders[module] = other
    assert not offenders
