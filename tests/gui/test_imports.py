"""The window shows before torch loads: no heavy import at module level in desktop_app/gui."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import desktop_app.gui

HEAVY = {"torch", "diffusers", "transformers", "peft", "spandrel", "accelerate", "safetensors"}
# engine modules that import torch (errors, events, request, model_folder stay light)
HEAVY_ENGINE = {f"desktop_app.engine.{name}" for name in
                ("generate", "loader", "preview", "upscale", "samplers", "device")}
GUI_DIR = Path(desktop_app.gui.__file__).parent
ROOT = GUI_DIR.parents[1]


def module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) for every import that runs when the module is imported: top level, and inside
    module-level if/try/with blocks, but not inside functions or classes (those run later)."""
    found = []
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []):
                    pending += child.body if isinstance(child, ast.ExceptHandler) else [child]
    return found


def test_no_heavy_import_at_module_level_in_the_gui():
    offenders = []
    sources = sorted(GUI_DIR.rglob("*.py"))
    assert len(sources) >= 8, sources
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in module_level_imports(tree):
            if module.split(".")[0] in HEAVY or module in HEAVY_ENGINE:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_the_scan_catches_a_heavy_import():
    tree = ast.parse("import os\ntry:\n    import torch\nexcept ImportError:\n    pass\n"
                     "from desktop_app.engine import generate\n"
                     "def later():\n    import diffusers\n")
    modules = {module for _, module in module_level_imports(tree)}
    assert {"os", "torch", "desktop_app.engine.generate"} <= modules and "diffusers" not in modules


SHOW_WINDOW = """
import sys
from PySide6.QtWidgets import QApplication
from desktop_app.gui import app
qt = app.application()
window = app.MainWindow()
window.show()
for _ in range(20):
    qt.processEvents()
heavy = sorted(name for name in ("torch", "diffusers", "transformers", "spandrel") if name in sys.modules)
print("visible", window.isVisible())
print("heavy", heavy)
window.close()
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT, check=False)


def test_showing_the_window_does_not_import_torch():
    result = run_python(SHOW_WINDOW)
    assert result.returncode == 0, result.stderr
    assert "visible True" in result.stdout
    assert "heavy []" in result.stdout, result.stdout


@pytest.mark.parametrize("where", ["in-process", "subprocess"])
def test_selftest_window(qapp, where):
    if where == "in-process":
        from desktop_app.gui.app import selftest_window

        ok, message = selftest_window()
    else:
        result = run_python("from desktop_app.gui.app import selftest_window\n"
                            "ok, message = selftest_window()\nprint(ok, message)")
        assert result.returncode == 0, result.stderr
        ok, message = result.stdout.startswith("True"), result.stdout
    assert ok, message
    assert "window opened and closed" in message
