"""The kiosk's health report: what central ops sees every ``telemetry.health_interval_s``.

Health is QoS 0 and kept in memory only, never in the disk outbox: a stale reading is worth
nothing, and a kiosk that was offline for a day must not flood the broker with old ones. The
report is read fresh each time (load, disk, memory, outbox stats); what only the runner knows
(reader state, card reads) is noted here. CPU temperature and screen state stay null unless a
provider callable is given; so does the update state (``update_state``: the root updater's status
file as :class:`kiosk.update.request.StatusReader` reads it). ``cert_expires`` is the expiry of
the client certificate the process connects with, read once as it starts (a new certificate is
only loaded by a restart); the centre trusts it over the newest one it signed.

A report goes out every minute, so nothing in it may move with a single visit (issue 11): no
time of the last card read and no "card present", only the number of cards read on the last
whole local day; the outbox depth counts only rows released for sending (the store's).
"""

import datetime as dt
import logging
import os
import threading
import time

from kiosk import period
from kiosk.clock import counts_as_synced, system_stamp, system_wall
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


class _DailyCount:
    """Events per local (Asia/Bangkok) day; only a whole day's count is ever told.

    A count for today so far would time each visit to within a report interval. Days follow a
    synced wall clock only: events noted before the clock is synced join the first synced day
    (a Pi without a real-time clock would otherwise end a "day" at the sync, and tell how many
    cards were read since boot). A clock stepped back ends no day and opens none.
    """

    def __init__(self):
        self._lock = threading.Lock()  # the runner notes, the health thread reads
        self._day = None  # the local day being counted, once the clock has been synced
        self._count = 0
        self._last = None

    def note(self, wall, synced):
        with self._lock:
            self._roll(wall, synced)
            self._count += 1

    def last_whole_day(self, wall, synced):
        """The count of the local day before today, or None until a day has ended."""
        with self._lock:
            self._roll(wall, synced)
            return self._last

    def _roll(self, wall, synced):
        if not synced:
            return
        day = period.local_day(wall)
        if self._day is None:
            self._day = day
        elif day > self._day:
            yesterday = period.local_day(day.start - dt.timedelta(seconds=1))
            self._last = self._count if self._day == yesterday else 0
            self._day, self._count = day, 0


class HealthReporter:
    """Builds and publishes the health payload.

    ``applied_version()`` returns the applied remote config version (or None); providers
    ``cpu_temperature()`` (degrees C), ``screen_state()`` (``on``/``off``) and
    ``update_state()`` (a ``topics.UpdateState`` or None) are optional. ``cert_expires`` is the
    loaded client certificate's notAfter (aware), None for a password kiosk.
    Dead letters are the alarm: ``dead_letters`` stays above zero until a replay delivers them.
    ``wall()`` returns ``(aware UTC now, synced)``; in demo mode the wall clock counts as
    synced, as the runner counts it (a developer's machine may run no timesyncd).
    """

    def __init__(self, store, link, *, interval_s, version, mode,
                 applied_version=lambda: None, cpu_temperature=None, screen_state=None,
                 update_state=None, cert_expires=None, stamp=system_stamp, clock=time.monotonic,
                 wall=system_wall):
        self._store = store
        self._link = link
        self._interval_s = interval_s
        self._version = version
        self._mode = mode
        self._applied_version = applied_version
        self._cpu_temperature = cpu_temperature
        self._screen_state = screen_state
        self._update_state = update_state
        self._update_refused = False
        self._cert_expires = None if cert_expires is None else period.text(cert_expires)
        self._stamp = stamp
        self._clock = clock
        self._wall = wall
        self._started = clock()
        self._stopping = threading.Event()
        self._thread = None
        self.reader_state = "no_reader"
        self._card_reads = _DailyCount()
        self.dead_letter_codes = ()

    def note_reader(self, state):
        """The runner's view of the card reader, one of ``topics.READER_STATES`` (never a card
        being in it: refused here, where the mistake is, not in every report after it)."""
        if state not in topics.READER_STATES:
            raise ValueError(f"reader state {state!r} is not one of {topics.READER_STATES}")
        self.reader_state = state

    def note_card_read(self):
        """A card was read; neither the card nor the moment is kept, only the day's count."""
        self._card_reads.note(*self._now())

    def _now(self):
        wall, synced = self._wall()
        return wall, counts_as_synced(synced, self._mode)

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
        fields = dict(
            mode=self._mode,
            uptime_s=self._clock() - self._started,
            load_1m=os.getloadavg()[0],
            disk_free_mb=self._store.free_mb(),  # the data partition, where visits wait
            mem_free_mb=memory_free_mb(),
            outbox_depth=stats.depth,
            outbox_oldest_s=stats.oldest_unconfirmed_age_s,
            dead_letters=stats.dead,
            reader=self.reader_state,
            card_reads_ok=self._card_reads.last_whole_day(*self._now()),
            config_version=self._applied_version(),
            version=self._version,
            stamp=self._stamp(),
            cpu_temp_c=self._cpu_temperature() if self._cpu_temperature else None,
            screen=self._screen_state() if self._screen_state else None,
            cert_expires=self._cert_expires,
        )
        update = self._update_state() if self._update_state else None
        if update is not None:
            try:
                return topics.health_payload(**fields, update=update)
            except ValueError as exc:
                # Root's file, but a report without it beats no report at all.
                if not self._update_refused:
                    log.warning("update state left out of health: %s", exc)
                self._update_refused = True
        return topics.health_payload(**fields)

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
