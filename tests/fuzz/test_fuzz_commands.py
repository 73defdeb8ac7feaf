"""Fuzzing the MQTT command decoder: whatever arrives under ``cmd/{kiosk}/``, the kiosk answers
it (or, retained, skips it) without failing, keeps its remote config layer on disk exactly as it
was unless it proposes a new config, and quotes no citizen ID in a reply or a log line."""

import copy
import json
import logging
from dataclasses import fields

import pytest
import tomli_w
from hypothesis import event, given
from hypothesis import strategies as st

from kiosk import config as kiosk_config
from kiosk.errors import CommandRejected
from kiosk.facts import CommandReceived
from kiosk.telemetry import commands, topics
from tests.fixtures.config import example_raw
from tests.fuzz.budget import budget
from tests.fuzz.mutations import (
    assert_no_id,
    doc_examples,
    id_bearing_texts,
    json_values,
    logged_lines,
    mutated,
)

KIOSK = "bkk-bangrak-01"
SEEDS = [(topic.replace("bkk-001", KIOSK), obj) for topic, obj in doc_examples("cmd")]
FLOW_KEYS = sorted(f.name for f in fields(kiosk_config.FlowSection))
SERVICE = {"id": "id_card", "name_th": "ทำบัตรประจำตัวประชาชน", "name_en": "ID card",
           "no_copy": "cancelled"}
#: The remote layer already on disk (version 5) in the examples that start with one.
EARLIER_LAYER = {"version": 5, "flow": {"timeout_rating_s": 40.0}}


class FakeLink:
    """The MQTT link as commands use it; ``published`` keeps every (topic, payload)."""

    kiosk_id = KIOSK
    epoch = 3

    def __init__(self):
        self.published = []
        self.births = 0

    def publish(self, topic, payload):
        self.published.append((topic, payload))

    def publish_birth(self):
        self.births += 1


class FakeOutbox:
    """The outbox's replay: answers at once, as if 2 dead letters were retried."""

    def replay(self, done):
        done(2)


def values():
    return json_values() | st.sampled_from([1, 5, 6, 2**31 - 1, 2**31, 0.5, 1e9, -1, 10.0,
                                            "https://www.info.go.th/x", "https://evil.example/",
                                            "http://info.go.th/", "https://u:p@info.go.th/"])


@st.composite
def config_bodies(draw, obj):
    """A config command's body: its sections rebuilt from the schema's own keys."""
    obj = copy.deepcopy(obj)
    obj["version"] = draw(st.sampled_from([6, 7, 2**31 - 1, 5, 1]) if draw(st.integers(0, 5))
                          else values())
    # Mostly values of the kinds the schema takes, so that some configs pass every check.
    plausible = st.integers(0, 120) | st.floats(0, 120) | st.booleans() | values()
    if draw(st.booleans()):
        obj["flow"] = draw(st.dictionaries(st.sampled_from(FLOW_KEYS) | st.text(max_size=10),
                                           plausible, max_size=3))
    if draw(st.booleans()):
        services = draw(st.lists(mutated(SERVICE, values()), max_size=3))
        obj["services"] = services
    if draw(st.booleans()):
        obj["portal"] = draw(mutated({"url": "https://info.go.th/citizen"}, values()))
    return obj


@st.composite
def command_messages(draw):
    """``(topic, payload, retained)``: a documented command mutated (a config's sections
    rebuilt from the schema's keys), or bytes; on its topic, or on a made-up one."""
    topic, obj = draw(st.sampled_from(SEEDS))
    if draw(st.integers(0, 9)) == 0:
        payload = draw(st.binary(max_size=120))
    else:
        if topic.endswith("/config") and draw(st.integers(0, 2)):
            obj = draw(config_bodies(obj))
        if draw(st.integers(0, 2)) == 0:
            obj = draw(mutated(obj, values()))
        payload = json.dumps(obj, ensure_ascii=False).encode()
    if draw(st.integers(0, 7)) == 0:
        name = draw(st.sampled_from(["reboot", "", "ping/x", "1101700203549"]) |
                    id_bearing_texts())
        topic = f"{topics.ROOT}/cmd/{KIOSK}/{name}"
    if topic.endswith("/config") and draw(st.integers(0, 15)) == 0:
        payload = b""  # ops deleting the retained config
    return topic, payload, draw(st.integers(0, 4)) == 0


def kiosk_side(folder, with_layer):
    """The kiosk's own file and, ``with_layer``, a remote layer: the config :func:`load`
    gives for them and the path of the layer."""
    local = folder / "kiosk.toml"
    local.write_text(tomli_w.dumps(example_raw(kiosk={"id": KIOSK},
                                               storage={"data_dir": str(folder)})))
    remote = folder / kiosk_config.REMOTE_FILENAME
    remote.unlink(missing_ok=True)
    if with_layer:
        remote.write_text(tomli_w.dumps(EARLIER_LAYER))
    cfg = kiosk_config.load(local)
    assert cfg.remote_version == (5 if with_layer else None)
    return local, remote, cfg


def in_force(cfg):
    """What a remote layer can change, to compare configs from different sources."""
    return cfg.services, cfg.flow, cfg.portal, cfg.remote_version


@budget(200)
@given(message=command_messages(), with_layer=st.booleans())
def test_fuzz_commands_any_command_is_answered_and_the_layer_changes_only_with_a_proposal(
        tmp_path, caplog, message, with_layer):
    """``kiosk.telemetry.commands.Commands.handle`` (``kiosk.telemetry.topics.parse_command``,
    then ``kiosk.config.apply_remote`` and the remote layer on disk) as the runner calls it."""
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="kiosk")
    topic, payload, retained = message
    local, remote, cfg = kiosk_side(tmp_path, with_layer)
    before = remote.read_bytes() if remote.exists() else None
    link = FakeLink()
    handler = commands.Commands(link, FakeOutbox(), remote_path=remote)
    proposal = handler.handle(CommandReceived(topic, payload, retained), cfg)
    if proposal is not None:
        handler.confirm(proposal)
    replies = [json.loads(body) for _, body in link.published]
    for reply_topic, body in link.published:  # the contract's own check of a reply
        topics.parse_kiosk_message(reply_topic, body)
    assert_no_id(*logged_lines(caplog), *(reply.get("error") for reply in replies))
    assert not any("could not carry this out" in (reply.get("error") or "")
                   for reply in replies), replies
    if topic.endswith("/cert") and not payload:
        # The signing service's retained certificate deleted (live or retained): no request
        # of ops's to answer.
        assert replies == []
    else:
        assert len(replies) <= 1 and (replies or retained)
    assert not list(tmp_path.glob("*.tmp")), "a half-written layer was left behind"
    if proposal is None:
        event("refused or one-off")
        assert (remote.read_bytes() if remote.exists() else None) == before
        return
    event("config proposed" if payload else "layer deleted")
    # What is on disk now is what the kiosk would start with after a power cut.
    assert in_force(kiosk_config.load(local)) == in_force(proposal.config)
    assert replies[0]["ok"] and replies[0]["data"] == {"version": proposal.config.remote_version}


@budget(300)
@given(message=command_messages(), applied=st.sampled_from([None, 5, 2**31 - 1]),
       max_bytes=st.sampled_from([4096, 64]))
def test_fuzz_commands_parse_returns_a_command_or_command_rejected(message, applied, max_bytes):
    """``kiosk.telemetry.topics.parse_command`` alone: a Command the kiosk can act on, or
    CommandRejected carrying the reason (and the correlation id when it was readable)."""
    topic, payload, _ = message
    try:
        command = topics.parse_command(topic, payload, kiosk_id=KIOSK, max_bytes=max_bytes,
                                       applied_version=applied)
    except CommandRejected as exc:
        assert_no_id(exc)
        assert exc.correlation_id is None or isinstance(exc.correlation_id, str)
        return
    assert command.name in topics.COMMANDS and topic.endswith("/" + command.name)
    if command.name == "config":
        assert applied is None or command.version > applied
        assert command.desired and set(command.desired) <= {"services", "flow", "portal"}


def test_commands_unknown_command_named_by_a_citizen_id_is_refused_without_quoting_it(
        tmp_path, caplog):
    """Found by the fuzzer: a command topic whose last level was a citizen ID was refused
    with a reason (logged, and kept on CommandRejected) quoting the whole topic."""
    caplog.set_level(logging.DEBUG, logger="kiosk")
    _, remote, cfg = kiosk_side(tmp_path, with_layer=False)
    link = FakeLink()
    topic = f"{topics.ROOT}/cmd/{KIOSK}/1101700203549"
    commands.Commands(link, FakeOutbox(), remote_path=remote).handle(
        CommandReceived(topic, b'{"schema": 2, "correlation_id": "c1"}', False), cfg)
    assert "1101700203549" not in caplog.text
    assert f"{topics.ROOT}/cmd/{KIOSK}/#" in caplog.text  # the topic, its ID redacted
    [(_, reply)] = link.published
    assert not json.loads(reply)["ok"]
    with pytest.raises(CommandRejected, match="unknown command") as refused:
        topics.parse_command(topic, b"{}", kiosk_id=KIOSK, max_bytes=4096, applied_version=None)
    assert "1101700203549" not in str(refused.value)
