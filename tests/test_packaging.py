"""The package's extras: the central side installs and runs without the appliance's libraries.

One wheel of the project is built from this tree, then installed with ``[fleet]`` only into a
fresh venv, offline (``--no-index``): its dependencies come from the image recipe's wheelhouse
(``.cache/wheelhouse``) when ``build-wheelhouse`` has filled it, else from pip's cache or index.
"""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.test_layering import ROOT

APPLIANCE_ONLY = ("pygame", "smartcard", "gpiozero", "icu", "qrcode")
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"

pytestmark = pytest.mark.slow


def pip(*args, python=sys.executable, timeout=120):
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q",
                           "--python", str(python), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """A folder with the project's wheel and every wheel ``[fleet]`` needs."""
    work = tmp_path_factory.mktemp("packaging")
    src, out = work / "src", work / "wheels"
    src.mkdir()
    shutil.copytree(ROOT / "kiosk", src / "kiosk",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", out, src)
    links = ["--find-links", out, "--find-links", WHEELHOUSE]
    try:
        pip("wheel", "--no-index", *links, "-w", out, "citizeninfo-kiosk[fleet]")
    except AssertionError:  # no wheelhouse yet: pip's cache, or the index
        pip("wheel", *links, "-w", out, "citizeninfo-kiosk[fleet]", timeout=300)
    return out


@pytest.fixture(scope="module")
def fleet_venv(wheels, tmp_path_factory):
    venv = tmp_path_factory.mktemp("fleet") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                   timeout=60)
    pip("install", "--no-index", "--find-links", wheels, "citizeninfo-kiosk[fleet]",
        python=venv / "bin" / "python")
    return venv


def test_packaging_fleet_extra_runs_the_collector_without_appliance_libraries(fleet_venv):
    found = subprocess.run(
        [fleet_venv / "bin" / "python", "-c",
         "import importlib.util as u\n"
         f"print(' '.join(m for m in {APPLIANCE_ONLY!r} if u.find_spec(m)))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert found.stdout.split() == []
    done = subprocess.run([fleet_venv / "bin" / "kiosk-fleet", "collect", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: kiosk-fleet collect" in done.stdout


def test_packaging_wheel_ships_the_rigs_but_never_vpcd(wheels):
    """The image installs this wheel: the demo rigs' Python may be in it, vpcd itself never."""
    (wheel,) = wheels.glob("citizeninfo_kiosk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kiosk/rigs/card_stack.py" in names
    assert [n for n in names if "vpcd" in n.lower() or n.endswith(".so")] == []


def test_packaging_fleet_install_carries_the_registry_data(fleet_venv, tmp_path):
    """The provinces, offices and sample registry are package data: an installed fleet side
    imports the sample it ships."""
    sample, db = tmp_path / "sample.csv", tmp_path / "fleet.sqlite3"
    for args in (["sample", "--out", sample], ["import", sample, "--db", db]):
        done = subprocess.run([fleet_venv / "bin" / "kiosk-fleet", "registry", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registry: 462 service point(s)")


def test_packaging_fleet_install_serves_the_console_pages(fleet_venv, tmp_path):
    """The console's templates, stylesheet and script are package data: an installed fleet
    side renders its login page and serves its script (Flask and argon2 come with [fleet])."""
    users = tmp_path / "users.json"
    done = subprocess.run([fleet_venv / "bin" / "kiosk-fleet", "users", "add", "ann",
                           "--users", users, "--password-stdin"], input="a-long-password\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    script = (
        "import sys\n"
        "from kiosk.fleet.console.app import Settings, create_app\n"
        "from kiosk.fleet.db import open_database\n"
        "open_database(sys.argv[1]).close()  # made by the collector; the console only reads\n"
        "app = create_app(Settings(db=sys.argv[1], users=sys.argv[2]))\n"
        "client = app.test_client()\n"
        "for path in ('/login', '/static/console.js', '/static/console.css'):\n"
        "    print(path, client.get(path, base_url='https://localhost').status_code)\n")
    done = subprocess.run([fleet_venv / "bin" / "python", "-c", script,
                           tmp_path / "fleet.sqlite3", users],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["/login", "200", "/static/console.js", "200",
                                   "/static/console.css", "200"]
