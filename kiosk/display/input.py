"""The only reader of pygame's event queue: touches and clicks become taps, as plain facts.

A touchscreen makes SDL report one touch twice: a FINGERDOWN and a synthetic MOUSEBUTTONDOWN
(with ``touch`` set, from SDL_TOUCH_MOUSEID). Counting both would answer two questions with one
finger, so a touch is taken from FINGERDOWN only and the synthetic mouse click is dropped; a real
mouse (development, a USB touch panel that reports as a mouse) still works through
MOUSEBUTTONDOWN. The reverse synthesis (fingers from a mouse, SDL_MOUSE_TOUCHID) is dropped too.
Going down and coming up are reported apart, so the window can pair them on one button.
"""

from dataclasses import dataclass

import pygame

from kiosk.facts import KeyPressed, QuitRequested

#: SDL's touch id for fingers it synthesises from mouse events (SDL_MOUSE_TOUCHID = -1).
MOUSE_TOUCH_ID = -1


@dataclass(frozen=True)
class Touched:
    """Display-internal: a finger or the left mouse button went down at ``pos`` (pixels)."""

    pos: tuple


@dataclass(frozen=True)
class Released:
    """Display-internal: that finger or button came up at ``pos`` (pixels)."""

    pos: tuple


class TouchInput:
    """Reads and translates pygame events; nothing else in the kiosk calls pygame.event.get."""

    def __init__(self, size, *, is_passing_keys=False, is_quit_allowed=False):
        self.size = size
        self.is_passing_keys = is_passing_keys
        self.is_quit_allowed = is_quit_allowed

    def read(self):
        facts = []
        width, height = self.size
        for event in pygame.event.get():
            if event.type in (pygame.FINGERDOWN, pygame.FINGERUP):
                if getattr(event, "touch_id", None) == MOUSE_TOUCH_ID:
                    continue
                # Finger coordinates are fractions of the window.
                x = min(width - 1, max(0, int(event.x * width)))
                y = min(height - 1, max(0, int(event.y * height)))
                kind = Touched if event.type == pygame.FINGERDOWN else Released
                facts.append(kind((x, y)))
            elif event.type in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
                if getattr(event, "touch", False) or event.button != 1:
                    continue
                kind = Touched if event.type == pygame.MOUSEBUTTONDOWN else Released
                facts.append(kind(tuple(event.pos)))
            elif event.type == pygame.KEYDOWN:
                if self.is_quit_allowed and event.key == pygame.K_ESCAPE:
                    facts.append(QuitRequested())
                elif self.is_passing_keys:
                    facts.append(KeyPressed(pygame.key.name(event.key)))
            elif event.type == pygame.QUIT and self.is_quit_allowed:
                facts.append(QuitRequested())
        return facts
