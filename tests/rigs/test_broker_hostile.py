"""A hostile kiosk account against the fleet broker (issue 9): subscriptions outside its ACL
rows, a hijacked shared subscription, a session left behind for the real kiosk, oversized
publishes. Each test ran red against the broker before the auth plugin and the size limits."""

import json
import queue
from pathlib import Path

from kiosk.facts import CommandReceived
from kiosk.fleet.collector import DEFAULT_GROUP
from kiosk.rigs.broker import MAX_PACKET_BYTES
from kiosk.telemetry import topics
from kiosk.telemetry.mqtt import AckReceived, Connected, MqttLink
from tests.fixtures.broker import wait_until

NOT_AUTHORIZED = 0x87
GRANTED_QOS1 = 1
ROGUE = "rogue"
SHARED = f"$share/{DEFAULT_GROUP}/{topics.KIOSK_SUBSCRIPTION}"
SENDERS = ("k1", "k2", "k3", "k4")
VISITS_EACH = 250


def rogue_filters(victim):
    """Every subscription a kiosk account must not hold: the issue's list, and its cousins."""
    root = topics.ROOT
    return [
        SHARED,                                         # the collectors' group
        f"$share/{DEFAULT_GROUP}/{root}/kiosk/{victim}/visit",
        f"$share/own/{topics.cmd_subscription(ROGUE)}",   # no shared group at all, even its own
        "#", f"{root}/#", topics.KIOSK_SUBSCRIPTION, f"{root}/kiosk/{victim}/visit",
        topics.cmd_subscription(victim), topics.ack_topic(victim),
        f"{root}/cmd/+/#", f"{root}/ack/+", f"{root}/+/{ROGUE}/#",
        "$SYS/#", "$SYS/broker/clients/connected",
    ]


def codes(reason_codes):
    return [code.value for code in reason_codes]


def subscribe_all(client, filters):
    return {f: codes(client.subscribe(f))[0] for f in filters}


def test_broker_kiosk_may_subscribe_only_to_its_own_rows(broker, mqtt_client):
    rogue = mqtt_client(ROGUE, broker.add_kiosk(ROGUE))
    broker.add_kiosk("victim")

    refused = subscribe_all(rogue, rogue_filters("victim"))
    own = subscribe_all(rogue, [topics.cmd_subscription(ROGUE), topics.ack_topic(ROGUE),
                                topics.cmd_topic(ROGUE, "ping")])

    assert refused == dict.fromkeys(refused, NOT_AUTHORIZED)
    assert own == dict.fromkeys(own, GRANTED_QOS1)


def test_broker_only_the_collector_may_join_a_shared_subscription(broker, mqtt_client):
    collector = mqtt_client(*broker.collector_credentials)
    ops = mqtt_client(*broker.ops_credentials)
    observer = mqtt_client("auditor", broker.add_observer("auditor"))
    status = f"{topics.ROOT}/kiosk/+/status"

    assert codes(collector.subscribe(SHARED)) == [GRANTED_QOS1]
    assert codes(collector.subscribe(topics.cmd_subscription("k1"))) == [NOT_AUTHORIZED]
    assert codes(ops.subscribe(status)) == [GRANTED_QOS1]
    assert codes(ops.subscribe(f"$share/{DEFAULT_GROUP}/{status}")) == [NOT_AUTHORIZED]
    assert codes(ops.subscribe(f"{topics.ROOT}/kiosk/+/visit")) == [NOT_AUTHORIZED]
    assert codes(observer.subscribe(f"{topics.ROOT}/#")) == [GRANTED_QOS1]
    assert codes(observer.subscribe(SHARED)) == [NOT_AUTHORIZED]


def test_broker_collector_gets_every_visit_while_a_rogue_holds_every_subscription(
        broker, mqtt_client):
    collector = mqtt_client(*broker.collector_credentials)
    collector.subscribe(SHARED)
    password = broker.add_kiosk(ROGUE)
    # First connection leaves a persistent session behind; the second resumes it and asks
    # again, so the rogue holds whatever either could get.
    session = {"clean_start": False, "session_expiry_s": 3600}
    first = mqtt_client(ROGUE, password, **session)
    subscribe_all(first, rogue_filters("k1"))
    first.close()
    rogue = mqtt_client(ROGUE, password, **session)
    assert rogue.wait_for_connack() is not None
    subscribe_all(rogue, rogue_filters("k1"))
    senders = [mqtt_client(k, broker.add_kiosk(k)) for k in SENDERS]

    infos = [sender.client.publish(topics.kiosk_topic(sender_id, "visit"),
                                   json.dumps({"kiosk": sender_id, "n": n}), qos=1)
             for n in range(VISITS_EACH) for sender_id, sender in zip(SENDERS, senders,
                                                                      strict=True)]
    for info in infos:
        info.wait_for_publish(10)

    expected = len(SENDERS) * VISITS_EACH
    wait_until(lambda: len(collector.received(topics.KIOSK_SUBSCRIPTION)) >= expected,
               f"{expected} visits at the collector")
    got = {(m.topic, m.payload) for m in collector.received(topics.KIOSK_SUBSCRIPTION)}
    assert len(got) == expected
    assert rogue.messages == []


def test_broker_session_planted_with_a_kiosks_password_dies_at_its_next_connect(
        kiosk_config, broker, mqtt_client):
    cfg = kiosk_config("kiosk-b")
    password = Path(cfg.mqtt.password_file).read_text(encoding="utf-8")
    planted = mqtt_client("kiosk-b", password, clean_start=False, session_expiry_s=3600)
    assert codes(planted.subscribe(topics.cmd_topic("kiosk-b", "ping"), qos=0)) == [0]
    planted.close()

    facts, commands = queue.Queue(), queue.Queue()
    link = MqttLink(cfg.mqtt, "kiosk-b", instance="i1", next_epoch=iter(range(1, 100)).__next__,
                    version="0.1.0", facts=facts.put, put=commands.put)
    link.start()
    try:
        assert link.wait_for_connected(10)
        assert next_of(facts, Connected) == Connected(1, False)  # the planted session is gone
        # Commands and acks still arrive, after a reconnect too (the link re-subscribes).
        ops = mqtt_client(*broker.ops_credentials)
        collector = mqtt_client(*broker.collector_credentials)
        for round_ in (1, 2):
            ops.publish(topics.cmd_topic("kiosk-b", "ping"),
                        topics.command_payload("ping", f"c-{round_}"))
            assert isinstance(commands.get(timeout=10), CommandReceived)
            collector.publish(topics.ack_topic("kiosk-b"), topics.ack_payload([f"e-{round_}"]))
            assert next_of(facts, AckReceived) == AckReceived((f"e-{round_}",))
            if round_ == 1:
                broker.restart()
                assert next_of(facts, Connected).session_present is False
        assert commands.empty()  # one delivery per command: no planted duplicate
    finally:
        link.stop()


def next_of(facts, kind):
    """The next fact of type ``kind`` on the queue, skipping others (within 10 s)."""
    while True:
        fact = facts.get(timeout=10)
        if isinstance(fact, kind):
            return fact


def test_broker_refuses_a_2mb_publish_and_serves_the_next_visit(broker, mqtt_client):
    collector = mqtt_client(*broker.collector_credentials)
    collector.subscribe(SHARED)
    big = mqtt_client("big", broker.add_kiosk("big"))
    other = mqtt_client("k1", broker.add_kiosk("k1"))

    big.client.publish(topics.kiosk_topic("big", "visit"), b"x" * 2_000_000, qos=1)
    wait_until(lambda: big.is_disconnected, "the broker to drop the 2 MB publisher")
    assert not other.publish(topics.kiosk_topic("k1", "visit"), b'{"n": 1}').is_failure
    collector.wait_for_message(topics.kiosk_topic("k1", "visit"))
    assert collector.received(topics.kiosk_topic("big", "visit")) == []


def test_broker_carries_the_largest_command_a_kiosk_may_accept(broker, mqtt_client):
    kiosk = mqtt_client("k1", broker.add_kiosk("k1"))
    kiosk.subscribe(topics.cmd_subscription("k1"))
    ops = mqtt_client(*broker.ops_credentials)
    largest = 1_048_576  # the ceiling of telemetry.max_command_bytes
    assert largest < MAX_PACKET_BYTES

    reason = ops.publish(topics.cmd_topic("k1", "config"), b"x" * largest)
    assert not reason.is_failure
    assert len(kiosk.wait_for_message(topics.cmd_topic("k1", "config")).payload) == largest
