"""The kiosk process's part in renewing its client certificate: it relays the root unit's
request over its own MQTT link (docs/credentials.md).

The root unit (``kiosk cert``) leaves the request in :data:`~kiosk.renewal.files.RENEWAL_DIR`;
the kiosk cannot write there. While the request is there, the kiosk publishes it as a ``csr``
message on every connect, when it changes, and again every ``every_s`` (the signing service may
have been down), only while the link is up: a message to a closed link would be lost, not
queued. The certificate that comes back is written by
:class:`~kiosk.telemetry.commands.Commands` to :attr:`Relay.response_path` for the root unit.
No key passes through the kiosk process: there is none on its side.
"""

import logging
import time
from pathlib import Path

from kiosk import logsafe
from kiosk.errors import MessageRejected
from kiosk.renewal import files
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

#: How often the request file is looked at while connected: a stat, cheap at this pace.
LOOK_EVERY_S = 30.0
#: A request already sent goes again after this long, in case the signing service missed it.
RELAY_EVERY_S = 3600.0


def read_request(path):
    """``(pem, problem)``: the request at ``path`` if it looks like one PEM request of the
    contract's size, else ``(None, why)``; ``(None, None)`` when there is no request."""
    try:
        with open(path, "rb") as request:
            raw = request.read(topics.MAX_PEM_CHARS + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path} ({exc.strerror})"
    if len(raw) > topics.MAX_PEM_CHARS:
        return None, f"{path} is larger than {topics.MAX_PEM_CHARS} bytes"
    try:
        pem = raw.decode("ascii")
        topics.csr_payload(pem)
    except (UnicodeDecodeError, MessageRejected):
        return None, f"{path} is not one PEM CERTIFICATE REQUEST"
    return pem, None


class Relay:
    """Relays the pending request of ``renewal_dir`` over ``link`` (an
    :class:`~kiosk.telemetry.mqtt.MqttLink`); the main loop calls :meth:`poll` every turn.

    ``data_dir`` is the kiosk's state folder, where the certificate received goes
    (:func:`kiosk.renewal.files.response_path`). ``look_s`` and ``every_s`` are short in tests.
    """

    def __init__(self, link, data_dir, *, renewal_dir=files.RENEWAL_DIR, look_s=LOOK_EVERY_S,
                 every_s=RELAY_EVERY_S, clock=time.monotonic):
        self._link = link
        self.request_path = Path(renewal_dir, files.REQUEST_NAME)
        self.response_path = files.response_path(data_dir)
        self._look_s, self._every_s, self._clock = look_s, every_s, clock
        self._topic = topics.kiosk_topic(link.kiosk_id, "csr")
        self._epoch = None  # the connection the last look was made on
        self._next_look = float("-inf")
        self._relayed = None  # (request, epoch, when) of the last publish
        self._said = None  # the last problem logged, so a bad file is said once

    @property
    def is_pending(self):
        """Whether the root unit has a request waiting for its certificate."""
        return self.request_path.exists()

    def poll(self):
        """Publish the request if one is due (see the module); otherwise costs a comparison."""
        if not self._link.is_connected:
            return
        now, epoch = self._clock(), self._link.epoch
        if epoch == self._epoch and now < self._next_look:
            return
        self._epoch, self._next_look = epoch, now + self._look_s
        pem, problem = read_request(self.request_path)
        if problem is not None and problem != self._said:
            log.error("renewal request not relayed: %s; the root unit (kiosk cert) makes it "
                      "again on its next run", logsafe.printable(problem))
        self._said = problem
        if pem is None:
            self._relayed = None
            return
        if self._relayed is not None:
            sent, sent_epoch, sent_at = self._relayed
            if (sent, sent_epoch) == (pem, epoch) and now < sent_at + self._every_s:
                return
        if self._link.publish(self._topic, topics.csr_payload(pem), qos=1) is None:
            return  # the link went down in between: the next connect relays it
        self._relayed = (pem, epoch, now)
        log.info("certificate request relayed to the signing service")
