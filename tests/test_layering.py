"""Dependencies point inward: the pure core imports no I/O library.

Each pure module is imported in a fresh interpreter with the adapters' libraries blocked in
``sys.modules`` (an import of a blocked name raises ImportError), so an accidental import of
pygame, pyscard, paho, gpiozero or peewee anywhere in its import chain fails here.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("pygame", "smartcard", "paho", "gpiozero", "peewee", "qrcode", "icu")
PURE_MODULES = (
    "kiosk.flow",
    "kiosk.config",
    "kiosk.card.apdu",
    "kiosk.card.thai_id",
    "kiosk.card.repeat",
    "kiosk.telemetry.topics",
    "kiosk.logsafe",
    "kiosk.visit",
)


def import_blocked(module):
    code = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        f"import {module}\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_layering_pure_module_imports_without_io_libraries(module):
    result = import_blocked(module)
    assert result.returncode == 0, result.stderr


def test_layering_blocking_really_blocks():
    """The check above could fail: an adapter is refused under the same blocking."""
    result = import_blocked("pygame")
    assert result.returncode != 0 and "import of pygame halted" in result.stderr


def _imports(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "kiosk":
            imported.update(f"kiosk.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    return imported


@pytest.mark.parametrize("module,allowed", [("flow", {"kiosk.visit"}),
                                            ("visit", {"kiosk.logsafe"})])
def test_layering_flow_imports_only_the_standard_library(module, allowed):
    """The flow and its visit schema: standard library, and only each other's pure core."""
    imported = _imports(ROOT / "kiosk" / f"{module}.py") - allowed
    imported = {name.split(".")[0] for name in imported}
    assert imported and imported <= set(sys.stdlib_module_names), imported
