"""Kiosk-side handling of ``cmd/{kiosk_id}/…``: config, rebirth, ping, replay, update, cert.

Runs on the main thread: the link puts :class:`~kiosk.facts.CommandReceived` on the
runner's queue and the runner calls :meth:`Commands.handle` with the config in force. Every
command gets a reply with its correlation id. A malformed, oversized, unknown or stale command
gets an error reply and changes nothing.

A config command is applied atomically: validated whole by ``kiosk.config.apply_remote``,
written as the remote config layer (temp file, fsync, rename, fsync of the directory, so a power
cut leaves the old layer or the new one, never half of one), and only then proposed to the
runner, which owns the config in force, puts it in force and calls :meth:`Commands.confirm`.
The retained config is delivered again on every subscribe; a retained copy that is not newer
than the applied version is silently skipped rather than answered with a "stale" error on every
reconnect (a stale config sent live still gets its error reply). ``config`` and ``update`` are
desired states: any other command that arrives retained (a ``ping``, ``rebirth`` or ``replay``
published with the retain flag by mistake) would run again on every reconnect, so it is
ignored, and logged once per topic so the log does not fill up with it.

An update command names the version this kiosk should run. The kiosk user cannot write the
slots, so it hands the request to the root updater (:mod:`kiosk.update.request`): it writes
``update-request.json`` into its state folder (atomically, as the remote layer) and replies
``{"requested": version}``; the updater's path unit takes it from there, and checks it again as
untrusted. An update to the version already running withdraws any request on file (replies
``{"requested": null}``). The retained update re-delivered on reconnect, when it asks for what
is on file already (or for the running version), is skipped without a reply. An empty message on
``cmd/{kiosk_id}/update`` withdraws the request (a paused rollout deletes its retained command
so): the file goes, and the updater stops if it is still waiting to stop the kiosk.

A cert command carries the certificate the signing service made for this kiosk's renewal
request (:mod:`kiosk.renewal.relay`). The kiosk cannot install it (its credentials are root's):
it writes it to ``cert-response.pem`` in its state folder, atomically, for the root unit's path
unit, and replies ``{"request_pending": bool}``. A live cert with no request pending is written
all the same: only the root unit holds the pending key and can tell whether the certificate
matches it, and it discards one that does not; the reply tells ops it will. The command is
retained, so it comes again on every connect: a retained one with no request pending (the
certificate is installed already) or that is on file already is skipped without a reply.

The way out of a frozen version (a config at the wire's highest version, 2**31-1, makes every
later one stale): an empty message on ``cmd/{kiosk_id}/config``, which is also how ops deletes
the retained config at the broker. The desired state is gone, so the kiosk drops its remote
layer and goes back to its own file with no version; the next config of any version applies.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from kiosk import __version__, logsafe
from kiosk import config as kiosk_config
from kiosk.errors import CommandRejected, ConfigError
from kiosk.telemetry import topics
from kiosk.update import request

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 1000  # the reply contract's limit on an error text


def write_atomically(path, text):
    """Replace ``path`` with ``text`` (None: delete it) so a crash at any point leaves the old
    state or the new one."""
    path = Path(path)
    if text is None:
        path.unlink(missing_ok=True)
    else:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _shown(text):
    """A topic (or a reason quoting one) as a log may show it: whoever published chose it,
    so a citizen ID in it is redacted and a control character cannot start a fake line."""
    return logsafe.printable(logsafe.redact_ids(text))


def _read_text(path):
    """What is on file at ``path``, or None when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class ConfigProposed:
    """A remote config that passed every check and whose layer is on disk.

    Commands propose it; the runner alone puts it in force and hands its parts to the adapters,
    then ``correlation_id`` (None for a deleted retained config) gets the ``ok`` reply.
    """

    config: object
    correlation_id: str | None


class Commands:
    """Judges and carries out commands for one kiosk; keeps no config of its own."""

    def __init__(self, link, outbox, *, remote_path, request_path=None, version=__version__,
                 relay=None):
        """``remote_path`` is the remote config layer; ``request_path`` the update request
        for the root updater (default: ``update-request.json`` beside the layer, in the
        kiosk's state folder); ``version`` the version running; ``relay`` the
        :class:`~kiosk.renewal.relay.Relay` whose request a cert command answers (None: cert
        commands are refused)."""
        self._link = link
        self._outbox = outbox
        self._remote_path = Path(remote_path)
        self._request_path = Path(request_path or self._remote_path.with_name(request.REQUEST))
        self._version = version
        self._relay = relay
        self._config_topic = topics.cmd_topic(link.kiosk_id, "config")
        self._update_topic = topics.cmd_topic(link.kiosk_id, "update")
        self._cert_topic = topics.cmd_topic(link.kiosk_id, "cert")
        self._ignored_retained = set()
        self._actions = {"config": self._do_config, "rebirth": self._do_rebirth,
                         "ping": self._do_ping, "replay": self._do_replay}

    def handle(self, received, config):
        """Carry out one received command against ``config``, the config in force.

        Returns a :class:`ConfigProposed` for the runner to put in force (its
        ``ok`` reply waits for :meth:`confirm`), else None. Bad input is answered, never
        raised: a command that fails in an unforeseen way is logged and answered with an error
        too, since a retained command that crashed the kiosk would crash it again on every
        reconnect.
        """
        try:
            return self._handle(received, config)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("command on %s failed", _shown(received.topic))
            self._reply(None, ok=False, error=f"the kiosk could not carry this out: {exc}")
            return None

    def confirm(self, proposal):
        """The runner put ``proposal`` in force: say so to ops."""
        version = proposal.config.remote_version
        log.info("remote config version now %s", version)
        self._reply(proposal.correlation_id, ok=True, data={"version": version})

    def refuse(self, proposal, error):
        """The runner could not put ``proposal`` wholly in force: say so to ops."""
        self._reply(proposal.correlation_id, ok=False, error=error)

    def _handle(self, received, config):
        desired = (self._config_topic, self._update_topic, self._cert_topic)
        if received.is_retained and received.topic not in desired:
            if received.topic not in self._ignored_retained:
                self._ignored_retained.add(received.topic)
                log.warning("ignoring retained %s: only config, update and cert are kept at "
                            "the broker; delete it there (an empty retained message)",
                            _shown(received.topic))
            return None
        if received.topic == self._cert_topic and not received.payload:
            return None  # the signing service withdrew its retained certificate: nothing to do
        if received.topic == self._config_topic and not received.payload:
            return self._forget_remote_config(config)
        if received.topic == self._update_topic and not received.payload:
            return self._request_update(None, None, retained=received.is_retained)
        try:
            command = topics.parse_command(
                received.topic,
                received.payload,
                kiosk_id=self._link.kiosk_id,
                max_bytes=config.telemetry.max_command_bytes,
                applied_version=config.remote_version,
            )
        except CommandRejected as exc:
            if exc.is_stale and received.is_retained:
                return None  # the retained desired state we already hold, re-sent on subscribe
            log.warning("rejected command on %s: %s", _shown(received.topic), _shown(str(exc)))
            self._reply(exc.correlation_id, ok=False, error=str(exc)[:MAX_ERROR_CHARS])
            return None
        if command.name == "update":  # a desired state: whether it was retained matters
            return self._do_update(command, retained=received.is_retained)
        if command.name == "cert":
            return self._do_cert(command, retained=received.is_retained)
        return self._actions[command.name](command, config)

    def _do_config(self, command, config):
        layer = {"version": command.version, **command.desired}
        try:
            new_config = kiosk_config.apply_remote(config, layer)
        except ConfigError as exc:
            log.warning("refused remote config version %s: %s", command.version, exc)
            self._reply(command.correlation_id, ok=False,
                        error="; ".join(exc.problems)[:MAX_ERROR_CHARS])
            return None
        return self._propose(command.correlation_id, new_config, tomli_w.dumps(layer))

    def _forget_remote_config(self, config):
        return self._propose(None, kiosk_config.without_remote(config), None)

    def _propose(self, correlation_id, new_config, layer_text):
        """Keep ``layer_text`` as the remote layer (None: none), then propose ``new_config``."""
        try:
            # Checked before anything is written: a config the contract refuses is not kept.
            topics.service_point_payload(new_config)
        except ValueError as exc:  # MessageRejected, or a value the wire refuses
            self._reply(correlation_id, ok=False, error=f"refused: {exc}")
            return None
        try:
            write_atomically(self._remote_path, layer_text)
        except OSError as exc:
            self._reply(correlation_id, ok=False,
                        error=f"cannot write {self._remote_path}: {exc.strerror}; "
                              "free space on the data partition, then send the config again")
            return None
        return ConfigProposed(new_config, correlation_id)

    def _do_update(self, command, *, retained):
        wanted = command.release
        if wanted.version == self._version:
            wanted = None  # running already: no request, and none left from before
        return self._request_update(command.correlation_id, wanted, retained=retained,
                                    version=command.release.version)

    def _request_update(self, correlation_id, wanted, *, retained, version=None):
        """Hand ``wanted`` (None: nothing) to the root updater through the request file."""
        on_file = request.read_own_request(self._request_path)
        content = None if wanted is None else request.request_content(wanted)
        if retained and version is not None and on_file == content:
            return None  # the retained desired state re-sent on subscribe: handled already
        try:
            write_atomically(self._request_path, request.request_text(wanted))
        except OSError as exc:
            self._reply(correlation_id, ok=False,
                        error=f"cannot write {self._request_path}: {exc.strerror}; free space "
                              "on the data partition, then send the update again")
            return None
        if wanted is None:
            log.info("update request withdrawn%s",
                     f": {logsafe.printable(version)} is running" if version else "")
        else:
            log.info("update to %s requested (rollout %s)", logsafe.printable(wanted.version),
                     logsafe.printable(wanted.rollout))
        self._reply(correlation_id, ok=True,
                    data={"requested": None if wanted is None else wanted.version})
        return None

    def _do_cert(self, command, *, retained):
        """Leave the certificate for the root unit (see the module)."""
        if self._relay is None:
            self._reply(command.correlation_id, ok=False,
                        error="this kiosk renews no certificate (it has no MQTT link of its own)")
            return None
        path, pending = self._relay.response_path, self._relay.is_pending
        if retained and (not pending or _read_text(path) == command.cert):
            return None  # handled already: the retained desired state re-sent on subscribe
        try:
            write_atomically(path, command.cert)
        except OSError as exc:
            self._reply(command.correlation_id, ok=False,
                        error=f"cannot write {path}: {exc.strerror}; free space on the data "
                              "partition, then send the certificate again")
            return None
        if pending:
            log.info("certificate received for the renewal request; left for the root unit")
        else:
            log.warning("certificate received with no renewal request pending; left for the "
                        "root unit, which discards it unless it matches its pending key")
        self._reply(command.correlation_id, ok=True, data={"request_pending": pending})
        return None

    def _do_rebirth(self, command, config):
        self._link.publish_birth()
        self._reply(command.correlation_id, ok=True, data={"epoch": self._link.epoch})

    def _do_ping(self, command, config):
        self._reply(command.correlation_id, ok=True)

    def _do_replay(self, command, config):
        if command.event_ids is not None:
            # The store replays every dead letter at once; pretending to honour a selection
            # would retry rows ops did not name.
            self._reply(command.correlation_id, ok=False,
                        error="this kiosk replays all dead letters at once; send replay "
                              "without event_ids")
            return

        def done(count):
            self._reply(command.correlation_id, ok=True, data={"replayed": count})

        self._outbox.replay(done)

    def _reply(self, correlation_id, *, ok, error=None, data=None):
        if error is not None:
            error = logsafe.redact_ids(error)[:MAX_ERROR_CHARS]
        payload = topics.reply_payload(correlation_id, ok, error=error, data=data)
        self._link.publish(topics.kiosk_topic(self._link.kiosk_id, "reply"), payload)
