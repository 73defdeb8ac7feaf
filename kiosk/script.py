"""Scripted visits for tests, soak runs and benchmarks (``kiosk run --script FILE``).

A script is plain text, one step a line, ``#`` starts a comment. ``{n}`` is replaced by the
repetition number (0, 1, …), so one script can drive many different emulated cards, and
``{n%M}`` by that number modulo M (a long run cycling through the emulator's citizens)::

    insert citizen-{n}      # the emulator inserts that card profile
    wait return_card        # until the flow shows that screen (default 30 s, or: wait rating 5)
    remove                  # the citizen takes the card back, as asked
    wait choose_service
    service id-card         # taps, as the touch screen would report them
    copy none               # none | id_card | house_registration | both | not_sure
    rating 5
    reason skip             # or one of the reasons
    back | change           # Back on a question, "change my answer" on the confirm screen
    lang | ok | nocard      # language button, OK (or "send") on a screen, rate without card
    sleep 0.5

Parsing is pure; :class:`ScriptDriver` is the thread that plays a script against a runner. It
only puts events on the runner's queue and reads the runner's current screen, like any adapter.
"""

import logging
import re
import threading
import time
from dataclasses import dataclass

from kiosk import flow
from kiosk.errors import KioskError

log = logging.getLogger(__name__)

TAPS = {
    "service": lambda arg: flow.ServiceChosen(arg),
    "copy": lambda arg: flow.CopyAnswered(arg),
    "rating": lambda arg: flow.RatingChosen(int(arg)),
    "reason": lambda arg: flow.ReasonChosen(None if arg == "skip" else arg),
    "lang": lambda arg: flow.LanguageToggled(),
    "ok": lambda arg: flow.Dismissed(),
    "back": lambda arg: flow.Back(),
    "change": lambda arg: flow.ChangeAnswer(),
    "nocard": lambda arg: flow.StartedWithoutCard(),
}
NUMBERED = re.compile(r"\{n(?:%([1-9][0-9]*))?\}")
CARD_STEPS = ("insert", "remove")
OTHER_STEPS = ("wait", "sleep")
SCREENS = tuple(screen.value for screen in flow.Screen)
DEFAULT_WAIT_S = 30.0
#: With ``keep_going``: how long a failed repetition may take to reach idle by itself.
DEFAULT_RECOVER_S = 180.0


@dataclass(frozen=True)
class Step:
    line: int
    verb: str
    arg: str | None = None
    timeout_s: float | None = None


class ScriptError(KioskError, ValueError):
    """A script line that cannot be played; the message names the line."""


class WaitTimedOut(ScriptError):
    """A ``wait`` whose screen did not come in time; the message names the line and the
    screen seen."""


def parse(text, source="<script>"):
    """Parse a script into steps; every bad line is reported at once."""
    steps, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, args = words[0], words[1:]
        try:
            steps.append(_step(number, verb, args))
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
    if problems:
        raise ScriptError("\n".join(problems))
    return tuple(steps)


def _step(number, verb, args):
    if verb in ("lang", "ok", "back", "change", "nocard", "remove"):
        if args:
            raise ValueError(f"'{verb}' takes no argument")
        return Step(number, verb)
    if verb in ("service", "copy", "rating", "reason", "insert"):
        if len(args) != 1:
            raise ValueError(f"'{verb}' takes exactly one argument")
        if verb == "rating" and args[0] not in ("1", "2", "3", "4", "5"):
            raise ValueError(f"rating must be 1-5, not {args[0]!r}")
        return Step(number, verb, args[0])
    if verb == "wait":
        if len(args) not in (1, 2) or args[0] not in SCREENS:
            raise ValueError(f"'wait' takes a screen ({', '.join(SCREENS)}) and optional seconds")
        return Step(number, verb, args[0], float(args[1]) if len(args) == 2 else DEFAULT_WAIT_S)
    if verb == "sleep":
        if len(args) != 1:
            raise ValueError("'sleep' takes seconds")
        return Step(number, verb, timeout_s=float(args[0]))
    known = sorted([*TAPS, *CARD_STEPS, *OTHER_STEPS])
    raise ValueError(f"unknown step {verb!r}; known steps: {', '.join(known)}")


class ScriptDriver:
    """Plays ``steps`` ``repeat`` times against a runner, in its own thread.

    ``card`` is the emulator's control client (``insert(profile)``, ``remove()``), needed only
    when the script inserts cards. ``done`` is set when the script ends; ``error`` then holds
    what went wrong, if anything (a ``wait`` that timed out names its line and the screen seen).

    With ``keep_going`` (a soak, where faults make waits fail on purpose) a timed-out ``wait``
    ends only its repetition: the driver takes out the card it put in, lets the kiosk reach
    idle by its own timeouts within ``recover_s``, counts it in ``recovered`` and plays the next
    repetition. A kiosk that does not reach idle in time is the error (naming its screen).

    Repetitions are numbered from ``first`` (a soak restarts a killed kiosk where it stopped).
    ``progress(n, what)`` hears each screen a ``wait`` saw (the citizen saw it too), then
    ``"done"`` or ``"recovered"`` for the repetition: a soak's record of every thank-you.
    """

    def __init__(self, runner, steps, *, repeat=1, first=0, card=None, clock=time.monotonic,
                 keep_going=False, recover_s=DEFAULT_RECOVER_S, progress=None):
        self.runner, self.steps, self.repeat, self.card = runner, steps, repeat, card
        self.first = first
        self.progress = progress or (lambda n, what: None)
        self.clock = clock
        self.keep_going, self.recover_s = keep_going, recover_s
        self.done = threading.Event()
        self.error = None
        self.completed = 0
        self.recovered = 0
        self._is_card_in = False  # this driver inserted a card and has not removed it
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="script", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopping.set()
        self._thread.join(5)

    def _run(self):
        try:
            for n in range(self.first, self.first + self.repeat):
                try:
                    for step in self.steps:
                        if self._stopping.is_set():
                            return
                        self._play(step, n)
                except WaitTimedOut as exc:
                    if not self.keep_going:
                        raise
                    self._recover(n, exc)
                    continue
                self.completed += 1
                self.progress(n, "done")
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
            self.error = exc
            log.error("script stopped: %s", exc)
        finally:
            self.done.set()

    def _play(self, step, n):
        arg = NUMBERED.sub(lambda m: str(n % int(m[1]) if m[1] else n), step.arg) \
            if step.arg else step.arg
        if step.verb in TAPS:
            self.runner.events.put(TAPS[step.verb](arg))
        elif step.verb == "insert":
            self._card().insert(arg)
            self._is_card_in = True
        elif step.verb == "remove":
            self._card().remove()
            self._is_card_in = False
        elif step.verb == "sleep":
            self._stopping.wait(step.timeout_s)
        elif step.verb == "wait":
            self._wait(step, arg, n)

    def _wait(self, step, screen, n):
        deadline = self.clock() + step.timeout_s
        while self.runner.state.screen.value != screen:
            if self._stopping.is_set():
                return  # stopped from outside (SIGTERM): not the script's failure
            if self.clock() > deadline:
                raise WaitTimedOut(f"line {step.line}: waited {step.timeout_s:g} s for {screen}, "
                                   f"the kiosk shows {self.runner.state.screen.value}")
            self._stopping.wait(0.01)
        self.progress(n, screen)

    def _recover(self, n, failure):
        """After a failed wait: the card out, then idle reached by the kiosk itself."""
        log.warning("repetition %d failed (%s); recovering", n, failure)
        if self._is_card_in:
            self._card().remove()
            self._is_card_in = False
        idle = flow.Screen.IDLE.value
        deadline = self.clock() + self.recover_s
        while self.runner.state.screen.value != idle:
            if self._stopping.is_set():
                return
            if self.clock() > deadline:
                raise ScriptError(f"after {failure}: the kiosk did not return to idle within "
                                  f"{self.recover_s:g} s, it is stuck on "
                                  f"{self.runner.state.screen.value}")
            self._stopping.wait(0.05)
        self.recovered += 1
        self.progress(n, "recovered")

    def _card(self):
        if self.card is None:
            raise ScriptError("the script inserts or removes a card but no emulator is running; "
                              "run it under 'kiosk demo' or pass --emulator SOCKET")
        return self.card
