"""Commands from ops, end to end: ops account → real Mosquitto → kiosk → reply."""

import json
import logging
from pathlib import Path

from kiosk import __version__, config
from kiosk.facts import CommandReceived
from kiosk.telemetry import topics

KIOSK = "kiosk-a"
REPLY = topics.kiosk_topic(KIOSK, "reply")
STATUS = topics.kiosk_topic(KIOSK, "status")


def send(ops, name, correlation_id, *, retain=False, **fields):
    payload = topics.command_payload(name, correlation_id, **fields)
    assert not ops.publish(topics.cmd_topic(KIOSK, name), payload, retain=retain).is_failure


def reply_to(ops, correlation_id):
    message = ops.wait_for_message(
        REPLY, lambda m: json.loads(m.payload)["correlation_id"] == correlation_id)
    return json.loads(message.payload)


def replies(ops):
    return [json.loads(m.payload) for m in ops.received(REPLY)]


def test_commands_ping_is_answered_with_its_correlation_id(kiosk_config, running, ops):
    running(kiosk_config())
    send(ops, "ping", "ping-1")
    assert reply_to(ops, "ping-1") == {"schema": topics.SCHEMA, "correlation_id": "ping-1",
                                       "ok": True, "error": None, "data": None}


def test_commands_retained_config_sent_while_offline_applies_and_survives_restart(
        kiosk_config, running, ops, tmp_path):
    cfg = kiosk_config()
    send(ops, "config", "cfg-1", retain=True, version=3, flow={"thank_you_s": 5},
         portal={"url": "https://info.go.th/"})
    side = running(cfg)
    answer = reply_to(ops, "cfg-1")
    assert answer["ok"] and answer["data"] == {"version": 3}
    assert side.in_force.flow.thank_you_s == 5
    assert json.loads(side.health.payload())["config_version"] == 3
    side.stop()

    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(config.dumps(cfg, mask_secrets=False))
    reloaded = config.load(config_file)
    assert reloaded.remote_version == 3
    assert reloaded.flow.thank_you_s == 5 and reloaded.portal.url == "https://info.go.th/"
    # Back online, the broker re-delivers the retained config: already applied, so no reply;
    # a ping answered next proves nothing was sent before it on this connection.
    running(reloaded)
    send(ops, "ping", "after-restart")
    reply_to(ops, "after-restart")
    assert [r["correlation_id"] for r in replies(ops)] == ["cfg-1", "after-restart"]


def test_commands_invalid_config_is_refused_and_changes_nothing(kiosk_config, running, ops):
    side = running(kiosk_config())
    send(ops, "config", "bad-1", version=1, flow={"thank_you_s": "soon", "no_such_key": 1})
    answer = reply_to(ops, "bad-1")
    assert not answer["ok"]
    assert "flow.thank_you_s" in answer["error"] and "flow.no_such_key" in answer["error"]
    assert side.in_force is side.config
    assert not config.remote_layer_path(side.config).exists()


def test_commands_portal_host_outside_allowed_hosts_is_refused(kiosk_config, running, ops):
    side = running(kiosk_config())
    send(ops, "config", "portal-1", version=1, portal={"url": "https://portal.example.com/"})
    answer = reply_to(ops, "portal-1")
    assert not answer["ok"] and "allowed_hosts" in answer["error"]
    assert side.in_force.portal.url == side.config.portal.url
    assert not config.remote_layer_path(side.config).exists()


def test_commands_malformed_oversized_unknown_and_stale_get_error_replies(
        kiosk_config, running, ops):
    side = running(kiosk_config(telemetry={"max_command_bytes": 1024}))
    send(ops, "config", "v2", version=2, flow={"thank_you_s": 6})
    assert reply_to(ops, "v2")["ok"]
    cmd = f"{topics.ROOT}/cmd/{KIOSK}"
    ops.publish(f"{cmd}/ping", b'{"schema": 1, "correlation_id": "broken",')
    ops.publish(f"{cmd}/ping", json.dumps({"schema": 1, "correlation_id": "big",
                                            "pad": "x" * 2000}).encode())
    ops.publish(f"{cmd}/reboot", json.dumps({"schema": 1, "correlation_id": "reboot"}).encode())
    send(ops, "config", "stale", version=2, flow={"thank_you_s": 9})
    send(ops, "ping", "last")
    reply_to(ops, "last")
    errors = [r["error"] for r in replies(ops) if not r["ok"]]
    assert len(errors) == 4
    assert "not UTF-8 JSON" in errors[0]
    assert "over the limit of 1024" in errors[1]
    assert "unknown command" in errors[2]
    assert "not newer than the applied version 2" in errors[3]
    assert side.in_force.flow.thank_you_s == 6


def test_commands_rebirth_republishes_online_status(kiosk_config, running, ops):
    side = running(kiosk_config())
    ops.wait_for_message(STATUS, lambda m: json.loads(m.payload)["state"] == "online")
    before = len(ops.received(STATUS))
    send(ops, "rebirth", "rb-1")
    assert reply_to(ops, "rb-1")["data"] == {"epoch": side.link.epoch}
    assert len(ops.received(STATUS)) > before
    assert json.loads(ops.received(STATUS)[-1].payload)["epoch"] == side.link.epoch


def test_commands_error_quoting_a_long_number_is_answered_and_the_kiosk_goes_on(
        kiosk_config, running, ops):
    """An error text may quote a value with 13+ digits; the reply must not trip the ID check."""
    side = running(kiosk_config())
    send(ops, "config", "third", version=1, flow={"reminder_s": 1 / 3})
    answer = reply_to(ops, "third")
    assert not answer["ok"] and "flow.reminder_s" in answer["error"]
    assert not topics.find_long_numbers(answer)
    ops.publish(f"{topics.ROOT}/cmd/{KIOSK}/1234567890123",
                json.dumps({"schema": 1, "correlation_id": "long-topic"}).encode())
    send(ops, "ping", "still-alive")
    assert reply_to(ops, "still-alive")["ok"]
    assert side.in_force is side.config


def test_commands_retained_ping_rebirth_and_replay_are_ignored_and_logged_once(
        kiosk_config, running, ops, caplog):
    """Only config is a desired state; a retained one-off would run again on every reconnect."""
    for name in ("ping", "rebirth", "replay"):
        send(ops, name, f"retained-{name}", retain=True)
    caplog.set_level(logging.WARNING, logger="kiosk.telemetry.commands")
    side = running(kiosk_config())
    send(ops, "ping", "live")
    assert reply_to(ops, "live")["ok"]
    assert [r["correlation_id"] for r in replies(ops)] == ["live"]
    # The broker sends them again after every reconnect: still ignored, and not logged again.
    side.commands.handle(CommandReceived(topics.cmd_topic(KIOSK, "ping"), b"{}", True),
                         side.in_force)
    ignored = [r.getMessage() for r in caplog.records if "retained" in r.getMessage()]
    assert sorted(ignored) == sorted(
        f"ignoring retained {topics.cmd_topic(KIOSK, name)}: only config, update and cert are kept "
        "at the broker; delete it there (an empty retained message)"
        for name in ("ping", "rebirth", "replay"))


def test_commands_deleting_the_retained_config_unfreezes_the_version(kiosk_config, running, ops):
    """Version 2**31-1 is the wire's highest: nothing newer exists, every later config is stale.
    The way out (docs/telemetry.md): delete the retained config (an empty retained message);
    the kiosk drops its remote layer, and the next config of any version applies."""
    side = running(kiosk_config())
    send(ops, "config", "top", retain=True, version=2**31 - 1, flow={"thank_you_s": 5})
    assert reply_to(ops, "top")["ok"]
    send(ops, "config", "frozen", retain=True, version=7, flow={"thank_you_s": 6})
    assert "not newer" in reply_to(ops, "frozen")["error"]

    assert not ops.publish(topics.cmd_topic(KIOSK, "config"), b"", retain=True).is_failure
    forgot = ops.wait_for_message(REPLY, lambda m: json.loads(m.payload)["data"] == {
        "version": None})
    assert json.loads(forgot.payload)["ok"]
    assert side.in_force.remote_version is None
    assert side.in_force.flow.thank_you_s == side.config.flow.thank_you_s
    assert not config.remote_layer_path(side.config).exists()
    assert json.loads(side.health.payload())["config_version"] is None

    send(ops, "config", "fresh", retain=True, version=1, flow={"thank_you_s": 6})
    assert reply_to(ops, "fresh")["data"] == {"version": 1}
    assert side.in_force.flow.thank_you_s == 6
    assert 'version = 1\n' in config.remote_layer_path(side.config).read_text()


def test_commands_update_hands_a_request_to_the_updater_and_an_empty_retained_one_withdraws_it(
        kiosk_config, running, ops):
    """The kiosk cannot install anything: it writes the request the root updater acts on. The
    retained command re-delivered on reconnect writes nothing and gets no reply; an empty
    retained message (a paused rollout) deletes the request; the running version needs none."""
    cfg = kiosk_config()
    wanted = {"version": "9.9.0", "url": "https://releases.example.go.th/kiosk/9.9.0/",
              "sha256": "0123abcd" * 8, "rollout": "r-9-9-0-a"}
    on_file = Path(cfg.storage.data_dir) / "update-request.json"
    side = running(cfg)
    send(ops, "update", "up-1", retain=True, **{**wanted,
                                                "sha256": topics.grouped_sha256(wanted["sha256"])})
    assert reply_to(ops, "up-1") == {"schema": topics.SCHEMA, "correlation_id": "up-1",
                                     "ok": True, "error": None, "data": {"requested": "9.9.0"}}
    assert json.loads(on_file.read_text()) == wanted
    written = on_file.stat()
    side.stop()

    running(cfg)  # reconnects: the broker re-delivers the retained update
    send(ops, "ping", "after-reconnect")
    reply_to(ops, "after-reconnect")
    assert [r["correlation_id"] for r in replies(ops)] == ["up-1", "after-reconnect"]
    assert (on_file.stat().st_ino, on_file.stat().st_mtime_ns) == (written.st_ino,
                                                                   written.st_mtime_ns)

    assert not ops.publish(topics.cmd_topic(KIOSK, "update"), b"", retain=True).is_failure
    withdrawn = ops.wait_for_message(REPLY, lambda m: json.loads(m.payload)["data"] == {
        "requested": None})
    assert json.loads(withdrawn.payload)["ok"] and not on_file.exists()

    send(ops, "update", "up-same", **{**wanted, "version": __version__,
                                      "sha256": topics.grouped_sha256(wanted["sha256"])})
    assert reply_to(ops, "up-same")["data"] == {"requested": None}
    assert not on_file.exists()
