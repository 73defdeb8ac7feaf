"""An expired client certificate cannot connect, so it cannot report itself: the kiosk says so
on the out-of-service screen's technician line and once in the journal, and its link says once
that the broker refuses it. The whole kiosk (runner, headless screen, telemetry) against the
real Mosquitto's mutual-TLS listener."""

import datetime as dt
import gc
import logging
import ssl
import threading

import pygame
import pytest
from cryptography import x509

from kiosk import flow, runner
from kiosk.assemble import Kiosk
from kiosk.rigs.broker import Broker
from kiosk.telemetry.mqtt import MqttLink
from tests.fixtures.broker import wait_until
from tests.rigs.test_broker import signed_by_test_ca

KIOSK = "k-expired"
EXPIRED = "SSLV3_ALERT_CERTIFICATE_EXPIRED"

pytestmark = pytest.mark.slow


def signed_by_rig(broker, kiosk_id, not_before, not_after):
    """``(cert_file, key_file, serial)`` for ``kiosk_id``, dated as given, by the rig's CA."""
    cert_file, key_file = signed_by_test_ca(broker, kiosk_id, not_before, not_after)
    return cert_file, key_file, x509.load_pem_x509_certificate(
        cert_file.read_bytes()).serial_number


def test_expired_certificate_is_on_the_technician_line_and_said_once(
        make_config, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setattr(runner, "HOUSEKEEPING_S", 0.05)  # many housekeepings: still said once
    caplog.set_level(logging.INFO)
    now = dt.datetime.now(dt.UTC)
    with Broker(tmp_path / "broker", tls=True) as broker:
        cert_file, key_file, serial = signed_by_rig(
            broker, KIOSK, now - dt.timedelta(days=366), now - dt.timedelta(days=1))
        cfg = make_config(
            tmp_path / "kiosk", kiosk={"id": KIOSK}, card={"backend": "none"},
            display={"fullscreen": False}, audio={"enabled": False},
            mqtt={"host": "127.0.0.1", "port": broker.tls_port, "tls": True,
                  "ca_file": str(broker.ca_file), "cert_file": str(cert_file),
                  "key_file": str(key_file), "password_file": "", "reconnect_min_s": 0.1,
                  "reconnect_max_s": 1})
        synced = lambda: (dt.datetime.now(dt.UTC), True)  # noqa: E731 - NTP has set the clock
        with Kiosk(cfg, headless=True, wall=synced, renewal_dir=tmp_path / "renewal") as kiosk:
            stop = threading.Event()
            loop = threading.Thread(target=kiosk.run, args=(stop,), name="main-loop")
            loop.start()
            try:
                wait_until(lambda: len([r for r in caplog.records
                                        if r.getMessage().startswith("MQTT link down")]) >= 3,
                           "three refused connects", 10)
            finally:
                stop.set()
                loop.join(5)
            link = kiosk.telemetry.link
            state = kiosk.runner.state
            kiosk.runner.display.save_png(tmp_path / "out_of_service.png")
            texts = [t.text for t in kiosk.runner.display.scene.texts]

    day = f"{now - dt.timedelta(days=1):%Y-%m-%d}"
    reason = (f"cert_expired: client certificate expired {day}; the broker refuses it: install "
              "a new bundle")
    assert state.screen is flow.Screen.OUT_OF_SERVICE and state.out_of_service == reason
    assert reason in texts
    assert pygame.image.load(str(tmp_path / "out_of_service.png")).get_size() == (800, 480)
    journal = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert journal.count(
        f"client certificate {serial:x} expired {now - dt.timedelta(days=1):%Y-%m-%d %H:%M} UTC: "
        "the broker refuses it; install a new bundle from kiosk-fleet provision") == 1
    # The link: refused at every connect, said once.
    assert link.tls_refusal == EXPIRED and not link.is_connected
    assert journal.count(
        f"the broker refuses this kiosk at the TLS handshake ({EXPIRED}): its client "
        "certificate has expired: install a new bundle from kiosk-fleet provision") == 1


# paho 2.2 never closes the socket of a handshake that failed (Client._ssl_wrap_socket): its
# finalizer closes it, with a ResourceWarning, collected here rather than in a later test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_expired_certificate_refused_in_the_tls12_handshake_is_said_once(make_config, tmp_path,
                                                                          caplog):
    """Production's mutual-TLS listener speaks TLS 1.2 (docs/broker.md): there the handshake
    itself fails, with the broker's alert naming the expiry."""
    now = dt.datetime.now(dt.UTC)
    with Broker(tmp_path / "broker", tls=True) as broker:
        cert_file, key_file, _ = signed_by_rig(
            broker, KIOSK, now - dt.timedelta(days=366), now - dt.timedelta(days=1))
        cfg = make_config(tmp_path / "kiosk", mqtt={
            "host": "127.0.0.1", "port": broker.tls_port, "tls": True,
            "ca_file": str(broker.ca_file), "cert_file": str(cert_file),
            "key_file": str(key_file), "password_file": "", "reconnect_min_s": 0.1,
            "reconnect_max_s": 1})
        downs = []
        link = MqttLink(cfg.mqtt, KIOSK, instance="i1", next_epoch=lambda: 1, version="0.1.0",
                        facts=downs.append, put=print)
        # The rig's listener offers TLS 1.3 too; the kiosk's side of the handshake is capped
        # instead, which gives the same TLS 1.2 exchange.
        link._client._ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        link.start()
        try:
            wait_until(lambda: len(downs) >= 3, "three refused connects", 10)
        finally:
            link.stop()
            gc.collect()
    assert link.tls_refusal == EXPIRED and not link.is_connected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"the broker refuses this kiosk at the TLS handshake ({EXPIRED}): its client "
        "certificate has expired: install a new bundle from kiosk-fleet provision"]
