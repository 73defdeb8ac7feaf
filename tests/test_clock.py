"""The kiosk's one wall clock, stepped from a test-only file (``kiosk run --clock-file``)."""

import datetime as dt
import logging
import os

import pytest

from kiosk.clock import WallClock

BASE = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def clock_on(path, synced=True):
    return WallClock(path, system_now=lambda: BASE, is_synced=lambda: synced,
                     monotonic=lambda: 12.5)


def write(path, text):
    """Write and move the mtime on, as a later write would (a fast test may write twice within
    the file system's time granularity)."""
    path.write_text(text)
    stamp_ns = getattr(write, "ns", 1_700_000_000_000_000_000) + 1_000_000
    write.ns = stamp_ns
    os.utime(path, ns=(stamp_ns, stamp_ns))


def test_clock_without_a_file_is_the_system_clock():
    clock = WallClock(None, system_now=lambda: BASE, is_synced=lambda: False)
    assert clock.wall() == (BASE, False)
    assert clock.offset_s() == 0.0


def test_clock_file_offset_shifts_every_read(tmp_path):
    path = tmp_path / "offset"
    write(path, "-10800.5\n")
    clock = clock_on(path)
    shifted = BASE - dt.timedelta(seconds=10800.5)
    assert clock.wall() == (shifted, True)
    assert clock.now() == shifted
    assert clock.stamp() == {"at": "2026-11-30T23:59:59.500Z", "clock_synced": True,
                             "mono_s": 12.5}
    assert clock.today() == shifted.astimezone().date()


def test_clock_file_is_reread_only_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "offset"
    write(path, "3600")
    clock = clock_on(path)
    assert clock.offset_s() == 3600.0
    reads = []
    original = type(path).read_text
    monkeypatch.setattr(type(path), "read_text",
                        lambda self, *a, **k: reads.append(self) or original(self, *a, **k))
    for _ in range(5):
        assert clock.offset_s() == 3600.0
    assert reads == []  # one stat a turn, no read
    write(path, "-3600")
    assert clock.offset_s() == -3600.0
    assert len(reads) == 1


def test_clock_file_missing_or_bad_means_no_offset_said_once(tmp_path, caplog):
    path = tmp_path / "offset"
    clock = clock_on(path)
    with caplog.at_level(logging.WARNING, logger="kiosk.clock"):
        assert [clock.offset_s() for _ in range(3)] == [0.0] * 3
        write(path, "ten hours")
        assert [clock.offset_s() for _ in range(3)] == [0.0] * 3
        write(path, "nan")
        assert clock.offset_s() == 0.0
        write(path, "7.25")
        assert clock.offset_s() == 7.25
        path.unlink()
        assert clock.offset_s() == 0.0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 4, warnings  # missing, words, nan, missing again: once each
    assert all("unreadable" in w for w in warnings)


@pytest.mark.parametrize("text", ["", "1e400", "inf", "0x10"])
def test_clock_file_refuses_what_is_not_a_finite_number(tmp_path, text):
    path = tmp_path / "offset"
    write(path, text)
    assert clock_on(path).offset_s() == 0.0


def near(moment, expected, slack_s=60):
    return abs((moment - expected).total_seconds()) < slack_s


def parse_at(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_clock_file_steps_every_wall_clock_read_of_a_kiosk(kiosk_world, tmp_path):
    """Periods, the store's and the outbox's times, status and health stamps, blanking and the
    card's expiry date all read the one stepped clock (``kiosk run --clock-file``)."""
    import json

    from kiosk.assemble import Kiosk
    from kiosk.telemetry import topics

    path = tmp_path / "clock-offset"
    path.write_text("10800")
    kiosk_world.kiosk = kiosk = Kiosk(kiosk_world.config(), headless=True,
                                      clock=WallClock(path))
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    assert near(kiosk.runner.wall()[0], ahead)
    assert near(kiosk.store._clock(), ahead)
    assert near(kiosk.telemetry.outbox._wall(), ahead)
    assert near(kiosk.runner.display._wall_clock(), ahead)
    assert kiosk.runner.card._today() == ahead.astimezone().date()
    health = json.loads(kiosk.telemetry.health.payload())
    assert near(parse_at(health["at"]), ahead)
    status = kiosk_world.wiretap.wait_for_message(
        topics.kiosk_topic(kiosk_world.config().kiosk.id, "status"),
        lambda m: json.loads(m.payload)["state"] == "online")
    assert near(parse_at(json.loads(status.payload)["at"]), ahead)
