"""The paho-mqtt adapter: one MQTT 5 link from a kiosk to the broker.

What a caller may rely on:

* Callbacks never take a lock of ours (a lock held inside a paho callback deadlocked paho here)
  and touch the store only to take the next epoch before each connect (``next_epoch``, on its
  own connection). Otherwise they only hand facts on: delivery facts (:class:`Connected`,
  :class:`Disconnected`, :class:`Published`, :class:`AckReceived`) go to ``facts`` (the outbox
  thread's queue), commands go to ``put`` (the runner's main-thread queue) as
  :class:`kiosk.facts.CommandReceived`. The only calls made from callbacks are paho's own
  (subscribe after CONNACK, the birth messages after SUBACK, the reconnect delay), never under
  a lock of ours.
* MQTT 5 only: under 3.1.1 Mosquitto acknowledges a publish its ACL denies and drops it silently;
  MQTT 5 returns the reason code (0x87) that parks the row as a dead letter.
* Every connect gets a fresh epoch (``next_epoch``), set into the Last Will just before the
  CONNECT packet is built (paho's ``on_pre_connect``), so a will always carries the epoch of the
  connection it belongs to and the collector can ignore a stale one.
* Reconnects wait a full-jitter delay between ``mqtt.reconnect_min_s`` and an exponentially
  growing cap (``mqtt.reconnect_max_s``): after a broker restart 77,000 kiosks must not come
  back in lock step. paho's own back-off is deterministic, so we set its delay before each wait.
* Session: clean start on every connect, with a session expiry. Clean start drops whatever
  the last session held, including a subscription someone planted in it with this kiosk's
  password (issue 9); the expiry keeps the session alive after a drop, without which the Will
  Delay could not work (a will fires at the earlier of will delay and session end). Acks and
  non-retained commands sent while the kiosk was away are lost with the old session: the outbox
  resends unacked visits and the collector acks them again, and ``config`` is retained. We
  subscribe after every CONNACK.
* A TLS handshake the broker refuses with an alert about the client certificate (expired,
  revoked) is logged once per alert, with what to do (:attr:`MqttLink.tls_refusal` names the
  last one); every retry would otherwise say it again. Under TLS 1.2 (production's 8883) the
  handshake itself fails; under TLS 1.3 it fails on the first read, after paho sent CONNECT,
  which paho only reports through its log callback.
* No exception escapes a callback: paho 2 re-raises it, which ends its network thread, and the
  kiosk would never reconnect. Each callback is wrapped (:func:`_never_raises`); the one before
  a connect turns any failure into the OSError paho treats as a failed connect and retries.
"""

import logging
import random
import re
import ssl
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from kiosk import logsafe
from kiosk.clock import system_stamp
from kiosk.errors import MessageRejected, TelemetryError
from kiosk.facts import CommandReceived
from kiosk.telemetry import topics
from kiosk.telemetry.delivery import AckReceived, Connected, Disconnected, Published

log = logging.getLogger(__name__)

# Far longer than any will delay, short enough that a retired kiosk's session does not linger
# for ever; the next connect (clean start) drops it anyway.
SESSION_EXPIRY_S = 24 * 3600


def reconnect_delay(attempt, min_s, max_s, rng=random):
    """Seconds to wait before reconnect ``attempt`` (0 = first retry).

    Full jitter over ``[min_s, cap]`` where the cap starts at twice ``min_s`` and doubles per
    attempt up to ``max_s``: spread from the very first retry is what keeps a fleet that lost
    its broker together from coming back in one wave; the floor keeps one kiosk from spinning.
    """
    cap = min(max_s, min_s * (2 ** min(attempt + 1, 32)))
    return rng.uniform(min_s, max(min_s, cap))


_never_raises = logsafe.never_raises(log)

#: TLS alerts about this kiosk's own certificate, and what the technician does about them.
TLS_REFUSALS = {
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "its client certificate has expired: install a new "
                                       "bundle from kiosk-fleet provision",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "its client certificate is revoked: the kiosk was retired "
                                       "or reported stolen; provision it again if it is not",
}
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def _read_secret(path):
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TelemetryError(
            f"mqtt.password_file: cannot read {path} ({exc.strerror}); "
            "install the kiosk's MQTT password there or clear the key to use a client certificate"
        ) from exc


class MqttLink:
    """The kiosk's connection to the broker, run by paho's network thread.

    ``mqtt`` is the config's ``mqtt`` section, ``kiosk_id`` the MQTT username and client id.
    ``instance`` is the store's instance id (new after a re-flash) that goes with every status;
    ``next_epoch()`` must be safe to call from paho's thread (``Store.next_epoch`` is: peewee
    gives that thread its own connection). ``service_point`` is the encoded service-point
    message (``topics.service_point_payload(cfg)``), published on the ``pin`` topic after every
    connect; :meth:`set_service_point` replaces it
    when a remote config changes the service catalogue.
    """

    def __init__(self, mqtt, kiosk_id, *, instance, next_epoch, version, facts, put,
                 service_point=None, inflight_window=64, stamp=system_stamp, rng=None):
        self.kiosk_id = kiosk_id
        self._instance = instance
        self._settings = mqtt
        self._next_epoch = next_epoch
        self._version = version
        self._facts = facts
        self._put = put
        self._service_point = service_point
        self._stamp = stamp
        self._rng = rng or random.Random()
        self._attempt = 0
        self._epoch = None
        self._is_stopping = False
        self._session_present = False
        self._subscribe_mid = None
        self._connected = threading.Event()
        self._said_refusals = set()
        #: The last TLS alert the broker refused this kiosk's certificate with (a key of
        #: :data:`TLS_REFUSALS`), or None; cleared by a successful connect.
        self.tls_refusal = None
        self._status_topic = topics.kiosk_topic(kiosk_id, "status")
        self._ack_topic = topics.ack_topic(kiosk_id)

        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=kiosk_id,
            protocol=paho.MQTTv5,
            transport=mqtt.transport,
            reconnect_on_failure=True,
        )
        # The outbox keeps the window; paho only has to hold what the outbox handed it. paho's
        # default of 20 would silently queue the rest of the window behind it.
        client.max_inflight_messages_set(inflight_window)
        client.max_queued_messages_set(0)
        if mqtt.transport == "websockets":
            client.ws_set_options(path="/mqtt")
        if mqtt.tls:
            try:
                client.tls_set(
                    ca_certs=mqtt.ca_file or None,
                    certfile=mqtt.cert_file or None,
                    keyfile=mqtt.key_file or None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise TelemetryError(
                    f"mqtt.ca_file/cert_file/key_file ({mqtt.ca_file or 'system CAs'}, "
                    f"{mqtt.cert_file or 'no certificate'}): cannot set up TLS ({exc}); install "
                    "the files the agency bundle provides, or fix the paths"
                ) from exc
        if mqtt.password_file:
            client.username_pw_set(mqtt.username or kiosk_id, _read_secret(mqtt.password_file))
        elif mqtt.username:
            client.username_pw_set(mqtt.username)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = _never_raises(self._on_connect)
        client.on_subscribe = _never_raises(self._on_subscribe)
        client.on_connect_fail = _never_raises(self._on_connect_fail)
        client.on_disconnect = _never_raises(self._on_disconnect)
        client.on_publish = _never_raises(self._on_publish)
        client.on_message = _never_raises(self._on_message)
        client.on_log = _never_raises(self._on_log)
        self._client = client

    @property
    def epoch(self):
        """The epoch of the current (or last) connection; None before the first connect."""
        return self._epoch

    @property
    def is_connected(self):
        return self._connected.is_set()

    def wait_for_connected(self, timeout=None):
        """Block until the link is up (subscribed, birth published); True if it is."""
        return self._connected.wait(timeout)

    def start(self):
        """Connect in the background; returns at once, retries for ever with jittered back-off."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.reconnect_delay_set(self._settings.reconnect_min_s,
                                         self._settings.reconnect_min_s)
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=True,
            properties=props,
        )
        self._client.loop_start()

    def stop(self, timeout=5.0):
        """Clean stop: retained ``offline`` status, then a normal DISCONNECT (no will is sent).

        Waits up to ``timeout`` for the broker to acknowledge the status; an unreachable broker
        never blocks shutdown for longer.
        """
        self._is_stopping = True
        if self._connected.is_set():
            info = self._publish_status("offline")
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not delivered before stop: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish(self, topic, payload, *, qos=1, retain=False):
        """Hand one message to paho; returns its mid, or None when the link is down.

        Never blocks on the network. The caller (the outbox) keeps the window and the mid map.
        """
        if not self._connected.is_set():
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    def set_service_point(self, service_point):
        """Replace the service-point message; published now if connected, and after every
        connect."""
        self._service_point = service_point
        if self._connected.is_set() and service_point is not None:
            self._publish_service_point()

    def publish_birth(self):
        """Re-publish the retained status (online, current epoch) and service-point message
        (cmd/rebirth)."""
        self._publish_status("online")
        if self._service_point is not None:
            self._publish_service_point()

    # -- paho callbacks (network thread): only paho calls and queue puts below -----------------

    def _on_pre_connect(self, client, userdata):
        # The epoch must rise on every connect and be in this CONNECT's will, so it is taken
        # here, right before paho serialises the packet.
        try:
            self._epoch = self._next_epoch()
            props = Properties(PacketTypes.WILLMESSAGE)
            props.WillDelayInterval = int(self._settings.will_delay_s)
            lost = topics.status_payload("lost", self._epoch, self._version, self._stamp(),
                                         instance=self._instance)
            client.will_set(self._status_topic, lost, qos=1, retain=True, properties=props)
        except Exception as exc:
            # paho only survives an OSError here (it then retries with our back-off); any other
            # exception would end its network thread and the kiosk would never reconnect.
            raise OSError(f"cannot prepare this connect (new epoch, will): "
                          f"{type(exc).__name__}: {exc}") from exc

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            # paho disconnects after a refused CONNACK; _on_disconnect schedules the retry.
            log.warning("broker refused the connection: %s", reason_code)
            return
        self._attempt = 0
        self.tls_refusal = None
        self._said_refusals.clear()
        self._session_present = bool(flags.session_present)
        client.reconnect_delay_set(self._settings.reconnect_min_s, self._settings.reconnect_min_s)
        options = SubscribeOptions(qos=1)
        _, self._subscribe_mid = client.subscribe(
            [(topics.cmd_subscription(self.kiosk_id), options), (self._ack_topic, options)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # The link counts as up only at SUBACK. By then paho has re-sent what the last
        # connection left un-PUBACKed (it does so right after CONNACK), so the birth below is
        # the last status on the wire, not an older one re-sent after it; and no visit goes out
        # before we listen for its ack.
        if mid != self._subscribe_mid:
            return
        for topic, code in zip((topics.cmd_subscription(self.kiosk_id), self._ack_topic),
                               reason_codes, strict=False):
            if code.is_failure:
                log.error("broker refused subscription to %s: %s (check this kiosk's ACL)",
                          topic, code)
        self._connected.set()
        # A takeover may have fired the old connection's will: online must come after it.
        self.publish_birth()
        self._facts(Connected(self._epoch, self._session_present))

    def _on_connect_fail(self, client, userdata):
        # paho calls this while it handles the connect's exception, and passes it on no other way.
        failure = sys.exc_info()[1]
        if isinstance(failure, ssl.SSLError):
            self._note_tls_failure(failure.reason)
        self._link_down(client, "connect failed")

    def _on_log(self, client, userdata, level, text):
        # TLS 1.3: the broker's alert arrives on the first read after the handshake.
        if level == paho.MQTT_LOG_ERR and (found := _SSL_REASON.search(text)):
            self._note_tls_failure(found.group(1))

    def _note_tls_failure(self, reason):
        if reason not in TLS_REFUSALS:
            return
        self.tls_refusal = reason
        if reason not in self._said_refusals:
            self._said_refusals.add(reason)
            log.error("the broker refuses this kiosk at the TLS handshake (%s): %s",
                      reason, TLS_REFUSALS[reason])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._link_down(client, str(reason_code))

    def _link_down(self, client, reason):
        self._connected.clear()
        if not self._is_stopping:
            delay = reconnect_delay(self._attempt, self._settings.reconnect_min_s,
                                    self._settings.reconnect_max_s, self._rng)
            self._attempt += 1
            # paho doubles from min per attempt; min == max pins its next wait to our delay.
            client.reconnect_delay_set(delay, delay)
            log.info("MQTT link down (%s); next attempt in %.1f s", reason, delay)
        self._facts(Disconnected(reason))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._facts(Published(mid, reason_code.value))

    def _on_message(self, client, userdata, message):
        if message.topic == self._ack_topic:
            try:
                self._facts(AckReceived(tuple(topics.parse_ack(message.payload))))
            except MessageRejected as exc:
                # Log the topic and reason only: a payload is never logged verbatim.
                log.warning("ignored ack on %s: %s", message.topic, exc)
            return
        self._put(CommandReceived(message.topic, bytes(message.payload), bool(message.retain)))

    def _publish_status(self, state):
        payload = topics.status_payload(state, self._epoch, self._version, self._stamp(),
                                        instance=self._instance)
        return self._client.publish(self._status_topic, payload, qos=1, retain=True)

    def _publish_service_point(self):
        return self._client.publish(topics.kiosk_topic(self.kiosk_id, "pin"), self._service_point,
                                    qos=1, retain=True)

