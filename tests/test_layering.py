"""Dependencies point inward: the pure core imports no I/O library.

Each pure module is imported in a fresh interpreter with the adapters' libraries blocked in
``sys.modules`` (an import of a blocked name raises ImportError), so an accidental import of
pygame, pyscard, paho, gpiozero or peewee anywhere in its import chain fails here.
"""

import ast
import configparser
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
    "kiosk.period",
    "kiosk.fleet.disclosure",
    "kiosk.fleet.alarms",
    "kiosk.fleet.rollout",
    "kiosk.fleet.registry_csv",
    "kiosk.fleet.registry_sample",
    "kiosk.errors",
    "kiosk.accounts",
    "kiosk.bundle",
    "kiosk.clock",
    "kiosk.facts",
    "kiosk.telemetry.delivery",
    "kiosk.outbox_rules",
    "kiosk.fleet.console.i18n",
    # The outbox is a thread, not pure, but its logic must not load paho (only the link does).
    "kiosk.telemetry.outbox",
)


def test_layering_coverage_floor_of_the_pure_modules_names_exactly_them():
    """./dev coverage holds the pure modules to their own floor (setup.cfg [coverage:pure]):
    a module made pure, or no longer pure, must move in both lists."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    covered = {path.removesuffix(".py").replace("/", ".")
               for path in parser["coverage:pure"]["include"].split()}
    assert covered == set(PURE_MODULES) - {"kiosk.telemetry.outbox"}


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
                                            ("visit", {"kiosk.logsafe", "kiosk.period"})])
def test_layering_flow_imports_only_the_standard_library(module, allowed):
    """The flow and its visit schema: standard library, and only each other's pure core."""
    imported = _imports(ROOT / "kiosk" / f"{module}.py") - allowed
    imported = {name.split(".")[0] for name in imported}
    assert imported and imported <= set(sys.stdlib_module_names), imported


# --- the whole package: imports point inward only ------------------------------------------
# Innermost first. A module may import its own layer and the layers before it, never a later
# one. Names that do not exist (yet) are skipped; a module missing from every layer fails, so
# each new module is placed on purpose. The rigs ship for ``kiosk demo`` only: no kiosk or
# collector code may need them.
LAYERS = (
    ("core", (
        "kiosk", "kiosk.flow", "kiosk.visit", "kiosk.period", "kiosk.facts", "kiosk.config",
        "kiosk.errors", "kiosk.logsafe", "kiosk.accounts", "kiosk.bundle", "kiosk.outbox_rules",
        "kiosk.card", "kiosk.card.apdu", "kiosk.card.thai_id", "kiosk.card.repeat",
        "kiosk.telemetry", "kiosk.telemetry.topics", "kiosk.clock",
        "kiosk.telemetry.delivery", "kiosk.fleet", "kiosk.fleet.disclosure", "kiosk.fleet.alarms",
        "kiosk.fleet.rollout",
        "kiosk.fleet.registry_csv", "kiosk.fleet.registry_sample", "kiosk.rigs",
        "kiosk.fleet.console", "kiosk.fleet.console.i18n", "kiosk.update",
    )),
    ("adapters", (
        "kiosk.card.reader", "kiosk.card.probe", "kiosk.display.*", "kiosk.gpio", "kiosk.sqlite",
        "kiosk.store",
        "kiosk.telemetry.mqtt", "kiosk.telemetry.outbox", "kiosk.telemetry.health",
        "kiosk.telemetry.commands", "kiosk.fleet.collector", "kiosk.fleet.ingest",
        "kiosk.fleet.db", "kiosk.fleet.migrations", "kiosk.fleet.locks", "kiosk.fleet.rollups",
        "kiosk.fleet.status",
        "kiosk.fleet.provision",
        "kiosk.fleet.registry", "kiosk.fleet.statistics", "kiosk.fleet.command",
        "kiosk.fleet.rollouts",
        "kiosk.watchdog", "kiosk.firstboot", "kiosk.fleet.console.*", "kiosk.update.release",
        "kiosk.update.slots", "kiosk.update.trial", "kiosk.update.store_files",
        "kiosk.update.download", "kiosk.update.quiet", "kiosk.update.request",
        "kiosk.fleet.ca", "kiosk.fleet.revoke", "kiosk.fleet.crl", "kiosk.renewal.*",
        "kiosk.atomic",
    )),
    ("rigs", ("kiosk.rigs.*",)),
    ("wiring", (
        "kiosk.runner", "kiosk.assemble", "kiosk.run", "kiosk.out_of_order", "kiosk.cli",
        "kiosk.__main__", "kiosk.demo", "kiosk.script", "kiosk.screenshot", "kiosk.fleet.cli",
        "kiosk.fleet.simulate", "kiosk.fleet.console.serve", "kiosk.fleet.demo_console",
        "kiosk.fleet.release", "kiosk.update.updater",
    )),
)
#: Imports issue 10 named as pointing the wrong way; kept out for good.
FORBIDDEN = (
    ("kiosk.config", "kiosk.telemetry.topics"),
    ("kiosk.telemetry.outbox", "kiosk.telemetry.mqtt"),
    ("kiosk.fleet.provision", "kiosk.firstboot"),
    ("kiosk.runner", "kiosk.firstboot"),
    ("kiosk.assemble", "kiosk.firstboot"),
    ("kiosk.out_of_order", "kiosk.firstboot"),
    ("kiosk.display.screenshot", "kiosk.config"),
)


def package_modules():
    """Dotted name -> path of every module under kiosk/ (a package by its ``__init__``)."""
    modules = {}
    for path in sorted((ROOT / "kiosk").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def layer_of(module):
    for rank, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            package = pattern.removesuffix(".*")
            if module == pattern or (package != pattern and (module == package or
                                                             module.startswith(package + "."))):
                return rank
    return None


def kiosk_imports(path, modules):
    """The kiosk modules ``path`` imports anywhere (also inside functions), by dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
    return {name for name in found if name.split(".")[0] == "kiosk"}


def import_graph():
    modules = package_modules()
    return {name: kiosk_imports(path, modules) for name, path in modules.items()}


def test_layering_every_module_has_a_layer():
    unplaced = sorted(m for m in package_modules() if layer_of(m) is None)
    assert unplaced == [], f"add these to LAYERS in {__file__}"


def test_layering_no_module_imports_an_outer_layer():
    names = [name for name, _ in LAYERS]
    outward = sorted(
        f"{module} ({names[layer_of(module)]}) imports {target} ({names[layer_of(target)]})"
        for module, targets in import_graph().items() if layer_of(module) is not None
        for target in targets
        if layer_of(target) is not None and layer_of(target) > layer_of(module))
    assert outward == []


def test_layering_the_check_sees_imports_inside_functions():
    """The rule could fail: the wiring's lazy import of the display (it keeps pygame out of
    processes without a screen) is seen, and is outward from the core's point of view."""
    graph = import_graph()
    assert "kiosk.display.window" in graph["kiosk.assemble"]
    assert layer_of("kiosk.display.window") > layer_of("kiosk.flow")


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN,
                         ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_layering_imports_issue_10_named_stay_gone(importer, imported):
    graph = import_graph()
    if importer not in graph:
        pytest.skip(f"{importer} does not exist")
    assert imported not in graph[importer]
