"""The house keeps its shape (issue 22): data flows one way between rooms, no import cycles, no
callback reaches into another object's private attributes, and no room grows past its size."""

from __future__ import annotations

import ast
from pathlib import Path

from fit_process import REPO

PACKAGE = REPO / "sqil_lightning"
CALLBACKS = REPO / "callbacks"


def module_name(path: Path) -> str:
    """The dotted module of a package file (callbacks/ installs as sqil_lightning.callbacks)."""
    if path.is_relative_to(CALLBACKS):
        parts = ("sqil_lightning", "callbacks", *path.relative_to(CALLBACKS).with_suffix("").parts)
    else:
        parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *CALLBACKS.rglob("*.py")])


def imported_modules(path: Path) -> set[str]:
    """The sqil_lightning modules ``path`` imports (``from package import module`` counts the module)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names if alias.name.startswith("sqil_lightning"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqil_lightning"):
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in package_files()}
    return {name: imported_modules(path) & set(files) for name, path in files.items()}


def test_the_data_and_envs_rooms_import_no_learner():
    for name, imports in import_graph().items():
        if name.startswith(("sqil_lightning.data", "sqil_lightning.envs")):
            assert not [m for m in imports if m.startswith("sqil_lightning.learners")], f"{name} imports a learner"


def test_no_import_cycle_between_files():
    graph = import_graph()
    # A package's __init__ importing its own modules is how it shows its face, not a cycle.
    graph = {name: {m for m in imports if not name.startswith(m + ".")} for name, imports in graph.items()}
    done, on_path = set(), []

    def visit(name: str) -> None:
        assert name not in on_path, "import cycle: " + " -> ".join([*on_path[on_path.index(name) :], name])
        if name in done:
            return
        on_path.append(name)
        for imported in graph[name]:
            visit(imported)
        on_path.pop()
        done.add(name)

    for name in graph:
        visit(name)


def test_no_callback_touches_another_objects_private_attribute():
    for path in CALLBACKS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                assert isinstance(owner, ast.Name) and owner.id in {"self", "cls"}, f"{path.name}:{node.lineno} reads .{node.attr}"


def test_rooms_stay_within_their_sizes():
    lines = {path: len(path.read_text().splitlines()) for path in package_files()}
    assert lines[PACKAGE / "cli.py"] <= 120
    assert not {path.name: n for path, n in lines.items() if n > 300}
    datamodule = ast.parse((PACKAGE / "data" / "datamodule.py").read_text())
    (cls,) = [node for node in datamodule.body if isinstance(node, ast.ClassDef) and node.name == "SQILDataModule"]
    assert cls.end_lineno - cls.lineno + 1 <= 150
