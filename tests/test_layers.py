"""The package's layers, held by a test: imports point one way, and there is no cycle.

core <- runtime <- operations <- output <- cli. Every ``import`` of every
module under ``mha_cli/`` is read from its source (module level and inside
functions alike; ``if TYPE_CHECKING:`` blocks aside, since they never run), and
each must point to its own layer or one to its left. The third-party rules
ride along: the core is the standard library alone, and only the runtime
imports Keras, TensorFlow, the other backends or NumPy.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mha_cli"

#: The layers, left to right: a module may import its own layer and those before it.
LAYERS = ("core", "runtime", "operations", "output", "cli")
#: Modules outside the subpackages, all entry points standing with the CLI: the package itself (the
#: public API, handed out by mha_cli.api; its version is mha_cli.core.version), ``python -m mha_cli``
#: and the pytest plugin.
TOP_LEVEL = {
    "mha_cli": "cli",
    "mha_cli.api": "cli",
    "mha_cli.__main__": "cli",
    "mha_cli.pytest_plugin": "cli",
}
#: Third-party modules only the runtime may import.
RUNTIME_ONLY = frozenset({"keras", "tensorflow", "tf_keras", "jax", "torch", "numpy"})


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return module.split(".")[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(source: str, module: str, *, type_checking: bool = False) -> set[str]:
    """Every module ``source`` imports when it runs, as absolute names; TYPE_CHECKING blocks too
    with ``type_checking`` (what a type checker reads)."""
    found: set[str] = set()
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node) and not type_checking:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from mha_cli.output import documents`` imports the module mha_cli.output.documents.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def import_graph(package: Path, *, type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the package's own modules it imports (with ``type_checking``: TYPE_CHECKING blocks too)."""
    sources = {module_name(path, package): path.read_text(encoding="utf-8") for path in package.rglob("*.py")}
    return {
        module: {
            name
            for name in imports(source, module, type_checking=type_checking)
            if name in sources and name != module
        }
        for module, source in sources.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        rank = LAYERS.index(layer_of(module))
        for target in sorted(targets):
            # A package's __init__ is importable from anywhere below it.
            if LAYERS.index(layer_of(target)) > rank:
                found.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})")
    return found


def test_no_module_imports_a_layer_to_its_right() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def core_cycles(package: Path) -> list[list[str]]:
    """Cycles among the core's modules, counting TYPE_CHECKING imports: the core's modules are
    the seam every layer kind builds on, so none may need another back, even for its types."""
    graph = import_graph(package, type_checking=True)
    core = {module: targets for module, targets in graph.items() if layer_of(module) == "core"}
    return cycles(core)


def test_the_core_has_no_cycle_even_for_types() -> None:
    assert core_cycles(PACKAGE) == []


def test_every_module_is_in_a_layer() -> None:
    graph = import_graph(PACKAGE)
    assert {layer_of(module) for module in graph} <= set(LAYERS)


def test_the_core_imports_the_standard_library_alone() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        module = module_name(path, PACKAGE)
        outside = {
            name
            for name in imports(path.read_text(encoding="utf-8"), module)
            if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "mha_cli"
        }
        assert outside == set(), f"{module} imports {sorted(outside)}"


def test_only_the_runtime_imports_keras_or_numpy() -> None:
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path, PACKAGE)
        if layer_of(module) == "runtime":
            continue
        heavy = {name for name in imports(path.read_text(encoding="utf-8"), module)} & RUNTIME_ONLY
        assert heavy == set(), f"{module} imports {sorted(heavy)}"


# The checker itself, on small made-up packages: it must see what it is there to see.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mha_cli"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checker_finds_a_cycle_held_together_by_lazy_imports(tmp_path: Path) -> None:
    """The cycle this package had: cli -> backends at module level, backends -> cli inside a function."""
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "cli/__init__.py": "",
            "cli/app.py": "from mha_cli.operations import backends\n",
            "operations/__init__.py": "",
            "operations/backends.py": "def worker():\n    from mha_cli.cli.app import say_error\n",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["mha_cli.cli.app", "mha_cli.operations.backends"]]
    assert upward_imports(graph) == ["mha_cli.operations.backends (operations) imports mha_cli.cli.app (cli)"]


def test_the_checker_ignores_type_checking_imports(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mha_cli.output import b\n"
            ),
            "output/__init__.py": "",
            "output/b.py": "from mha_cli.core import a\n",
        },
    )
    graph = import_graph(root)
    assert (cycles(graph), upward_imports(graph)) == ([], [])


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("import mha_cli.output.render", {"mha_cli.output.render"}),
        ("from mha_cli.output import render", {"mha_cli.output", "mha_cli.output.render"}),
        ("from . import grammar", {"mha_cli.core", "mha_cli.core.grammar"}),
        ("from .grammar import format_shape", {"mha_cli.core.grammar", "mha_cli.core.grammar.format_shape"}),
    ],
)
def test_the_checker_resolves_every_form_of_import(statement: str, expected: set[str]) -> None:
    assert imports(statement, "mha_cli.core.cases") == expected


def test_every_subpackage_is_installed() -> None:
    """A plain ``pip install .`` ships every layer (an editable install would hide a missing one)."""
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    on_disk = sorted(module_name(path, PACKAGE) for path in PACKAGE.rglob("__init__.py"))
    assert len(on_disk) >= 7
    assert [name for name in on_disk if not any(fnmatch.fnmatch(name, p) for p in patterns)] == []


# The rules on this package itself, broken on purpose in a copy: each test must fail on its breach.


def _copy_of_the_package(tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "mha_cli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_an_upward_import_added_to_the_core_is_found(tmp_path: Path) -> None:
    copy = _copy_of_the_package(tmp_path)
    assert upward_imports(import_graph(copy)) == []
    _append(copy / "core" / "grammar.py", "\n\ndef _late() -> None:\n    from mha_cli.output import tables\n")
    assert upward_imports(import_graph(copy)) == [
        "mha_cli.core.grammar (core) imports mha_cli.output (output)",
        "mha_cli.core.grammar (core) imports mha_cli.output.tables (output)",
    ]


def test_a_core_cycle_through_type_checking_is_found(tmp_path: Path) -> None:
    """The circle core/ once had: derivation -> masks at run time, masks -> derivation for its types."""
    copy = _copy_of_the_package(tmp_path)
    assert core_cycles(copy) == []
    _append(
        copy / "core" / "derived.py", "\nif TYPE_CHECKING:\n    from mha_cli.core.masks import plan_mask\n"
    )
    assert core_cycles(copy) == [["mha_cli.core.derived", "mha_cli.core.masks"]]
    assert cycles(import_graph(copy)) == []  # invisible at run time: only the core rule sees it
