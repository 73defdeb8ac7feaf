"""Acceptance: renewal before expiry with no lost visit.

On the real Mosquitto with mutual TLS, a kiosk whose client certificate expires in an hour
(due: inside its renewal window, yet valid all through the test) records visits throughout
while: the root unit (``kiosk cert``) makes a key and a request; the
kiosk relays it; ``kiosk-fleet ca`` signs it; the kiosk leaves the certificate for the root
unit, which installs it; the kiosk restarts by itself when idle (here the test starts it again,
as systemd would) and connects with the new certificate. The real collector stores every visit
once and acknowledges it. That the kiosk connects with the new certificate, not the old: the
old one's serial is then put on the broker's CRL (the old pair, accepted until then, is refused
with the CRL's alert, not an expiry's), and the kiosk, pushed off, connects again.
"""

import datetime as dt
import json
import os
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk import config, runner
from kiosk.fleet.ca import SigningService, load_ca
from kiosk.fleet.collector import Collector
from kiosk.fleet.db import open_database
from kiosk.renewal import files, unit
from kiosk.renewal.client_cert import ClientCert, read_certificate
from kiosk.rigs.broker import Broker
from tests.fixtures.broker import RecordingClient, wait_until
from tests.rigs.test_broker import tls12_refusal
from tests.telemetry.kiosk_process import KioskSide

KIOSK = "kiosk-renew"

pytestmark = pytest.mark.slow


def write_private(path, data):
    path.write_bytes(data)
    os.chmod(path, 0o600)


def credentials_for(broker, folder, *, lifetime):
    """A client certificate from the rig's CA that expires after ``lifetime``, its key and the
    CA, as firstboot leaves them in /etc/kiosk/credentials; the certificate."""
    ca_cert = x509.load_pem_x509_certificate(broker.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key((broker.workdir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, KIOSK)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + lifetime)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(mode=0o700, parents=True)
    write_private(folder / files.CERT_NAME, cert.public_bytes(serialization.Encoding.PEM))
    write_private(folder / files.KEY_NAME, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_private(folder / "ca.crt", broker.ca_file.read_bytes())
    return cert


def write_crl(broker, revoked=()):
    """The mutual-TLS listener's CRL, from the rig's CA, revoking the ``revoked`` serials."""
    ca_cert = x509.load_pem_x509_certificate(broker.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(broker.ca_key_file.read_bytes(), None)
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(now - dt.timedelta(minutes=1)).next_update(now + dt.timedelta(days=1)))
    for serial in revoked:
        crl = crl.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1)).build())
    broker.crl_file.write_bytes(crl.sign(ca_key, hashes.SHA256())
                                .public_bytes(serialization.Encoding.PEM))


def mtls_connack(broker, cert_file, key_file, client_id=""):
    """The CONNACK a connection with this certificate gets (None: refused at the handshake)."""
    try:
        client = RecordingClient("127.0.0.1", broker.tls_port, None, client_id=client_id,
                                 tls={"ca_certs": str(broker.ca_file),
                                      "certfile": str(cert_file), "keyfile": str(key_file)})
    except OSError:  # ssl.SSLError too: refused in the handshake (TLS 1.2)
        return None
    try:
        return client.wait_for_connack()
    finally:
        client.close()


class SigningRig:
    """``kiosk-fleet ca`` on its own thread, with the rig's ca account and CA key."""

    def __init__(self, broker, fleet_path, issued):
        ca_cert, ca_key = load_ca(broker.ca_file, broker.workdir / "ca.key")
        self.service = SigningService(
            fleet_path, "127.0.0.1", broker.password_tls_port, *broker.ca_credentials,
            ca_cert=ca_cert, ca_key=ca_key, issued=issued, cert_days=7,
            tls={"ca_certs": str(broker.ca_file)})
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stopping,),
                                       name="kiosk-fleet-ca")

    def __enter__(self):
        self.thread.start()
        assert self.service.wait_for_subscribed(10), "the signing service did not subscribe"
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(5)


@pytest.fixture
def kiosks():
    """The kiosk sides a test started; those still running are stopped after it."""
    running = []
    yield running
    for side in running:
        side.stop()


def test_renewal_before_expiry_loses_no_visit(make_config, tmp_path, monkeypatch, kiosks,
                                               caplog):
    monkeypatch.setattr(runner, "HOUSEKEEPING_S", 0.1)  # the install is noticed at once
    caplog.set_level("INFO", logger="kiosk.runner")
    credentials = tmp_path / "etc/credentials"
    renewal_dir = tmp_path / "renewal"
    renewal_dir.mkdir()
    fleet_path = tmp_path / "fleet.sqlite3"
    broker = Broker(tmp_path / "broker", tls=True, crl_file=tmp_path / "broker/crl.pem")
    write_crl(broker)
    with broker:
        old = credentials_for(broker, credentials, lifetime=dt.timedelta(hours=1))
        cfg = make_config(
            tmp_path / "kiosk", kiosk={"id": KIOSK},
            mqtt={"host": "127.0.0.1", "port": broker.tls_port, "tls": True,
                  "ca_file": str(credentials / "ca.crt"),
                  "cert_file": str(credentials / files.CERT_NAME),
                  "key_file": str(credentials / files.KEY_NAME), "password_file": "",
                  "keepalive_s": 5, "will_delay_s": 1, "reconnect_min_s": 0.1,
                  "reconnect_max_s": 1, "renew_before_days": 1},
            telemetry={"resend_after_s": 5})
        config_file = tmp_path / "kiosk.toml"
        config_file.write_text(config.dumps(cfg, mask_secrets=False), encoding="utf-8")
        root = unit.Paths(config_file, credentials, tmp_path / "etc/renewal/pending.key",
                          renewal_dir)
        root.pending_key.parent.mkdir(mode=0o700)
        fleet = open_database(fleet_path)  # provisioned with the certificate in use
        fleet.add_certificate(KIOSK, serial=f"{old.serial_number:x}",
                              not_before=old.not_valid_before_utc,
                              not_after=old.not_valid_after_utc,
                              issued=old.not_valid_before_utc)
        fleet.close()

        def start_kiosk():
            side = KioskSide(cfg, poll_s=0.05, renewal_dir=renewal_dir, relay_look_s=0.05,
                             client_cert=ClientCert(cfg.mqtt.cert_file, renewal_dir=renewal_dir))
            kiosks.append(side)
            side.start(loop=True)
            assert side.link.wait_for_connected(10), "the kiosk did not connect over mTLS"
            return side

        event_ids = []
        with Collector(fleet_path, "127.0.0.1", broker.port, *broker.collector_credentials,
                       batch_s=0.05) as collector, \
                SigningRig(broker, fleet_path, tmp_path / "issued"):
            assert collector.wait_for_connected(10), "the collector did not subscribe"
            side = start_kiosk()
            event_ids += side.record_visits(3)

            assert unit.run(root, now=dt.datetime.now(dt.UTC)) == 0  # the timer: due
            assert (renewal_dir / files.REQUEST_NAME).exists()
            event_ids += side.record_visits(3)
            response = files.response_path(cfg.storage.data_dir)
            wait_until(response.exists, "the kiosk to receive its certificate", 5)
            event_ids += side.record_visits(3)

            assert unit.run(root, now=dt.datetime.now(dt.UTC)) == 0  # the path unit: install
            installed = json.loads((renewal_dir / files.INSTALLED_NAME).read_text())
            new_serial, new_expiry = read_certificate(credentials / files.CERT_NAME)
            assert installed["serial"] == f"{new_serial:x}" != f"{old.serial_number:x}"
            assert new_expiry > old.not_valid_after_utc
            event_ids += side.record_visits(3)

            assert side.wait_for_exit(5), "the kiosk did not restart to load the new certificate"
            assert f"new client certificate installed (serial {new_serial:x}" in caplog.text
            side.stop()
            kiosks.remove(side)
            side = start_kiosk()  # systemd: Restart=always, LoadCredential copies the new pair
            assert side.runner.client_cert.loaded_serial == new_serial
            event_ids += side.record_visits(3)

            # The old certificate revoked, the kiosk pushed off: it connects again with the new.
            # The old pair is accepted until its serial is on the CRL, then refused for that
            # (TLS 1.2: the broker's alert names the reason), never for its expiry.
            previous = [files.previous(name, root.pending_key)
                        for name in (files.CERT_NAME, files.KEY_NAME)]
            assert tls12_refusal(broker, *previous) is None
            write_crl(broker, revoked=[old.serial_number])
            broker.reload()
            assert tls12_refusal(broker, *previous) == "SSLV3_ALERT_CERTIFICATE_REVOKED"
            epoch = side.link.epoch
            assert not mtls_connack(broker, *broker.make_client_cert(KIOSK), KIOSK).is_failure
            wait_until(lambda: side.link.is_connected and side.link.epoch != epoch,
                       "the kiosk to connect again with its new certificate", 5)
            event_ids += side.record_visits(3)

            def stored():
                visits = collector.db.FleetVisit
                return [v.event_id for v in visits.select(visits.event_id)
                        .where(visits.kiosk_id == KIOSK)]

            def acknowledged():
                stats = side.store.outbox_stats()
                return (stats.depth, stats.held, stats.dead) == (0, 0, 0)

            wait_until(lambda: len(stored()) >= len(event_ids) and acknowledged(),
                       "every visit stored and acknowledged", 10)
            assert sorted(stored()) == sorted(event_ids) and len(set(event_ids)) == 18
            # Renewed for a week: the next run has nothing to do, the kiosk nothing to relay.
            assert unit.run(root, now=dt.datetime.now(dt.UTC)) == 0
            assert not (renewal_dir / files.REQUEST_NAME).exists()
            recorded = {c.serial for c in collector.db.certificates(KIOSK)}
            assert f"{new_serial:x}" in recorded  # the console shows the new expiry
