"""``kiosk-fleet command`` end to end: the ops account publishes through the real Mosquitto, a
real kiosk answers, the real collector stores the reply (SQLite and PostgreSQL), and the verb
prints it."""

import argparse
import json

import pytest

from kiosk.errors import TelemetryError
from kiosk.fleet import command
from tests.fixtures.broker import wait_until

KIOSK = "kiosk-a"


@pytest.fixture
def fleet_command(broker, fleet_url, tmp_path, capsys):
    """``run(*argv) -> (exit code, printed lines)`` of the verb, as the ops account."""
    user, password = broker.ops_credentials
    password_file = tmp_path / "ops.password"
    password_file.write_text(password)

    def run(*argv):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        args = parser.parse_args([*argv, "--db", fleet_url, "--port", str(broker.port),
                                  "--username", user, "--password-file", str(password_file)])
        code = command.main(args)
        return code, capsys.readouterr().out.splitlines()

    return run


@pytest.fixture
def side(kiosk_config, running, collector):
    """A running kiosk whose pin the collector has stored."""
    started = running(kiosk_config())
    wait_until(lambda: collector.counters.service_points >= 1, "the kiosk's pin")
    return started


def test_command_ping_by_name_and_by_filter_prints_the_kiosks_replies(side, fleet_command,
                                                                     collector):
    code, lines = fleet_command(KIOSK, "ping", "--timeout-s", "10")
    assert (code, lines) == (0, [f"{KIOSK:<24} ok"])
    (reply,) = collector.db.replies()
    assert reply.correlation_id.startswith("ops-") and reply.ok

    (pin,) = collector.db.ServicePointRow.select()
    code, lines = fleet_command("--filter", "--province", pin.province, "ping",
                                "--timeout-s", "10")
    assert (code, lines) == (0, [f"{KIOSK:<24} ok"])
    assert len({r.correlation_id for r in collector.db.replies()}) == 2
    code, lines = fleet_command("--filter", "--province", "nowhere", "ping")
    assert (code, lines) == (1, ["no kiosk matches"])


def test_command_config_from_a_file_is_applied_and_its_version_replied(side, fleet_command,
                                                                       tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"version": 4, "flow": {"thank_you_s": 5}}))
    code, lines = fleet_command(KIOSK, "config", str(config_file), "--timeout-s", "10")
    assert code == 0 and lines == [f"{KIOSK:<24} ok  " + json.dumps({"version": 4})]
    assert side.in_force.flow.thank_you_s == 5


def test_command_to_a_silent_kiosk_says_no_reply_and_fails(collector, fleet_command):
    code, lines = fleet_command("kiosk-z", "rebirth", "--timeout-s", "0.3")
    assert (code, lines) == (1, [f"{'kiosk-z':<24} no reply within 0.3 s"])


def test_command_refuses_a_bad_config_before_sending(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"version": 0, "flow": {}}))
    with pytest.raises(TelemetryError, match="version"):
        command.payload_for("config", "c1", config_file=config_file)


def test_command_sends_no_update_itself_it_is_a_rollouts(collector, fleet_command):
    """An update goes to a chosen share of the fleet, recorded and watched: the rollout verb's.
    Sent to one kiosk here it would be retained and tracked by no rollout."""
    with pytest.raises(TelemetryError, match="kiosk-fleet rollout start"):
        fleet_command(KIOSK, "update")
    assert "update" not in command.VERBS and "replay" in command.VERBS


def test_command_sends_no_certificate_it_is_the_signing_services(collector, fleet_command):
    """A certificate answers a kiosk's own request (kiosk-fleet ca signs and records it); one
    sent by hand would be retained for the kiosk's renewal unit to install."""
    with pytest.raises(TelemetryError, match="only kiosk-fleet ca sends it"):
        fleet_command(KIOSK, "cert")
    assert "cert" not in command.VERBS


def test_command_console_offers_no_certificate_and_refuses_a_forged_one(browser):
    operator = browser("otto")
    page = operator.get("/commands")
    assert ">replay</option>" in page.text and ">cert</option>" not in page.text
    forged = operator.post("/commands", {"target": "kiosk", "kiosk_id": "k1", "command": "cert"})
    assert forged.status_code == 400 and "unknown command" in forged.text
