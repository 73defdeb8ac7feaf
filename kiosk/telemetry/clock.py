"""This machine's clocks as the wire's time stamp: wall time, whether NTP set it, monotonic.

Its own module so the runner can stamp a visit without importing the MQTT adapter (and paho)
on a kiosk whose telemetry is off.
"""

import time
from datetime import UTC, datetime
from pathlib import Path

from kiosk.telemetry import topics

# systemd-timesyncd creates this file once the clock has been set from NTP; a Pi has no RTC, so
# until then wall-clock stamps are flagged as unsynced.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def system_stamp():
    """The wire time stamp for now: RFC 3339 UTC, whether NTP has set the clock, monotonic s."""
    return topics.stamp(datetime.now(UTC), TIMESYNC_FLAG.exists(), time.monotonic())
