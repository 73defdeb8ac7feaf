"""The kiosk's update request as root reads it (untrusted), the version order behind the
anti-downgrade rule, and the states the updater reports (kiosk.update.request, updater)."""

import argparse
import json
import os
import re
from types import SimpleNamespace

import pytest

from kiosk import logsafe
from kiosk.errors import ReleaseError
from kiosk.update import release, request, slots, trial, updater

SHA = "ab" * 32
GOOD = {"version": "9.9.0", "url": "https://releases.example.go.th/kiosk/9.9.0/",
        "sha256": SHA, "rollout": "r-9-9-0"}


def test_request_read_gives_the_wanted_release(tmp_path):
    path = tmp_path / request.REQUEST
    path.write_text(json.dumps(GOOD))
    wanted = request.read_request(path)
    assert request.request_content(wanted) == GOOD
    path.write_text(json.dumps({**GOOD, "rollout": None}))
    assert request.read_request(path).rollout is None
    assert request.read_request(tmp_path / "none.json") is None


@pytest.mark.parametrize("change,refusal", [
    ({"url": "http://releases.example.go.th/kiosk/"}, "https:// URL"),
    ({"url": "https://evil.example/a b"}, "https:// URL"),
    ({"sha256": SHA[:-1]}, "64 lowercase hex"),
    ({"sha256": SHA.upper()}, "64 lowercase hex"),
    ({"version": "../../etc"}, "version like"),
    ({"version": 9}, "version like"),
    ({"rollout": "r 1"}, "an id of letters"),
    ({"extra": 1}, "and nothing else"),
])
def test_request_with_a_field_the_contract_refuses_is_refused(tmp_path, change, refusal):
    path = tmp_path / request.REQUEST
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(ReleaseError, match=refusal):
        request.read_request(path)


def test_request_that_is_not_a_plain_small_file_is_refused(tmp_path):
    """A FIFO would hang a reader, a huge file fill its memory, a symlink point anywhere."""
    path = tmp_path / request.REQUEST
    os.mkfifo(path)
    with pytest.raises(ReleaseError, match="not a regular file"):
        request.read_request(path)
    path.unlink()
    path.write_text(json.dumps({**GOOD, "rollout": "r" * 5000}))
    with pytest.raises(ReleaseError, match="over 4096 bytes"):
        request.read_request(path)
    path.unlink()
    (tmp_path / "elsewhere").write_text(json.dumps(GOOD))
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ReleaseError, match="is a symlink"):
        request.read_request(path)
    path.unlink()
    path.write_bytes(b"\xff{")
    with pytest.raises(ReleaseError, match="not UTF-8 JSON"):
        request.read_request(path)


@pytest.mark.parametrize("older,newer", [
    ("0.1.0", "0.2.0"), ("0.9.0", "0.10.0"), ("1.2.dev1", "1.2a1"), ("1.2a1", "1.2a2"),
    ("1.2a2", "1.2b1"), ("1.2b1", "1.2rc1"), ("1.2rc1", "1.2.0"), ("1.2", "1.2.post1"),
    ("1.2.post1.dev1", "1.2.post1"), ("1.2.0", "1.2.0.1"), ("1.2a1.dev1", "1.2a1"),
])
def test_request_versions_are_ordered_as_pep_440_orders_them(older, newer):
    assert request.is_newer(newer, older) and not request.is_newer(older, newer)


def test_request_versions_equal_or_unorderable():
    assert not request.is_newer("1.2", "1.2.0") and not request.is_newer("1.2.0", "1.2")
    for odd in ("1.2-evil", "v1.2", "latest", "", None):
        with pytest.raises(ValueError, match="not a version the updater can order"):
            request.is_newer(odd, "1.0")


def test_request_status_says_rolled_back_or_refused_with_a_short_reason(tmp_path):
    """The updater's states as the status file keeps them: a rollback's reason without the
    "rolled back:" prefix, a withdrawal not pinned to the release (a new request may retry
    it)."""
    status = updater._Status(tmp_path, "9.9.1", "r-1", SHA)
    status.step("wait", "for the kiosk to be free")
    assert request.read_status_file(tmp_path / request.STATUS)["state"] == "waiting"
    status.step("rollback", "9.9.1 was not healthy within 120 s")
    status.step("healthy", "never after a rollback")
    status.failed(ReleaseError("rolled back: 9.9.1 was not healthy within 120 s"))
    assert request.read_status_file(tmp_path / request.STATUS) == {
        "state": "rolled_back", "version": "9.9.1", "reason": "9.9.1 was not healthy within "
        "120 s", "rollout": "r-1", "sha256": SHA}
    updater._Status(tmp_path, "9.9.1", "r-1", SHA).failed(updater._Withdrawn("withdrawn"))
    assert request.read_status_file(tmp_path / request.STATUS)["sha256"] is None
    updater._Status(tmp_path, "9.9.1").failed(ReleaseError("x" * 500))
    assert len(request.read_status_file(tmp_path / request.STATUS)["reason"]) <= 200


def test_request_withdrawn_while_waiting_stops_the_update_before_the_kiosk_is_stopped(
        tmp_path, monkeypatch):
    """A paused rollout deletes the request: an updater still waiting for a free kiosk gives up
    before stopping it, and the status does not pin the release (resuming the rollout with the
    same request tries it again). Download and slots stand in: only the updater's wiring runs."""
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps(GOOD))
    (tmp_path / "key.pub").write_bytes(b"key")
    stopped = []

    def install(apps, folder, public_pem, *, wait_quiet, stop, **options):
        asked.unlink()  # the kiosk got an empty retained update meanwhile
        wait_quiet()
        stop()
        stopped.append(True)

    monkeypatch.setattr(updater.download, "fetch", lambda *a, **k: None)
    monkeypatch.setattr(updater.slots, "install", install)
    parser = argparse.ArgumentParser()
    updater.add_arguments(parser)
    args = parser.parse_args(["--request", str(asked), "--apps", str(tmp_path / "apps"),
                              "--key", str(tmp_path / "key.pub"), "--any-time",
                              "--stop-command", "true", "--status-command", "echo idle"])
    (tmp_path / "apps").mkdir()
    with pytest.raises(ReleaseError, match="withdrawn or changed before the kiosk was stopped"):
        updater.main(args)
    assert stopped == []
    status = request.read_status_file(tmp_path / "apps" / request.STATUS)
    assert (status["state"], status["version"], status["sha256"]) == ("refused", "9.9.0", None)
    assert status["reason"].startswith("withdrawn: ")  # the centre tells it from a failure


def updater_args(tmp_path, asked, *extra):
    """``kiosk update --request ASKED`` as parsed, with its folders under ``tmp_path``."""
    (tmp_path / "apps").mkdir(exist_ok=True)
    (tmp_path / "key.pub").write_bytes(b"key")
    parser = argparse.ArgumentParser()
    updater.add_arguments(parser)
    return parser.parse_args([
        "--request", str(asked), "--apps", str(tmp_path / "apps"),
        "--key", str(tmp_path / "key.pub"), "--downloads", str(tmp_path / "downloads"),
        "--any-time", "--stop-command", "true", "--status-command", "echo idle", *extra])


def status_in(tmp_path):
    return request.read_status_file(tmp_path / "apps" / request.STATUS)


def test_request_replaced_while_the_updater_worked_is_taken_up_in_the_same_run(
        tmp_path, monkeypatch):
    """The kiosk waits to install r1; ops start r2 and the kiosk rewrites its request. systemd
    folds that change into the running job (nothing starts the updater again), so the run
    that gave r1 up takes r2 up before it ends."""
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps({**GOOD, "rollout": "r-1"}))
    installed = []

    def install(apps, folder, public_pem, *, version, wait_quiet, **options):
        installed.append(version)
        if version == "9.9.0":
            asked.write_text(json.dumps({**GOOD, "version": "9.9.1", "sha256": "cd" * 32,
                                         "rollout": "r-2"}))
        wait_quiet()
        return "b", SimpleNamespace(version=version)

    monkeypatch.setattr(updater.download, "fetch", lambda *a, **k: None)
    monkeypatch.setattr(updater.slots, "install", install)
    assert updater.main(updater_args(tmp_path, asked)) == 0
    assert installed == ["9.9.0", "9.9.1"]
    assert status_in(tmp_path) == {"state": "healthy", "version": "9.9.1", "reason": None,
                                   "rollout": "r-2", "sha256": "cd" * 32}


def test_request_rewritten_without_end_is_taken_up_a_bounded_number_of_times(
        tmp_path, monkeypatch):
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps(GOOD))
    installed = []

    def install(apps, folder, public_pem, *, version, wait_quiet, **options):
        installed.append(version)
        asked.write_text(json.dumps({**GOOD, "rollout": f"r-{len(installed)}"}))
        wait_quiet()

    monkeypatch.setattr(updater.download, "fetch", lambda *a, **k: None)
    monkeypatch.setattr(updater.slots, "install", install)
    with pytest.raises(ReleaseError, match="^withdrawn: "):
        updater.main(updater_args(tmp_path, asked))
    assert len(installed) == updater.MAX_REQUESTS_PER_RUN


def test_request_failure_not_the_releases_is_not_pinned_and_is_tried_again(
        tmp_path, monkeypatch):
    """A download that failed after its retries (a 4G cut) says nothing of the release: the
    status names no release, so the same request is tried again at the next run; a bad
    signature is the release's verdict: pinned, and not tried again."""
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps(GOOD))
    failures = [release.Transient("https://releases.example.go.th/kiosk/9.9.0/manifest.json: "
                                  "<urlopen error timed out> (5 attempts)"),
                ReleaseError("manifest.json: the signature does not match (changed after "
                             "signing)")]
    fetched = []

    def fetch(*args, **options):
        fetched.append(1)
        raise failures.pop(0)

    monkeypatch.setattr(updater.download, "fetch", fetch)
    args = updater_args(tmp_path, asked)
    with pytest.raises(release.Transient):
        updater.main(args)
    status = status_in(tmp_path)
    assert (status["state"], status["sha256"]) == ("refused", None)
    assert status["reason"].startswith("retry later: https://")
    with pytest.raises(ReleaseError, match="the signature does not match"):
        updater.main(args)  # the same request, tried again
    assert (status_in(tmp_path)["state"], status_in(tmp_path)["sha256"]) == ("refused", SHA)
    assert updater.main(args) == 0 and len(fetched) == 2  # pinned: not tried a third time


def test_request_given_up_at_the_wait_limit_is_tried_again(tmp_path, monkeypatch):
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps(GOOD))
    waits = []

    def install(apps, folder, public_pem, *, wait_quiet, **options):
        waits.append(1)
        wait_quiet()

    monkeypatch.setattr(updater.download, "fetch", lambda *a, **k: None)
    monkeypatch.setattr(updater.slots, "install", install)
    args = updater_args(tmp_path, asked, "--wait-limit", "0", "--status-command", "echo card")
    for _ in range(2):
        with pytest.raises(release.Transient, match="never free within 0 s"):
            updater.main(args)
    assert status_in(tmp_path)["sha256"] is None and waits == [1, 1]


def test_request_download_goes_once_the_update_ends_and_stays_to_be_resumed(
        tmp_path, monkeypatch):
    """The downloads share the data partition with the visit store: a release's folder stays
    while the same request may be tried again (resumed, not fetched again), and goes once its
    update is healthy. Folders left by earlier releases go when another is fetched."""
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps(GOOD))
    downloads = tmp_path / "downloads"
    for name in ("0123abcd-4567ef01", "0123456789abcdef", "not-ours"):
        (downloads / name).mkdir(parents=True)
    outcomes = [release.Transient("the link was cut"), None]

    def fetch(url, into, public_pem, **options):
        into.mkdir(parents=True, exist_ok=True)
        (into / release.MANIFEST).write_text("{}")

    def install(apps, folder, public_pem, **options):
        failure = outcomes.pop(0)
        if failure:
            raise failure
        return "b", SimpleNamespace(version="9.9.0")

    monkeypatch.setattr(updater.download, "fetch", fetch)
    monkeypatch.setattr(updater.slots, "install", install)
    args = updater_args(tmp_path, asked)
    with pytest.raises(release.Transient):
        updater.main(args)
    assert sorted(p.name for p in downloads.iterdir()) == ["abababab-abababab", "not-ours"]
    assert updater.main(args) == 0 and status_in(tmp_path)["state"] == "healthy"
    assert [p.name for p in downloads.iterdir()] == ["not-ours"]


def test_request_updater_prints_no_whole_hash_and_no_id_shaped_folder(
        tmp_path, monkeypatch, capsys):
    """A manifest hash whose first 16 hex digits are all decimal: the download folder named
    after it, and the hashes in a refusal, never show 13 digits in a row (a citizen ID's
    shape) nor a whole hash, in the updater's lines or its error."""
    digest = "1234567890123456" + "ab" * 24
    other = "9876543210987" + "c" * 51
    asked = tmp_path / request.REQUEST
    asked.write_text(json.dumps({**GOOD, "sha256": digest}))

    def install(apps, folder, public_pem, *, on_step, **options):
        on_step("verify", str(folder))
        raise ReleaseError(f"{release.MANIFEST} has SHA-256 {other}; the update named "
                           f"{digest}: not the release ops chose")

    monkeypatch.setattr(updater.download, "fetch", lambda *a, **k: None)
    monkeypatch.setattr(updater.slots, "install", install)
    with pytest.raises(ReleaseError) as refused:
        updater.main(updater_args(tmp_path, asked))
    said = capsys.readouterr().out + str(refused.value)
    assert f"update: verify: {tmp_path}/downloads/12345678-90123456\n" in said
    assert "the update named 12345678-90123456-abababab-" in said
    assert not logsafe.holds_id(said) and not re.search(r"[0-9a-f]{13}", said), said


def test_request_trial_is_judged_by_the_updater_of_the_slot_before_it(tmp_path):
    """While root's journal names a trial, ``kiosk update`` started from any other slot (the
    unit starts current/bin/kiosk: the release on trial) hands over to the previous slot's
    updater, once, and only to a complete slot."""
    apps = tmp_path / "apps"
    (apps / "a").mkdir(parents=True)
    (apps / "a" / slots.COMPLETE).write_text("9.8.0\n")
    argv = ["update", "--request", "/var/lib/kiosk/state/update-request.json"]

    def trusted(argv=argv, prefix=str(apps / "b"), environ=None):
        return updater._trusted_updater(apps, argv, prefix=prefix, environ=environ or {})

    assert trusted() is None  # no trial under way
    trial.write(apps / slots.JOURNAL, {"version": "9.9.0", "slot": "b", "previous": "a"})
    assert trusted() == ([str(apps / "a/bin/kiosk"), *argv], "a")
    assert trusted(prefix=str(apps / "a")) is None  # the trusted updater itself
    assert trusted(environ={updater.TRUSTED_ENV: "a"}) is None  # handed over already
    assert trusted(argv=["-q", "tests/update"]) is None  # not the program (a test's main())
    (apps / "a" / slots.COMPLETE).unlink()
    assert trusted() is None
