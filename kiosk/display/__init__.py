"""What the citizen sees and touches: pygame-ce screens, Thai text, QR, audio, blanking.

The runner (kiosk.runner) uses only ``from kiosk.display import Display``, on the main thread::

    display = Display(cfg, headless=False, has_buzzer=False)
    display.show(state)           # every loop turn; redraws only when the screen's View changed
    events = display.poll_events()  # flow events from taps (+ KeyPressed/QuitRequested in debug
                                  # or demo mode); waking taps and page turns are consumed inside
    event = display.choose(n, screen)  # physical choice button n on ``screen``: a flow event or
                                  # None (the n-th of the shown scene's choices)
    display.beep(kind)            # a flow Beep effect when there is no GPIO buzzer; the
                                  # card reminder always (it is also said)
    display.wake()                # the PIR saw someone: unblank
    display.save_png(path)
    display.close()

Everything else in this package is the display's own business.
"""

import os

# pygame prints a banner on import; the kiosk's journal should hold only the kiosk's lines.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


def __getattr__(name):
    # Lazy, so the pure parts (theme, wording, settings) import without pygame.
    if name == "Display":
        from kiosk.display.window import Display
        return Display
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
