"""The national-rate benchmark's generator at a tiny scale: real and multiplexed kiosks reach
the real collector through the rig broker, and the benchmark counts every message."""

import pytest

from benchmarks import fleet


@pytest.mark.slow
def test_national_bench_tiny_fleet_loses_nothing_and_counts_every_message(tmp_path):
    figures = fleet.national(tmp_path, tmp_path / "fleet.sqlite3", kiosks=300, real=20,
                             seconds=2, release_s=20)

    lost, _, _ = fleet._national_held(figures)
    assert lost == 0 and figures["lost_count"] == 0 and figures["refused"] == 0
    assert figures["real"] == 20 and figures["periods_sent"] == 30
    assert figures["visits_sent"] > 0 and figures["health_sent"] > 0
    assert figures["published_qos1"] == figures["visits_sent"] + figures["periods_sent"]
    assert figures["kiosks_with_health"] == figures["health_sent"]
