"""The kiosk's health report: what central ops sees every ``telemetry.health_interval_s``.

Health is QoS 0 and kept in memory only, never in the disk outbox: a stale reading is worth
nothing, and a kiosk that was offline for a day must not flood the broker with old ones. The
report is read fresh each time (load, disk, memory, outbox stats); what only the runner knows
(reader state, last card read) is noted here by plain attribute writes, so no lock is needed.
CPU temperature and screen state stay null unless a provider callable is given.
"""

import logging
import os
import threading
import time

from kiosk.clock import system_stamp
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

MEMINFO = "/proc/meminfo"


def memory_free_mb(meminfo=MEMINFO):
    """MemAvailable in MiB: what a new allocation can get without swapping."""
    with open(meminfo, encoding="ascii") as lines:
        for line in lines:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"{meminfo} has no MemAvailable line (Linux 3.14 or later needed)")


class HealthReporter:
    """Builds and publishes the health payload.

    ``applied_version()`` returns the applied remote config version (or None); providers
    ``cpu_temperature()`` (degrees C) and ``screen_state()`` (``on``/``off``) are optional.
    Dead letters are the alarm: ``dead_letters`` stays above zero until a replay delivers them.
    """

    def __init__(self, store, link, *, interval_s, version, mode,
                 applied_version=lambda: None, cpu_temperature=None, screen_state=None,
                 stamp=system_stamp, clock=time.monotonic):
        self._store = store
        self._link = link
        self._interval_s = interval_s
        self._version = version
        self._mode = mode
        self._applied_version = applied_version
        self._cpu_temperature = cpu_temperature
        self._screen_state = screen_state
        self._stamp = stamp
        self._clock = clock
        self._started = clock()
        self._stopping = threading.Event()
        self._thread = None
        self.reader_state = "no_reader"
        self.last_card_read_at = None
        self.dead_letter_codes = ()

    def note_reader(self, state):
        """The runner's view of the card reader, one of ``topics.READER_STATES``."""
        self.reader_state = state

    def note_card_read(self, at):
        """A card was read at ``at`` (RFC 3339 UTC); the card itself is never noted."""
        self.last_card_read_at = at

    def note_dead_letter(self, event_id, reason_code):
        """The broker refused a row (the outbox's ``when_dead``): log the alarm once per code.

        The report itself carries the dead-letter count from the store, so the alarm clears
        exactly when a replay has delivered them.
        """
        if reason_code not in self.dead_letter_codes:
            self.dead_letter_codes = (*self.dead_letter_codes, reason_code)
            log.error("ALARM: broker refuses this kiosk's messages (reason code 0x%02x)",
                      reason_code)

    def payload(self):
        """The encoded health payload as it would be published now."""
        stats = self._store.outbox_stats()
        if not stats.dead:
            self.dead_letter_codes = ()
        return topics.health_payload(
            mode=self._mode,
            uptime_s=self._clock() - self._started,
            load_1m=os.getloadavg()[0],
            disk_free_mb=self._store.free_mb(),  # the data partition, where visits wait
            mem_free_mb=memory_free_mb(),
            outbox_depth=stats.depth,
            outbox_oldest_s=stats.oldest_unconfirmed_age_s,
            dead_letters=stats.dead,
            reader=self.reader_state,
            last_card_read_at=self.last_card_read_at,
            config_version=self._applied_version(),
            version=self._version,
            stamp=self._stamp(),
            cpu_temp_c=self._cpu_temperature() if self._cpu_temperature else None,
            screen=self._screen_state() if self._screen_state else None,
        )

    def publish(self):
        """Publish one report now (QoS 0); False when the link is down and it was dropped."""
        mid = self._link.publish(topics.kiosk_topic(self._link.kiosk_id, "health"),
                                 self.payload(), qos=0)
        return mid is not None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self):
        try:
            while not self._stopping.wait(self._interval_s):
                try:
                    self.publish()
                except Exception:
                    # A failed reading must not end health reporting for the life of the process.
                    log.exception("health report failed; next one in %s s", self._interval_s)
        finally:
            self._store.close()  # this thread's own SQLite connection
