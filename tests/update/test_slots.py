"""Installing a signed release into the inactive slot (kiosk.update.slots): the switch, the store's
backup, a refused release that never runs, and kill -9 of ``kiosk update`` at every step."""

import base64
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import zipfile

import pytest

from kiosk.errors import ReleaseError
from kiosk.update import release, slots

pytestmark = pytest.mark.timeout(300)


def stub_wheel(folder, version):
    """A tiny stand-in for the project's wheel: its ``kiosk --version`` says ``version``, and
    importing it leaves a mark, so a test sees whether any of a release ever ran."""
    dist = f"citizeninfo_kiosk-{version}.dist-info"
    files = {
        "kiosk_stub.py": (f"import os\nVERSION = {version!r}\n"
                          "if os.environ.get('STUB_MARK'):\n"
                          "    open(os.environ['STUB_MARK'], 'a').write(VERSION)\n"
                          "def main():\n    print('kiosk', VERSION)\n"),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: citizeninfo-kiosk\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nkiosk = kiosk_stub:main\n",
    }
    record = [f"{name},sha256={_b64(hashlib.sha256(text.encode()).digest())},"
              f"{len(text.encode())}" for name, text in files.items()]
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"citizeninfo_kiosk-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    return path


def _b64(digest):
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys():
    return release.generate_key()


@pytest.fixture(scope="module")
def releases(tmp_path_factory, keys):
    """Signed stub releases 9.8.0 and 9.9.0, and the manifest hash of each."""
    made = {}
    for version in ("9.8.0", "9.9.0"):
        folder = tmp_path_factory.mktemp("release") / version
        stub_wheel(folder / release.WHEELS, version)
        manifest = release.describe(folder, version=version, platform="any", schema=6,
                                    min_schema=0, created="2026-12-02T09:00:00Z")
        made[version] = (folder, release.sign_into(folder, manifest, keys[0]))
    return made


def running_version(apps):
    done = subprocess.run([str(apps / "current/bin/kiosk"), "--version"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@pytest.fixture(scope="module")
def installed_old(tmp_path_factory, releases, keys):
    """A slot folder with 9.8.0 in slot a, kept as a template for the tests to copy."""
    apps = tmp_path_factory.mktemp("template") / "apps"
    slot, manifest = slots.install(apps, releases["9.8.0"][0], keys[1])
    assert (slot, manifest.version, running_version(apps)) == ("a", "9.8.0", "9.8.0")
    return apps


def copy_of(template, tmp_path):
    apps = tmp_path / "apps"
    subprocess.run(["cp", "-a", str(template), str(apps)], check=True)
    return apps


def visits_store(path, rows):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE visit (event_id TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO visit VALUES (?)", [(f"v{i}",) for i in range(rows)])
    return path


@pytest.mark.slow
def test_slots_update_switches_to_the_other_slot_after_backing_up_the_store(
        installed_old, releases, keys, tmp_path):
    apps = copy_of(installed_old, tmp_path)
    store = visits_store(tmp_path / "kiosk.db", 25)
    steps, restarted = [], []
    folder, digest = releases["9.9.0"]
    slot, manifest = slots.install(apps, folder, keys[1], manifest_sha256=digest, store=store,
                                   backups=tmp_path / "backups",
                                   restart=lambda: restarted.append(running_version(apps)),
                                   on_step=lambda step, detail: steps.append(step))
    assert (slot, slots.active_slot(apps), running_version(apps)) == ("b", "b", "9.9.0")
    assert steps == list(slots.STEPS) and restarted == ["9.9.0"]  # restarted on the new slot
    with sqlite3.connect(tmp_path / "backups/kiosk-before-9.9.0.db") as db:
        assert db.execute("SELECT count(*) FROM visit").fetchone() == (25,)
    assert os.readlink(apps / "current") == "b"
    assert sorted(p.name for p in apps.iterdir()) == ["a", "b", "current"]
    assert (apps / "b/COMPLETE").read_text() == "9.9.0\n"

    steps.clear()  # the same update again (a retained command, a rerun): nothing to install
    assert slots.install(apps, folder, keys[1], on_step=lambda step, detail: steps.append(step),
                         restart=lambda: restarted.append(running_version(apps)))[0] == "b"
    assert steps == ["verify", "restart"] and restarted == ["9.9.0", "9.9.0"]


def test_slots_refused_release_never_runs_and_leaves_the_kiosk_as_it_was(
        installed_old, releases, keys, tmp_path, monkeypatch):
    apps = copy_of(installed_old, tmp_path)
    folder = tmp_path / "tampered"
    subprocess.run(["cp", "-a", str(releases["9.9.0"][0]), str(folder)], check=True)
    wheel = next((folder / release.WHEELS).glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes().replace(b"print('kiosk', VERSION)",
                                                 b"print('kiosk', 'evil!')"))
    mark = tmp_path / "ran"
    monkeypatch.setenv("STUB_MARK", str(mark))
    with pytest.raises(ReleaseError, match="SHA-256 does not match"):
        slots.install(apps, folder, keys[1])
    assert running_version(apps) == "9.8.0" and slots.active_slot(apps) == "a"
    assert not (apps / "b").exists()
    assert mark.read_text() == "9.8.0"  # only the old version's own --version above ran


def updater(apps, folder, digest, key, store, backups):
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk", "update", str(folder), "--key", str(key), "--sha256",
         digest, "--apps", str(apps), "--store", str(store), "--backups", str(backups)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("step", slots.STEPS)
def test_slots_kill_9_at_any_step_leaves_a_kiosk_that_starts(
        installed_old, releases, keys, tmp_path, step):
    """Killed as it announces ``step``: the kiosk starts, old or new, never neither; running
    the update again finishes it."""
    apps = copy_of(installed_old, tmp_path)
    key = tmp_path / "release-key.pub"
    key.write_bytes(keys[1])
    store = visits_store(tmp_path / "kiosk.db", 3)
    folder, digest = releases["9.9.0"]
    said = []
    with updater(apps, folder, digest, key, store, tmp_path / "backups") as proc:
        for line in proc.stdout:
            said.append(line)
            if line.startswith(f"update: {step}:"):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(said)
    assert running_version(apps) in ("9.8.0", "9.9.0")

    again = updater(apps, folder, digest, key, store, tmp_path / "backups")
    out = again.communicate(timeout=120)[0]
    assert again.returncode == 0, out
    assert running_version(apps) == "9.9.0"
    with sqlite3.connect(tmp_path / "backups/kiosk-before-9.9.0.db") as db:
        assert db.execute("SELECT count(*) FROM visit").fetchone() == (3,)
