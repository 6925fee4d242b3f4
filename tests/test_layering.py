"""The package's layers import only downwards, and no module outgrows a reader.

    cli  ->  training | inference  ->  evaluation  ->  models  ->  data  ->  core (errors, files)

``training`` and ``inference`` are siblings: neither imports the other. The top-level
``lstm_forecast.<app>`` modules are shims for ``python -m lstm_forecast.<app>``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lstm_forecast"
LAYERS = {
    "core": 0,
    "data": 1,
    "models": 2,
    "evaluation": 3,
    "training": 4,
    "inference": 4,
    "cli": 5,
    "shim": 6,
}
CORE_MODULES = {"errors", "files", "__init__"}
MAX_LINES = 400


def layer_of(module: str) -> str:
    """``lstm_forecast.data.windows`` -> ``data``; core modules and app shims by name."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in CORE_MODULES:
        return "core"
    if len(parts) == 1:
        return "shim"
    return parts[0]


def package_imports(path: Path) -> set[str]:
    """``lstm_forecast...`` modules imported by the file, also under ``if TYPE_CHECKING``."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lstm_forecast"):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("lstm_forecast"))
    return imported


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(("lstm_forecast", *path.relative_to(PACKAGE).with_suffix("").parts))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downwards(path: Path) -> None:
    here = layer_of(module_name(path))
    for module in package_imports(path):
        there = layer_of(module)
        same_layer = there == here
        assert same_layer or LAYERS[there] < LAYERS[here], (
            f"{module_name(path)} ({here}) imports {module} ({there})"
        )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it into named steps"


def test_the_layers_are_what_the_package_holds() -> None:
    folders = {
        path.relative_to(PACKAGE).parts[0] for path in MODULES if len(path.relative_to(PACKAGE).parts) > 1
    }
    assert folders == {"cli", "data", "evaluation", "inference", "models", "training"}
