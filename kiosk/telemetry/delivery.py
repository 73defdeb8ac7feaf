"""The delivery facts the MQTT link hands to the outbox thread (standard library only).

Their own module so the outbox's logic, and its tests, run without paho: only
:mod:`kiosk.telemetry.mqtt` makes them, from paho's callbacks.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Connected:
    """The link is up: connected and subscribed; ``epoch`` is the one in this connection's will."""

    epoch: int
    session_present: bool


@dataclass(frozen=True)
class Disconnected:
    """The link went down (or a connect attempt failed); in-flight publishes are in doubt."""

    reason: str


@dataclass(frozen=True)
class Published:
    """The broker answered publish ``mid`` with a PUBACK; ``reason_code`` >= 0x80 is a refusal."""

    mid: int
    reason_code: int


@dataclass(frozen=True)
class AckReceived:
    """The collector has committed these events (``ack/{kiosk_id}``)."""

    event_ids: tuple
