"""Issue 15: the short soak. Every fault kind at least once, through the real stack (two
kiosk processes on the emulated card stack and loop-mounted disks, two lanes with a broker, a
fault proxy and a collector on SQLite and on PostgreSQL), then the reckoning and the privacy
scan. The full run is ``./dev soak`` (docs/reliability.md)."""

import pytest

from benchmarks.soak import schedule
from benchmarks.soak.run import soak


@pytest.mark.slow
def test_short_soak_every_fault_kind_loses_nothing_counts_nothing_twice_leaks_nothing(tmp_path):
    result = soak(tmp_path, seed=3, visits=6, faults_each=1, duration_s=10, hold_s=(0.5, 2.0),
                  image_mb=24, card_hold_s=4, drain_timeout_s=120)
    table = result.table()
    assert result.fault_errors == [], table
    assert all(result.faults[kind] == 1 for kind in schedule.KINDS), table
    reckoning = result.reckoning
    assert (reckoning.lost, reckoning.duplicated, reckoning.uncommitted,
            reckoning.count_gaps) == (0, 0, 0, 0), table
    assert result.privacy_hits == [], table
    assert result.drain_s is not None, f"the kiosks did not drain\n{table}"
    assert result.unexpected_exits == 0, table
    # Enough visits went through for the reckoning to mean something.
    assert reckoning.thanked >= 6 and reckoning.collected >= reckoning.thanked, table
    assert result.clean
    # The scan read the words of every screen shown, the thank-you's among them.
    for scenes in tmp_path.glob("soak-kiosk-*/scenes.txt"):
        assert "# thank_you th\n" in scenes.read_text(encoding="utf-8")
    assert len(list(tmp_path.glob("soak-kiosk-*/scenes.txt"))) == result.kiosks
