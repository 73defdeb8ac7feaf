"""The signing service: ``sign_request``'s checks and certificates, then ``kiosk-fleet ca``
against the real Mosquitto with TLS, kiosks renewing over their own mutual-TLS connection."""

import datetime as dt
import logging
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.errors import CertRefused, ProvisionError
from kiosk.fleet.ca import SigningService, load_ca, sign_request
from kiosk.fleet.db import FleetDb, open_database
from kiosk.rigs.broker import Broker
from kiosk.telemetry import topics
from tests.fixtures.broker import RecordingClient, wait_until

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
KIOSK = "bkk-001"


def make_ca(not_after=NOW + dt.timedelta(days=3650)):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_csr(common_name=KIOSK, key=None, *, extra_rdn=None, san=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if extra_rdn:
        names.append(extra_rdn)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]),
                                        critical=False)
    csr = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey)
                       else hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


@pytest.fixture(scope="module")
def ca():
    return make_ca()


def sign(csr_pem, ca, kiosk_id=KIOSK, days=365, now=NOW):
    cert_pem = sign_request(csr_pem, kiosk_id, ca_cert=ca[0], ca_key=ca[1], days=days, now=now)
    return x509.load_pem_x509_certificate(cert_pem.encode())


# --- sign_request ---------------------------------------------------------------------------


def test_ca_signs_a_client_certificate_for_the_requests_own_key_and_id(ca):
    csr_pem, key = make_csr()
    cert = sign(csr_pem, ca)
    assert cert.subject.rfc4514_string() == f"CN={KIOSK}"
    assert cert.issuer == ca[0].subject
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    ca[1].public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                              ec.ECDSA(hashes.SHA256()))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert cert.not_valid_before_utc <= NOW
    assert sign(csr_pem, ca).serial_number != cert.serial_number  # random serials


def test_ca_refuses_a_request_for_another_kiosks_id(ca):
    csr_pem, _ = make_csr("bkk-002")
    with pytest.raises(CertRefused, match="another kiosk's id"):
        sign(csr_pem, ca, kiosk_id=KIOSK)


@pytest.mark.parametrize("extra", [
    x509.NameAttribute(NameOID.COMMON_NAME, KIOSK),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agency")], ids=["two CNs", "an O"])
def test_ca_refuses_a_subject_that_is_more_than_the_kiosks_cn(ca, extra):
    csr_pem, _ = make_csr(extra_rdn=extra)
    with pytest.raises(CertRefused, match=f"exactly CN={KIOSK}"):
        sign(csr_pem, ca)


def test_ca_refuses_a_request_asking_for_a_subject_alternative_name(ca):
    csr_pem, _ = make_csr(san="broker.example.go.th")
    with pytest.raises(CertRefused, match="asks for extensions"):
        sign(csr_pem, ca)


def test_ca_refuses_a_request_whose_signature_does_not_verify(ca):
    csr_pem, _ = make_csr()
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    # The last byte is the signature's (ECDSA's s): still well-formed, no longer valid.
    tampered = x509.load_der_x509_csr(der[:-1] + bytes([der[-1] ^ 1]))
    with pytest.raises(CertRefused, match="signature does not verify"):
        sign(tampered.public_bytes(serialization.Encoding.PEM).decode(), ca)


@pytest.mark.parametrize("key", [rsa.generate_private_key(65537, 1024),
                                 ed25519.Ed25519PrivateKey.generate()], ids=["rsa1024", "ed25519"])
def test_ca_refuses_a_weak_or_unexpected_key(ca, key):
    csr_pem, _ = make_csr(key=key)
    with pytest.raises(CertRefused, match="use EC P-256 or P-384"):
        sign(csr_pem, ca)


def test_ca_accepts_an_rsa_2048_key(ca):
    csr_pem, _ = make_csr(key=rsa.generate_private_key(65537, 2048))
    assert sign(csr_pem, ca).public_key().key_size == 2048


def test_ca_clips_the_validity_to_the_cas_own_expiry_and_says_so(caplog):
    short_ca = make_ca(not_after=NOW + dt.timedelta(days=10))
    csr_pem, _ = make_csr()
    cert = sign(csr_pem, short_ca, days=365)
    assert cert.not_valid_after_utc == short_ca[0].not_valid_after_utc
    assert "clipped to the agency CA's expiry" in caplog.text


def test_ca_refuses_to_sign_with_a_ca_that_has_expired():
    old_ca = make_ca(not_after=NOW - dt.timedelta(hours=1))
    with pytest.raises(CertRefused, match="agency CA expired"):
        sign(make_csr()[0], old_ca)


def test_ca_load_refuses_a_key_that_is_not_the_cas(tmp_path, ca):
    other = make_ca()
    (tmp_path / "ca.crt").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(other[1].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ProvisionError, match="is not the key of --ca"):
        load_ca(tmp_path / "ca.crt", tmp_path / "ca.key")


@pytest.mark.parametrize("text", ["not a pem", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                  "-----END CERTIFICATE REQUEST-----\n"], ids=["text", "bad DER"])
def test_ca_refuses_what_is_not_a_request(ca, text):
    with pytest.raises(CertRefused, match="not a readable PEM"):
        sign(text, ca)


# --- the service against the real broker ---------------------------------------------------


@pytest.fixture
def rig(tmp_path):
    """A TLS broker, a fleet database where KIOSK was provisioned with a certificate, and a
    running signing service; yields a namespace of them."""
    broker = Broker(tmp_path / "broker", tls=True)
    broker.start()
    fleet = open_database(tmp_path / "fleet.sqlite3")
    fleet.add_certificate(KIOSK, serial="1a", not_before=NOW, not_after=NOW + dt.timedelta(
        days=30), issued=NOW)
    rig = Rig(broker, fleet, tmp_path)
    rig.start_service()
    yield rig
    rig.stop_service()
    for client in rig.clients:
        client.close()
    fleet.close()
    broker.stop()


class Rig:
    def __init__(self, broker, fleet, folder):
        self.broker, self.fleet, self.folder = broker, fleet, folder
        self.clients = []
        self.service = self.thread = self.stopping = None

    def start_service(self):
        ca_cert, ca_key = load_ca(self.broker.workdir / "ca.crt", self.broker.workdir / "ca.key")
        username, password = self.broker.ca_credentials
        self.service = SigningService(
            self.folder / "fleet.sqlite3", "127.0.0.1", self.broker.password_tls_port,
            username, password, ca_cert=ca_cert, ca_key=ca_key, issued=self.folder / "issued",
            cert_days=1, tls={"ca_certs": str(self.broker.ca_file)})
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stopping,))
        self.thread.start()
        assert self.service.wait_for_subscribed(5)

    def stop_service(self):
        self.stopping.set()
        self.thread.join(5)
        assert not self.thread.is_alive()

    def kiosk(self, kiosk_id=KIOSK, cert_file=None, key_file=None, check=True):
        """A kiosk's mutual-TLS connection (a fresh rig certificate unless given), subscribed to
        its cert command."""
        if cert_file is None:
            cert_file, key_file = self.broker.make_client_cert(kiosk_id)
        client = RecordingClient("127.0.0.1", self.broker.tls_port, None, client_id=kiosk_id,
                                 tls={"ca_certs": str(self.broker.ca_file),
                                      "certfile": str(cert_file), "keyfile": str(key_file)})
        self.clients.append(client)
        if check:
            assert not client.wait_for_connack().is_failure
            client.subscribe(topics.cmd_topic(kiosk_id, "cert"))
        return client

    def request(self, client, csr_pem, kiosk_id=KIOSK):
        assert not client.publish(topics.kiosk_topic(kiosk_id, "csr"),
                                  topics.csr_payload(csr_pem)).is_failure


def received_cert(client, kiosk_id=KIOSK, count=1):
    topic = topics.cmd_topic(kiosk_id, "cert")
    wait_until(lambda: len(client.received(topic)) >= count, f"{count} cert command(s)", 5)
    message = client.received(topic)[count - 1]
    command = topics.parse_command(message.topic, message.payload, kiosk_id=kiosk_id,
                                   max_bytes=65536, applied_version=None)
    return command.cert


def test_ca_service_answers_a_kiosks_own_request_with_a_certificate_the_broker_accepts(rig):
    kiosk = rig.kiosk()
    csr_pem, key = make_csr()
    rig.request(kiosk, csr_pem)

    cert_pem = received_cert(kiosk)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    # Recorded, so the console shows the new expiry and cert_expiring clears.
    assert f"{cert.serial_number:x}" in [c.serial for c in rig.fleet.certificates(KIOSK)]
    # Retained: a connection that subscribes afterwards gets it too (each connection in turn:
    # the client id is the kiosk's, so a second one would take the first one's place).
    kiosk.close()
    later = rig.kiosk()
    assert received_cert(later) == cert_pem
    later.close()

    new_cert, new_key = rig.folder / "new.crt", rig.folder / "new.key"
    new_cert.write_text(cert_pem)
    new_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    renewed = rig.kiosk(cert_file=new_cert, key_file=new_key, check=False)
    assert not renewed.wait_for_connack().is_failure


def test_ca_service_refuses_a_request_for_another_kiosks_id_and_logs_it(rig, caplog):
    caplog.set_level(logging.INFO, logger="kiosk.fleet.ca")
    rig.fleet.add_certificate("bkk-002", serial="2b", not_before=NOW,
                              not_after=NOW + dt.timedelta(days=30), issued=NOW)
    victim = rig.kiosk("bkk-002")
    thief = rig.kiosk()
    csr_pem, _ = make_csr("bkk-002")
    rig.request(thief, csr_pem)

    wait_until(lambda: rig.service.counters.refused == 1, "the refusal", 5)
    assert "bkk-001: the request is for another kiosk's id" in caplog.text
    assert "BEGIN CERTIFICATE REQUEST" not in caplog.text
    assert thief.received("#") == [] and victim.received("#") == []
    assert [c.serial for c in rig.fleet.certificates("bkk-002")] == ["2b"]


def test_ca_service_answers_a_repeated_request_with_the_same_certificate(rig):
    kiosk = rig.kiosk()
    csr_pem, _ = make_csr()
    rig.request(kiosk, csr_pem)
    first = received_cert(kiosk)
    rig.request(kiosk, csr_pem)
    assert received_cert(kiosk, count=2) == first
    assert rig.service.counters.signed == 1 and rig.service.counters.resent == 1
    assert len(rig.fleet.certificates(KIOSK)) == 2  # the provisioned one and the renewal


def test_ca_service_keeps_requests_that_came_while_it_was_down(rig):
    kiosk = rig.kiosk()
    rig.stop_service()
    csr_pem, _ = make_csr()
    rig.request(kiosk, csr_pem)
    rig.start_service()
    assert received_cert(kiosk)


@pytest.mark.parametrize("how", ["retired", "revoked", "never provisioned"])
def test_ca_service_refuses_a_retired_revoked_or_unknown_kiosk(rig, caplog, how):
    kiosk_id = "bkk-009" if how == "never provisioned" else KIOSK
    if how == "retired":
        rig.fleet.KioskRow.insert(kiosk_id=KIOSK, retired="2026-12-01T03:00:00Z").execute()
    elif how == "revoked":
        rig.fleet.KioskCert.update(revoked="2026-12-01T03:00:00Z").execute()
    kiosk = rig.kiosk(kiosk_id)
    rig.request(kiosk, make_csr(kiosk_id)[0], kiosk_id)

    wait_until(lambda: rig.service.counters.refused == 1, "the refusal", 5)
    assert {"retired": "it was retired", "revoked": "every certificate of it is revoked",
            "never provisioned": "no certificate is recorded"}[how] in caplog.text
    assert kiosk.received("#") == []


def test_ca_service_sends_nothing_when_a_revoke_lands_while_it_signs(rig, caplog, monkeypatch):
    """The revoke's CRL, issued while the request was being signed, cannot list the new
    serial: the service must not send that certificate, and records it revoked."""
    record = FleetDb.add_certificate

    def revoked_meanwhile(fleet, kiosk_id, **fields):
        fleet.retire(kiosk_id, dt.datetime.now(dt.UTC), "revoked: stolen")
        return record(fleet, kiosk_id, **fields)

    monkeypatch.setattr(FleetDb, "add_certificate", revoked_meanwhile)
    kiosk = rig.kiosk()
    rig.request(kiosk, make_csr()[0])

    wait_until(lambda: rig.service.counters.refused == 1, "the refusal", 5)
    assert "while its request was signed" in caplog.text
    assert kiosk.received("#") == [] and rig.service.counters.signed == 0
    assert all(cert.revoked for cert in rig.fleet.certificates(KIOSK))
    assert len(rig.fleet.certificates(KIOSK)) == 2  # the one provisioned and the one withheld


def test_ca_service_signs_no_new_key_before_the_renewal_window(rig, caplog):
    """A key copied off an SD card cannot renew itself whenever it likes: while the kiosk's
    newest certificate is valid beyond the window, a new key is refused and ops are told."""
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)
    rig.fleet.add_certificate(KIOSK, serial="2b", not_before=NOW, not_after=far, issued=NOW)
    kiosk = rig.kiosk()
    rig.request(kiosk, make_csr()[0])

    wait_until(lambda: rig.service.counters.refused == 1, "the refusal", 5)
    assert "beyond the 31-day renewal window" in caplog.text
    assert f"kiosk-fleet revoke {KIOSK}" in caplog.text
    assert kiosk.received("#") == [] and rig.service.counters.signed == 0


def test_ca_service_survives_malformed_requests(rig):
    kiosk = rig.kiosk()
    topic = topics.kiosk_topic(KIOSK, "csr")
    for payload in (b"not json", b'{"schema": 2, "csr": "-----BEGIN CERTIFICATE REQUEST-----'
                    b'\\nAAAA\\n-----END CERTIFICATE REQUEST-----"}', b""):
        assert not kiosk.publish(topic, payload).is_failure
    rig.request(kiosk, make_csr()[0])

    assert received_cert(kiosk)
    assert rig.service.counters.refused == 2 and rig.service.counters.signed == 1
    assert rig.service.counters.ignored == 1  # empty: how a retained message is deleted
