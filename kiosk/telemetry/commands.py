"""Kiosk-side handling of ``cmd/{kiosk_id}/…``: config, rebirth, ping, replay.

Runs on the main thread: the link puts :class:`~kiosk.telemetry.mqtt.CommandReceived` on the
runner's queue and the runner calls :meth:`Commands.handle`. Every command gets a reply with
its correlation id. A malformed, oversized, unknown or stale command gets an error reply and
changes nothing.

A config command is applied atomically: validated whole by ``kiosk.config.apply_remote``,
written as the remote config layer (temp file, fsync, rename, fsync of the directory, so a power
cut leaves the old layer or the new one, never half of one), and only then switched in memory.
The retained config is delivered again on every subscribe; a retained copy that is not newer
than the applied version is silently skipped rather than answered with a "stale" error on every
reconnect (a stale config sent live still gets its error reply). Only ``config`` is a desired
state: any other command that arrives retained (a ``ping``, ``rebirth`` or ``replay`` published
with the retain flag by mistake) would run again on every reconnect, so it is ignored, and
logged once per topic so the log does not fill up with it.

The way out of a frozen version (a config at the wire's highest version, 2**31-1, makes every
later one stale): an empty message on ``cmd/{kiosk_id}/config``, which is also how ops deletes
the retained config at the broker. The desired state is gone, so the kiosk drops its remote
layer and goes back to its own file with no version; the next config of any version applies.
"""

import logging
import os
from pathlib import Path

import tomli_w

from kiosk import config as kiosk_config
from kiosk.errors import CommandRejected, ConfigError
from kiosk.telemetry import topics

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


class Commands:
    """Judges and carries out commands for one kiosk.

    ``when_config_applied(cfg)`` lets the runner rebuild what depends on the config (flow
    settings, portal QR); ``config`` is always the config in force.
    """

    def __init__(self, link, outbox, *, config, remote_path, when_config_applied=None):
        self._link = link
        self._outbox = outbox
        self.config = config
        self._remote_path = Path(remote_path)
        self._when_config_applied = when_config_applied
        self._config_topic = topics.cmd_topic(link.kiosk_id, "config")
        self._ignored_retained = set()

    def handle(self, received):
        """Carry out one received command; bad input is answered, never raised.

        A command that fails in an unforeseen way is logged and answered with an error too:
        a retained command that crashed the kiosk would crash it again on every reconnect.
        """
        try:
            self._handle(received)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.exception("command on %s failed", received.topic)
            self._reply(None, ok=False, error=f"the kiosk could not carry this out: {exc}")

    def _handle(self, received):
        if received.is_retained and received.topic != self._config_topic:
            if received.topic not in self._ignored_retained:
                self._ignored_retained.add(received.topic)
                log.warning("ignoring retained %s: only config is kept at the broker; delete it "
                            "there (an empty retained message)",
                            topics.redact_long_numbers(received.topic))
            return
        if received.topic == self._config_topic and not received.payload:
            self._forget_remote_config()
            return
        try:
            command = topics.parse_command(
                received.topic,
                received.payload,
                kiosk_id=self._link.kiosk_id,
                max_bytes=self.config.telemetry.max_command_bytes,
                applied_version=self.config.remote_version,
            )
        except CommandRejected as exc:
            if exc.is_stale and received.is_retained:
                return  # the retained desired state we already hold, re-sent on subscribe
            log.warning("rejected command on %s: %s", received.topic, exc)
            self._reply(exc.correlation_id, ok=False, error=str(exc)[:MAX_ERROR_CHARS])
            return
        getattr(self, f"_do_{command.name}")(command)

    def _do_config(self, command):
        layer = {"version": command.version, **command.desired}
        try:
            new_config = kiosk_config.apply_remote(self.config, layer)
        except ConfigError as exc:
            log.warning("refused remote config version %s: %s", command.version, exc)
            self._reply(command.correlation_id, ok=False,
                        error="; ".join(exc.problems)[:MAX_ERROR_CHARS])
            return
        self._switch(command.correlation_id, new_config, tomli_w.dumps(layer))

    def _forget_remote_config(self):
        self._switch(None, kiosk_config.without_remote(self.config), None)

    def _switch(self, correlation_id, new_config, layer_text):
        """Keep ``layer_text`` as the remote layer (None: none), then put ``new_config`` to use."""
        try:
            # Built before anything is written: a config the contract refuses is not kept.
            pin = topics.pin_payload(new_config)
        except ValueError as exc:  # MessageRejected, or a value the wire refuses
            self._reply(correlation_id, ok=False, error=f"refused: {exc}")
            return
        try:
            write_atomically(self._remote_path, layer_text)
        except OSError as exc:
            self._reply(correlation_id, ok=False,
                        error=f"cannot write {self._remote_path}: {exc.strerror}; "
                              "free space on the data partition, then send the config again")
            return
        self.config = new_config
        self._link.set_pin(pin)
        if self._when_config_applied is not None:
            self._when_config_applied(new_config)
        log.info("remote config version now %s", new_config.remote_version)
        self._reply(correlation_id, ok=True, data={"version": new_config.remote_version})

    def _do_rebirth(self, command):
        self._link.publish_birth()
        self._reply(command.correlation_id, ok=True, data={"epoch": self._link.epoch})

    def _do_ping(self, command):
        self._reply(command.correlation_id, ok=True)

    def _do_replay(self, command):
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
            error = topics.redact_long_numbers(error)[:MAX_ERROR_CHARS]
        payload = topics.reply_payload(correlation_id, ok, error=error, data=data)
        self._link.publish(topics.kiosk_topic(self._link.kiosk_id, "reply"), payload)
