"""The kiosk's window: shows the flow's State, turns taps into flow events, blanks when quiet.

See the package docstring for the runner's view of it. Main thread only (pygame's rule and the
kiosk's). Scenes are built once per View, so a steady screen costs one comparison per frame.
"""

import datetime as dt
import logging
import os
import time

import pygame

from kiosk.display import qr, theme, wording
from kiosk.display.audio import Audio
from kiosk.display.blanking import Backlight, Blanker
from kiosk.display.input import Released, Touched, TouchInput
from kiosk.display.screens import PageTurned, Renderer, View
from kiosk.display.settings import DisplaySettings
from kiosk.errors import DisplayError
from kiosk.flow import BeepKind, Screen

log = logging.getLogger(__name__)

#: How long a new screen ignores touches and presses (as ATMs do): a double tap or a tremor's
#: second touch must not answer the next question, whose buttons may sit under the same finger.
SETTLE_S = 0.6


class Display:
    """``cfg`` is the kiosk Config (or a ready :class:`DisplaySettings`).

    ``headless`` draws into SDL's dummy video driver (tests, screenshots, a demo without a
    screen). ``has_buzzer`` says a GPIO buzzer gives tap feedback, so the display stays quiet.
    ``clock`` and ``wall_clock`` are inputs so blanking can be driven in tests.
    """

    def __init__(self, cfg, *, headless=False, has_buzzer=False, clock=time.monotonic,
                 wall_clock=lambda: dt.datetime.now(dt.UTC)):
        self.settings = s = _settings(cfg)
        if headless:
            # Chosen explicitly, before pygame opens a display: never a silent fallback.
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        self.has_buzzer = has_buzzer
        self._clock = clock
        self._wall_clock = wall_clock
        try:
            pygame.display.init()
            flags = pygame.FULLSCREEN if s.fullscreen and not headless else 0
            self._window = pygame.display.set_mode((s.width, s.height), flags)
        except pygame.error as exc:
            raise DisplayError(f"cannot open a {s.width}x{s.height} display with SDL video "
                               f"driver {os.environ.get('SDL_VIDEODRIVER', 'default')!r}: "
                               f"{exc}; check display.width/height or run headless") from exc
        # Which SDL driver and mode the kiosk really got: field support's first question when a
        # screen stays dark (the image's console report shows this line).
        log.info("display: SDL video driver %s, %dx%d", pygame.display.get_driver(),
                 *self._window.get_size())
        pygame.display.set_caption("CITIZENinfo Kiosk")
        # A pointer on a touch kiosk only confuses; developers in debug mode keep it.
        pygame.mouse.set_visible(s.debug)
        self._size = (s.width, s.height)
        self._input = TouchInput(self._size, is_passing_keys=s.debug or s.is_demo,
                                 is_quit_allowed=s.debug)
        self.audio = Audio(enabled=s.audio_enabled, volume=s.volume, prompts_dir=s.prompts_dir,
                           cache_dir=s.prompt_cache_dir)
        self.audio.prepare()
        self.backlight = Backlight(s.backlight_dir)
        self._apply(s, now=clock())
        self.scene = None
        self.is_blank = False
        self._view = None
        self._screen = None
        self._language = None
        self._forgotten = False
        self._page = 0
        self._portal_url = None
        self._shown_at = None
        self._pressed = None

    def _apply(self, settings, now):
        self.settings = settings
        self.renderer = Renderer(settings, self._size)
        self.blanker = Blanker(blank_after_min=settings.blank_after_min,
                               office_hours_start=settings.office_hours_start,
                               office_hours_end=settings.office_hours_end,
                               office_days=settings.office_days, timezone=settings.timezone,
                               now=now)

    def reconfigure(self, cfg):
        """A new config (remote change): names, services, portal and blanking take effect on the
        next redraw. The window keeps its size and the audio its device until a restart."""
        settings = _settings(cfg)
        if (settings.width, settings.height) != self._size:
            log.warning("display size %sx%s takes effect after a restart",
                        settings.width, settings.height)
        self.audio.volume = settings.volume
        self._apply(settings, now=self.blanker.last_activity)
        self._view = None

    def screen_state(self):
        """``on`` or ``off`` for the health report (read from the telemetry thread: one bool)."""
        return "off" if self.is_blank else "on"

    # --- drawing ----------------------------------------------------------------------------

    def show(self, state):
        """Draw ``state``; cheap when nothing changed. Never changes ``state``."""
        now = self._clock()
        if (state.screen is not self._screen or state.language != self._language
                or state.card_forgotten != self._forgotten):
            self._enter(state, now)
        if self.blanker.is_due(state.screen, now, self._wall_clock()):
            self._blank()
            return
        if self.is_blank:
            self._unblank()
        view = View.of(state, page=self._page, portal_url=self._portal_url)
        if view != self._view:
            self.scene = self.renderer.scene(view)
            self._view = view
            self._window.blit(self.scene.surface, (0, 0))
            pygame.display.flip()
        elif self.scene.animate is not None:
            dirty = self.scene.animate(self._window, now)
            if dirty:
                pygame.display.update(dirty)

    def _enter(self, state, now):
        """A new screen (or language): count it as activity, reset paging, speak its prompt."""
        if state.screen is Screen.THANK_YOU and self._screen is not Screen.THANK_YOU:
            # A fresh token per visit, held only while the thank-you screen is up.
            self._portal_url = qr.portal_url(self.settings.portal_url,
                                             self.settings.service_point_id, qr.new_token())
        elif state.screen is not Screen.THANK_YOU:
            self._portal_url = None
        if state.screen is not self._screen:
            self._page = 0
        self._screen, self._language = state.screen, state.language
        self._forgotten = state.card_forgotten
        self._shown_at, self._pressed = now, None
        self.blanker.note_activity(now)
        self.audio.play_prompt(wording.prompt_id(state.screen, state.problem, state.card_forgotten),
                               state.language)

    def _blank(self):
        if self.is_blank:
            return
        self.is_blank = True
        if self.backlight.is_present:
            self.backlight.set_on(False)
        self._window.fill(theme.BLACK)
        pygame.display.flip()

    def _unblank(self):
        self.is_blank = False
        self.backlight.set_on(True)
        self._view = None  # the next show() redraws the whole scene

    def wake(self):
        """Someone is there (PIR or touch): light the screen again and restart the quiet time."""
        self.blanker.note_activity(self._clock())
        if self.is_blank:
            self._unblank()

    # --- input ------------------------------------------------------------------------------

    def is_settled(self):
        """True once the shown screen has been up for SETTLE_S: before that, nothing chooses."""
        return self._shown_at is not None and self._clock() - self._shown_at >= SETTLE_S

    def poll_events(self):
        """Flow events from taps since the last call (plus KeyPressed/QuitRequested in debug).

        A tap is a finger going down and coming up on the same button of the same scene, the
        going down after the screen settled. A tap on a dark screen only wakes it; a tap
        outside every button is ignored.
        """
        events = []
        for fact in self._input.read():
            if isinstance(fact, Touched):
                self._touched(fact.pos)
            elif isinstance(fact, Released):
                event = self._released(fact.pos)
                if event is not None:
                    events.append(event)
            else:
                events.append(fact)
        return events

    def _touched(self, pos):
        """Note the button a finger went down on, if the screen is lit and has settled."""
        if self.is_blank:
            self._pressed = None
            self.wake()
            return
        self.blanker.note_activity(self._clock())
        self._pressed = self.scene.hit(pos) if self.scene and self.is_settled() else None

    def _released(self, pos):
        """The pressed button's event if the finger came up on it; a new screen or page in
        between (see _enter) leaves nothing pressed or another button under the finger."""
        pressed, self._pressed = self._pressed, None
        button = self.scene.hit(pos) if pressed is not None else None
        if button is None or (button.action, button.rect) != (pressed.action, pressed.rect):
            return None
        return self._act(button.action)

    def choose(self, number, screen):
        """The flow event physical choice button ``number`` stands for: the ``number``-th of
        the shown scene's choices, or None.

        As with a tap, a press on a dark screen only wakes it and the "more" slot turns the
        page here. A press for a screen the flow has already left (a second quick press, before
        the next screen is drawn) chooses nothing: the citizen has not seen that screen yet; nor
        does a press before the new screen settled (a bounce or a double press).
        """
        if self.is_blank:
            self.wake()
            return None
        self.blanker.note_activity(self._clock())
        if self._view is None or self._view.screen is not screen or not self.is_settled():
            return None  # nothing drawn yet, a redraw is due (a new config), or not settled
        choices = self.scene.choices
        return self._act(choices[number - 1]) if 1 <= number <= len(choices) else None

    def _act(self, action):
        """A touched or pressed choice: tap feedback, then its flow event (None for a page turn,
        which is the display's own business)."""
        if not self.has_buzzer:
            self.audio.play(BeepKind.TAP)
        if isinstance(action, PageTurned):
            self._page += 1
            return None
        return action

    def beep(self, kind):
        """Sound a flow ``Beep`` effect; ``tap`` is already played at the tap itself. The card
        reminder is said in the visit's language too, buzzer or not; said, it needs no tone."""
        if kind == BeepKind.REMINDER and self.audio.remind(self._language or "th"):
            return
        if kind != BeepKind.TAP and not self.has_buzzer:
            self.audio.play(kind)

    # --- the rest ---------------------------------------------------------------------------

    def save_png(self, path):
        pygame.image.save(self._window, str(path))

    def close(self):
        self.audio.close()
        if self.is_blank:
            self.backlight.set_on(True)
        pygame.display.quit()


def _settings(cfg):
    return cfg if isinstance(cfg, DisplaySettings) else DisplaySettings.from_config(cfg)
