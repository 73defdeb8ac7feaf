"""The fleet broker policy, against a real Mosquitto: accounts, ACLs, mutual TLS."""

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
    with Broker(tmp_path / "tls", tls=True) as tls_broker:
        result = provision(csv_path, tmp_path / "out", broker="localhost",
                           broker_ca=tls_broker.ca_file)
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


def test_broker_adds_a_fleets_accounts_in_one_reload(broker, mqtt_client):
    made = broker.add_kiosks(f"sim-{n:03d}" for n in range(40))
    assert len(set(made.values())) == 40
    for kiosk_id in ("sim-000", "sim-039"):
        assert not mqtt_client(kiosk_id, made[kiosk_id], check=False).wait_for_connack() \
            .is_failure
    assert mqtt_client("sim-001", made["sim-000"], check=False).wait_for_connack().is_failure
