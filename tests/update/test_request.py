"""The kiosk's update request as root reads it (untrusted), the version order behind the
anti-downgrade rule, and the states the updater reports (kiosk.update.request, updater)."""

import argparse
import json
import os

import pytest

from kiosk.errors import ReleaseError
from kiosk.update import request, updater

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
