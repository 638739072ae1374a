"""``core`` is the engine: it never imports the explorer (the ``explore`` command plugs in by entry point)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"


def _module_name(path: Path) -> str:
    """``core/cli/run.py`` -> ``populace.cli.run`` (``core`` is the ``populace`` package)."""
    parts = path.relative_to(CORE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("populace", *parts))


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved (``from x import y`` counts ``x.y`` too)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_import_resolver_sees_relative_and_absolute_imports():
    sample = CORE / "cli" / "run.py"
    assert {"populace.simulate", "populace.cli.arguments", "torch"} <= _imported(sample)


def test_core_never_imports_the_explorer():
    offenders = {
        str(path.relative_to(CORE.parent)): sorted(
            m for m in _imported(path) if m == "populace.explorer" or m.startswith("populace.explorer.")
        )
        for path in sorted(CORE.rglob("*.py"))
    }
    assert {path: found for path, found in offenders.items() if found} == {}
    # nor by name in a string (importlib): the issue's `grep -rn populace.explorer core/` finds nothing
    assert [p for p in CORE.rglob("*.py") if "populace.explorer" in p.read_text()] == []


def test_building_the_command_line_loads_neither_the_explorer_app_nor_panel():
    """``populace --help`` finds the ``explore`` command without importing Panel (seconds) or the app."""
    code = (
        "import sys; from populace.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('panel', 'holoviews', 'populace.explorer.app') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
