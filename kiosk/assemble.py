"""The wiring: one kiosk built from a config, each part given what it needs as it is made.

Parts are made in dependency order (the queue first, then the adapters that post on it, then
the runner that owns them all), so nothing is set on a part after it was constructed. The
runner keeps the one config in force; this module only reads the config it was given.
"""

import logging
import queue
import threading
import time
from pathlib import Path

from kiosk import __version__, script
from kiosk import config as kiosk_config
from kiosk.card.repeat import RepeatKeys
from kiosk.clock import WallClock
from kiosk.errors import KioskError
from kiosk.gpio import Panel
from kiosk.renewal import files as renewal_files
from kiosk.renewal.client_cert import ClientCert, read_certificate
from kiosk.renewal.relay import LOOK_EVERY_S, RELAY_EVERY_S, Relay
from kiosk.runner import Runner
from kiosk.store import Housekeeper, Store
from kiosk.telemetry import topics
from kiosk.telemetry.commands import Commands
from kiosk.telemetry.health import HealthReporter
from kiosk.telemetry.mqtt import MqttLink
from kiosk.telemetry.outbox import Outbox
from kiosk.update.request import REQUEST, STATUS_PATH, StatusReader
from kiosk.update.trial import Trial
from kiosk.watchdog import Watchdog

log = logging.getLogger(__name__)


class Telemetry:
    """The kiosk's reporting: MQTT link, outbox pump, health and remote commands, and the
    relay of the certificate renewal, composed. ``renewal_dir`` and the relay's timing are
    for tests (:class:`kiosk.renewal.relay.Relay`)."""

    def __init__(self, cfg, store, put, *, remote_path, cpu_temperature=None,
                 screen_state=None, outbox_poll_s=1.0, clock=None, wall=None,
                 update_status=STATUS_PATH, renewal_dir=renewal_files.RENEWAL_DIR,
                 relay_look_s=LOOK_EVERY_S, relay_every_s=RELAY_EVERY_S):
        clock = clock or WallClock()
        wall = wall or clock.wall
        self.config_version = cfg.remote_version
        self.outbox = Outbox(store, window=cfg.telemetry.inflight_window,
                             resend_after_s=cfg.telemetry.resend_after_s,
                             when_dead=self._dead_letter, poll_s=outbox_poll_s,
                             wall=lambda: wall()[0])
        self.link = MqttLink(cfg.mqtt, cfg.kiosk.id, instance=store.instance,
                             next_epoch=store.next_epoch,
                             version=__version__, facts=self.outbox.put, put=put,
                             service_point=topics.service_point_payload(cfg),
                             inflight_window=cfg.telemetry.inflight_window, stamp=clock.stamp)
        self.relay = Relay(self.link, cfg.storage.data_dir, renewal_dir=renewal_dir,
                           look_s=relay_look_s, every_s=relay_every_s)
        self.commands = Commands(self.link, self.outbox, remote_path=remote_path,
                                 request_path=Path(cfg.storage.data_dir) / REQUEST,
                                 relay=self.relay)
        self.health = HealthReporter(store, self.link,
                                     interval_s=cfg.telemetry.health_interval_s,
                                     version=__version__, mode=cfg.kiosk.mode,
                                     applied_version=lambda: self.config_version,
                                     cpu_temperature=cpu_temperature, screen_state=screen_state,
                                     update_state=StatusReader(update_status),
                                     cert_expires=_loaded_cert_expiry(cfg.mqtt),
                                     stamp=clock.stamp, wall=wall)

    def reconfigure(self, cfg):
        """The runner put ``cfg`` in force: re-publish the service-point message, report its
        version."""
        self.link.set_service_point(topics.service_point_payload(cfg))
        self.config_version = cfg.remote_version

    def _dead_letter(self, event_id, reason_code):
        self.health.note_dead_letter(event_id, reason_code)

    def start(self):
        self.outbox.start(self.link)
        self.link.start()
        self.health.start()

    def stop(self):
        self.health.stop()
        self.link.stop()
        self.outbox.stop()


class Kiosk:
    """Everything one kiosk process runs, built from a config; a context manager.

    ``headless`` uses SDL's dummy video driver; ``display=False`` runs without screens at all
    (the runner of the telemetry issue, soak runs). pyscard finds pcscd through
    ``PCSCLITE_CSOCK_NAME`` in the environment. ``when_key`` and ``when_shown`` are handed to
    the :class:`~kiosk.runner.Runner`. ``clock`` (a :class:`~kiosk.clock.WallClock`) is every
    wall-clock read of the process: periods, the store's times, stamps, blanking, card expiry
    (``kiosk run --clock-file`` steps it). ``wall()`` returns ``(aware UTC now, synced)`` for the
    runner's periods, the store's and the telemetry's times (``clock.wall`` unless a test steps
    it). ``repeat_key_seed`` (test and soak runs only, ``kiosk run --repeat-key-seed``) makes
    the repeat keys predictable so a privacy scan can look for them; None draws random keys.
    ``renewal_dir`` is where the root unit leaves its renewal files (a test's own folder).
    """

    def __init__(self, cfg, *, display=True, headless=False, rate_only=False, when_key=None,
                 when_shown=None, clock=None, wall=None, repeat_key_seed=None,
                 renewal_dir=renewal_files.RENEWAL_DIR):
        clock = clock or WallClock()
        wall = wall or clock.wall
        self.remote_path = kiosk_config.remote_layer_path(cfg)
        if repeat_key_seed is not None and cfg.kiosk.mode != "demo":
            # Anyone who knows the seed could compute every card's hash.
            raise KioskError("--repeat-key-seed makes the repeat keys predictable: it is "
                             "refused unless kiosk.mode = \"demo\" (test and soak runs)")
        self.store = Store.open(Path(cfg.storage.data_dir),
                                retention_days=cfg.storage.retention_days,
                                min_free_mb=cfg.storage.min_free_mb,
                                checkpoint_pages=cfg.storage.checkpoint_pages,
                                period_s=cfg.telemetry.period_s, clock=lambda: wall()[0])
        if repeat_key_seed is not None:
            log.warning("repeat keys seeded for a test run: predictable, never for a kiosk in "
                        "service")
        self.keys = RepeatKeys(cfg.flow.repeat_window_min * 60, seed=repeat_key_seed)
        self._parts = []
        try:
            events = queue.SimpleQueue()
            housekeeper = self._started(Housekeeper(self.store))
            panel = self._add(Panel.from_config(cfg.gpio, put=events.put))
            screen = self._add(_display(cfg, headless, clock)) if display else None
            card = self._card(cfg, events.put, clock)
            self.telemetry = self._telemetry(cfg, events.put, panel, screen, clock, wall,
                                             renewal_dir)
            self.runner = Runner(cfg, self.store, keys=self.keys, events=events, card=card,
                                 display=screen, panel=panel, telemetry=self.telemetry,
                                 watchdog=Watchdog(), housekeeper=housekeeper,
                                 rate_only=rate_only, when_key=when_key, when_shown=when_shown,
                                 wall=wall,
                                 trial=Trial.pending(cfg.storage.data_dir, __version__),
                                 client_cert=_client_cert(cfg, renewal_dir))
        except BaseException:
            self.close()
            raise

    @property
    def cfg(self):
        """The config in force: the runner's, remote changes included."""
        return self.runner.cfg

    def _add(self, part):
        self._parts.append(part)
        return part

    def _started(self, part):
        part.start()
        return self._add(part)

    def _card(self, cfg, put, clock):
        if cfg.card.backend != "pcsc":
            log.warning("card.backend = %r: no card reader, ratings only without a card",
                        cfg.card.backend)
            return None
        # Here, not at the top: pyscard is loaded only by a kiosk that has a reader.
        from kiosk.card.reader import CardService

        return self._started(CardService(
            put, self.keys, reader=cfg.card.reader or None,
            read_deadline_s=cfg.card.read_deadline_s, settle_s=cfg.card.settle_s,
            collect_age_band=cfg.flow.collect_age_band, collect_gender=cfg.flow.collect_gender,
            today=clock.today))

    def _telemetry(self, cfg, put, panel, screen, clock, wall, renewal_dir):
        if not cfg.mqtt.host:
            log.warning("mqtt.host is empty: telemetry is off, visits stay in the local outbox")
            return None
        return self._started(Telemetry(
            cfg, self.store, put, remote_path=self.remote_path,
            cpu_temperature=panel.cpu_temperature,
            screen_state=screen.screen_state if screen else None, clock=clock, wall=wall,
            renewal_dir=renewal_dir))

    def run(self, stop):
        self.runner.run(stop)

    def play(self, steps, stop, *, card=None, repeat=1, first=0, wait_confirmed_s=0.0,
             keep_going=False, recover_s=script.DEFAULT_RECOVER_S, progress=None):
        """Run the main loop while a script plays, then until the collector confirmed every
        visit (their periods closed and released them first).

        The loop stays on this thread; the script's driver only enqueues. Returns the driver
        (``completed``, ``recovered``, ``error``); ``first``, ``keep_going``, ``recover_s`` and
        ``progress`` are the driver's. ``stop`` ends it early (SIGTERM).
        """
        driver = script.ScriptDriver(self.runner, steps, repeat=repeat, first=first, card=card,
                                     keep_going=keep_going, recover_s=recover_s,
                                     progress=progress)

        def finish():
            # Says why the wait ended: a soak once saw it end 235 s early with no word why.
            driver.done.wait()
            started = time.monotonic()
            try:
                while time.monotonic() < started + wait_confirmed_s:
                    if stop.is_set():
                        log.info("wait for confirmation stopped from outside after %.1f s",
                                 time.monotonic() - started)
                        break
                    stats = self.store.outbox_stats()
                    if stats.depth == 0 and stats.held == 0:
                        break
                    stop.wait(0.1)
            except Exception:  # noqa: BLE001 - logged here: a thread's traceback can go unseen
                log.exception("wait for confirmation failed")
            finally:
                self.store.close()  # this thread's own connection only
                stop.set()

        driver.start()
        threading.Thread(target=finish, name="script-finish", daemon=True).start()
        self.run(stop)
        driver.stop()
        return driver

    def close(self):
        for part in reversed(self._parts):
            try:
                part.stop() if hasattr(part, "stop") else part.close()
            except Exception:  # noqa: BLE001 - one part failing must not keep others running
                log.exception("error while stopping %s", type(part).__name__)
        self._parts.clear()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _client_cert(cfg, renewal_dir):
    """The client certificate to judge, when the kiosk connects with one."""
    if not cfg.mqtt.host or not cfg.mqtt.cert_file:
        return None
    return ClientCert(cfg.mqtt.cert_file, renewal_dir=renewal_dir)


def _loaded_cert_expiry(mqtt):
    """The notAfter of the client certificate the link loaded (after it did: a file it could
    not load has already stopped the kiosk, naming the path), None without one. Read once: a
    new certificate is loaded only by a restart (:meth:`ClientCert.installed`)."""
    if not mqtt.tls or not mqtt.cert_file:
        return None
    try:
        return read_certificate(mqtt.cert_file)[1]
    except (OSError, ValueError) as exc:  # replaced since the link loaded it: said, not fatal
        log.warning("cannot read the client certificate %s for its expiry: %s",
                    mqtt.cert_file, exc)
        return None


def _display(cfg, headless, clock):
    # Here, not at the top: pygame is loaded only by a kiosk that has a screen.
    from kiosk.display.window import Display

    return Display(cfg, headless=headless, has_buzzer=cfg.gpio.buzzer is not None,
                   wall_clock=clock.now)
