"""The MQTT link and health reports against a real Mosquitto with the fleet ACLs."""

import json
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from paho.mqtt.client import MQTTMessage

from kiosk import config
from kiosk.errors import StoreError, TelemetryError
from kiosk.period import Period
from kiosk.rigs.broker import Broker
from kiosk.runner import visit_message
from kiosk.telemetry import topics
from kiosk.telemetry.mqtt import Connected, Disconnected, MqttLink, reconnect_delay
from tests.fixtures.broker import wait_until
from tests.telemetry.kiosk_process import RECORD, KioskSide

KIOSK = "kiosk-a"
NOT_AUTHORIZED = 0x87
# An ack nested deeper than Python's recursion limit: json.loads raises RecursionError, which is
# not the MessageRejected the ack parser's callers expect.
DEEP_ACK = b'{"schema": 1, "event_ids": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"


def payload(message):
    return json.loads(message.payload)


def status_is(state, epoch=None):
    return lambda m: payload(m)["state"] == state and epoch in (None, payload(m)["epoch"])


def test_mqtt_reconnect_delay_spreads_between_min_and_a_doubling_cap():
    rng = random.Random(4)
    for attempt, cap in ((0, 2.0), (1, 4.0), (3, 16.0), (10, 60.0)):
        delays = [reconnect_delay(attempt, 1.0, 60.0, rng) for _ in range(500)]
        assert min(delays) >= 1.0 and max(delays) <= cap
        # Spread over the range, not bunched: a fleet must not come back in one wave.
        assert max(delays) - min(delays) > 0.8 * (cap - 1.0)


def test_mqtt_failing_epoch_store_delays_the_connect_instead_of_ending_it(kiosk_config):
    cfg = kiosk_config()
    epochs = iter(range(1, 100))
    failures = []

    def next_epoch():
        if not failures:
            failures.append("busy")
            raise StoreError("kiosk.db: cannot advance the epoch: database is locked")
        return next(epochs)

    facts = []
    link = MqttLink(cfg.mqtt, KIOSK, instance="i1", next_epoch=next_epoch, version="0.1.0",
                    facts=facts.append, put=facts.append)
    link.start()
    try:
        assert link.wait_for_connected(10)
    finally:
        link.stop()
    assert failures == ["busy"] and link.epoch == 1
    assert isinstance(facts[0], Disconnected) and facts[1] == Connected(1, False)


def test_mqtt_connect_publishes_retained_online_status_and_service_point(
        kiosk_config, running, ops, broker, mqtt_client):
    side = running(kiosk_config())
    status = ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("online"))
    assert payload(status)["epoch"] == side.store.current_epoch() == side.link.epoch
    service_point = ops.wait_for_message(topics.kiosk_topic(KIOSK, "pin"))
    assert ([s["id"] for s in payload(service_point)["services"]]
            == [s.id for s in side.config.services])
    # A subscriber arriving later still learns both: they are retained.
    latecomer = mqtt_client(*broker.ops_credentials)
    for kind in ("status", "pin"):  # ops may not subscribe to kiosk/<id>/+, which holds visits
        latecomer.subscribe(topics.kiosk_topic(KIOSK, kind))
    retained = {m.topic.rsplit("/", 1)[1]: m for m in (
        latecomer.wait_for_message(topics.kiosk_topic(KIOSK, kind)) for kind in ("status", "pin"))}
    assert all(m.retain for m in retained.values())
    assert payload(retained["status"]) == payload(status)


def test_mqtt_epoch_rises_on_every_reconnect(kiosk_config, running, broker, mqtt_client):
    side = running(kiosk_config())
    first = side.link.epoch
    broker.restart()
    wait_until(lambda: side.link.is_connected and side.link.epoch > first, "a reconnect")
    watcher = mqtt_client(*broker.ops_credentials)
    watcher.subscribe(topics.kiosk_topic(KIOSK, "status"))
    status = watcher.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("online"))
    assert payload(status)["epoch"] == side.link.epoch > first
    assert side.store.current_epoch() == side.link.epoch


def test_mqtt_clean_stop_publishes_offline_and_never_the_will(kiosk_config, running, ops):
    side = running(kiosk_config(mqtt={"will_delay_s": 1}))
    epoch = side.link.epoch
    side.link.stop()
    offline = ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("offline"))
    assert payload(offline)["epoch"] == epoch
    # A negative can only be shown by waiting: twice the will delay, and no will came.
    with pytest.raises(AssertionError, match="timed out"):
        ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("lost"), timeout=2.0)


def test_mqtt_link_dropped_and_back_within_the_will_delay_publishes_no_will(kiosk_config, running,
                                                                          ops):
    """Clean start on every connect must not cost the Will Delay: Mosquitto 2.0 drops the old
    session's will when the kiosk is back in time (an upgraded broker that did not would make
    every network blip show the kiosk lost)."""
    side = running(kiosk_config(mqtt={"will_delay_s": 2}))
    first = side.link.epoch
    side.link._client.socket().close()  # the network drops: no DISCONNECT reaches the broker
    wait_until(lambda: side.link.is_connected and side.link.epoch > first, "the reconnect")
    ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"),
                         lambda m: payload(m) == {**payload(m), "state": "online",
                                                  "epoch": side.link.epoch})
    with pytest.raises(AssertionError, match="timed out"):
        ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("lost"), timeout=3.0)


def test_mqtt_will_fires_lost_with_the_current_epoch_after_kill(kiosk_config, ops, broker,
                                                              mqtt_client, tmp_path):
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(config.dumps(kiosk_config(mqtt={"will_delay_s": 1}),
                                        mask_secrets=False))
    process = subprocess.Popen([sys.executable, "-m", "tests.telemetry.kiosk_process",
                                str(config_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        online = ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("online"))
        process.kill()
        process.wait(10)
        ops.wait_for_message(topics.kiosk_topic(KIOSK, "status"), status_is("lost"))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()
    # Whoever looks later (ops' status view) finds the retained will, with this connect's epoch.
    latecomer = mqtt_client(*broker.ops_credentials)
    latecomer.subscribe(topics.kiosk_topic(KIOSK, "status"))
    lost = latecomer.wait_for_message(topics.kiosk_topic(KIOSK, "status"))
    assert lost.retain and payload(lost)["state"] == "lost"
    assert payload(lost)["epoch"] == payload(online)["epoch"]


def test_mqtt_publish_under_another_kiosk_is_refused_and_parked_dead(
        kiosk_config, running, ops):
    # kiosk-b's config with kiosk-a's credentials: every kiosk-b topic is outside a's ACL.
    side = running(kiosk_config("kiosk-b", username=KIOSK))
    event_id, = side.record_visits(1)
    wait_until(lambda: side.store.outbox_stats().dead == 2,
               "the refused visit and its period's count parked dead")
    row = side.store.OutboxMessage.get(side.store.OutboxMessage.event_id == event_id)
    assert row.reason_code == NOT_AUTHORIZED
    report = json.loads(side.health.payload())
    assert report["dead_letters"] == 2
    assert side.health.dead_letter_codes == (NOT_AUTHORIZED,)


def test_mqtt_connects_over_mutual_tls_with_a_client_certificate(make_config, tmp_path):
    with Broker(tmp_path / "tls-broker", tls=True) as tls_broker:
        cert_file, key_file = tls_broker.make_client_cert(KIOSK)
        cfg = make_config(
            tmp_path / KIOSK, kiosk={"id": KIOSK},
            mqtt={"host": "127.0.0.1", "port": tls_broker.tls_port, "tls": True,
                  "ca_file": str(tls_broker.ca_file), "cert_file": str(cert_file),
                  "key_file": str(key_file), "reconnect_min_s": 0.1, "reconnect_max_s": 1})
        side = KioskSide(cfg, poll_s=0.05).start()
        try:
            assert side.link.wait_for_connected(10)
            event_id, = side.record_visits(1)
            wait_until(lambda: side.store.OutboxMessage.get(
                side.store.OutboxMessage.event_id == event_id).state == "published",
                "the visit accepted over TLS")
        finally:
            side.stop()


def test_mqtt_missing_certificate_is_a_clear_error_naming_the_keys(make_config, tmp_path):
    cfg = make_config(tmp_path, mqtt={"host": "127.0.0.1", "tls": True,
                                      "cert_file": str(tmp_path / "missing.crt"),
                                      "key_file": str(tmp_path / "missing.key")})
    with pytest.raises(TelemetryError, match=r"mqtt\.ca_file/cert_file/key_file.*missing\.crt"):
        MqttLink(cfg.mqtt, KIOSK, instance="i1", next_epoch=lambda: 1, version="0.1.0",
                 facts=print, put=print)


def test_mqtt_unreadable_password_file_is_a_clear_error(make_config, tmp_path):
    cfg = make_config(tmp_path, mqtt={"host": "127.0.0.1", "tls": False,
                                      "password_file": str(tmp_path / "nope")})
    with pytest.raises(TelemetryError, match=r"mqtt\.password_file: cannot read .*nope"):
        MqttLink(cfg.mqtt, KIOSK, instance="i1", next_epoch=lambda: 1, version="0.1.0",
                 facts=print, put=print)


def test_health_report_is_qos0_and_counts_the_outbox(kiosk_config, running, ops):
    side = running(kiosk_config())
    side.link.stop()  # no drain: the visits stay in the outbox to be counted
    side.record_visits(3)  # their period closed: three visits and its count released
    side.store.record_visit(RECORD, **visit_message(KIOSK, "production"),
                            period=Period.of(datetime.now(UTC), side.store.period_s))
    report = json.loads(side.health.payload())
    assert report["outbox_depth"] == 4  # a visit of the open hour moves nothing
    assert report["outbox_oldest_s"] >= 0
    assert report["dead_letters"] == 0
    assert report["config_version"] is None
    assert report["cpu_temp_c"] is None and report["screen"] is None
    assert report["mem_free_mb"] > 0 and report["disk_free_mb"] > 0
    assert side.health.publish() is False  # link down: dropped, never queued on disk
    assert side.store.outbox_stats().depth == 4


def test_health_report_reaches_ops_with_reader_state(kiosk_config, running, ops):
    side = running(kiosk_config())
    side.health.note_reader("ready")  # the runner's word for a reader with or without a card
    assert side.health.publish() is True
    message = ops.wait_for_message(topics.kiosk_topic(KIOSK, "health"))
    assert message.qos == 0 and not message.retain
    assert payload(message)["reader"] == "ready"


def message(topic, payload, retain=False):
    """A message as paho hands it to on_message; ``topic`` as raw bytes, as on the wire."""
    built = MQTTMessage(mid=1, topic=topic)
    built.payload, built.retain = payload, retain
    return built


class Garbage:
    """Neither a reason code nor flags nor properties: any attribute read or compare fails."""

    def __getattr__(self, name):
        raise RuntimeError(f"garbage has no {name}")


def test_mqtt_no_exception_escapes_a_callback_on_hostile_input(make_config, tmp_path):
    """paho 2 re-raises a callback's exception, which ends its network thread for good."""
    cfg = make_config(tmp_path, mqtt={"host": "127.0.0.1", "tls": False})
    facts, commands = [], []
    link = MqttLink(cfg.mqtt, KIOSK, instance="i1", next_epoch=lambda: 1, version="0.1.0",
                    facts=facts.append, put=commands.append)
    client = link._client  # the callbacks exactly as paho calls them
    ack = topics.ack_topic(KIOSK).encode()
    for hostile in (message(b"\xff\xfe/not-utf-8", b"{}"), message(ack, DEEP_ACK),
                    message(ack, b"\xff" * 70_000), message(ack, None),
                    message(topics.cmd_topic(KIOSK, "ping").encode(), None, retain=Garbage())):
        client.on_message(client, None, hostile)
    for junk in (None, Garbage(), 0, "x"):
        client.on_connect(client, None, junk, junk, junk)
        client.on_subscribe(client, None, link._subscribe_mid, junk, junk)
        client.on_publish(client, None, junk, junk, junk)
        client.on_disconnect(client, None, junk, junk, junk)
        client.on_connect_fail(client, None)
    assert commands == [] and not link.is_connected
    # Before a connect, the only exception paho survives is OSError: it retries later.
    for bad_epoch in (lambda: "not an epoch", lambda: 1 / 0):
        link._next_epoch = bad_epoch
        with pytest.raises(OSError, match="cannot prepare this connect"):
            client.on_pre_connect(client, None)


def test_mqtt_link_keeps_working_after_a_hostile_ack(kiosk_config, running, ops, broker,
                                                     mqtt_client):
    """A hostile message through the real broker, then a command is still answered."""
    side = running(kiosk_config())
    collector = mqtt_client(*broker.collector_credentials)
    assert not collector.publish(topics.ack_topic(KIOSK), DEEP_ACK).is_failure
    payload_ = topics.command_payload("ping", "after-hostile-ack")
    assert not ops.publish(topics.cmd_topic(KIOSK, "ping"), payload_).is_failure
    reply = ops.wait_for_message(topics.kiosk_topic(KIOSK, "reply"))
    assert payload(reply)["correlation_id"] == "after-hostile-ack"
    assert side.link.is_connected
