"""The fleet broker policy, against a real Mosquitto: accounts, ACLs, mutual TLS."""

import datetime as dt
import socket
import ssl
import tomllib
from pathlib import Path

import pytest

from kiosk.accounts import MTLS_PORT, PASSWORD_PORT, password_hash
from kiosk.errors import TelemetryError
from kiosk.fleet.provision import provision
from kiosk.rigs.broker import Broker
from kiosk.telemetry import topics
from tests.fixtures.broker import RecordingClient
from tests.fleet.test_provision import sample_registry

NOT_AUTHORIZED = 0x87


def test_broker_password_hash_matches_mosquitto_format():
    value = password_hash("secret", salt=b"0123456789ab")
    scheme, rounds, salt, digest = value.split("$")[1:]
    assert (scheme, rounds, salt) == ("7", "101", "MDEyMzQ1Njc4OWFi")
    assert value != password_hash("secret2", salt=b"0123456789ab")


def test_broker_refuses_wrong_password_and_anonymous(broker, mqtt_client):
    broker.add_kiosk("k1")
    wrong = mqtt_client("k1", "not-the-password", check=False).wait_for_connack()
    anonymous = mqtt_client(None, check=False).wait_for_connack()
    assert wrong.is_failure and anonymous.is_failure


def test_broker_kiosk_publish_under_another_kiosk_is_refused(broker, mqtt_client):
    password_a = broker.add_kiosk("kiosk-a")
    broker.add_kiosk("kiosk-b")
    user, secret = broker.collector_credentials
    watcher = mqtt_client(user, secret)
    watcher.subscribe(topics.KIOSK_SUBSCRIPTION)
    kiosk_a = mqtt_client("kiosk-a", password_a)

    own = kiosk_a.publish(topics.kiosk_topic("kiosk-a", "health"), b"{}")
    forged = kiosk_a.publish(topics.kiosk_topic("kiosk-b", "visit"), b"{}")

    assert not own.is_failure
    assert forged.value == NOT_AUTHORIZED
    watcher.wait_for_message(topics.kiosk_topic("kiosk-a", "health"))
    assert watcher.received(topics.kiosk_topic("kiosk-b", "visit")) == []


def test_broker_ops_cannot_forge_acks(broker, mqtt_client):
    password = broker.add_kiosk("k1")
    kiosk = mqtt_client("k1", password)
    kiosk.subscribe(topics.ack_topic("k1"))
    ops = mqtt_client(*broker.ops_credentials)
    collector = mqtt_client(*broker.collector_credentials)

    forged = ops.publish(topics.ack_topic("k1"), topics.ack_payload(["forged-1"]))
    real = collector.publish(topics.ack_topic("k1"), topics.ack_payload(["real-1"]))

    assert forged.value == NOT_AUTHORIZED and not real.is_failure
    kiosk.wait_for_message(topics.ack_topic("k1"))
    assert [topics.parse_ack(m.payload) for m in kiosk.received(topics.ack_topic("k1"))] == [
        ("real-1",)]


def test_broker_observer_reads_every_topic_and_writes_none_of_the_fleets(broker, mqtt_client):
    kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
    observer = mqtt_client("auditor", broker.add_observer("auditor"))
    observer.subscribe(f"{topics.ROOT}/#")

    kiosk.publish(topics.kiosk_topic("k1", "health"), b"{}", qos=1)
    observer.wait_for_message(topics.kiosk_topic("k1", "health"))
    forged_ack = observer.publish(topics.ack_topic("k1"), topics.ack_payload(["forged-1"]))
    forged_cmd = observer.publish(topics.cmd_topic("k1", "ping"),
                                  topics.command_payload("ping", "c-1"))
    assert forged_ack.value == NOT_AUTHORIZED and forged_cmd.value == NOT_AUTHORIZED


def test_broker_ops_command_reaches_only_its_kiosk(broker, mqtt_client):
    one = mqtt_client("k1", broker.add_kiosk("k1"))
    two = mqtt_client("k2", broker.add_kiosk("k2"))
    one.subscribe(topics.cmd_subscription("k1"))
    two.subscribe(topics.cmd_subscription("k2"))
    assert two.subscribe(topics.cmd_subscription("k1"))[0].value == NOT_AUTHORIZED
    ops = mqtt_client(*broker.ops_credentials)

    ops.publish(topics.cmd_topic("k1", "ping"), topics.command_payload("ping", "c-1"))
    one.wait_for_message(topics.cmd_topic("k1", "ping"))
    # Mosquitto handles one client's packets in order: once kiosk two's own later message
    # comes back, a leaked ping would already have arrived.
    ops.publish(topics.cmd_topic("k2", "ping"), topics.command_payload("ping", "c-2"))
    two.wait_for_message(topics.cmd_topic("k2", "ping"))

    assert two.received(topics.cmd_subscription("k1")) == []


def test_broker_kiosk_cannot_write_commands_or_acks(broker, mqtt_client):
    kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
    command = kiosk.publish(topics.cmd_topic("k1", "config"), b"{}")
    ack = kiosk.publish(topics.ack_topic("k1"), topics.ack_payload(["e-1"]))
    assert command.value == NOT_AUTHORIZED and ack.value == NOT_AUTHORIZED


def test_broker_restart_keeps_port_and_accounts(broker, mqtt_client):
    password = broker.add_kiosk("k1")
    port = broker.port
    broker.restart()
    assert broker.port == port
    assert not mqtt_client("k1", password).wait_for_connack().is_failure


def test_broker_mutual_tls_takes_cert_identity_and_refuses_no_cert(tmp_path, mqtt_client):
    with Broker(tmp_path / "tls", tls=True) as tls_broker:
        cert, key = tls_broker.make_client_cert("k-tls")
        tls = {"ca_certs": str(tls_broker.ca_file), "certfile": str(cert), "keyfile": str(key)}
        kiosk = RecordingClient("127.0.0.1", tls_broker.tls_port, None, tls=tls)
        try:
            assert not kiosk.wait_for_connack().is_failure
            # The CN became the user name, so the ACL pins it to its own topics.
            own = kiosk.publish(topics.kiosk_topic("k-tls", "health"), b"{}")
            other = kiosk.publish(topics.kiosk_topic("k-other", "health"), b"{}")
            assert not own.is_failure and other.value == NOT_AUTHORIZED
        finally:
            kiosk.close()

        try:
            anonymous = RecordingClient("127.0.0.1", tls_broker.tls_port, None,
                                        tls={"ca_certs": str(tls_broker.ca_file)})
        except (ssl.SSLError, OSError):
            return  # refused during the handshake (TLS 1.2)
        try:
            # TLS 1.3 finishes the client side first; the broker then hangs up, no CONNACK.
            assert anonymous.wait_for_connack() is None
        finally:
            anonymous.close()


def signed_by_test_ca(tls_broker, kiosk_id, not_before, not_after):
    """``(cert_file, key_file)`` for ``kiosk_id`` signed by the broker's test CA, with the
    validity given: openssl's ``x509 -req`` cannot date a certificate in the past."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(tls_broker.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(
        (tls_broker.workdir / "ca.key").read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file = tls_broker.workdir / f"dated-{kiosk_id}.crt"
    key_file = tls_broker.workdir / f"dated-{kiosk_id}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def connack_over_mtls(tls_broker, cert, key):
    """The CONNACK a client with this certificate gets; None if the TLS handshake or the broker
    refused it (TLS 1.2 fails the handshake; TLS 1.3 finishes the client's side first, then
    the broker hangs up without a CONNACK)."""
    tls = {"ca_certs": str(tls_broker.ca_file), "certfile": str(cert), "keyfile": str(key)}
    try:
        client = RecordingClient("127.0.0.1", tls_broker.tls_port, None, tls=tls)
    except (ssl.SSLError, OSError):
        return None
    try:
        return client.wait_for_connack()
    finally:
        client.close()


def tls12_refusal(tls_broker, cert, key):
    """The TLS 1.2 handshake's error with this client certificate (None if it succeeded): in
    TLS 1.2 the broker's alert names its reason. Production's 8883 says ``tls_version
    tlsv1.2``; Mosquitto 2.0.11 itself logs only "certificate verify failed"."""
    context = ssl.create_default_context(cafile=str(tls_broker.ca_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=10) as raw:
        try:
            context.wrap_socket(raw, server_hostname="localhost").close()
        except ssl.SSLError as exc:
            return exc.reason
    return None


def test_broker_mutual_tls_refuses_an_expired_certificate(tmp_path):
    """A copied SD card stops working when its certificate expires (docs/security.md)."""
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    with Broker(tmp_path / "tls", tls=True) as tls_broker:
        current = signed_by_test_ca(tls_broker, "k-current", now - day, now + day)
        expired = signed_by_test_ca(tls_broker, "k-expired", now - 3 * day, now - day)
        # The same making, in date: accepted, so the refusal is the expiry's.
        accepted = connack_over_mtls(tls_broker, *current)
        assert accepted is not None and not accepted.is_failure
        assert connack_over_mtls(tls_broker, *expired) is None
        assert tls12_refusal(tls_broker, *current) is None
        assert tls12_refusal(tls_broker, *expired) == "SSLV3_ALERT_CERTIFICATE_EXPIRED"


def test_broker_killed_and_started_again_serves_the_same_port(broker, mqtt_client):
    password = broker.add_kiosk("k1")
    broker.kill()
    assert not broker.is_running
    broker.start()
    assert not mqtt_client("k1", password).wait_for_connack().is_failure


def test_broker_kiosk_may_write_one_level_under_its_name_only(broker, mqtt_client):
    kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
    own = kiosk.publish(topics.kiosk_topic("k1", "health"), b"{}")
    deeper = kiosk.publish(topics.kiosk_topic("k1", "visit") + "/extra", b"{}")
    assert not own.is_failure and deeper.value == NOT_AUTHORIZED


def test_broker_without_the_auth_plugin_refuses_to_start_and_names_dev_setup(tmp_path):
    # Without it any kiosk could join the collectors' shared subscription (docs/broker.md).
    with pytest.raises(TelemetryError, match=r"\./dev setup"):
        Broker(tmp_path / "b", plugin=tmp_path / "missing.so").start()


def test_broker_password_bundle_connects_on_the_password_listener(tmp_path):
    csv_path = Path(__file__).resolve().parents[2] / "provisioning/kiosks.example.csv"
    registry = sample_registry(tmp_path / "fleet.sqlite3")
    with Broker(tmp_path / "tls", tls=True) as tls_broker:
        result = provision(csv_path, tmp_path / "out", registry=registry, broker="localhost",
                           broker_ca=tls_broker.ca_file)
        registry.close()
        bundle = result.bundles[0]
        mqtt = tomllib.loads((bundle / "kiosk.toml").read_text(encoding="utf-8"))["mqtt"]
        assert (mqtt["port"], MTLS_PORT) == (PASSWORD_PORT, 8883)  # as docs/broker.md says
        password = (bundle / "mqtt-password").read_text(encoding="utf-8").strip()
        tls_broker.add_kiosk(bundle.name, password)

        # password_tls_port stands in for 8884: TLS with the bundle's CA, no client certificate.
        kiosk = RecordingClient(mqtt["host"], tls_broker.password_tls_port, bundle.name,
                                password, tls={"ca_certs": str(bundle / "mqtt-ca.crt")})
        try:
            assert not kiosk.wait_for_connack().is_failure
            assert not kiosk.publish(topics.kiosk_topic(bundle.name, "health"), b"{}").is_failure
        finally:
            kiosk.close()


def test_broker_add_kiosks_creates_every_account_at_once(broker, mqtt_client):
    passwords = broker.add_kiosks(["k1", "k2", "k3"])
    for kiosk_id, password in passwords.items():
        assert not mqtt_client(kiosk_id, password).wait_for_connack().is_failure
    wrong = mqtt_client("k2", passwords["k1"], check=False).wait_for_connack()
    assert sorted(passwords) == ["k1", "k2", "k3"] and wrong.is_failure


def test_broker_multiplexer_writes_any_kiosks_messages_and_reads_their_acks_only(broker,
                                                                                 mqtt_client):
    mux = mqtt_client("bench-mux", broker.add_multiplexer("bench-mux"))
    assert not mux.subscribe(topics.ack_topic("k9"))[0].is_failure
    assert mux.subscribe(topics.cmd_subscription("k9"))[0].is_failure
    assert not mux.publish(topics.kiosk_topic("k9", "health"), b"{}").is_failure
    assert mux.publish(topics.ack_topic("k9"), topics.ack_payload(["x"])).value == NOT_AUTHORIZED
    assert mux.publish(topics.cmd_topic("k9", "ping"),
                       topics.command_payload("ping", "c-1")).value == NOT_AUTHORIZED
