"""The visit, as a pure state machine: ``step(state, event, now) -> (state, effects)``.

Standard library only. Adapters (card reader, touch input, GPIO, MQTT) turn the world into
events; the runner feeds them here on the main thread and carries out the effects. Time is an
input: ``now`` is ``time.monotonic()`` seconds, and every screen but idle, out-of-service and a
quiet take-card has a deadline in the state, so a visit can never get stuck on a screen.

Rules the tests hold this module to:

* the card comes back first: once it is read, the citizen is asked to take it, and the
  questions follow (after ``return_card`` seconds even if it is left in, with a reminder beep
  every ``reminder_s`` from then on);
* the kiosk never shows idle (its "insert your card" screen) while a card is in the reader:
  every ending leads to take-card, which stays until the card is taken;
* an expired Thai ID card is still a citizen's card and rates normally;
* one rating per citizen per service per window: once the service is known the flow asks the
  runner (``CheckRepeat``), and a repeat is told so and records nothing;
* a visit that times out, or is left with Back on its first question, is still recorded, as
  ``abandoned`` with the step it reached;
* after the last answer the citizen may change it for ``confirm`` seconds; then the visit
  commits as completed, and ``RecordVisit`` always comes before the thank-you screen in the
  effects, so the runner commits the visit before the citizen is thanked.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from kiosk import visit as schema

# The answers' vocabularies are the visit schema's; re-exported for the screens.
from kiosk.visit import COPY_ANSWERS as COPY_ANSWERS
from kiosk.visit import LANGUAGES as LANGUAGES
from kiosk.visit import RATINGS as RATINGS
from kiosk.visit import REASONS as REASONS


class Screen(enum.StrEnum):
    """One value per screen; the display has exactly one drawing per value."""

    IDLE = "idle"
    READING = "reading"
    CARD_PROBLEM = "card_problem"
    ALREADY_RATED = "already_rated"
    CHOOSE_SERVICE = "choose_service"
    COPY_CHECK = "copy_check"
    RATING = "rating"
    REASON = "reason"
    THANK_YOU = "thank_you"
    TAKE_CARD = "take_card"
    OUT_OF_SERVICE = "out_of_service"
    #: Right after a good read: the card is handed back before the questions (as an ATM does).
    RETURN_CARD = "return_card"
    #: After the last answer: "change my answer" is offered for a few seconds, then it commits.
    CONFIRM = "confirm"


#: The screens that ask the citizen something; a timeout there records an abandoned visit.
QUESTION_SCREENS = (Screen.CHOOSE_SERVICE, Screen.COPY_CHECK, Screen.RATING, Screen.REASON)
CARD_PROBLEMS = ("unreadable", "not_thai_id", "timeout", "removed", "no_reader")


# --- events: past-tense facts ---------------------------------------------------------------


@dataclass(frozen=True)
class CardInserted:
    """A card appeared in the reader."""


@dataclass(frozen=True)
class CardRead:
    """The card was read; only derived data, never the citizen ID. Whether it is a repeat is
    asked per service later (:class:`CheckRepeat`)."""

    repeat_hash: bytes | None
    expired: bool
    age_band: str | None = None
    gender: str | None = None

    def __repr__(self):
        # The hash is pseudonymous data: keep it out of logs and tracebacks.
        return f"CardRead(expired={self.expired})"


@dataclass(frozen=True)
class CardFailed:
    """The read did not produce a Thai ID card; ``reason`` is one of :data:`CARD_PROBLEMS`."""

    reason: str


@dataclass(frozen=True)
class CardRemoved:
    """The card left the reader."""


@dataclass(frozen=True)
class LanguageToggled:
    """The citizen switched between Thai and English."""


@dataclass(frozen=True)
class StartedWithoutCard:
    """The citizen chose to rate without a card (only honoured when the config allows it)."""


@dataclass(frozen=True)
class ServiceChosen:
    service_id: str


@dataclass(frozen=True)
class CopyAnswered:
    """Whether a photocopy was asked for today; one of :data:`COPY_ANSWERS`."""

    answer: str


@dataclass(frozen=True)
class RatingChosen:
    rating: int


@dataclass(frozen=True)
class ReasonChosen:
    """Why the rating was low; ``None`` when the citizen skipped the question."""

    reason: str | None


@dataclass(frozen=True)
class Back:
    """The citizen tapped Back on a question: to the previous one (or out, on the first)."""


@dataclass(frozen=True)
class ChangeAnswer:
    """The citizen tapped "change my answer" on the confirm screen."""


@dataclass(frozen=True)
class RepeatChecked:
    """The runner's answer to :class:`CheckRepeat`: this card already rated this service."""

    is_repeat: bool


@dataclass(frozen=True)
class Dismissed:
    """The citizen tapped OK on an information screen."""


@dataclass(frozen=True)
class Tick:
    """Time passed; deadlines are compared with ``now``."""


@dataclass(frozen=True)
class ServiceSuspended:
    """The kiosk cannot take visits (disk floor, fault); ``reason`` is for the technician."""

    reason: str


@dataclass(frozen=True)
class ServiceResumed:
    """The cause of the suspension went away."""


#: Every event type, so an adapter's fact can be told from the flow's events.
EVENT_TYPES = (
    CardInserted, CardRead, CardFailed, CardRemoved, LanguageToggled, StartedWithoutCard,
    ServiceChosen, CopyAnswered, RatingChosen, ReasonChosen, Dismissed, Tick, ServiceSuspended,
    ServiceResumed, Back, ChangeAnswer, RepeatChecked,
)


# --- effects: imperative --------------------------------------------------------------------


@dataclass(frozen=True)
class ShowScreen:
    screen: Screen


@dataclass(frozen=True)
class ReadCard:
    """Start reading the card in the reader (the reader answers with CardRead or CardFailed)."""


#: One finished visit as it is stored: the schema's record (kiosk.visit.Record).
VisitRecord = schema.Record


@dataclass(frozen=True)
class CheckRepeat:
    """Ask whether this card rated this service within the repeat window (answer:
    :class:`RepeatChecked`, before the next event); the hash stays out of reprs like
    :class:`CardRead`'s. ``service_id`` is None on a kiosk that asks only the rating."""

    repeat_hash: bytes = field(repr=False)
    service_id: str | None


@dataclass(frozen=True)
class RecordVisit:
    record: VisitRecord


class BeepKind(enum.StrEnum):
    """What a beep tells the citizen; the buzzer and the speaker each have a sound per kind."""

    TAP = "tap"
    CARD = "card"
    ERROR = "error"
    REMINDER = "reminder"


class StatusLight(enum.StrEnum):
    """The status lights a kiosk may have wired, exactly one lit at a time."""

    READY = "ready"
    BUSY = "busy"
    FAULT = "fault"


@dataclass(frozen=True)
class Beep:
    kind: BeepKind


@dataclass(frozen=True)
class SetStatusLight:
    light: StatusLight


# --- state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSettings:
    """What the flow needs from the config. No defaults here: it is always built by
    :meth:`from_config`, so the config schema holds the only defaults.

    ``timeouts`` holds the deadline of every screen that has one but thank-you and take-card:
    the card-return wait and the confirm window among them. ``take_card_s`` is how long
    take-card beeps its reminder before the card counts as forgotten (it stays until taken).
    """

    timeouts: Mapping[Screen, float]
    service_ids: tuple[str, ...]
    thank_you_s: float
    take_card_s: float
    reminder_s: float
    allow_rating_without_card: bool
    ask_reason_at_or_below: int
    rate_only: bool = False

    @classmethod
    def from_config(cls, cfg, *, rate_only=False):
        """The flow's view of a :class:`kiosk.config.Config` (or anything shaped like one)."""
        f = cfg.flow
        return cls(
            timeouts={
                Screen.READING: f.timeout_reading_s,
                Screen.RETURN_CARD: f.return_card_s,
                Screen.CARD_PROBLEM: f.timeout_card_problem_s,
                Screen.ALREADY_RATED: f.timeout_already_rated_s,
                Screen.CHOOSE_SERVICE: f.timeout_choose_service_s,
                Screen.COPY_CHECK: f.timeout_copy_check_s,
                Screen.RATING: f.timeout_rating_s,
                Screen.REASON: f.timeout_reason_s,
                Screen.CONFIRM: f.confirm_s,
            },
            service_ids=tuple(service.id for service in cfg.services),
            thank_you_s=f.thank_you_s,
            take_card_s=f.take_card_s,
            reminder_s=f.reminder_s,
            allow_rating_without_card=f.allow_rating_without_card,
            ask_reason_at_or_below=f.ask_reason_at_or_below,
            rate_only=rate_only,
        )


@dataclass(frozen=True)
class VisitDraft:
    """The visit in progress: what the citizen has answered so far.

    ``is_repeat_pending`` is set from a :class:`CheckRepeat` until its :class:`RepeatChecked`;
    ``undone`` once the citizen chose to change an answer on the confirm screen.
    """

    started_at: float
    verified: bool
    expired: bool | None = None
    repeat_hash: bytes | None = field(default=None, repr=False)
    age_band: str | None = None
    gender: str | None = None
    service_id: str | None = None
    copy_answer: str | None = None
    rating: int | None = None
    reason: str | None = None
    undone: bool = False
    is_repeat_pending: bool = False


@dataclass(frozen=True)
class State:
    screen: Screen = Screen.IDLE
    language: str = "th"
    deadline: float | None = None
    card_present: bool = False
    visit: VisitDraft | None = None
    problem: str | None = None
    out_of_service: str | None = None
    next_reminder: float | None = None
    #: Take-card went quiet with the card still in: the screen now asks a passer-by to hand
    #: it to staff, and the status light shows a fault so staff see it.
    card_forgotten: bool = False


def status_light(screen):
    """The status light that belongs to a screen."""
    if screen is Screen.IDLE:
        return StatusLight.READY
    if screen is Screen.OUT_OF_SERVICE:
        return StatusLight.FAULT
    return StatusLight.BUSY


def after_fault(card_present):
    """Where the runner restarts after a fault nobody foresaw: idle, or take-card (quiet)
    while a card is in, since idle would ask for a card that is already there."""
    screen = Screen.TAKE_CARD if card_present else Screen.IDLE
    return State(screen=screen, card_present=card_present)


# --- the step function ----------------------------------------------------------------------


def step(state, event, now, settings):
    """Advance the visit by one event; returns ``(new_state, effects)``.

    Events that make no sense on the current screen (a late tap, a rating on the copy screen)
    leave the state unchanged and produce no effects.
    """
    if isinstance(event, ServiceSuspended):
        return _suspend(state, event.reason, now, settings)
    if state.screen is Screen.OUT_OF_SERVICE:
        return _out_of_service(state, event, now, settings)
    if isinstance(event, CardInserted):
        return _card_inserted(state, now, settings)
    if isinstance(event, CardRemoved):
        return _card_removed(state, now, settings)
    if isinstance(event, Tick):
        return _tick(state, now, settings)
    if isinstance(event, RepeatChecked):
        return _repeat_checked(state, event, now, settings)
    handler = _HANDLERS.get(state.screen)
    return handler(state, event, now, settings) if handler else (state, ())


def _go(state, screen, now, settings, **changes):
    """Enter ``screen``: set its deadline and announce it (a forgotten card is only ever
    flagged on take-card, after :func:`_go`)."""
    deadline = None
    if screen is Screen.THANK_YOU:
        deadline = now + settings.thank_you_s
    elif screen is Screen.TAKE_CARD:
        deadline = now + settings.take_card_s
    elif screen in settings.timeouts:
        deadline = now + settings.timeouts[screen]
    new = replace(state, screen=screen, deadline=deadline, card_forgotten=False, **changes)
    return new, (ShowScreen(screen), SetStatusLight(status_light(screen)))


def _idle(state, now, settings):
    """Back to the attract screen; the language returns to Thai for the next citizen."""
    return _go(state, Screen.IDLE, now, settings, visit=None, problem=None, language="th",
               next_reminder=None)


def _questions(settings):
    """The questions a visit asks, in order (the reason only for a low rating). With a screen
    the service is always asked, even with one in the catalogue, since "other service" is a
    choice too; so the order never depends on a catalogue a remote config may change."""
    if settings.rate_only:  # no screen: nothing to ask but the rating (on the buttons)
        return (Screen.RATING,)
    return (Screen.CHOOSE_SERVICE, Screen.COPY_CHECK, Screen.RATING, Screen.REASON)


#: The answer each question gives the draft; going back to a question clears it and later ones.
_ANSWERS = {Screen.CHOOSE_SERVICE: "service_id", Screen.COPY_CHECK: "copy_answer",
            Screen.RATING: "rating", Screen.REASON: "reason"}


def _check_repeat(visit):
    """Once a card visit's service is known: ask whether this card rated it already."""
    if visit.repeat_hash is None:
        return visit, ()
    return (replace(visit, is_repeat_pending=True),
            (CheckRepeat(visit.repeat_hash, visit.service_id),))


def _first_question(state, visit, now, settings):
    first = _questions(settings)[0]
    checks = ()
    if first is not Screen.CHOOSE_SERVICE:  # rate_only: no service to ask, check the card now
        visit, checks = _check_repeat(visit)
    new, shown = _go(state, first, now, settings, visit=visit)
    return new, (*shown, *checks)


def _record(state, outcome, now, settings):
    """The finished visit: the draft's answers, whatever fields the schema gives them. A
    kiosk without a screen never asks for the card back, so there whether it was still in
    says nothing (None)."""
    visit = state.visit
    answers = {f.name: getattr(visit, f.name) for f in schema.FIELDS if hasattr(visit, f.name)}
    return RecordVisit(VisitRecord(
        **answers,
        outcome=outcome,
        step=state.screen.value,
        language=state.language,
        duration_s=round(max(0.0, now - visit.started_at), 3),
        card_in_at_commit=(state.card_present if visit.verified and not settings.rate_only
                           else None),
    ))


def _finish(state, now, settings):
    """Record the completed visit, then thank the citizen (in that order)."""
    record = _record(state, schema.Outcome.COMPLETED, now, settings)
    new, shown = _go(state, Screen.THANK_YOU, now, settings, visit=None)
    return new, (record, *shown)


def _last_answer(state, now, settings):
    """Every question answered: offer "change my answer" for a few seconds, or (a kiosk with
    no screen to offer it on) commit at once."""
    if settings.rate_only:
        return _finish(state, now, settings)
    return _go(state, Screen.CONFIRM, now, settings)


def _abandon(state, now, settings):
    """The visit ends half-way (timeout, Back on the first question): recorded all the same."""
    record = _record(state, schema.Outcome.ABANDONED, now, settings)
    new, effects = _after_visit(replace(state, visit=None), now, settings)
    return new, (record, *effects)


def _after_visit(state, now, settings):
    """Leave a visit, a card problem or the already-rated notice: never to idle with a card
    in, but to take-card, which beeps its reminder until it goes quiet or the card is taken."""
    if state.card_present:
        new, shown = _go(state, Screen.TAKE_CARD, now, settings, visit=None, problem=None,
                         next_reminder=now + settings.reminder_s)
        return new, (*shown, Beep(BeepKind.REMINDER))
    return _idle(state, now, settings)


def _card_inserted(state, now, settings):
    if state.card_present:
        return state, ()
    if state.visit is None and state.screen in _READS_A_CARD:
        new, shown = _go(state, Screen.READING, now, settings, card_present=True,
                         visit=VisitDraft(started_at=now, verified=False), problem=None)
        return new, (*shown, ReadCard())
    # Mid-visit: the card is noted, starts nothing, and is asked for back like one left in.
    return replace(state, card_present=True, next_reminder=now + settings.reminder_s), ()


#: Where a card put in starts a new read: no visit is open (thank-you's is committed).
_READS_A_CARD = (Screen.IDLE, Screen.CARD_PROBLEM, Screen.ALREADY_RATED, Screen.THANK_YOU)


def _card_removed(state, now, settings):
    if not state.card_present:
        return state, ()
    state = replace(state, card_present=False, next_reminder=None)
    if state.screen is Screen.READING:
        new, shown = _go(state, Screen.CARD_PROBLEM, now, settings, visit=None,
                         problem="removed")
        return new, (*shown, Beep(BeepKind.ERROR))
    if state.screen is Screen.RETURN_CARD:
        new, effects = _first_question(state, state.visit, now, settings)
        return new, (Beep(BeepKind.TAP), *effects)
    if state.screen is Screen.TAKE_CARD:
        return _idle(state, now, settings)
    # Once read, the card may go at any time: the visit goes on.
    return state, ()


def _tick(state, now, settings):
    effects = ()
    if state.card_present and state.next_reminder is not None and now >= state.next_reminder:
        state = replace(state, next_reminder=now + settings.reminder_s)
        effects = (Beep(BeepKind.REMINDER),)
    if state.deadline is None or now < state.deadline:
        return state, effects
    new, more = _timed_out(state, now, settings)
    return new, (*effects, *more)


def _timed_out(state, now, settings):
    """What a screen's deadline means; every screen with one leaves it but quiet take-card."""
    screen = state.screen
    if screen is Screen.READING:
        new, shown = _go(state, Screen.CARD_PROBLEM, now, settings, visit=None, problem="timeout")
        return new, (*shown, Beep(BeepKind.ERROR))
    if screen is Screen.RETURN_CARD:
        # The questions go on with the card in; it is asked for on every screen from now on.
        state = replace(state, next_reminder=now + settings.reminder_s)
        new, effects = _first_question(state, state.visit, now, settings)
        return new, (Beep(BeepKind.REMINDER), *effects)
    if screen in QUESTION_SCREENS:
        return _abandon(state, now, settings)
    if screen is Screen.CONFIRM:  # nobody changed an answer: it stands
        return _finish(state, now, settings)
    if screen is Screen.TAKE_CARD:
        # Its owner has gone: stop beeping, ask whoever passes to hand it to staff, and
        # show staff a fault. It stays until the card is taken.
        new = replace(state, deadline=None, next_reminder=None, card_forgotten=True)
        return new, (ShowScreen(Screen.TAKE_CARD), SetStatusLight(StatusLight.FAULT))
    # Thank-you, a card problem, already rated.
    return _after_visit(state, now, settings)


def _repeat_checked(state, event, now, settings):
    """The runner's answer to this visit's CheckRepeat; any other is stale and changes
    nothing."""
    if state.visit is None or not state.visit.is_repeat_pending:
        return state, ()
    if not event.is_repeat:
        return replace(state, visit=replace(state.visit, is_repeat_pending=False)), ()
    new, shown = _go(state, Screen.ALREADY_RATED, now, settings, visit=None)
    return new, (*shown, Beep(BeepKind.ERROR))


def _suspend(state, reason, now, settings):
    """Out of service at once; an open visit is recorded first: completed on the confirm
    screen (every answer was given, as when its window ends), else abandoned where it was
    (a card handed back on return-card, or a question)."""
    effects = ()
    if state.visit is not None and state.screen is Screen.CONFIRM:
        effects = (_record(state, schema.Outcome.COMPLETED, now, settings),)
    elif state.visit is not None and state.screen in (*QUESTION_SCREENS, Screen.RETURN_CARD):
        effects = (_record(state, schema.Outcome.ABANDONED, now, settings),)
    new, shown = _go(state, Screen.OUT_OF_SERVICE, now, settings, visit=None, problem=None,
                     out_of_service=reason, next_reminder=None)
    return new, (*effects, *shown)


def _out_of_service(state, event, now, settings):
    """Only card presence is tracked while out of service; nothing starts a visit."""
    if isinstance(event, ServiceResumed):
        return _after_visit(replace(state, out_of_service=None), now, settings)
    if isinstance(event, CardInserted):
        return replace(state, card_present=True), ()
    if isinstance(event, CardRemoved):
        return replace(state, card_present=False), ()
    return state, ()


def _toggle_language(state, now, settings):
    """Switch language for the rest of the visit; a tap is activity, so the clock restarts."""
    deadline = state.deadline
    if deadline is not None and state.screen in settings.timeouts:
        deadline = now + settings.timeouts[state.screen]
    language = "en" if state.language == "th" else "th"
    return replace(state, language=language, deadline=deadline), (Beep(BeepKind.TAP),)


def _on_idle(state, event, now, settings):
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    if isinstance(event, StartedWithoutCard):
        return _start_without_card(state, now, settings)
    return state, ()


def _start_without_card(state, now, settings):
    """A card-less visit; a card still in (an unreadable one) is asked for back meanwhile."""
    if not settings.allow_rating_without_card:
        return state, ()
    if state.card_present:
        state = replace(state, next_reminder=now + settings.reminder_s)
    new, effects = _first_question(state, VisitDraft(started_at=now, verified=False), now, settings)
    return new, (Beep(BeepKind.TAP), *effects)


def _on_reading(state, event, now, settings):
    if isinstance(event, CardRead):
        visit = replace(state.visit, verified=True, expired=event.expired,
                        repeat_hash=event.repeat_hash, age_band=event.age_band,
                        gender=event.gender)
        if settings.rate_only:  # no screen to ask for the card on: reminded at the end
            new, effects = _first_question(state, visit, now, settings)
        else:
            new, effects = _go(state, Screen.RETURN_CARD, now, settings, visit=visit)
        return new, (Beep(BeepKind.CARD), *effects)
    if isinstance(event, CardFailed):
        new, shown = _go(state, Screen.CARD_PROBLEM, now, settings, visit=None,
                         problem=event.reason if event.reason in CARD_PROBLEMS else "unreadable")
        return new, (*shown, Beep(BeepKind.ERROR))
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    return state, ()


def _on_return_card(state, event, now, settings):
    """Only the card going (or its deadline) moves on; the language may change."""
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    return state, ()


def _on_information(state, event, now, settings):
    """Card problem ("Try again") and already rated: OK ends them; rating without a card may
    start from a card problem."""
    if isinstance(event, Dismissed):
        return _after_visit(replace(state, visit=None), now, settings)
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    if isinstance(event, StartedWithoutCard) and state.screen is Screen.CARD_PROBLEM:
        return _start_without_card(state, now, settings)
    return state, ()


def _answer(state, now, settings, next_screen, **answer):
    visit = replace(state.visit, **answer)
    new, shown = _go(state, next_screen, now, settings, visit=visit)
    return new, (Beep(BeepKind.TAP), *shown)


def _back_to(state, screen, now, settings, **changes):
    """Return to an earlier question: its answer and every later one are asked again."""
    order = _questions(settings)
    cleared = {_ANSWERS[s]: None for s in order[order.index(screen):]}
    visit = replace(state.visit, **cleared, **changes)
    new, shown = _go(state, screen, now, settings, visit=visit)
    return new, (Beep(BeepKind.TAP), *shown)


def _back(state, now, settings):
    order = _questions(settings)
    # A question the order no longer holds (a remote config changed it) counts as the first.
    at = order.index(state.screen) if state.screen in order else 0
    if at == 0:  # out of the first question: the citizen leaves, as walking away would
        new, effects = _abandon(state, now, settings)
        return new, (Beep(BeepKind.TAP), *effects)
    return _back_to(state, order[at - 1], now, settings)


def _on_question(state, event, now, settings):
    screen = state.screen
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    if isinstance(event, Back):
        return _back(state, now, settings)
    if screen is Screen.CHOOSE_SERVICE and isinstance(event, ServiceChosen) \
            and (event.service_id in settings.service_ids
                 or event.service_id == schema.OTHER_SERVICE):
        visit, checks = _check_repeat(replace(state.visit, service_id=event.service_id))
        new, effects = _answer(replace(state, visit=visit), now, settings, Screen.COPY_CHECK)
        return new, (*effects, *checks)
    if screen is Screen.COPY_CHECK and isinstance(event, CopyAnswered) \
            and event.answer in COPY_ANSWERS:
        return _answer(state, now, settings, Screen.RATING, copy_answer=event.answer)
    if screen is Screen.RATING and isinstance(event, RatingChosen) and event.rating in RATINGS:
        state = replace(state, visit=replace(state.visit, rating=event.rating))
        # A kiosk without a screen (rate_only) cannot ask why.
        if event.rating <= settings.ask_reason_at_or_below and not settings.rate_only:
            new, shown = _go(state, Screen.REASON, now, settings)
            return new, (Beep(BeepKind.TAP), *shown)
        new, effects = _last_answer(state, now, settings)
        return new, (Beep(BeepKind.TAP), *effects)
    if screen is Screen.REASON and isinstance(event, ReasonChosen) \
            and (event.reason is None or event.reason in REASONS):
        state = replace(state, visit=replace(state.visit, reason=event.reason))
        new, effects = _last_answer(state, now, settings)
        return new, (Beep(BeepKind.TAP), *effects)
    return state, ()


def _on_confirm(state, event, now, settings):
    """"OK, send" commits now; "change my answer" (or Back) asks the rating again."""
    if isinstance(event, Dismissed):
        new, effects = _finish(state, now, settings)
        return new, (Beep(BeepKind.TAP), *effects)
    if isinstance(event, ChangeAnswer | Back):
        return _back_to(state, Screen.RATING, now, settings, undone=True)
    if isinstance(event, LanguageToggled):
        return _toggle_language(state, now, settings)
    return state, ()


def _on_thank_you(state, event, now, settings):
    if isinstance(event, Dismissed):
        return _after_visit(state, now, settings)
    return state, ()


_HANDLERS = {
    Screen.IDLE: _on_idle,
    Screen.READING: _on_reading,
    Screen.RETURN_CARD: _on_return_card,
    Screen.CARD_PROBLEM: _on_information,
    Screen.ALREADY_RATED: _on_information,
    Screen.CHOOSE_SERVICE: _on_question,
    Screen.COPY_CHECK: _on_question,
    Screen.RATING: _on_question,
    Screen.REASON: _on_question,
    Screen.CONFIRM: _on_confirm,
    Screen.THANK_YOU: _on_thank_you,
}
