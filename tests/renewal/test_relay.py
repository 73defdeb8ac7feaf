"""The kiosk relays its root unit's renewal request, and leaves the certificate that comes back
for it: the kiosk's telemetry on the real Mosquitto, the signing service's account listening."""

import datetime as dt
import json
import logging

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.renewal import files
from kiosk.renewal.relay import Relay
from kiosk.telemetry import topics
from tests.fixtures.broker import wait_until
from tests.renewal import pki

KIOSK = "kiosk-a"
CSR = topics.kiosk_topic(KIOSK, "csr")
CERT = topics.cmd_topic(KIOSK, "cert")
REPLY = topics.kiosk_topic(KIOSK, "reply")


def csr_pem(kiosk_id=KIOSK):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def cert_pem():
    ca = pki.Ca()
    cert = ca.issue(pki.new_key().public_key(), KIOSK, not_before=pki.NOW,
                    not_after=pki.NOW + dt.timedelta(days=365))
    return pki.pem(cert).decode()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Link:
    """The link as the relay uses it: up, on one connection; what was published is kept."""

    kiosk_id, epoch, is_connected = KIOSK, 1, True

    def __init__(self):
        self.published = []

    def publish(self, topic, payload, qos=1):
        self.published.append((topic, payload, qos))
        return len(self.published)


def relayed(ca):
    return [topics.parse_kiosk_message(m.topic, m.payload).csr for m in ca.received(CSR)]


def test_relay_sends_the_request_on_connect_on_reconnect_and_hourly_until_it_is_gone(
        kiosk_config, running, broker, mqtt_client, tmp_path):
    ca = mqtt_client(*broker.ca_credentials)
    ca.subscribe(f"{topics.ROOT}/kiosk/+/csr")
    request = tmp_path / "renewal" / files.REQUEST_NAME
    request.parent.mkdir()
    pem = csr_pem()
    request.write_text(pem)
    cfg = kiosk_config()
    side = running(cfg)
    clock = Clock()
    relay = Relay(side.link, cfg.storage.data_dir, renewal_dir=request.parent, look_s=30,
                  every_s=3600, clock=clock)

    relay.poll()
    wait_until(lambda: relayed(ca) == [pem], "the request relayed on connect")
    clock.now += 30
    relay.poll()  # looked again: the same request, sent a moment ago
    clock.now += 3600
    relay.poll()
    wait_until(lambda: len(relayed(ca)) == 2, "the request relayed again after an hour")

    # Another connection with the kiosk's account takes its place: the kiosk reconnects.
    epoch = side.link.epoch
    password = (tmp_path / f"{KIOSK}.password").read_text()
    mqtt_client(KIOSK, password, client_id=KIOSK).close()
    wait_until(lambda: side.link.is_connected and side.link.epoch != epoch, "a reconnect")
    relay.poll()  # no time passed: a new connection is reason enough
    wait_until(lambda: len(relayed(ca)) == 3, "the request relayed on reconnect")

    request.unlink()  # the root unit installed the certificate
    clock.now += 2 * 3600
    relay.poll()
    clock.now += 30
    relay.poll()
    newer = csr_pem()  # a year later, the next renewal: the first message since the last
    request.write_text(newer)
    clock.now += 30
    relay.poll()
    wait_until(lambda: len(relayed(ca)) == 4, "the next request relayed")
    assert relayed(ca) == [pem, pem, pem, newer]


def test_relay_skips_what_is_not_one_pem_request_and_says_so_once(tmp_path, caplog):
    link, clock = Link(), Clock()
    relay = Relay(link, tmp_path, renewal_dir=tmp_path, look_s=30, clock=clock)
    request = tmp_path / files.REQUEST_NAME
    for bad in ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                csr_pem() + "\n" * topics.MAX_PEM_CHARS):  # larger than the contract's
        request.write_text(bad)
        for _ in range(2):
            relay.poll()
            clock.now += 30
    assert link.published == []
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert said == [f"renewal request not relayed: {request} is not one PEM CERTIFICATE "
                    "REQUEST; the root unit (kiosk cert) makes it again on its next run",
                    f"renewal request not relayed: {request} is larger than "
                    f"{topics.MAX_PEM_CHARS} bytes; the root unit (kiosk cert) makes it again "
                    "on its next run"]
    assert "PRIVATE KEY" not in caplog.text

    pem = csr_pem()
    request.write_text(pem)
    relay.poll()
    assert [json.loads(payload)["csr"] for _, payload, _ in link.published] == [pem]


def test_relay_certificate_received_is_left_for_the_root_unit_once(
        kiosk_config, running, broker, mqtt_client, ops, tmp_path):
    ca = mqtt_client(*broker.ca_credentials)
    renewal_dir = tmp_path / "renewal"
    renewal_dir.mkdir()
    (renewal_dir / files.REQUEST_NAME).write_text(csr_pem())
    cfg = kiosk_config()
    response = files.response_path(cfg.storage.data_dir)
    pem = cert_pem()
    # Signed while the kiosk was away: retained, it arrives on connect.
    assert not ca.publish(CERT, topics.command_payload("cert", "ca-first", cert=pem),
                          retain=True).is_failure
    side = running(cfg, renewal_dir=renewal_dir)
    answer = json.loads(ops.wait_for_message(REPLY).payload)
    assert (answer["correlation_id"], answer["ok"], answer["data"]) == (
        "ca-first", True, {"request_pending": True})
    assert response.read_text() == pem
    written = response.stat().st_mtime_ns

    # Sent again on every connect: on file already, so neither written nor answered again.
    side.stop()
    side = running(cfg, renewal_dir=renewal_dir)
    # The root unit installs it (the request goes) and the state folder is cleared: the
    # retained certificate, sent again, finds no request pending.
    (renewal_dir / files.REQUEST_NAME).unlink()
    response.unlink()
    side.stop()
    side = running(cfg, renewal_dir=renewal_dir)
    assert not ops.publish(topics.cmd_topic(KIOSK, "ping"),
                           topics.command_payload("ping", "marker")).is_failure
    ops.wait_for_message(REPLY, lambda m: json.loads(m.payload)["correlation_id"] == "marker")
    assert not response.exists(), "a retained certificate with no request was written"
    assert written and [json.loads(m.payload)["correlation_id"]
                        for m in ops.received(REPLY)] == ["ca-first", "marker"]

    # Sent live with no request pending: left all the same, the root unit judges it.
    assert not ca.publish(CERT, topics.command_payload("cert", "ca-live", cert=pem)).is_failure
    answer = json.loads(ops.wait_for_message(
        REPLY, lambda m: json.loads(m.payload)["correlation_id"] == "ca-live").payload)
    assert (answer["ok"], answer["data"]) == (True, {"request_pending": False})
    assert response.read_text() == pem
    assert not list(response.parent.glob("*.tmp"))
