"""``kiosk-fleet command``: send ping, rebirth, replay or config to one kiosk (or to those a
status filter selects) with the ops account, then print each kiosk's reply.

Replies are read from the fleet database, where the collector stores them
(:meth:`kiosk.fleet.db.FleetDb.replies`): ops itself may not hold a session, and the collector
is the one subscriber that sees every reply. A config is published retained, as the contract
says (a kiosk that is off picks it up on return); the other commands are not.
"""

import json
import secrets
import string
import threading
import time
from pathlib import Path

from kiosk.errors import MessageRejected, TelemetryError
from kiosk.fleet import status
from kiosk.fleet.collector import read_password, service_client
from kiosk.fleet.db import DEFAULT_DB, open_database
from kiosk.telemetry import topics

DEFAULT_TIMEOUT_S = 30.0
#: What this verb and the console's commands page send. ``update`` is a rollout's: it goes to
#: a chosen share of the fleet through ``kiosk-fleet rollout`` (kiosk/fleet/rollouts.py).
#: ``cert`` is the signing service's alone (``kiosk-fleet ca``): it answers a kiosk's own
#: request with a certificate for the key that kiosk made, and records it.
VERBS = tuple(name for name in topics.COMMANDS if name not in ("update", "cert"))


def new_correlation_id():
    """A random id of letters: a run of 13 digits, as a hex uuid can hold, is refused on the
    wire (it could be a citizen id)."""
    return "ops-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


def payload_for(name, correlation_id, *, config_file=None, config_text=None, event_ids=()):
    """The command's payload, checked by the contract's own builder. A config comes from
    ``config_file`` (the verb) or ``config_text`` (the console's form), a JSON object."""
    fields = {}
    if name == "config":
        source = config_file if config_text is None else "(the form)"
        try:
            text = (Path(config_file).read_text(encoding="utf-8") if config_text is None
                    else config_text)
            fields = json.loads(text)
        except (OSError, TypeError, ValueError) as exc:
            raise TelemetryError(f"config {source}: cannot read a JSON object ({exc})"
                                 ) from None
        if not isinstance(fields, dict):
            raise TelemetryError(f"config {source}: must be a JSON object with "
                                 "'version' and 'services', 'flow' or 'portal'")
        fields.pop("correlation_id", None)
        fields.pop("schema", None)
    elif name == "replay" and event_ids:
        fields = {"event_ids": list(event_ids)}
    try:
        return topics.command_payload(name, correlation_id, **fields)
    except MessageRejected as exc:
        raise TelemetryError(f"{name}: {exc}") from None


def publish(host, port, username, password, messages, *, tls=None, timeout_s=10.0):
    """Publish ``(topic, payload, retain)`` messages at QoS 1 as ``username``, waiting for
    the broker's PUBACK of each; raises TelemetryError when the broker refuses or is away."""
    connected, outcome = threading.Event(), {}

    def on_connect(client, userdata, flags, reason_code, properties):
        outcome["reason"] = reason_code
        connected.set()

    # The user name is the client id (docs/broker.md): one ops command at a time per account.
    client = service_client(username, password, tls)
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise TelemetryError(f"cannot reach the broker at {host}:{port} ({exc})") from None
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise TelemetryError(f"no answer from the broker at {host}:{port}")
        if outcome["reason"].is_failure:
            raise TelemetryError(f"broker refused {username}: {outcome['reason']}")
        for topic, payload, retain in messages:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise TelemetryError(f"{topic}: the broker did not confirm the command")
    finally:
        client.disconnect()
        client.loop_stop()


def wait_for_replies(fleet_db, correlation_id, kiosk_ids, timeout_s, poll_s=0.1):
    """``{kiosk_id: Reply row or None}`` once every kiosk replied or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = {r.kiosk_id: r for r in fleet_db.replies(correlation_id) if r.kiosk_id in kiosk_ids}
        if len(got) == len(kiosk_ids) or time.monotonic() >= deadline:
            return {kiosk_id: got.get(kiosk_id) for kiosk_id in kiosk_ids}
        time.sleep(poll_s)


def reply_line(kiosk_id, reply, timeout_s):
    if reply is None:
        return f"{kiosk_id:<24} no reply within {timeout_s:g} s"
    if not reply.ok:
        return f"{kiosk_id:<24} error  {reply.error}"
    data = "" if reply.data is None else "  " + json.dumps(reply.data, ensure_ascii=False)
    return f"{kiosk_id:<24} ok{data}"


def add_arguments(parser):
    parser.add_argument("words", nargs="+", metavar="KIOSK VERB [FILE]",
                        help=f"the kiosk, then one of {', '.join(VERBS)}; config "
                             "takes a JSON file (version plus services, flow or portal). With "
                             "--filter, leave the kiosk out")
    parser.add_argument("--filter", action="store_true",
                        help="send to every kiosk --province, --ministry and --department "
                             "select (as kiosk-fleet status shows them)")
    parser.add_argument("--province", help="with --filter: kiosks in this province")
    parser.add_argument("--ministry", help="with --filter: kiosks of this ministry")
    parser.add_argument("--department", help="with --filter: kiosks of this department")
    parser.add_argument("--event-id", action="append", default=[], dest="event_ids",
                        help="replay: only this dead letter (repeatable)")
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the collector's database, where replies are stored "
                             "(default %(default)s)")
    add_broker_arguments(parser)
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                        help="how long to wait for the replies (default %(default)s)")


def add_broker_arguments(parser):
    """How ops reaches the broker: host, port, the account and its password file, TLS."""
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default %(default)s)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default %(default)s)")
    parser.add_argument("--username", default="ops", help="broker account (default %(default)s)")
    parser.add_argument("--password-file", type=Path,
                        help="file holding the account's password (first line)")
    parser.add_argument("--ca-file", type=Path, help="CA certificate: connect with TLS")


def _targets(args, fleet_db):
    """``(kiosk ids, verb, file)`` from the positional words and the filters."""
    words = list(args.words)
    if args.filter:
        filters = status.Filters(args.province, args.ministry, args.department)
        kiosk_ids = [line.split()[0] for line in status.status_lines(fleet_db, filters=filters)]
    else:
        if len(words) < 2:
            raise TelemetryError("name the kiosk and the command (or use --filter)")
        kiosk_ids = [topics.check_kiosk_id(words.pop(0))]
    name, rest = words[0], words[1:]
    if name == "update":
        raise TelemetryError("update goes to a share of the fleet: use kiosk-fleet rollout start")
    if name == "cert":
        raise TelemetryError("cert answers a kiosk's own certificate request, and only "
                             "kiosk-fleet ca sends it: a kiosk renews by itself "
                             "(docs/credentials.md)")
    if name not in VERBS:
        raise TelemetryError(f"unknown command {name!r}; expected one of {VERBS}")
    if (name == "config") != (len(rest) == 1) or len(rest) > 1:
        raise TelemetryError("config takes one FILE; the other commands take none")
    return kiosk_ids, name, rest[0] if rest else None


def main(args):
    password = read_password(args.password_file)
    fleet_db = open_database(args.db)
    try:
        kiosk_ids, name, config_file = _targets(args, fleet_db)
        if not kiosk_ids:
            print("no kiosk matches")
            return 1
        correlation_id = new_correlation_id()
        payload = payload_for(name, correlation_id, config_file=config_file,
                              event_ids=args.event_ids)
        publish(args.host, args.port, args.username, password,
                [(topics.cmd_topic(kiosk_id, name), payload, name == "config")
                 for kiosk_id in kiosk_ids],
                tls={"ca_certs": str(args.ca_file)} if args.ca_file else None)
        replies = wait_for_replies(fleet_db, correlation_id, kiosk_ids, args.timeout_s)
    finally:
        fleet_db.close()
    for kiosk_id, reply in replies.items():
        print(reply_line(kiosk_id, reply, args.timeout_s))
    return 0 if all(reply is not None and reply.ok for reply in replies.values()) else 1
