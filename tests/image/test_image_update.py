"""A signed update applied in the emulated Pi (./dev image-test): the first boot ran slot a; the
second, after office hours, finds an update request for the next version, and the updater unit
downloads it over HTTPS, builds slot b, switches and keeps it once the kiosk declares itself
healthy."""

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def status_of(updated):
    line = updated.line("update after") or ""
    return json.loads(line.split(": ", 1)[1]) if ": {" in line else None


def test_image_update_is_downloaded_installed_into_slot_b_and_kept(updated):
    assert status_of(updated) is not None, updated.console[-4000:]
    status = status_of(updated)
    assert (status["state"], status["version"], status["reason"]) == (
        "healthy", updated.version, None), updated.report
    assert updated.line("update slot=") == f"b kiosk {updated.version}", updated.report
    assert ("manifest.json", None) in updated.requests and any(
        path.startswith("wheels/citizeninfo_kiosk-") for path, _ in updated.requests)


def test_image_after_the_update_the_kiosk_runs_and_nothing_failed(updated):
    assert updated.line("after the update kiosk.service active=") == "active result=success", \
        updated.report
    assert updated.line("failed units=") == "[]", updated.console[-3000:]
