"""The facts adapters post on the runner's queue that are not flow events (standard library only).

They live here, not beside the adapter that posts them, so the runner can dispatch on their
class without importing pygame, gpiozero or paho, and renaming one is an error at import time,
not a fact silently ignored. Flow events (``kiosk.flow``) and the card's
:class:`~kiosk.card.thai_id.CardSummary` are the other facts on that queue.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class MotionSeen:
    """The PIR sensor saw movement: wake the screen if it is blanked (not a flow event)."""


@dataclass(frozen=True)
class ButtonPressed:
    """Physical choice button ``number`` (1-5) was pressed. Not a flow event: what it chooses
    depends on the screen shown, so the runner resolves it on the main thread (the n-th choice
    of the display's scene; the n-th face on a kiosk without a screen)."""

    number: int


@dataclass(frozen=True)
class KeyPressed:
    """A key, passed to the runner in debug and demo mode only (``i``/``r`` drive the demo card)."""

    key: str


@dataclass(frozen=True)
class QuitRequested:
    """Escape or the window's close button, honoured in debug mode only."""


@dataclass(frozen=True)
class CommandReceived:
    """A message under ``cmd/{kiosk_id}/``, still unparsed: the main thread judges it."""

    topic: str
    payload: bytes
    is_retained: bool
