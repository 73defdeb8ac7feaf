"""Installing a signed release into the inactive slot (kiosk.update.slots): the switch, the store's
backup, a refused release that never runs, and kill -9 of ``kiosk update`` at every step."""

import base64
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import pytest

from kiosk.errors import ReleaseError
from kiosk.update import release, request, slots, trial
from tests.fixtures.release_server import ReleaseServer

pytestmark = pytest.mark.timeout(300)

#: The kiosk user's id in these tests (root runs them; the store belongs to the kiosk user).
KIOSK_UID = 4321


def stub_wheel(folder, version, *, healthy=True, migrates=False, requires=(), name="kiosk"):
    """A tiny stand-in for the project's wheel. ``kiosk --version`` says ``version``; ``kiosk run
    STATE`` declares itself healthy when on trial (unless not ``healthy``), after moving the
    store's schema forward when it ``migrates``; ``kiosk update ...`` is this slot's updater:
    it notes its version in ``$STUB_UPDATES`` and runs the updater under test (this Python's
    ``-m kiosk update ...``). Importing it leaves a mark, so a test sees whether any of a
    release ever ran."""
    project = "citizeninfo-kiosk" if name == "kiosk" else name
    dist = f"{project.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{name}_stub.py": f"""import json, os, sqlite3, sys
VERSION, HEALTHY, MIGRATES = {version!r}, {healthy!r}, {migrates!r}
UPDATER = {sys.executable!r}
if os.environ.get("STUB_MARK"):
    open(os.environ["STUB_MARK"], "a").write(VERSION)
def main():
    if sys.argv[1] == "update":
        if os.environ.get("STUB_UPDATES"):
            open(os.environ["STUB_UPDATES"], "a").write(VERSION + "\\n")
        os.execv(UPDATER, [UPDATER, "-m", "kiosk", *sys.argv[1:]])
    if sys.argv[1] == "--version":
        print("kiosk", VERSION)
        return
    state = sys.argv[2]
    if MIGRATES:
        with sqlite3.connect(os.path.join(state, "kiosk.db")) as db:
            db.execute("PRAGMA user_version = 99")
    try:
        with open(os.path.join(state, "{trial.TRIAL}")) as f:
            on_trial = json.load(f)["version"] == VERSION
    except OSError:
        on_trial = False
    if on_trial and HEALTHY:
        with open(os.path.join(state, "{trial.HEALTHY}"), "w") as f:
            json.dump({{"version": VERSION}}, f)
""",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nkiosk = kiosk_stub:main\n",
    }
    record = [f"{name},sha256={_b64(hashlib.sha256(text.encode()).digest())},"
              f"{len(text.encode())}" for name, text in files.items()]
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    return path


def _b64(digest):
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def releases(tmp_path_factory, release_keys):
    """Signed stub releases, and the manifest hash of each: 9.8.0 (in use), 9.9.0 (healthy),
    9.9.1 (schema 7: migrates the store forward, then never declares itself healthy)."""
    made = {}
    for version, schema, options in (
            ("9.8.0", 6, {}), ("9.9.0", 6, {}),
            ("9.9.1", 7, {"healthy": False, "migrates": True})):
        folder = tmp_path_factory.mktemp("release") / version
        stub_wheel(folder / release.WHEELS, version, **options)
        manifest = release.describe(folder, version=version, platform="any", schema=schema,
                                    min_schema=0, created="2026-12-02T09:00:00Z")
        made[version] = (folder, release.sign_into(folder, manifest, release_keys[0]))
    return made


def running_version(apps):
    done = subprocess.run([str(apps / "current/bin/kiosk"), "--version"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


class Kiosk:
    """The kiosk's unit as the updater drives it: start runs ``current/bin/kiosk run``."""

    def __init__(self, apps, state):
        self.apps, self.state, self.started = apps, state, []

    def start(self):
        self.started.append(running_version(self.apps))
        subprocess.run([str(self.apps / "current/bin/kiosk"), "run", str(self.state)],
                       check=True, timeout=30)

    def stop(self):
        pass

    @property
    def commands(self):
        return ["--start-command", f"{self.apps}/current/bin/kiosk run {self.state}",
                "--stop-command", "true", "--any-time", "--status-command", "echo idle",
                "--failed-command", "false"]


@pytest.fixture(scope="module")
def installed_old(tmp_path_factory, releases, release_keys):
    """Slot a holding 9.8.0 and in use, kept as a template for the tests to copy."""
    apps = tmp_path_factory.mktemp("template") / "apps"
    state = apps.parent / "state"
    state.mkdir()
    slot, manifest = slots.install(apps, releases["9.8.0"][0], release_keys[1], state=state,
                                   start=Kiosk(apps, state).start)
    assert (slot, manifest.version, running_version(apps)) == ("a", "9.8.0", "9.8.0")
    return apps


def copy_of(template, tmp_path, visits):
    """The template's slots, and a state folder with a store of ``visits`` visits."""
    apps = tmp_path / "apps"
    subprocess.run(["cp", "-a", str(template), str(apps)], check=True)
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "kiosk.db") as db:
        db.execute("PRAGMA user_version = 6")
        db.execute("CREATE TABLE visit (event_id TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO visit VALUES (?)", [(f"v{i}",) for i in range(visits)])
    return apps, state


def visits_in(path):
    with sqlite3.connect(path) as db:
        return (db.execute("PRAGMA user_version").fetchone()[0],
                db.execute("SELECT count(*) FROM visit").fetchone()[0])


def asked(tmp_path, server, version, digest, rollout="r-1"):
    """The kiosk's request for ``version``, as kiosk.telemetry.commands writes it."""
    path = tmp_path / "update-request.json"
    path.write_text(json.dumps({"version": version, "url": server.url, "sha256": digest,
                                "rollout": rollout}))
    return path


def status_of(apps):
    return json.loads((apps / request.STATUS).read_text())


@pytest.mark.slow
def test_slots_update_requested_by_the_kiosk_switches_after_backing_up_the_store_and_keeps_it(
        installed_old, releases, release_keys, tmp_path, tls):
    """``kiosk update --request``: the kiosk's request for 9.9.0 is downloaded, installed into
    slot b, the store backed up, switched, started on trial, kept once healthy, each state in
    the status file; the same request again does nothing, and ``kiosk update URL`` for it only
    verifies."""
    apps, state = copy_of(installed_old, tmp_path, visits=25)
    (apps / "backups/kiosk-before-9.7.0").mkdir(parents=True)  # an earlier update's
    key = tmp_path / "release-key.pub"
    key.write_bytes(release_keys[1])
    folder, digest = releases["9.9.0"]
    server = ReleaseServer(folder, tls)
    seen = tmp_path / "seen"  # the status file as the wait and the start found it
    look = f"cat {apps / request.STATUS} >> {seen}"
    kiosk = ["--stop-command", "true", "--any-time",
             "--status-command", f"sh -c '{look}; echo idle'",
             "--start-command", f"sh -c '{look}; exec {apps}/current/bin/kiosk run {state}'"]

    def update(*args):
        return subprocess.run(
            [sys.executable, "-m", "kiosk", "update", *args, "--key", str(key),
             "--ca", str(tls / "ca.crt"), "--downloads", str(tmp_path / "downloads"),
             "--apps", str(apps), "--state", str(state), *kiosk],
            capture_output=True, text=True, timeout=120)

    try:
        done = update("--request", str(asked(tmp_path, server, "9.9.0", digest)))
        fetched, kept = len(server.requests), status_of(apps)
        downloads_left = list((tmp_path / "downloads").iterdir())
        repeated = update("--request", str(asked(tmp_path, server, "9.9.0", digest)))
        refetched = len(server.requests) - fetched
        again = update(server.url, "--sha256", digest)
        unsigned = update(server.url)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line.split(":")[1].strip() for line in done.stdout.splitlines()]
    assert [step for step in said if step != "download"] == ["request", *slots.STEPS, "done"]
    assert "update: download: 0.0 of " in done.stdout
    assert (slots.active_slot(apps), running_version(apps)) == ("b", "9.9.0")
    assert visits_in(apps / "backups/kiosk-before-9.9.0/kiosk.db") == (6, 25)
    assert [p.name for p in (apps / "backups").iterdir()] == ["kiosk-before-9.9.0"]
    assert downloads_left == []  # the data partition is the visit store's too
    assert sorted(p.name for p in apps.iterdir()) == [".lock", "a", "b", "backups", "current",
                                                      request.STATUS]
    assert (apps / "b/COMPLETE").read_text() == "9.9.0\n"
    assert not (state / trial.TRIAL).exists()  # the trial is over
    assert [json.loads(line)["state"] for line in seen.read_text().splitlines()] == [
        "waiting", "switched"]
    assert kept == {"state": "healthy", "version": "9.9.0", "reason": None, "rollout": "r-1",
                    "sha256": digest}
    assert (apps / request.STATUS).stat().st_mode & 0o777 == 0o644
    assert repeated.returncode == 0 and refetched == 0
    assert repeated.stdout == "update: healthy: 9.9.0 is already running\n"
    assert again.returncode == 0 and "update: healthy: 9.9.0 is already in use" in again.stdout
    assert unsigned.returncode == 1 and "needs --sha256" in unsigned.stderr


def test_slots_request_for_an_older_version_or_through_a_symlink_is_refused_before_any_download(
        installed_old, releases, release_keys, tmp_path, tls):
    """The request file is the kiosk user's: a hostile kiosk asking for an older signed release
    (one with a known hole), or planting a symlink at the request's name, gets a refusal in the
    status file, and nothing is fetched. No request at all is nothing to do."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    key = tmp_path / "release-key.pub"
    key.write_bytes(release_keys[1])
    server = ReleaseServer(releases["9.9.0"][0], tls)

    def update(path):
        return subprocess.run(
            [sys.executable, "-m", "kiosk", "update", "--request", str(path), "--key",
             str(key), "--ca", str(tls / "ca.crt"), "--downloads", str(tmp_path / "downloads"),
             "--apps", str(apps), "--state", str(state), *Kiosk(apps, state).commands],
            capture_output=True, text=True, timeout=60)

    try:
        older = update(asked(tmp_path, server, "9.7.0", releases["9.9.0"][1]))
        refused = status_of(apps)
        planted = state / request.REQUEST
        planted.symlink_to(asked(tmp_path, server, "9.9.0", releases["9.9.0"][1]))
        symlinked = update(planted)
        nothing = update(state / "no-such-request.json")
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert older.returncode == 1 and "downgrade refused" in older.stdout
    assert refused == {"state": "refused", "version": "9.7.0", "rollout": "r-1",
                       "sha256": releases["9.9.0"][1],
                       "reason": "downgrade refused: 9.7.0 is not newer than the running 9.8.0; "
                                 "a technician on site can install it by hand (kiosk update "
                                 "DIR)"}
    assert symlinked.returncode == 1
    assert status_of(apps)["state"] == "refused" and "is a symlink" in status_of(apps)["reason"]
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "")
    assert server.requests == [] and not (tmp_path / "downloads").exists()
    assert (slots.active_slot(apps), running_version(apps)) == ("a", "9.8.0")


@pytest.mark.slow
def test_slots_unhealthy_version_rolls_back_with_the_store_as_it_was(
        installed_old, releases, release_keys, tmp_path):
    """9.9.1 migrates the store forward and never declares itself healthy: the old slot and the
    store from before come back, with the same visits, the kiosk user's again. What a hostile
    kiosk user planted in its folder does not redirect root's writes."""
    apps, state = copy_of(installed_old, tmp_path, visits=40)
    for path in (state, state / "kiosk.db"):
        os.chown(path, KIOSK_UID, KIOSK_UID)
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    for planted in (".kiosk.db.restoring", "update-trial.json.partial"):
        (state / planted).symlink_to(victim)
    kiosk, steps = Kiosk(apps, state), []
    with pytest.raises(ReleaseError, match="rolled back: 9.9.1 was not healthy within 1 s"):
        slots.install(apps, releases["9.9.1"][0], release_keys[1], state=state, start=kiosk.start,
                      stop=kiosk.stop, health_timeout_s=1.0,
                      on_step=lambda step, detail: steps.append(step))
    assert steps == [*slots.STEPS[:-1], "rollback", "restore", "start"]
    assert kiosk.started == ["9.9.1", "9.8.0"]
    assert (slots.active_slot(apps), running_version(apps)) == ("a", "9.8.0")
    assert visits_in(state / "kiosk.db") == (6, 40)  # the migration undone, no visit lost
    assert os.stat(state / "kiosk.db").st_uid == KIOSK_UID
    assert victim.read_text() == "root's file"
    assert not (state / trial.TRIAL).exists() and not (apps / slots.JOURNAL).exists()


class Clock:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds


def test_slots_trial_verdict(tmp_path):
    """The trial's verdict (slots._trial) on its own: a start that fails is a failed trial, and
    a health declared while the kiosk was being stopped at the deadline still counts."""
    clock, stopped = Clock(), []

    def fail():
        raise ReleaseError("'systemctl start kiosk.service' failed: exit 1")

    def verdict(start, stop=lambda: stopped.append(True)):
        return slots._trial(tmp_path, "9.9.0", stop, start, 2.0, clock.sleep, lambda: clock.now)

    assert verdict(fail) == "9.9.0 did not start: 'systemctl start kiosk.service' failed: exit 1"
    assert verdict(lambda: None) == "9.9.0 was not healthy within 2 s" and stopped == [True]

    def declare_while_stopping():
        trial.write(tmp_path / trial.HEALTHY, {"version": "9.9.0"})

    started = []
    assert verdict(lambda: started.append(1), stop=declare_while_stopping) is None
    assert started == [1, 1]  # stopped for the verdict, so started again


def test_slots_trial_ends_early_once_the_kiosks_service_failed(tmp_path):
    """A new version that crashes is restarted by systemd until its start limit reboots the
    kiosk, long before the health timeout: once the service is seen failed, the trial ends."""
    clock, looks = Clock(), []

    def is_failed():
        looks.append(clock.now)
        return len(looks) == 3

    verdict = slots._trial(tmp_path, "9.9.0", lambda: None, lambda: None, 120.0, clock.sleep,
                           lambda: clock.now, is_failed=is_failed)
    assert verdict == "9.9.0 failed on trial after 4 s (its service failed)"
    assert looks == [0.0, 2.0, 4.0]  # every FAILED_EVERY_S, not at each half-second turn


def release_of(tmp_path, release_keys, version, schema=6):
    """A signed stub release of ``version`` made for one test; (folder, manifest hash)."""
    folder = tmp_path / f"release-{version}"
    stub_wheel(folder / release.WHEELS, version)
    manifest = release.describe(folder, version=version, platform="any", schema=schema,
                                min_schema=0, created="2026-12-02T09:00:00Z")
    return folder, release.sign_into(folder, manifest, release_keys[0])


def test_slots_request_claiming_a_newer_version_for_an_old_release_is_refused_before_any_wheel(
        installed_old, release_keys, tmp_path, tls):
    """A hostile kiosk (or a thief of the collector's account) asks for "99.0" with the URL and
    manifest hash of the genuine, signed, older 9.7.0: the signed manifest's own version is
    checked against the request's and the running one as soon as it is verified, so no wheel
    is fetched, nothing is installed, the status names both versions, and the download goes."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    key = tmp_path / "release-key.pub"
    key.write_bytes(release_keys[1])
    folder, digest = release_of(tmp_path, release_keys, "9.7.0")
    server = ReleaseServer(folder, tls)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kiosk", "update", "--request",
             str(asked(tmp_path, server, "99.0", digest)), "--key", str(key),
             "--ca", str(tls / "ca.crt"), "--downloads", str(tmp_path / "downloads"),
             "--apps", str(apps), "--state", str(state), *Kiosk(apps, state).commands],
            capture_output=True, text=True, timeout=60)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert server.wheels_asked() == [] and len(server.requests) == 2  # signature, manifest
    assert not (apps / "b").exists() and (slots.active_slot(apps), running_version(apps)) == (
        "a", "9.8.0")
    assert status_of(apps) == {
        "state": "refused", "version": "99.0", "rollout": "r-1", "sha256": digest,
        "reason": "version mismatch: the request names 99.0, but the signed release is 9.7.0; "
                  "refused"}
    assert list((tmp_path / "downloads").iterdir()) == []  # refused for good: not kept


def test_slots_local_release_is_checked_against_the_requested_version_too(
        installed_old, release_keys, tmp_path):
    """slots.install checks the verified manifest again (a release folder given as is, the
    journal's at boot): another version than asked, or one not newer than the running one,
    is refused before anything is built."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    folder, digest = release_of(tmp_path, release_keys, "9.7.0")
    steps = []
    for version, refusal in (("99.0", "the request names 99.0, but the signed release is "
                                      "9.7.0"),
                             ("9.7.0", "the signed release 9.7.0 is not newer than the "
                                       "running 9.8.0")):
        with pytest.raises(ReleaseError, match=refusal):
            slots.install(apps, folder, release_keys[1], state=state, manifest_sha256=digest,
                          version=version, newer_than="9.8.0",
                          on_step=lambda step, detail: steps.append(step))
    assert steps == ["verify", "verify"] and not (apps / "b").exists()


def test_slots_slot_is_not_built_without_room_for_it(installed_old, releases, release_keys,
                                                      tmp_path):
    """The slots' partition must hold the new venv and the store's backup: short of room, the
    update is refused (not for good) with both numbers, before a build or a stop."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    steps, stopped = [], []
    with pytest.raises(release.Transient,
                       match=rf"release 9.9.0 needs 3\d MB free under {apps} for slot b and the "
                             r"store's backup; 1 MB free"):
        slots.install(apps, releases["9.9.0"][0], release_keys[1], state=state,
                      stop=lambda: stopped.append(1), free_bytes=lambda path: 1_000_000,
                      on_step=lambda step, detail: steps.append(step))
    assert (steps, stopped) == (["verify"], []) and not (apps / "b").exists()


def test_slots_release_too_old_for_the_store_is_refused_before_anything(
        installed_old, release_keys, tmp_path):
    """A release that knows only schema 5 would not open this store (schema 6): refused before
    a build, with the kiosk never stopped."""
    apps, state = copy_of(installed_old, tmp_path, visits=4)
    folder = tmp_path / "old"
    stub_wheel(folder / release.WHEELS, "9.7.0")
    manifest = release.describe(folder, version="9.7.0", platform="any", schema=5,
                                min_schema=0, created="2026-12-02T09:00:00Z")
    release.sign_into(folder, manifest, release_keys[0])
    steps = []
    with pytest.raises(ReleaseError, match="up to 5; this store is at 6"):
        slots.install(apps, folder, release_keys[1], state=state,
                      on_step=lambda step, detail: steps.append(step))
    assert steps == ["verify"] and not (apps / "b").exists()
    assert visits_in(state / "kiosk.db") == (6, 4)


def test_slots_refuse_a_new_update_while_another_ones_trial_was_cut(
        installed_old, releases, release_keys, tmp_path):
    """A journal left by a cut trial: slot b may be the last good version, so an update to
    another version must not rebuild it before that trial is finished."""
    apps, state = copy_of(installed_old, tmp_path, visits=0)
    trial.write(apps / slots.JOURNAL, {"version": "9.9.1", "slot": "a", "previous": "b"})
    with pytest.raises(ReleaseError, match="the update to 9.9.1 was cut before its trial ended"):
        slots.install(apps, releases["9.9.0"][0], release_keys[1], state=state)
    assert not (apps / "b").exists() and slots.active_slot(apps) == "a"


def test_slots_refuse_a_current_link_they_did_not_make(installed_old, releases, release_keys,
                                                       tmp_path):
    apps, state = copy_of(installed_old, tmp_path, visits=0)
    (apps / "current").unlink()
    (apps / "current").symlink_to(apps / "a")  # absolute: not one of the slot names
    with pytest.raises(ReleaseError, match="not at slot a or b; fix it by hand"):
        slots.install(apps, releases["9.9.0"][0], release_keys[1], state=state)
    assert (apps / "a/COMPLETE").read_text() == "9.8.0\n"  # the running slot is untouched


def test_slots_refused_release_never_runs_and_leaves_the_kiosk_as_it_was(
        installed_old, releases, release_keys, tmp_path, monkeypatch):
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    folder = tmp_path / "tampered"
    subprocess.run(["cp", "-a", str(releases["9.9.0"][0]), str(folder)], check=True)
    wheel = next((folder / release.WHEELS).glob("*.whl"))
    wheel.write_bytes(wheel.read_bytes().replace(b'print("kiosk", VERSION)',
                                                 b'print("kiosk", "evil!")'))
    mark = tmp_path / "ran"
    monkeypatch.setenv("STUB_MARK", str(mark))
    kiosk = Kiosk(apps, state)
    with pytest.raises(ReleaseError, match="SHA-256 does not match"):
        slots.install(apps, folder, release_keys[1], state=state, start=kiosk.start,
                      stop=kiosk.stop)
    assert running_version(apps) == "9.8.0" and slots.active_slot(apps) == "a"
    assert not (apps / "b").exists() and kiosk.started == []
    assert mark.read_text() == "9.8.0"  # only the old version's own --version above ran


@pytest.mark.slow
def test_slots_pip_takes_only_the_verified_wheels(installed_old, release_keys, tmp_path,
                                                 monkeypatch):
    """A release whose project needs a wheel it does not carry is refused, whatever pip's
    environment or config offers (the updater runs pip isolated from both, on the manifest's
    wheels alone)."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    folder = tmp_path / "needs-more"
    stub_wheel(folder / release.WHEELS, "9.9.2", requires=["evil-dep"])
    manifest = release.describe(folder, version="9.9.2", platform="any", schema=6,
                                min_schema=0, created="2026-12-02T09:00:00Z")
    release.sign_into(folder, manifest, release_keys[0])
    planted = tmp_path / "planted"
    stub_wheel(planted, "1.0", name="evil-dep")
    (tmp_path / "pip.conf").write_text(f"[global]\nfind-links = {planted}\n")
    monkeypatch.setenv("PIP_FIND_LINKS", str(planted))
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    kiosk = Kiosk(apps, state)
    with pytest.raises(ReleaseError, match="the release lacks a dependency: evil-dep"):
        slots.install(apps, folder, release_keys[1], state=state, start=kiosk.start,
                      stop=kiosk.stop)
    assert (slots.active_slot(apps), running_version(apps), kiosk.started) == ("a", "9.8.0", [])
    assert not list(apps.glob("*/lib/python*/site-packages/evil_dep*"))


@pytest.mark.slow
def test_slots_wheel_changed_after_verify_is_not_installed(
        installed_old, releases, release_keys, tmp_path):
    """pip checks each wheel against its signed hash as it reads it: a release folder changed
    between the verification and the install (a USB stick, another writer) is refused."""
    apps, state = copy_of(installed_old, tmp_path, visits=1)
    folder = tmp_path / "swapped"
    subprocess.run(["cp", "-a", str(releases["9.9.0"][0]), str(folder)], check=True)
    wheel = next((folder / release.WHEELS).glob("*.whl"))

    def swap(step, detail):
        if step == "install":  # verified already
            wheel.write_bytes(wheel.read_bytes().replace(b'print("kiosk", VERSION)',
                                                         b'print("kiosk", "evil!")'))

    with pytest.raises(ReleaseError, match="pip could not install the release offline"):
        slots.install(apps, folder, release_keys[1], state=state, on_step=swap)
    assert (slots.active_slot(apps), running_version(apps)) == ("a", "9.8.0")
    assert slots.installed_version(apps, "b") is None


def updater(apps, state, folder, digest, key, kiosk, *, resume=False):
    """``kiosk update DIR``; ``resume``: the unit's run at boot, with no request on file, which
    finishes what root's journal says was cut."""
    what = (["--request", str(state / request.REQUEST)] if resume else
            [str(folder), "--sha256", digest])
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk", "update", *what, "--key", str(key),
         "--apps", str(apps), "--state", str(state), "--health-timeout", "20",
         *kiosk.commands],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_slots_kill_9_at_each_step_in_turn_leaves_a_kiosk_that_starts(
        installed_old, releases, release_keys, tmp_path, monkeypatch):
    """The updater is killed as it announces a step, run again and killed at the next one, and so on
    through every step, once also 0.3 s into the install (inside pip's copy or pip): after each
    kill the kiosk starts, old or new, never neither; the last run finishes the update, with no
    visit lost. The runs after the switch are the updater unit's run at boot (no request on
    file): it finds the cut update in root's journal and finishes it, through the updater of the
    slot before the trial (9.8.0's), never the one on trial, and hands over only once."""
    apps, state = copy_of(installed_old, tmp_path, visits=3)
    handed = tmp_path / "updaters"  # each slot's updater that ran, by its version
    monkeypatch.setenv("STUB_UPDATES", str(handed))
    key = tmp_path / "release-key.pub"
    key.write_bytes(release_keys[1])
    kiosk = Kiosk(apps, state)
    folder, digest = releases["9.9.0"]
    cuts = [(step, 0.0) for step in slots.STEPS]
    # Inside the install: copying pip takes about 0.4 s here and pip itself more (a whole
    # second was once past it, since the venv no longer runs ensurepip).
    cuts.insert(slots.STEPS.index("install") + 1, ("install", 0.3))
    killed = []
    for step, after_s in cuts:
        said = []
        resume = step in ("start", "healthy")
        with updater(apps, state, folder, digest, key, kiosk, resume=resume) as proc:
            for line in proc.stdout:
                said.append(line)
                if line.startswith(f"update: {step}:"):
                    time.sleep(after_s)
                    proc.send_signal(signal.SIGKILL)
                    break
            proc.wait(timeout=60)
            said += proc.stdout.readlines()  # what it printed before the kill landed
        if proc.returncode == -signal.SIGKILL:
            killed.append(step)
        if after_s:  # the venv and pip take longer than that: cut inside them
            assert not any(line.startswith("update: check:") for line in said), said
        assert running_version(apps) in ("9.8.0", "9.9.0"), "".join(said)
        assert not resume or (
            said[0] == "update: trusted: the trial is judged by the updater of slot a\n"
            and said[1].startswith("update: resume: 9.9.0 from ")), said
    assert killed == [step for step, _ in cuts]  # each run resumed and reached the next cut
    assert handed.read_text() == "9.8.0\n9.8.0\n"  # slot a's, once per run at boot

    with updater(apps, state, folder, digest, key, kiosk) as again:
        out = again.communicate(timeout=120)[0]
    assert again.returncode == 0, out
    assert running_version(apps) == "9.9.0" and "update: done: 9.9.0" in out
    assert visits_in(state / "kiosk.db") == (6, 3)
